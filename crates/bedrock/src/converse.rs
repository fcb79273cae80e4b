//! The Converse API's JSON, and its mapping onto the OpenAI chat request Highside already
//! validates and serves: a Converse request becomes the equivalent chat-completions body (so
//! every check, the monitor, audit and metering apply unchanged), and a chat completion
//! becomes the Converse response.

use serde::Deserialize;
use serde_json::{json, Value};

/// `POST /model/{modelId}/converse` body (the parts Highside serves; others are refused).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConverseRequest {
    /// The conversation.
    #[serde(default)]
    pub messages: Vec<Message>,
    /// System prompts.
    #[serde(default)]
    pub system: Vec<SystemBlock>,
    /// Sampling.
    #[serde(default)]
    pub inference_config: Option<InferenceConfig>,
    /// Tools the model may use.
    #[serde(default)]
    pub tool_config: Option<ToolConfig>,
    /// Model-specific fields (refused: nothing here would read them).
    #[serde(default)]
    pub additional_model_request_fields: Option<Value>,
    /// Accepted and ignored, as Bedrock ignores them for models without guardrails.
    #[serde(default)]
    pub request_metadata: Option<Value>,
}

/// One turn.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    /// `user` or `assistant`.
    pub role: String,
    /// Content blocks; only text is served.
    pub content: Vec<ContentBlock>,
}

/// A content block. Anything but text is refused with a clear error.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContentBlock {
    /// Text.
    pub text: Option<String>,
    /// Images, documents, tool use and results: not served yet.
    #[serde(default)]
    pub image: Option<Value>,
    #[serde(default)]
    pub document: Option<Value>,
    #[serde(default, rename = "toolUse")]
    pub tool_use: Option<Value>,
    #[serde(default, rename = "toolResult")]
    pub tool_result: Option<Value>,
}

/// `toolConfig`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ToolConfig {
    /// The tools.
    pub tools: Vec<Tool>,
    /// `{"auto": {}}`, `{"any": {}}` or `{"tool": {"name"}}`.
    #[serde(default)]
    pub tool_choice: Option<Value>,
}

/// One tool.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tool {
    /// A function specification (the only kind Bedrock has besides cache points).
    pub tool_spec: ToolSpec,
}

/// `toolSpec`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ToolSpec {
    /// Its name.
    pub name: String,
    /// What it does.
    #[serde(default)]
    pub description: Option<String>,
    /// `{"json": <JSON Schema>}`.
    pub input_schema: InputSchema,
}

/// `inputSchema`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSchema {
    /// The JSON Schema of the input.
    pub json: Value,
}

/// A system prompt block.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemBlock {
    /// Text.
    pub text: String,
}

/// `inferenceConfig`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InferenceConfig {
    /// Most tokens to generate.
    pub max_tokens: Option<i64>,
    /// Sampling temperature.
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    pub top_p: Option<f64>,
    /// Stop strings.
    #[serde(default)]
    pub stop_sequences: Vec<String>,
}

/// A Converse request Highside cannot serve: Bedrock's `ValidationException`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Validation(pub String);

