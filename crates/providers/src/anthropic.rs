//! The Anthropic Messages API (`POST /v1/messages`, `anthropic-version: 2023-06-01`) as an
//! upstream speaks it: system prompts go in `system`, `max_tokens` is required, streams are
//! typed events (`message_start`, `content_block_delta`, `message_delta`, `message_stop`).
//! Tools: calls are `tool_use` content blocks of assistant turns, results `tool_result`
//! blocks of user turns, and a streamed call's input arrives as `input_json_delta` pieces.

use serde_json::{json, Value};

use crate::{Answer, CallDelta, ChatRequest, Chunk, ProtocolError};
use highside_inference::{FinishReason, Message, ToolCall, ToolChoice, Usage};

/// The API version header value sent with every request.
pub const VERSION: &str = "2023-06-01";

/// One turn as content blocks: its text, then its calls as `tool_use` blocks.
fn assistant(m: &Message) -> Result<Value, ProtocolError> {
    if m.tool_calls.is_empty() {
        return Ok(json!({"role": "assistant", "content": m.content}));
    }
    let mut blocks = Vec::new();
    if !m.content.is_empty() {
        blocks.push(json!({"type": "text", "text": m.content}));
    }
    for c in &m.tool_calls {
        let input: Value = serde_json::from_str(&c.arguments)
            .ok()
            .filter(Value::is_object)
            .ok_or(ProtocolError(
                "an earlier tool call's arguments are not a JSON object",
            ))?;
        blocks.push(json!({"type": "tool_use", "id": c.id, "name": c.name, "input": input}));
    }
    Ok(json!({"role": "assistant", "content": blocks}))
}

/// The request body for `model`; `default_max` fills the required `max_tokens`. Fails only
/// for an earlier call whose arguments Anthropic cannot take (not a JSON object).
pub fn body(model: &str, req: &ChatRequest, default_max: u32) -> Result<Value, ProtocolError> {
    let system: Vec<&str> = req
        .messages
        .iter()
        .filter(|m| m.role == "system")
        .map(|m| m.content.as_str())
        .collect();
    let mut messages: Vec<Value> = Vec::new();
    for m in req.messages.iter().filter(|m| m.role != "system") {
        match m.role.as_str() {
            "assistant" => messages.push(assistant(m)?),
            "tool" => {
                let result = json!({"type": "tool_result",
                    "tool_use_id": m.tool_call_id.as_deref().unwrap_or_default(),
                    "content": m.content});
                // Results of one turn's calls go back together, in one user turn.
                match messages.last_mut() {
                    Some(last)
                        if last["role"] == "user"
                            && last["content"][0]["type"] == "tool_result" =>
                    {
                        if let Some(blocks) = last["content"].as_array_mut() {
                            blocks.push(result);
                        }
                    }
                    _ => messages.push(json!({"role": "user", "content": [result]})),
                }
            }
            _ => messages.push(json!({"role": m.role, "content": m.content})),
        }
    }
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
    if !req.tools.is_empty() {
        b["tools"] = req
            .tools
            .iter()
            .map(|t| json!({"name": t.name, "description": t.description, "input_schema": t.parameters}))
            .collect();
        b["tool_choice"] = match &req.tool_choice {
            ToolChoice::None => json!({"type": "none"}),
            ToolChoice::Auto => json!({"type": "auto"}),
            ToolChoice::Required => json!({"type": "any"}),
            ToolChoice::Named(n) => json!({"type": "tool", "name": n}),
        };
        // Anthropic has no such switch with `none` (nothing is called at all).
        if req.parallel_tool_calls == Some(false) && req.tool_choice != ToolChoice::None {
            b["tool_choice"]["disable_parallel_tool_use"] = json!(true);
        }
    }
    Ok(b)
}

fn finish(v: &Value) -> Option<FinishReason> {
    v.as_str().map(|f| match f {
        "max_tokens" => FinishReason::Length,
        _ => FinishReason::Stop,
    })
}

