//! The OpenAI chat-completions wire format as an upstream speaks it.

use serde_json::{json, Value};

use crate::{ChatRequest, Chunk, Finish, ProtocolError, Usage};

/// The request body for `model`.
pub fn body(model: &str, req: &ChatRequest) -> Value {
    let messages: Vec<Value> = req
        .messages
        .iter()
        .map(|m| json!({"role": m.role, "content": m.content}))
        .collect();
    let mut b = json!({"model": model, "messages": messages, "stream": req.stream});
    if req.stream {
        b["stream_options"] = json!({"include_usage": true});
    }
    if let Some(v) = req.max_tokens {
        b["max_tokens"] = json!(v);
    }
    if let Some(v) = req.temperature {
        b["temperature"] = json!(v);
    }
    if let Some(v) = req.top_p {
        b["top_p"] = json!(v);
    }
    if !req.stop.is_empty() {
        b["stop"] = json!(req.stop);
    }
    if let Some(v) = req.seed {
        b["seed"] = json!(v);
    }
    b
}

fn finish(v: &Value) -> Option<Finish> {
    v.as_str().map(|f| match f {
        "length" => Finish::Length,
        _ => Finish::Stop,
    })
}

fn usage(v: &Value) -> Option<Usage> {
    Some(Usage {
        prompt_tokens: v.get("prompt_tokens")?.as_u64()?,
        completion_tokens: v.get("completion_tokens")?.as_u64()?,
    })
}

/// A whole (non-streamed) chat completion: its text, finish reason and usage.
pub fn parse_response(v: &Value) -> Result<(String, Finish, Option<Usage>), ProtocolError> {
    let choice = v
        .get("choices")
        .and_then(|c| c.get(0))
        .ok_or(ProtocolError("the answer has no choices"))?;
    let text = match &choice["message"]["content"] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        _ => return Err(ProtocolError("the answer's content is not text")),
    };
    let finish = finish(&choice["finish_reason"]).unwrap_or(Finish::Stop);
    Ok((text, finish, v.get("usage").and_then(usage)))
}

/// One `data:` payload of a stream.
pub fn parse_chunk(data: &str) -> Result<Chunk, ProtocolError> {
    if data.trim() == "[DONE]" {
        return Ok(Chunk::End);
    }
    let v: Value =
        serde_json::from_str(data).map_err(|_| ProtocolError("a stream chunk is not JSON"))?;
    if v.get("error").is_some() {
        return Err(ProtocolError("the upstream sent an error in the stream"));
    }
    let choice = v.get("choices").and_then(|c| c.get(0));
    let text = choice
        .and_then(|c| c["delta"]["content"].as_str())
        .filter(|t| !t.is_empty())
        .map(str::to_owned);
    Ok(Chunk::Data {
        text,
        finish: choice.and_then(|c| finish(&c["finish_reason"])),
        usage: v.get("usage").and_then(usage),
    })
}

/// An embeddings answer: one float vector per input, in input order, and the token count.
pub fn parse_embeddings(
    bytes: &[u8],
    inputs: usize,
) -> Result<(Vec<Vec<f32>>, Option<u64>), ProtocolError> {
    let v: Value =
        serde_json::from_slice(bytes).map_err(|_| ProtocolError("the answer is not JSON"))?;
    let data = v["data"]
        .as_array()
        .ok_or(ProtocolError("the answer has no data"))?;
    if data.len() != inputs {
        return Err(ProtocolError(
            "the answer has a different number of embeddings",
        ));
    }
    let mut out = vec![None; inputs];
    for d in data {
        let i = d["index"].as_u64().map_or(usize::MAX, |i| i as usize);
        let slot = out
            .get_mut(i)
            .ok_or(ProtocolError("an embedding's index is out of range"))?;
        let vector: Option<Vec<f32>> = d["embedding"]
            .as_array()
            .and_then(|a| a.iter().map(|x| x.as_f64().map(|f| f as f32)).collect());
        *slot = Some(vector.ok_or(ProtocolError("an embedding is not a list of numbers"))?);
    }
    let vectors: Option<Vec<Vec<f32>>> = out.into_iter().collect();
    Ok((
        vectors.ok_or(ProtocolError("an input has no embedding"))?,
        v["usage"]["prompt_tokens"].as_u64(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Message;

    #[test]
    fn body_and_answers() {
        let req = ChatRequest {
            messages: vec![Message {
                role: "user".into(),
                content: "hi".into(),
            }],
            max_tokens: Some(5),
            temperature: Some(0.0),
            top_p: None,
            stop: vec!["\n".into()],
            seed: None,
            stream: true,
        };
        let b = body("up", &req);
        assert_eq!(b["model"], "up");
        assert_eq!(b["stream_options"]["include_usage"], true);
        assert_eq!(b["stop"], json!(["\n"]));
        assert!(b.get("top_p").is_none());
        let (t, f, u) = parse_response(&json!({"choices": [{"message": {"content": "ok"}, "finish_reason": "length"}],
                                                 "usage": {"prompt_tokens": 3, "completion_tokens": 1}}))
        .unwrap();
        assert_eq!((t.as_str(), f), ("ok", Finish::Length));
        assert_eq!(u.unwrap().completion_tokens, 1);
        assert!(parse_response(&json!({})).is_err());
        assert_eq!(parse_chunk("[DONE]").unwrap(), Chunk::End);
        assert_eq!(
            parse_chunk(r#"{"choices":[{"delta":{"content":"a"},"finish_reason":null}]}"#).unwrap(),
            Chunk::Data {
                text: Some("a".into()),
                finish: None,
                usage: None
            }
        );
        assert!(parse_chunk("{nope").is_err());
        let e = br#"{"data":[{"index":1,"embedding":[0.5]},{"index":0,"embedding":[1,2]}],"usage":{"prompt_tokens":4}}"#;
        let (v, t) = parse_embeddings(e, 2).unwrap();
        assert_eq!((v, t), (vec![vec![1.0, 2.0], vec![0.5]], Some(4)));
        assert!(parse_embeddings(e, 3).is_err());
        assert!(parse_embeddings(br#"{"data":[{"index":5,"embedding":[1]}]}"#, 1).is_err());
        assert!(parse_embeddings(br#"{"data":[{"index":0,"embedding":"AAAA"}]}"#, 1).is_err());
        assert!(parse_chunk(r#"{"error":{"message":"x"}}"#).is_err());
    }
}
