//! The Anthropic Messages API (`POST /v1/messages`, `anthropic-version: 2023-06-01`) as an
//! upstream speaks it: system prompts go in `system`, `max_tokens` is required, streams are
//! typed events (`message_start`, `content_block_delta`, `message_delta`, `message_stop`).

use serde_json::{json, Value};

use crate::{ChatRequest, Chunk, Finish, ProtocolError, Usage};

/// The API version header value sent with every request.
pub const VERSION: &str = "2023-06-01";

/// The request body for `model`; `default_max` fills the required `max_tokens`.
pub fn body(model: &str, req: &ChatRequest, default_max: u32) -> Value {
    let system: Vec<&str> = req
        .messages
        .iter()
        .filter(|m| m.role == "system")
        .map(|m| m.content.as_str())
        .collect();
    let messages: Vec<Value> = req
        .messages
        .iter()
        .filter(|m| m.role != "system")
        .map(|m| json!({"role": m.role, "content": m.content}))
        .collect();
    let mut b = json!({
        "model": model,
        "messages": messages,
        "max_tokens": req.max_tokens.unwrap_or(default_max),
        "stream": req.stream,
    });
    if !system.is_empty() {
        b["system"] = json!(system.join("\n"));
    }
    if let Some(v) = req.temperature {
        b["temperature"] = json!(v);
    }
    if let Some(v) = req.top_p {
        b["top_p"] = json!(v);
    }
    if !req.stop.is_empty() {
        b["stop_sequences"] = json!(req.stop);
    }
    b
}

fn finish(v: &Value) -> Option<Finish> {
    v.as_str().map(|f| match f {
        "max_tokens" => Finish::Length,
        _ => Finish::Stop,
    })
}

/// A whole Messages answer: its text, finish reason and usage.
pub fn parse_response(v: &Value) -> Result<(String, Finish, Option<Usage>), ProtocolError> {
    let blocks = v["content"]
        .as_array()
        .ok_or(ProtocolError("the answer has no content"))?;
    let text: String = blocks
        .iter()
        .filter(|b| b["type"] == "text")
        .filter_map(|b| b["text"].as_str())
        .collect();
    let usage = Some(Usage {
        prompt_tokens: v["usage"]["input_tokens"].as_u64().unwrap_or(0),
        completion_tokens: v["usage"]["output_tokens"].as_u64().unwrap_or(0),
    })
    .filter(|_| v["usage"].is_object());
    Ok((
        text,
        finish(&v["stop_reason"]).unwrap_or(Finish::Stop),
        usage,
    ))
}

/// One event of a stream. `message_start` carries the input tokens and `message_delta` the
/// output tokens; they are merged by the caller.
pub fn parse_event(event: Option<&str>, data: &str) -> Result<Chunk, ProtocolError> {
    let v: Value =
        serde_json::from_str(data).map_err(|_| ProtocolError("a stream event is not JSON"))?;
    let kind = event.or_else(|| v["type"].as_str()).unwrap_or("");
    Ok(match kind {
        "message_start" => Chunk::Data {
            text: None,
            finish: None,
            usage: Some(Usage {
                prompt_tokens: v["message"]["usage"]["input_tokens"].as_u64().unwrap_or(0),
                completion_tokens: 0,
            }),
        },
        "content_block_delta" => Chunk::Data {
            text: v["delta"]["text"]
                .as_str()
                .filter(|t| !t.is_empty())
                .map(str::to_owned),
            finish: None,
            usage: None,
        },
        "message_delta" => Chunk::Data {
            text: None,
            finish: finish(&v["delta"]["stop_reason"]),
            usage: v["usage"]["output_tokens"].as_u64().map(|o| Usage {
                prompt_tokens: 0,
                completion_tokens: o,
            }),
        },
        "message_stop" => Chunk::End,
        "error" => return Err(ProtocolError("the upstream sent an error in the stream")),
        _ => Chunk::Data {
            text: None,
            finish: None,
            usage: None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Message;

    #[test]
    fn system_prompts_move_and_events_parse() {
        let m = |r: &str, c: &str| Message {
            role: r.into(),
            content: c.into(),
        };
        let req = ChatRequest {
            messages: vec![m("system", "terse"), m("user", "hi")],
            max_tokens: None,
            temperature: None,
            top_p: None,
            stop: vec![],
            seed: Some(1),
            stream: false,
        };
        let b = body("claude", &req, 100);
        assert_eq!(b["system"], "terse");
        assert_eq!(b["messages"], json!([{"role": "user", "content": "hi"}]));
        assert_eq!(b["max_tokens"], 100);
        let (t, f, u) = parse_response(&json!({"content": [{"type": "text", "text": "ok"}],
            "stop_reason": "max_tokens", "usage": {"input_tokens": 4, "output_tokens": 1}}))
        .unwrap();
        assert_eq!(
            (t.as_str(), f, u.unwrap().prompt_tokens),
            ("ok", Finish::Length, 4)
        );
        assert_eq!(
            parse_event(Some("content_block_delta"), r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"x"}}"#).unwrap(),
            Chunk::Data { text: Some("x".into()), finish: None, usage: None }
        );
        assert_eq!(
            parse_event(None, r#"{"type":"message_stop"}"#).unwrap(),
            Chunk::End
        );
        assert!(parse_event(
            Some("error"),
            r#"{"type":"error","error":{"type":"overloaded_error","message":"x"}}"#
        )
        .is_err());
    }
}
