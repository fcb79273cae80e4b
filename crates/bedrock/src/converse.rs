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
    /// Tools (not served yet: refused).
    #[serde(default)]
    pub tool_config: Option<Value>,
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
        if self.tool_config.is_some() {
            return Err(Validation(
                "toolConfig is not supported by this model yet".into(),
            ));
        }
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
            for (j, b) in m.content.iter().enumerate() {
                if b.image.is_some()
                    || b.document.is_some()
                    || b.tool_use.is_some()
                    || b.tool_result.is_some()
                {
                    return Err(Validation(format!(
                        "messages.{i}.content.{j}: only text content is supported by this model"
                    )));
                }
                let t = b
                    .text
                    .as_deref()
                    .ok_or_else(|| Validation(format!("messages.{i}.content.{j} has no text")))?;
                text.push_str(t);
            }
            messages.push(json!({"role": m.role, "content": text}));
        }
        let mut body = json!({"model": model, "messages": messages, "stream": stream});
        if stream {
            body["stream_options"] = json!({"include_usage": true});
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
    let text = chat["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or("");
    let finish = chat["choices"][0]["finish_reason"]
        .as_str()
        .unwrap_or("stop");
    let input = chat["usage"]["prompt_tokens"].as_u64().unwrap_or(0);
    let output = chat["usage"]["completion_tokens"].as_u64().unwrap_or(0);
    json!({
        "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
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
            json!({"messages": [{"role": "user", "content": [{"text": "x"}]}], "toolConfig": {"tools": []}}),
            json!({"messages": [{"role": "user", "content": [{"text": "x"}]}], "additionalModelRequestFields": {}}),
        ] {
            assert!(parse(bad.clone()).to_chat("m", false).is_err(), "{bad}");
        }
        assert!(
            serde_json::from_value::<ConverseRequest>(json!({"messages": [], "bogus": 1})).is_err()
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