/// A whole Messages answer.
pub fn parse_response(v: &Value) -> Result<Answer, ProtocolError> {
    let blocks = v["content"]
        .as_array()
        .ok_or(ProtocolError("the answer has no content"))?;
    let text: String = blocks
        .iter()
        .filter(|b| b["type"] == "text")
        .filter_map(|b| b["text"].as_str())
        .collect();
    let calls = blocks
        .iter()
        .filter(|b| b["type"] == "tool_use")
        .map(|b| {
            Some(ToolCall {
                id: b["id"].as_str()?.to_owned(),
                name: b["name"].as_str()?.to_owned(),
                arguments: b.get("input").filter(|i| i.is_object())?.to_string(),
            })
        })
        .collect::<Option<_>>()
        .ok_or(ProtocolError(
            "a tool_use block lacks its id, name or input",
        ))?;
    let usage = Some(Usage {
        prompt_tokens: v["usage"]["input_tokens"].as_u64().unwrap_or(0),
        completion_tokens: v["usage"]["output_tokens"].as_u64().unwrap_or(0),
    })
    .filter(|_| v["usage"].is_object());
    Ok(Answer {
        text,
        calls,
        finish: finish(&v["stop_reason"]).unwrap_or(FinishReason::Stop),
        usage,
    })
}