impl ConverseRequest {
    /// The equivalent OpenAI chat-completions body for `model`.
    pub fn to_chat(&self, model: &str, stream: bool) -> Result<Value, Validation> {
        if self.additional_model_request_fields.is_some() {
            return Err(Validation(
                "additionalModelRequestFields are not supported by this model".into(),
            ));
        }
        if self.messages.is_empty() {
            return Err(Validation("messages must not be empty".into()));
        }
        let mut messages = Vec::new();
        if !self.system.is_empty() {
            let text: Vec<&str> = self.system.iter().map(|s| s.text.as_str()).collect();
            messages.push(json!({"role": "system", "content": text.join("\n")}));
        }
        for (i, m) in self.messages.iter().enumerate() {
            if m.role != "user" && m.role != "assistant" {
                return Err(Validation(format!(
                    "messages.{i}.role must be user or assistant"
                )));
            }
            let mut text = String::new();
            let mut calls = Vec::new();
            for (j, b) in m.content.iter().enumerate() {
                let at = || format!("messages.{i}.content.{j}");
                if b.image.is_some() || b.document.is_some() {
                    return Err(Validation(format!(
                        "{}: only text and tool content is supported by this model",
                        at()
                    )));
                }
                if let Some(u) = &b.tool_use {
                    if m.role != "assistant" {
                        return Err(Validation(format!(
                            "{}: toolUse belongs to assistant turns",
                            at()
                        )));
                    }
                    let id = u["toolUseId"]
                        .as_str()
                        .ok_or_else(|| Validation(format!("{}: toolUse needs toolUseId", at())))?;
                    let name = u["name"]
                        .as_str()
                        .ok_or_else(|| Validation(format!("{}: toolUse needs name", at())))?;
                    calls.push(json!({"id": id, "type": "function",
                        "function": {"name": name, "arguments": u.get("input").cloned().unwrap_or(json!({})).to_string()}}));
                } else if let Some(r) = &b.tool_result {
                    if m.role != "user" {
                        return Err(Validation(format!(
                            "{}: toolResult belongs to user turns",
                            at()
                        )));
                    }
                    let id = r["toolUseId"].as_str().ok_or_else(|| {
                        Validation(format!("{}: toolResult needs toolUseId", at()))
                    })?;
                    let mut out = String::new();
                    for c in r["content"].as_array().into_iter().flatten() {
                        if let Some(t) = c["text"].as_str() {
                            out.push_str(t);
                        } else if let Some(j) = c.get("json") {
                            out.push_str(&j.to_string());
                        } else {
                            return Err(Validation(format!(
                                "{}: toolResult content must be text or json",
                                at()
                            )));
                        }
                    }
                    if r["status"] == "error" {
                        out = format!("error: {out}");
                    }
                    messages.push(json!({"role": "tool", "tool_call_id": id, "content": out}));
                } else {
                    let t = b
                        .text
                        .as_deref()
                        .ok_or_else(|| Validation(format!("{} has no text", at())))?;
                    text.push_str(t);
                }
            }
            if !calls.is_empty() {
                let mut msg = json!({"role": "assistant", "tool_calls": calls});
                if !text.is_empty() {
                    msg["content"] = json!(text);
                }
                messages.push(msg);
            } else if !text.is_empty() || m.content.iter().all(|b| b.tool_result.is_none()) {
                messages.push(json!({"role": m.role, "content": text}));
            }
        }
        let mut body = json!({"model": model, "messages": messages, "stream": stream});
        if stream {
            body["stream_options"] = json!({"include_usage": true});
        }
        if let Some(t) = &self.tool_config {
            body["tools"] = Value::Array(
                t.tools
                    .iter()
                    .map(|t| {
                        json!({"type": "function", "function": {
                            "name": t.tool_spec.name,
                            "description": t.tool_spec.description.clone().unwrap_or_default(),
                            "parameters": t.tool_spec.input_schema.json}})
                    })
                    .collect(),
            );
            match &t.tool_choice {
                None => {}
                Some(c) if c.get("auto").is_some() => body["tool_choice"] = json!("auto"),
                Some(c) if c.get("any").is_some() => body["tool_choice"] = json!("required"),
                Some(c) => {
                    let name = c["tool"]["name"].as_str().ok_or_else(|| {
                        Validation("toolChoice must be auto, any or tool with a name".into())
                    })?;
                    body["tool_choice"] = json!({"type": "function", "function": {"name": name}});
                }
            }
        }
        if let Some(c) = &self.inference_config {
            if let Some(v) = c.max_tokens {
                body["max_tokens"] = json!(v);
            }
            if let Some(v) = c.temperature {
                body["temperature"] = json!(v);
            }
            if let Some(v) = c.top_p {
                body["top_p"] = json!(v);
            }
            if !c.stop_sequences.is_empty() {
                body["stop"] = json!(c.stop_sequences);
            }
        }
        Ok(body)
    }
}

/// The `toolUse` content block of an OpenAI tool call.
pub fn tool_use(call: &Value) -> Value {
    let args = call["function"]["arguments"].as_str().unwrap_or("{}");
    json!({"toolUse": {
        "toolUseId": call["id"],
        "name": call["function"]["name"],
        "input": serde_json::from_str::<Value>(args).unwrap_or(json!({})),
    }})
}

/// Bedrock's stop reason for an OpenAI finish reason.
pub fn stop_reason(finish_reason: &str) -> &'static str {
    match finish_reason {
        "length" => "max_tokens",
        "stop" => "end_turn",
        "tool_calls" => "tool_use",
        "content_filter" => "content_filtered",
        _ => "end_turn",
    }
}

/// The Converse response for a chat completion (`choices[0]`, `usage`).
pub fn converse_response(chat: &Value, latency_ms: u64) -> Value {
    let message = &chat["choices"][0]["message"];
    let mut content = Vec::new();
    if let Some(t) = message["content"].as_str() {
        content.push(json!({"text": t}));
    }
    for call in message["tool_calls"].as_array().into_iter().flatten() {
        content.push(tool_use(call));
    }
    let finish = chat["choices"][0]["finish_reason"]
        .as_str()
        .unwrap_or("stop");
    let input = chat["usage"]["prompt_tokens"].as_u64().unwrap_or(0);
    let output = chat["usage"]["completion_tokens"].as_u64().unwrap_or(0);
    json!({
        "output": {"message": {"role": "assistant", "content": content}},
        "stopReason": stop_reason(finish),
        "usage": {"inputTokens": input, "outputTokens": output, "totalTokens": input + output},
        "metrics": {"latencyMs": latency_ms},
    })
}

