//! The OpenAI chat-completions wire format as an upstream speaks it.

use serde_json::{json, Value};

use crate::{Answer, CallDelta, ChatRequest, Chunk, ProtocolError};
use highside_inference::{FinishReason, Message, ToolCall, ToolChoice, Usage};

fn message(m: &Message) -> Value {
    let mut v = json!({"role": m.role, "content": m.content});
    if !m.tool_calls.is_empty() {
        v["tool_calls"] = m
            .tool_calls
            .iter()
            .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}))
            .collect();
        if m.content.is_empty() {
            v["content"] = Value::Null;
        }
    }
    if let Some(id) = &m.tool_call_id {
        v["tool_call_id"] = json!(id);
    }
    v
}

/// The request body for `model`.
pub fn body(model: &str, req: &ChatRequest) -> Value {
    let messages: Vec<Value> = req.messages.iter().map(message).collect();
    let mut b = json!({"model": model, "messages": messages, "stream": req.stream});
    if !req.tools.is_empty() {
        b["tools"] = req
            .tools
            .iter()
            .map(|t| json!({"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}))
            .collect();
        b["tool_choice"] = match &req.tool_choice {
            ToolChoice::None => json!("none"),
            ToolChoice::Auto => json!("auto"),
            ToolChoice::Required => json!("required"),
            ToolChoice::Named(n) => json!({"type": "function", "function": {"name": n}}),
        };
        if let Some(p) = req.parallel_tool_calls {
            b["parallel_tool_calls"] = json!(p);
        }
    }
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

fn finish(v: &Value) -> Option<FinishReason> {
    v.as_str().map(|f| match f {
        "length" => FinishReason::Length,
        _ => FinishReason::Stop,
    })
}

fn usage(v: &Value) -> Option<Usage> {
    Some(Usage {
        prompt_tokens: v.get("prompt_tokens")?.as_u64()?,
        completion_tokens: v.get("completion_tokens")?.as_u64()?,
    })
}

/// A whole (non-streamed) chat completion.
pub fn parse_response(v: &Value) -> Result<Answer, ProtocolError> {
    let choice = v
        .get("choices")
        .and_then(|c| c.get(0))
        .ok_or(ProtocolError("the answer has no choices"))?;
    let text = match &choice["message"]["content"] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        _ => return Err(ProtocolError("the answer's content is not text")),
    };
    let calls = match &choice["message"]["tool_calls"] {
        Value::Null => Vec::new(),
        Value::Array(list) => list
            .iter()
            .map(|c| {
                Some(ToolCall {
                    id: c["id"].as_str()?.to_owned(),
                    name: c["function"]["name"].as_str()?.to_owned(),
                    arguments: c["function"]["arguments"].as_str()?.to_owned(),
                })
            })
            .collect::<Option<_>>()
            .ok_or(ProtocolError("a tool call lacks its id, name or arguments"))?,
        _ => return Err(ProtocolError("the answer's tool_calls is not a list")),
    };
    Ok(Answer {
        text,
        calls,
        finish: finish(&choice["finish_reason"]).unwrap_or(FinishReason::Stop),
        usage: v.get("usage").and_then(usage),
    })
}

/// The pieces of calls in a stream chunk's `delta.tool_calls`.
fn call_deltas(v: &Value) -> Result<Vec<CallDelta>, ProtocolError> {
    let Some(list) = v.as_array() else {
        return match v {
            Value::Null => Ok(Vec::new()),
            _ => Err(ProtocolError("a chunk's tool_calls is not a list")),
        };
    };
    list.iter()
        .map(|c| {
            let f = &c["function"];
            Ok(CallDelta {
                // Servers that send each call whole in one piece may leave out the index.
                index: c["index"].as_u64(),
                id: c["id"].as_str().map(str::to_owned),
                name: f["name"].as_str().map(str::to_owned),
                arguments: match &f["arguments"] {
                    Value::Null => String::new(),
                    Value::String(s) => s.clone(),
                    _ => return Err(ProtocolError("a tool call's arguments are not text")),
                },
            })
        })
        .collect()
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
        calls: match choice {
            Some(c) => call_deltas(&c["delta"]["tool_calls"])?,
            None => Vec::new(),
        },
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

    #[test]
    fn body_and_answers() {
        let req = ChatRequest {
            messages: vec![Message::new("user", "hi")],
            max_tokens: Some(5),
            temperature: Some(0.0),
            top_p: None,
            stop: vec!["\n".into()],
            seed: None,
            stream: true,
            tools: vec![],
            tool_choice: ToolChoice::Auto,
            parallel_tool_calls: None,
        };
        let b = body("up", &req);
        assert_eq!(b["model"], "up");
        assert_eq!(b["stream_options"]["include_usage"], true);
        assert_eq!(b["stop"], json!(["\n"]));
        assert!(b.get("top_p").is_none() && b.get("tools").is_none());
        let a = parse_response(&json!({"choices": [{"message": {"content": "ok"}, "finish_reason": "length"}],
                                                 "usage": {"prompt_tokens": 3, "completion_tokens": 1}}))
        .unwrap();
        assert_eq!((a.text.as_str(), a.finish), ("ok", FinishReason::Length));
        assert_eq!(a.usage.unwrap().completion_tokens, 1);
        assert!(parse_response(&json!({})).is_err());
        assert_eq!(parse_chunk("[DONE]").unwrap(), Chunk::End);
        assert_eq!(
            parse_chunk(r#"{"choices":[{"delta":{"content":"a"},"finish_reason":null}]}"#).unwrap(),
            Chunk::Data {
                text: Some("a".into()),
                calls: vec![],
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

    #[test]
    fn tools_go_up_and_calls_come_back() {
        let req = ChatRequest {
            messages: vec![
                Message::new("user", "weather?"),
                Message {
                    tool_calls: vec![ToolCall {
                        id: "c1".into(),
                        name: "get_weather".into(),
                        arguments: r#"{"city":"Oslo"}"#.into(),
                    }],
                    ..Message::new("assistant", "")
                },
                Message {
                    tool_call_id: Some("c1".into()),
                    ..Message::new("tool", "3C")
                },
            ],
            max_tokens: None,
            temperature: None,
            top_p: None,
            stop: vec![],
            seed: None,
            stream: false,
            tools: vec![highside_inference::ToolDef {
                name: "get_weather".into(),
                description: "d".into(),
                parameters: json!({"type": "object"}),
            }],
            tool_choice: ToolChoice::Named("get_weather".into()),
            parallel_tool_calls: None,
        };
        let b = body("up", &req);
        assert_eq!(b["tools"][0]["function"]["name"], "get_weather");
        assert_eq!(b["tool_choice"]["function"]["name"], "get_weather");
        assert_eq!(b["messages"][1]["content"], Value::Null);
        assert_eq!(b["messages"][1]["tool_calls"][0]["id"], "c1");
        assert_eq!(b["messages"][2]["tool_call_id"], "c1");
        let a = parse_response(&json!({"choices": [{"message": {"content": null, "tool_calls": [
            {"id": "x", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
            "finish_reason": "tool_calls"}]}))
        .unwrap();
        assert_eq!(a.calls[0].name, "get_weather");
        assert_eq!(a.text, "");
        let Chunk::Data { calls, .. } = parse_chunk(
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"x","type":"function","function":{"name":"get_weather","arguments":"{\"ci"}}]}}]}"#,
        )
        .unwrap() else {
            panic!("not data")
        };
        assert_eq!(calls[0].arguments, "{\"ci");
        let mut asm = crate::CallAssembly::default();
        for d in calls {
            asm.add(d).unwrap();
        }
        asm.add(CallDelta {
            index: Some(0),
            arguments: "ty\":\"Oslo\"}".into(),
            ..CallDelta::default()
        })
        .unwrap();
        let done = asm.finish(&req, FinishReason::Stop).unwrap();
        assert_eq!(done[0].arguments, r#"{"city":"Oslo"}"#);
        assert_eq!(done[0].id, "x");
        // A call of something never offered, or arguments that are not an object, is refused.
        let bad = |name: &str, args: &str| {
            crate::checked_calls(
                vec![ToolCall {
                    id: "i".into(),
                    name: name.into(),
                    arguments: args.into(),
                }],
                &req,
                FinishReason::Stop,
            )
        };
        assert!(bad("rm_rf", "{}").is_err());
        assert!(bad("get_weather", "[1]").is_err());
        assert!(bad("get_weather", "{").is_err());
        assert_eq!(bad("get_weather", "").unwrap()[0].arguments, "{}");
        // Cut off by max_tokens: the partial arguments pass, the name is still checked.
        let cut = |name: &str| {
            crate::checked_calls(
                vec![ToolCall {
                    id: "i".into(),
                    name: name.into(),
                    arguments: r#"{"ci"#.into(),
                }],
                &req,
                FinishReason::Length,
            )
        };
        assert_eq!(cut("get_weather").unwrap()[0].arguments, r#"{"ci"#);
        assert!(cut("rm_rf").is_err());
        // Whole calls without an index: an id starts a new one.
        let mut asm = crate::CallAssembly::default();
        for (id, args) in [("a", "{}"), ("b", "{\"x\":"), ("", "1}")] {
            asm.add(CallDelta {
                index: None,
                id: (!id.is_empty()).then(|| id.to_owned()),
                name: Some("get_weather".into()),
                arguments: args.into(),
            })
            .unwrap();
        }
        let two = asm.finish(&req, FinishReason::Stop).unwrap();
        assert_eq!((two.len(), two[1].arguments.as_str()), (2, "{\"x\":1}"));
    }
}