/// A chunk with one piece of a call, or nothing.
fn call_piece(piece: Option<CallDelta>) -> Chunk {
    Chunk::Data {
        text: None,
        calls: piece.into_iter().collect(),
        finish: None,
        usage: None,
    }
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
            calls: Vec::new(),
            finish: None,
            usage: Some(Usage {
                prompt_tokens: v["message"]["usage"]["input_tokens"].as_u64().unwrap_or(0),
                completion_tokens: 0,
            }),
        },
        "content_block_start" if v["content_block"]["type"] == "tool_use" => {
            let b = &v["content_block"];
            let (Some(index), Some(id), Some(name)) =
                (v["index"].as_u64(), b["id"].as_str(), b["name"].as_str())
            else {
                return Err(ProtocolError(
                    "a tool_use block lacks its index, id or name",
                ));
            };
            call_piece(Some(CallDelta {
                index: Some(index),
                id: Some(id.to_owned()),
                name: Some(name.to_owned()),
                arguments: String::new(),
            }))
        }
        "content_block_delta" if v["delta"]["type"] == "input_json_delta" => {
            let (Some(index), Some(part)) =
                (v["index"].as_u64(), v["delta"]["partial_json"].as_str())
            else {
                return Err(ProtocolError(
                    "an input_json_delta lacks its index or partial_json",
                ));
            };
            call_piece(Some(CallDelta {
                index: Some(index),
                arguments: part.to_owned(),
                ..CallDelta::default()
            }))
        }
        "content_block_delta" => Chunk::Data {
            text: v["delta"]["text"]
                .as_str()
                .filter(|t| !t.is_empty())
                .map(str::to_owned),
            calls: Vec::new(),
            finish: None,
            usage: None,
        },
        "message_delta" => Chunk::Data {
            text: None,
            calls: Vec::new(),
            finish: finish(&v["delta"]["stop_reason"]),
            usage: v["usage"]["output_tokens"].as_u64().map(|o| Usage {
                prompt_tokens: 0,
                completion_tokens: o,
            }),
        },
        "message_stop" => Chunk::End,
        "error" => return Err(ProtocolError("the upstream sent an error in the stream")),
        _ => call_piece(None),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_prompts_move_and_events_parse() {
        let m = Message::new;
        let req = ChatRequest {
            messages: vec![m("system", "terse"), m("user", "hi")],
            max_tokens: None,
            temperature: None,
            top_p: None,
            stop: vec![],
            seed: Some(1),
            stream: false,
            tools: vec![],
            tool_choice: ToolChoice::Auto,
            parallel_tool_calls: None,
        };
        let b = body("claude", &req, 100).unwrap();
        assert_eq!(b["system"], "terse");
        assert_eq!(b["messages"], json!([{"role": "user", "content": "hi"}]));
        assert_eq!(b["max_tokens"], 100);
        let a = parse_response(&json!({"content": [{"type": "text", "text": "ok"}],
            "stop_reason": "max_tokens", "usage": {"input_tokens": 4, "output_tokens": 1}}))
        .unwrap();
        assert_eq!(
            (a.text.as_str(), a.finish, a.usage.unwrap().prompt_tokens),
            ("ok", FinishReason::Length, 4)
        );
        assert_eq!(
            parse_event(Some("content_block_delta"), r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"x"}}"#).unwrap(),
            Chunk::Data { text: Some("x".into()), calls: vec![], finish: None, usage: None }
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

    #[test]
    fn tool_use_both_ways() {
        let call = ToolCall {
            id: "toolu_1".into(),
            name: "get_weather".into(),
            arguments: r#"{"city":"Oslo"}"#.into(),
        };
        let result = |id: &str, c: &str| Message {
            tool_call_id: Some(id.into()),
            ..Message::new("tool", c)
        };
        let mut req = ChatRequest {
            messages: vec![
                Message::new("user", "weather?"),
                Message {
                    tool_calls: vec![
                        call.clone(),
                        ToolCall {
                            id: "toolu_2".into(),
                            ..call.clone()
                        },
                    ],
                    ..Message::new("assistant", "Checking.")
                },
                result("toolu_1", "3C"),
                result("toolu_2", "4C"),
            ],
            max_tokens: Some(9),
            temperature: None,
            top_p: None,
            stop: vec![],
            seed: None,
            stream: true,
            tools: vec![highside_inference::ToolDef {
                name: "get_weather".into(),
                description: "d".into(),
                parameters: json!({"type": "object"}),
            }],
            tool_choice: ToolChoice::Required,
            parallel_tool_calls: None,
        };
        let b = body("claude", &req, 100).unwrap();
        assert_eq!(b["tools"][0]["input_schema"], json!({"type": "object"}));
        assert_eq!(b["tool_choice"], json!({"type": "any"}));
        req.parallel_tool_calls = Some(false);
        let b = body("claude", &req, 100).unwrap();
        assert_eq!(
            b["tool_choice"],
            json!({"type": "any", "disable_parallel_tool_use": true})
        );
        let turn = &b["messages"][1]["content"];
        assert_eq!(turn[0], json!({"type": "text", "text": "Checking."}));
        assert_eq!(turn[1]["input"], json!({"city": "Oslo"}));
        assert_eq!(b["messages"].as_array().unwrap().len(), 3, "{b}");
        assert_eq!(b["messages"][2]["content"][1]["tool_use_id"], "toolu_2");
        req.messages[1].tool_calls[0].arguments = "not json".into();
        assert!(body("claude", &req, 100).is_err());
        let a = parse_response(&json!({"content": [{"type": "tool_use", "id": "t", "name": "get_weather", "input": {"a": 1}}],
            "stop_reason": "tool_use"}))
        .unwrap();
        assert_eq!(a.calls[0].arguments, r#"{"a":1}"#);
        let Chunk::Data { calls, .. } = parse_event(
            Some("content_block_start"),
            r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"t","name":"get_weather","input":{}}}"#,
        )
        .unwrap() else {
            panic!("not data")
        };
        assert_eq!(
            (calls[0].index, calls[0].name.as_deref()),
            (Some(1), Some("get_weather"))
        );
        let Chunk::Data { calls, .. } = parse_event(
            None,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"a\""}}"#,
        )
        .unwrap() else {
            panic!("not data")
        };
        assert_eq!(calls[0].arguments, "{\"a\"");
    }
}