/// Bedrock's JSON error body and its `x-amzn-ErrorType` for an HTTP status.
pub fn error(status: u16, message: &str) -> (&'static str, Value) {
    let kind = match status {
        400 | 413 => "ValidationException",
        401 => "UnrecognizedClientException",
        403 => "AccessDeniedException",
        404 => "ResourceNotFoundException",
        408 => "ModelTimeoutException",
        429 => "ThrottlingException",
        503 => "ServiceUnavailableException",
        _ => "InternalServerException",
    };
    (kind, json!({"message": message}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> ConverseRequest {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_converse_request_becomes_the_same_chat() {
        let r = parse(json!({
            "messages": [
                {"role": "user", "content": [{"text": "Hello, "}, {"text": "world"}]},
                {"role": "assistant", "content": [{"text": "Hi."}]},
                {"role": "user", "content": [{"text": "Bye"}]}
            ],
            "system": [{"text": "Be brief."}, {"text": "Be kind."}],
            "inferenceConfig": {"maxTokens": 16, "temperature": 0.5, "topP": 0.9, "stopSequences": ["\n"]}
        }));
        let chat = r.to_chat("smollm2", true).unwrap();
        assert_eq!(chat["model"], "smollm2");
        assert_eq!(
            chat["messages"][0],
            json!({"role": "system", "content": "Be brief.\nBe kind."})
        );
        assert_eq!(
            chat["messages"][1],
            json!({"role": "user", "content": "Hello, world"})
        );
        assert_eq!(chat["messages"][3]["content"], "Bye");
        assert_eq!(chat["max_tokens"], 16);
        assert_eq!(chat["top_p"], 0.9);
        assert_eq!(chat["stop"], json!(["\n"]));
        assert_eq!(chat["stream_options"]["include_usage"], true);
    }

    #[test]
    fn what_is_not_served_is_a_validation_error() {
        for bad in [
            json!({"messages": []}),
            json!({"messages": [{"role": "system", "content": [{"text": "x"}]}]}),
            json!({"messages": [{"role": "user", "content": [{"image": {}}]}]}),
            json!({"messages": [{"role": "user", "content": [{}]}]}),
            json!({"messages": [{"role": "user", "content": [{"toolUse": {"toolUseId": "a", "name": "f"}}]}]}),
            json!({"messages": [{"role": "user", "content": [{"text": "x"}]}], "toolConfig": {"tools": [], "toolChoice": {"tool": {}}}}),
            json!({"messages": [{"role": "user", "content": [{"text": "x"}]}], "additionalModelRequestFields": {}}),
        ] {
            assert!(parse(bad.clone()).to_chat("m", false).is_err(), "{bad}");
        }
        assert!(
            serde_json::from_value::<ConverseRequest>(json!({"messages": [], "bogus": 1})).is_err()
        );
    }

    #[test]
    fn tools_and_their_turns_map_both_ways() {
        let r = parse(json!({
            "messages": [
                {"role": "user", "content": [{"text": "Weather?"}]},
                {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t1", "name": "get_weather", "input": {"city": "Oslo"}}}]},
                {"role": "user", "content": [{"toolResult": {"toolUseId": "t1", "content": [{"json": {"temp": 3}}]}}]}
            ],
            "toolConfig": {"tools": [{"toolSpec": {"name": "get_weather", "inputSchema": {"json": {"type": "object"}}}}],
                           "toolChoice": {"any": {}}}
        }));
        let chat = r.to_chat("m", false).unwrap();
        assert_eq!(chat["tool_choice"], "required");
        assert_eq!(chat["tools"][0]["function"]["name"], "get_weather");
        assert_eq!(chat["messages"][1]["tool_calls"][0]["id"], "t1");
        assert_eq!(
            chat["messages"][1]["tool_calls"][0]["function"]["arguments"],
            "{\"city\":\"Oslo\"}"
        );
        assert_eq!(
            chat["messages"][2],
            json!({"role": "tool", "tool_call_id": "t1", "content": "{\"temp\":3}"})
        );
        assert_eq!(chat["messages"].as_array().unwrap().len(), 3);
        let answer = json!({"choices": [{"message": {"content": null, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}]},
            "finish_reason": "tool_calls"}], "usage": {"prompt_tokens": 1, "completion_tokens": 1}});
        let c = converse_response(&answer, 1);
        assert_eq!(c["stopReason"], "tool_use");
        assert_eq!(
            c["output"]["message"]["content"][0]["toolUse"]["input"]["city"],
            "Oslo"
        );
    }

    #[test]
    fn a_chat_completion_becomes_a_converse_response() {
        let chat = json!({"choices": [{"message": {"content": "Paris."}, "finish_reason": "length"}],
                          "usage": {"prompt_tokens": 7, "completion_tokens": 2}});
        let r = converse_response(&chat, 12);
        assert_eq!(r["output"]["message"]["content"][0]["text"], "Paris.");
        assert_eq!(r["stopReason"], "max_tokens");
        assert_eq!(
            r["usage"],
            json!({"inputTokens": 7, "outputTokens": 2, "totalTokens": 9})
        );
        assert_eq!(error(429, "slow down").0, "ThrottlingException");
    }
}
