//! `InvokeModel` bodies. Bedrock's body is model-specific; Highside's models accept the two
//! native formats Bedrock itself uses for open-weight models: the OpenAI chat-completions body
//! (as for `openai.gpt-oss-*`), answered with a chat completion, and Meta Llama's
//! `{"prompt", "max_gen_len", "temperature", "top_p"}`, answered with `{"generation", ...}`.
//! `InvokeModelWithResponseStream` answers the same formats in `chunk` events: chat
//! completion chunks, or Llama's `{"generation", ..., "stop_reason"}` pieces whose last one
//! carries `amazon-bedrock-invocationMetrics`.

use highside_inference::{FinishReason, Prepared, PromptInput, Usage};
use serde::{Deserialize, Serialize};

use crate::converse::{sampling, token_limit, Validation};

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

/// Just enough of a body to tell its format: whether it has `messages`.
#[derive(Deserialize)]
struct Probe {
    #[serde(default)]
    messages: Option<serde::de::IgnoredAny>,
}

/// Which format an invoke body is in (an OpenAI chat body has `messages`); the body must be
/// a JSON object.
pub fn format(body: &[u8]) -> Result<Format, Validation> {
    if body.trim_ascii_start().first() != Some(&b'{') {
        return Err(Validation("the request body must be a JSON object".into()));
    }
    let probe: Probe = serde_json::from_slice(body)
        .map_err(|e| Validation(format!("the request body must be a JSON object: {e}")))?;
    Ok(if probe.messages.is_some() {
        Format::Chat
    } else {
        Format::Llama
    })
}

/// The neutral request of a Llama body addressed to `model`; `stream` for
/// `InvokeModelWithResponseStream` (usage then comes at the end).
pub fn llama_request(model: &str, body: &[u8], stream: bool) -> Result<Prepared, Validation> {
    let r: LlamaRequest = serde_json::from_slice(body).map_err(|e| {
        Validation(format!(
            "the body must be an OpenAI chat request (with messages) or a Llama request (with prompt): {e}"
        ))
    })?;
    let max_tokens = token_limit(r.max_gen_len, "max_gen_len")?;
    Ok(Prepared {
        model: model.to_owned(),
        input: PromptInput::Text(r.prompt),
        params: sampling(r.temperature, r.top_p, Vec::new())?,
        // As OpenAI's text completions, which this format has always been served as.
        max_tokens: max_tokens.or(Some(16)),
        stream,
        include_usage: stream,
        declared_label: None,
        banner: false,
        tools: None,
    })
}

/// One piece of a Llama stream or the whole Llama answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LlamaPiece {
    /// Generated text.
    pub generation: String,
    /// Prompt tokens (in the whole answer and the last piece).
    pub prompt_token_count: Option<u64>,
    /// Generated tokens (in the whole answer and the last piece).
    pub generation_token_count: Option<u64>,
    /// `stop` or `length`, once the generation has ended.
    pub stop_reason: Option<&'static str>,
    /// Bedrock's metrics, on the last piece of a stream.
    #[serde(
        rename = "amazon-bedrock-invocationMetrics",
        skip_serializing_if = "Option::is_none"
    )]
    pub metrics: Option<InvocationMetrics>,
}

/// `amazon-bedrock-invocationMetrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InvocationMetrics {
    /// Prompt tokens.
    pub input_token_count: u64,
    /// Generated tokens.
    pub output_token_count: u64,
    /// Time to the whole answer.
    pub invocation_latency: u64,
    /// Time to the first byte (the same: pieces are framed as one body).
    pub first_byte_latency: u64,
}

fn llama_stop(finish: FinishReason) -> &'static str {
    match finish {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
    }
}

/// A piece of streamed text.
pub fn llama_text(text: String) -> LlamaPiece {
    LlamaPiece {
        generation: text,
        prompt_token_count: None,
        generation_token_count: None,
        stop_reason: None,
        metrics: None,
    }
}

/// The two pieces that end a stream: the stop reason, then the counts and metrics.
pub fn llama_end(finish: FinishReason, usage: Usage, latency_ms: u64) -> [LlamaPiece; 2] {
    let stop = llama_stop(finish);
    [
        LlamaPiece {
            stop_reason: Some(stop),
            ..llama_text(String::new())
        },
        LlamaPiece {
            generation: String::new(),
            prompt_token_count: Some(usage.prompt_tokens),
            generation_token_count: Some(usage.completion_tokens),
            stop_reason: Some(stop),
            metrics: Some(InvocationMetrics {
                input_token_count: usage.prompt_tokens,
                output_token_count: usage.completion_tokens,
                invocation_latency: latency_ms,
                first_byte_latency: latency_ms,
            }),
        },
    ]
}

/// Meta Llama's response body for a whole answer.
pub fn llama_response(text: String, finish: FinishReason, usage: Usage) -> LlamaPiece {
    LlamaPiece {
        generation: text,
        prompt_token_count: Some(usage.prompt_tokens),
        generation_token_count: Some(usage.completion_tokens),
        stop_reason: Some(llama_stop(finish)),
        metrics: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn both_native_formats_are_told_apart_and_others_are_refused() {
        assert_eq!(
            format(br#"{"messages":[{"role":"user","content":"hi"}]}"#).unwrap(),
            Format::Chat
        );
        assert_eq!(format(br#"{"prompt":"hi"}"#).unwrap(), Format::Llama);
        for bad in [&br#"[]"#[..], b"not json", br#""text""#] {
            assert!(format(bad).is_err());
        }
        let r = llama_request(
            "m",
            br#"{"prompt":"hi","max_gen_len":5,"top_p":0.5}"#,
            false,
        )
        .unwrap();
        assert_eq!(r.input, PromptInput::Text("hi".into()));
        assert_eq!(
            (r.max_tokens, r.params.top_p, r.stream),
            (Some(5), 0.5, false)
        );
        let r = llama_request("m", br#"{"prompt":"hi"}"#, true).unwrap();
        assert_eq!(
            (r.max_tokens, r.stream, r.include_usage),
            (Some(16), true, true)
        );
        for bad in [
            &br#"{"prompt": "x", "bogus": 1}"#[..],
            br#"{"inputText": "titan"}"#,
            br#"{"prompt": "x", "max_gen_len": 0}"#,
            br#"{"prompt": "x", "temperature": 9}"#,
        ] {
            assert!(llama_request("m", bad, false).is_err());
        }
    }

    #[test]
    fn answers_take_the_llama_shape() {
        let usage = Usage {
            prompt_tokens: 3,
            completion_tokens: 1,
        };
        assert_eq!(
            serde_json::to_value(llama_response("ok".into(), FinishReason::Length, usage)).unwrap(),
            json!({"generation": "ok", "prompt_token_count": 3, "generation_token_count": 1, "stop_reason": "length"})
        );
        assert_eq!(
            serde_json::to_value(llama_text("a".into())).unwrap(),
            json!({"generation": "a", "prompt_token_count": null, "generation_token_count": null, "stop_reason": null})
        );
        let [stop, last] = llama_end(FinishReason::Length, usage, 7);
        assert_eq!(stop.stop_reason, Some("length"));
        let last = serde_json::to_value(last).unwrap();
        assert_eq!(last["stop_reason"], "length");
        assert_eq!(
            last["amazon-bedrock-invocationMetrics"],
            json!({"inputTokenCount": 3, "outputTokenCount": 1, "invocationLatency": 7, "firstByteLatency": 7})
        );
    }
}
