//! `InvokeModel` bodies. Bedrock's body is model-specific; Highside's models accept the two
//! native formats Bedrock itself uses for open-weight models: the OpenAI chat-completions body
//! (as for `openai.gpt-oss-*`), answered with a chat completion, and Meta Llama's
//! `{"prompt", "max_gen_len", "temperature", "top_p"}`, answered with `{"generation", ...}`.
//! `InvokeModelWithResponseStream` answers the same formats in `chunk` events: chat
//! completion chunks, or Llama's `{"generation", ..., "stop_reason"}` pieces whose last one
//! carries `amazon-bedrock-invocationMetrics`.

use serde::Deserialize;
use serde_json::{json, Value};

use crate::converse::Validation;

/// Which native format an invoke body is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenAI chat completions.
    Chat,
    /// Meta Llama text generation.
    Llama,
}

/// Meta Llama's request body.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct LlamaRequest {
    prompt: String,
    #[serde(default)]
    max_gen_len: Option<i64>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
}

/// The OpenAI body (chat or completions) for an invoke body addressed to `model`; `stream`
/// for `InvokeModelWithResponseStream` (the OpenAI body then streams, with usage at the end
/// unless a chat body says otherwise).
pub fn to_openai(model: &str, body: &[u8], stream: bool) -> Result<(Format, Value), Validation> {
    let mut value: Value = serde_json::from_slice(body)
        .map_err(|e| Validation(format!("the request body is not valid JSON: {e}")))?;
    let Some(obj) = value.as_object_mut() else {
        return Err(Validation("the request body must be a JSON object".into()));
    };
    if obj.contains_key("messages") {
        match obj.get("model") {
            None => {
                obj.insert("model".into(), json!(model));
            }
            Some(Value::String(m)) if m == model => {}
            Some(_) => {
                return Err(Validation(
                    "the body's model must be the model in the path".into(),
                ))
            }
        }
        let asks = obj.get("stream").and_then(Value::as_bool) == Some(true);
        if asks && !stream {
            return Err(Validation(
                "InvokeModel answers in one body; use invoke-with-response-stream to stream".into(),
            ));
        }
        if stream {
            obj.insert("stream".into(), json!(true));
            obj.entry("stream_options")
                .or_insert_with(|| json!({"include_usage": true}));
        }
        return Ok((Format::Chat, value));
    }
    let r: LlamaRequest = serde_json::from_value(value).map_err(|e| {
        Validation(format!(
            "the body must be an OpenAI chat request (with messages) or a Llama request (with prompt): {e}"
        ))
    })?;
    let mut out = json!({"model": model, "prompt": r.prompt});
    if let Some(v) = r.max_gen_len {
        out["max_tokens"] = json!(v);
    }
    if let Some(v) = r.temperature {
        out["temperature"] = json!(v);
    }
    if let Some(v) = r.top_p {
        out["top_p"] = json!(v);
    }
    if stream {
        out["stream"] = json!(true);
        out["stream_options"] = json!({"include_usage": true});
    }
    Ok((Format::Llama, out))
}

/// The Llama stream piece of one text-completion chunk: text (and the finish reason, on the
/// last), or, for the closing usage chunk, the counts and Bedrock's invocation metrics.
/// `None` for a chunk that carries nothing.
pub fn llama_chunk(chunk: &Value, stop: Option<&str>, latency_ms: u64) -> Option<Value> {
    if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
        let (input, output) = (
            usage["prompt_tokens"].as_u64().unwrap_or(0),
            usage["completion_tokens"].as_u64().unwrap_or(0),
        );
        return Some(json!({
            "generation": "",
            "prompt_token_count": input,
            "generation_token_count": output,
            "stop_reason": stop.unwrap_or("stop"),
            "amazon-bedrock-invocationMetrics": {
                "inputTokenCount": input,
                "outputTokenCount": output,
                "invocationLatency": latency_ms,
                "firstByteLatency": latency_ms,
            },
        }));
    }
    let choice = chunk.get("choices")?.get(0)?;
    let text = choice["text"].as_str().unwrap_or("");
    let finish = choice["finish_reason"].as_str();
    if text.is_empty() && finish.is_none() {
        return None;
    }
    Some(json!({
        "generation": text,
        "prompt_token_count": null,
        "generation_token_count": null,
        "stop_reason": finish,
    }))
}

/// Meta Llama's response body for a text completion.
pub fn llama_response(completion: &Value) -> Value {
    json!({
        "generation": completion["choices"][0]["text"].as_str().unwrap_or(""),
        "prompt_token_count": completion["usage"]["prompt_tokens"].as_u64().unwrap_or(0),
        "generation_token_count": completion["usage"]["completion_tokens"].as_u64().unwrap_or(0),
        "stop_reason": completion["choices"][0]["finish_reason"].as_str().unwrap_or("stop"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_native_formats_map_and_others_are_refused() {
        let (f, v) = to_openai(
            "m",
            br#"{"messages":[{"role":"user","content":"hi"}]}"#,
            false,
        )
        .unwrap();
        assert_eq!((f, v["model"].as_str()), (Format::Chat, Some("m")));
        let (_, v) = to_openai(
            "m",
            br#"{"messages":[{"role":"user","content":"hi"}],"stream":true}"#,
            true,
        )
        .unwrap();
        assert_eq!(v["stream_options"]["include_usage"], true);
        let (f, v) = to_openai(
            "m",
            br#"{"prompt":"hi","max_gen_len":5,"top_p":0.5}"#,
            false,
        )
        .unwrap();
        assert_eq!(f, Format::Llama);
        assert_eq!(
            v,
            json!({"model": "m", "prompt": "hi", "max_tokens": 5, "top_p": 0.5})
        );
        for bad in [
            &br#"[]"#[..],
            br#"{"prompt": "x", "bogus": 1}"#,
            br#"{"messages": [], "model": "other"}"#,
            br#"{"messages": [], "stream": true}"#,
            br#"{"inputText": "titan"}"#,
            b"not json",
        ] {
            assert!(to_openai("m", bad, false).is_err());
        }
        let r = llama_response(
            &json!({"choices": [{"text": "ok", "finish_reason": "length"}],
                                        "usage": {"prompt_tokens": 3, "completion_tokens": 1}}),
        );
        assert_eq!(
            r,
            json!({"generation": "ok", "prompt_token_count": 3, "generation_token_count": 1, "stop_reason": "length"})
        );
        let (_, v) = to_openai("m", br#"{"prompt":"hi"}"#, true).unwrap();
        assert_eq!(v["stream"], true);
        let piece = llama_chunk(
            &json!({"choices": [{"text": "a", "finish_reason": null}]}),
            None,
            5,
        );
        assert_eq!(piece.unwrap()["generation"], "a");
        assert!(llama_chunk(
            &json!({"choices": [{"text": "", "finish_reason": null}]}),
            None,
            5
        )
        .is_none());
        let last = llama_chunk(
            &json!({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}),
            Some("length"),
            7,
        )
        .unwrap();
        assert_eq!(last["stop_reason"], "length");
        assert_eq!(
            last["amazon-bedrock-invocationMetrics"]["outputTokenCount"],
            2
        );
    }
}
