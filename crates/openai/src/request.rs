use highside_inference::{
    Message, Prepared, PromptInput, SamplingParams, ToolCall as MessageToolCall,
};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::ApiError;

/// Parses a JSON request body, turning any syntax or type error into a 400.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("Invalid request body: {e}"), None))
}

/// `stop`: one string or a list.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    /// A single stop string.
    One(String),
    /// Several stop strings.
    Many(Vec<String>),
}

/// `stream_options`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamOptions {
    /// Send a final chunk with token usage.
    #[serde(default)]
    pub include_usage: bool,
}

/// `highside`: Highside's own request options (the OpenAI SDK sends them with `extra_body`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HighsideOptions {
    /// The classification the client declares for its request, e.g. `SECRET//NOFORN`.
    #[serde(default)]
    pub label: Option<String>,
    /// Start the generated text with the output's banner line.
    #[serde(default)]
    pub banner: Option<bool>,
}

/// A message's content: a string or a list of typed parts.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    /// Plain text.
    Text(String),
    /// Content parts; only `{"type": "text"}` parts are supported.
    Parts(Vec<ContentPart>),
}

/// One part of a multi-part message.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ContentPart {
    /// Part type; only `text` is supported.
    #[serde(rename = "type")]
    pub kind: String,
    /// The text of a text part.
    #[serde(default)]
    pub text: Option<String>,
}

/// One chat message as clients send it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatMessage {
    /// `system`, `developer`, `user` or `assistant`.
    pub role: String,
    /// The message text.
    #[serde(default)]
    pub content: Option<MessageContent>,
    /// Optional participant name (accepted, not used by templates).
    #[serde(default)]
    pub name: Option<String>,
    /// Tool calls of an earlier assistant turn.
    #[serde(default)]
    pub tool_calls: Option<serde_json::Value>,
    /// The call a tool message answers.
    #[serde(default)]
    pub tool_call_id: Option<String>,
    // Fields the official SDKs echo back when a response message is reused as input.
    #[serde(default)]
    refusal: Option<serde_json::Value>,
    #[serde(default)]
    function_call: Option<serde_json::Value>,
    #[serde(default)]
    audio: Option<serde_json::Value>,
    #[serde(default)]
    annotations: Option<serde_json::Value>,
}

/// Adds the fields both endpoints share, and a method that moves them into [`Common`].
/// (serde's `flatten` would be shorter but silently disables `deny_unknown_fields`.)
macro_rules! with_common_fields {
    ($(#[$meta:meta])* pub struct $name:ident { $($body:tt)* }) => {
        $(#[$meta])*
        pub struct $name {
            $($body)*
            #[serde(default)]
            temperature: Option<f32>,
            #[serde(default)]
            top_p: Option<f32>,
            #[serde(default)]
            top_k: Option<u32>,
            #[serde(default)]
            min_p: Option<f32>,
            #[serde(default)]
            n: Option<u32>,
            #[serde(default)]
            stream: Option<bool>,
            #[serde(default)]
            stream_options: Option<StreamOptions>,
            #[serde(default)]
            stop: Option<Stop>,
            #[serde(default)]
            presence_penalty: Option<f32>,
            #[serde(default)]
            frequency_penalty: Option<f32>,
            #[serde(default)]
            seed: Option<i64>,
            #[serde(default)]
            user: Option<String>,
            #[serde(default)]
            logit_bias: Option<serde_json::Map<String, serde_json::Value>>,
            #[serde(default)]
            metadata: Option<serde_json::Value>,
            #[serde(default)]
            store: Option<bool>,
            #[serde(default)]
            service_tier: Option<String>,
            #[serde(default)]
            highside: Option<HighsideOptions>,
        }

        impl $name {
            fn common(&mut self) -> Common {
                Common {
                    temperature: std::mem::take(&mut self.temperature),
                    top_p: std::mem::take(&mut self.top_p),
                    top_k: std::mem::take(&mut self.top_k),
                    min_p: std::mem::take(&mut self.min_p),
                    n: std::mem::take(&mut self.n),
                    stream: std::mem::take(&mut self.stream),
                    stream_options: std::mem::take(&mut self.stream_options),
                    stop: std::mem::take(&mut self.stop),
                    presence_penalty: std::mem::take(&mut self.presence_penalty),
                    frequency_penalty: std::mem::take(&mut self.frequency_penalty),
                    seed: std::mem::take(&mut self.seed),
                    user: std::mem::take(&mut self.user),
                    logit_bias: std::mem::take(&mut self.logit_bias),
                    metadata: std::mem::take(&mut self.metadata),
                    store: std::mem::take(&mut self.store),
                    service_tier: std::mem::take(&mut self.service_tier),
                    highside: std::mem::take(&mut self.highside),
                }
            }
        }
    };
}

with_common_fields! {
/// `POST /v1/chat/completions`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatCompletionRequest {
    /// Model name from `/v1/models` (absent is refused as empty; Bedrock's invoke body may
    /// leave it to the path).
    #[serde(default)]
    pub model: String,
    /// The conversation.
    pub messages: Vec<ChatMessage>,
    /// Deprecated alias of `max_completion_tokens`.
    #[serde(default)]
    pub max_tokens: Option<i64>,
    /// Most tokens to generate.
    #[serde(default)]
    pub max_completion_tokens: Option<i64>,
    #[serde(default)]
    logprobs: Option<bool>,
    #[serde(default)]
    top_logprobs: Option<u32>,
    #[serde(default)]
    response_format: Option<serde_json::Value>,
    #[serde(default)]
    tools: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    tool_choice: Option<serde_json::Value>,
    #[serde(default)]
    parallel_tool_calls: Option<bool>,
}
}

with_common_fields! {
/// `POST /v1/completions`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompletionRequest {
    /// Model name from `/v1/models`.
    pub model: String,
    /// A string, a one-element list of strings, or a list of token ids.
    pub prompt: serde_json::Value,
    /// Most tokens to generate (default 16, as OpenAI).
    #[serde(default)]
    pub max_tokens: Option<i64>,
    #[serde(default)]
    echo: Option<bool>,
    #[serde(default)]
    suffix: Option<String>,
    #[serde(default)]
    best_of: Option<u32>,
    #[serde(default)]
    logprobs: Option<u32>,
}
}

/// Fields shared by both endpoints.
#[derive(Debug, Clone, Default, PartialEq)]
struct Common {
    temperature: Option<f32>,
    top_p: Option<f32>,
    top_k: Option<u32>,
    min_p: Option<f32>,
    n: Option<u32>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    stop: Option<Stop>,
    presence_penalty: Option<f32>,
    frequency_penalty: Option<f32>,
    seed: Option<i64>,
    user: Option<String>,
    logit_bias: Option<serde_json::Map<String, serde_json::Value>>,
    metadata: Option<serde_json::Value>,
    store: Option<bool>,
    service_tier: Option<String>,
    highside: Option<HighsideOptions>,
}

fn unsupported(param: &str, what: &str) -> ApiError {
    ApiError::bad_request(format!("{what} is not supported by Highside"), Some(param))
}

fn max_tokens(value: Option<i64>, param: &str) -> Result<Option<u32>, ApiError> {
    match value {
        None => Ok(None),
        Some(v) if v >= 1 && v <= i64::from(u32::MAX) => Ok(Some(v as u32)),
        Some(v) => Err(ApiError::bad_request(
            format!("Invalid '{param}': {v}; it must be a positive integer"),
            Some(param),
        )),
    }
}

impl Common {
    fn prepare(
        self,
        model: String,
        input: PromptInput,
        max_tokens: Option<u32>,
    ) -> Result<Prepared, ApiError> {
        if model.is_empty() {
            return Err(ApiError::bad_request(
                "'model' must not be empty",
                Some("model"),
            ));
        }
        if self.n.unwrap_or(1) != 1 {
            return Err(unsupported("n", "Generating more than one choice (n > 1)"));
        }
        if self.logit_bias.as_ref().is_some_and(|m| !m.is_empty()) {
            return Err(unsupported("logit_bias", "logit_bias"));
        }
        if self.stream_options.is_some() && self.stream != Some(true) {
            return Err(ApiError::bad_request(
                "'stream_options' is only allowed when 'stream' is true",
                Some("stream_options"),
            ));
        }
        let stop = match self.stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s],
            Some(Stop::Many(v)) => v,
        };
        let params = SamplingParams {
            temperature: self.temperature.unwrap_or(1.0),
            top_p: self.top_p.unwrap_or(1.0),
            top_k: self.top_k.unwrap_or(0),
            min_p: self.min_p.unwrap_or(0.0),
            // Seeds are 32-bit in llama.cpp; any i64 maps deterministically onto one.
            seed: self.seed.map(|s| s as u32),
            presence_penalty: self.presence_penalty.unwrap_or(0.0),
            frequency_penalty: self.frequency_penalty.unwrap_or(0.0),
            stop,
            max_tokens: max_tokens.unwrap_or(1),
            grammar: None,
        };
        params.validate().map_err(|e| {
            ApiError::bad_request(
                format!("Invalid '{}': {}", e.param, e.message),
                Some(e.param),
            )
        })?;
        Ok(Prepared {
            model,
            input,
            params,
            max_tokens,
            stream: self.stream.unwrap_or(false),
            include_usage: self.stream_options.is_some_and(|o| o.include_usage),
            declared_label: self.highside.as_ref().and_then(|h| h.label.clone()),
            banner: self
                .highside
                .as_ref()
                .and_then(|h| h.banner)
                .unwrap_or(false),
            tools: None,
        })
    }
}

fn message_text(i: usize, content: Option<MessageContent>) -> Result<String, ApiError> {
    let param = format!("messages[{i}].content");
    match content {
        None => Err(ApiError::bad_request(
            format!("'{param}' is required"),
            Some(&param),
        )),
        Some(MessageContent::Text(t)) => Ok(t),
        Some(MessageContent::Parts(parts)) => {
            let mut text = String::new();
            for p in parts {
                match (p.kind.as_str(), p.text) {
                    ("text", Some(t)) => text.push_str(&t),
                    ("text", None) => {
                        return Err(ApiError::bad_request(
                            format!("a text part of '{param}' has no 'text'"),
                            Some(&param),
                        ))
                    }
                    (other, _) => {
                        return Err(unsupported(&param, &format!("Content of type '{other}'")))
                    }
                }
            }
            Ok(text)
        }
    }
}

impl ChatCompletionRequest {
    /// Whether the body asks to stream.
    pub fn streams(&self) -> bool {
        self.stream == Some(true)
    }

    /// Makes the body stream, with usage at the end unless it says otherwise.
    pub fn stream_with_usage(&mut self) {
        self.stream = Some(true);
        self.stream_options.get_or_insert(StreamOptions {
            include_usage: true,
        });
    }

    /// Validates the request and turns it into engine input.
    pub fn prepare(mut self) -> Result<Prepared, ApiError> {
        let common = self.common();
        if self.messages.is_empty() {
            return Err(ApiError::bad_request(
                "'messages' must contain at least one message",
                Some("messages"),
            ));
        }
        if self.logprobs == Some(true) || self.top_logprobs.is_some() {
            return Err(unsupported("logprobs", "logprobs"));
        }
        let tools = crate::tools::parse_tools(
            self.tools.take(),
            self.tool_choice.take(),
            self.parallel_tool_calls,
        )?;
        if let Some(rf) = &self.response_format {
            if rf.get("type").and_then(|t| t.as_str()) != Some("text") {
                return Err(unsupported(
                    "response_format",
                    "A response_format other than text",
                ));
            }
        }
        let mut messages = Vec::with_capacity(self.messages.len());
        for (i, m) in self.messages.into_iter().enumerate() {
            let role = match m.role.as_str() {
                "system" | "developer" => "system",
                "user" => "user",
                "assistant" => "assistant",
                "tool" => "tool",
                "function" => return Err(unsupported(&format!("messages[{i}].role"), "The deprecated function role")),
                other => {
                    return Err(ApiError::bad_request(
                        format!("Invalid 'messages[{i}].role': '{other}'; expected system, developer, user or assistant"),
                        Some(&format!("messages[{i}].role")),
                    ))
                }
            };
            let calls = match m.tool_calls {
                Some(v) if !v.is_null() && role == "assistant" => tool_calls(i, v)?,
                Some(v) if !v.is_null() => {
                    return Err(ApiError::bad_request(
                        format!("only assistant messages carry 'messages[{i}].tool_calls'"),
                        Some(&format!("messages[{i}].tool_calls")),
                    ))
                }
                _ => Vec::new(),
            };
            let id_param = format!("messages[{i}].tool_call_id");
            match (&m.tool_call_id, role == "tool") {
                (None, true) => {
                    return Err(ApiError::bad_request(
                        format!("'{id_param}' is required for a tool message"),
                        Some(&id_param),
                    ))
                }
                (Some(_), false) => {
                    return Err(ApiError::bad_request(
                        format!("only tool messages carry '{id_param}'"),
                        Some(&id_param),
                    ))
                }
                (Some(id), true) if !crate::tools::valid_call_id(id) => {
                    return Err(ApiError::bad_request(
                        format!("'{id_param}' must be 1 to 64 letters, digits, '_' or '-'"),
                        Some(&id_param),
                    ))
                }
                _ => {}
            }
            let content = if calls.is_empty() || m.content.is_some() {
                message_text(i, m.content)?
            } else {
                String::new()
            };
            messages.push(Message {
                role: role.to_owned(),
                content,
                tool_calls: calls,
                tool_call_id: m.tool_call_id,
            });
        }
        let limit = match (self.max_completion_tokens, self.max_tokens) {
            (Some(v), _) => max_tokens(Some(v), "max_completion_tokens")?,
            (None, v) => max_tokens(v, "max_tokens")?,
        };
        let mut prepared = common.prepare(self.model, PromptInput::Chat(messages), limit)?;
        prepared.tools = tools;
        Ok(prepared)
    }
}

/// An assistant turn's `tool_calls`.
fn tool_calls(i: usize, v: serde_json::Value) -> Result<Vec<MessageToolCall>, ApiError> {
    let param = format!("messages[{i}].tool_calls");
    let bad = || {
        ApiError::bad_request(
            format!("'{param}' must be a list of {{\"id\", \"type\": \"function\", \"function\": {{\"name\", \"arguments\"}}}} with ids and names of 1 to 64 letters, digits, '_' or '-' and arguments a JSON object"),
            Some(&param),
        )
    };
    let list = v.as_array().ok_or_else(bad)?;
    list.iter()
        .map(|c| {
            let id = c
                .get("id")
                .and_then(|n| n.as_str())
                .filter(|id| crate::tools::valid_call_id(id))
                .ok_or_else(bad)?;
            let f = c.get("function").ok_or_else(bad)?;
            let name = f
                .get("name")
                .and_then(|n| n.as_str())
                .filter(|n| crate::tools::valid_name(n))
                .ok_or_else(bad)?;
            let args = f
                .get("arguments")
                .and_then(|a| a.as_str())
                .filter(|a| {
                    serde_json::from_str::<serde_json::Value>(a).is_ok_and(|v| v.is_object())
                })
                .ok_or_else(bad)?;
            Ok(MessageToolCall {
                id: id.to_owned(),
                name: name.to_owned(),
                arguments: args.to_owned(),
            })
        })
        .collect()
}

impl CompletionRequest {
    /// Validates the request and turns it into engine input.
    pub fn prepare(mut self) -> Result<Prepared, ApiError> {
        let common = self.common();
        if self.echo == Some(true) {
            return Err(unsupported("echo", "echo"));
        }
        if self.suffix.is_some() {
            return Err(unsupported("suffix", "suffix"));
        }
        if self.best_of.unwrap_or(1) != 1 {
            return Err(unsupported("best_of", "best_of"));
        }
        if self.logprobs.is_some() {
            return Err(unsupported("logprobs", "logprobs"));
        }
        let bad = || {
            ApiError::bad_request(
                "'prompt' must be a string, a list with one string, or a list of token ids",
                Some("prompt"),
            )
        };
        use serde_json::Value;
        let input = match self.prompt {
            Value::String(s) => PromptInput::Text(s),
            Value::Array(items) => match items.as_slice() {
                [Value::String(s)] => PromptInput::Text(s.clone()),
                [] => return Err(bad()),
                items if items.iter().all(Value::is_number) => PromptInput::Tokens(
                    items
                        .iter()
                        .map(|v| {
                            v.as_i64()
                                .and_then(|t| i32::try_from(t).ok())
                                .filter(|t| *t >= 0)
                        })
                        .collect::<Option<Vec<i32>>>()
                        .ok_or_else(bad)?,
                ),
                _ => return Err(bad()),
            },
            _ => return Err(bad()),
        };
        // OpenAI's legacy completions default to 16 tokens.
        let limit = max_tokens(self.max_tokens, "max_tokens")?.or(Some(16));
        common.prepare(self.model, input, limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(json: &str) -> Result<Prepared, ApiError> {
        parse_json::<ChatCompletionRequest>(json.as_bytes())?.prepare()
    }

    #[test]
    fn minimal_chat_request() {
        let p = chat(r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#).unwrap();
        assert_eq!(p.model, "m");
        assert_eq!(p.max_tokens, None);
        assert!(!p.stream);
        assert_eq!(p.input, PromptInput::Chat(vec![Message::new("user", "hi")]));
    }

    #[test]
    fn content_parts_and_developer_role() {
        let p = chat(r#"{"model":"m","messages":[{"role":"developer","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}]}"#).unwrap();
        assert_eq!(
            p.input,
            PromptInput::Chat(vec![Message::new("system", "ab")])
        );
    }

    #[test]
    fn invalid_requests_are_400_with_param() {
        let cases = [
            (r#"{"model":"m","messages":[]}"#, Some("messages")),
            (r#"{"model":"m"}"#, None),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":-1}"#,
                Some("max_tokens"),
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":0}"#,
                Some("max_tokens"),
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":5}"#,
                Some("temperature"),
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"temperature":"hot"}"#,
                None,
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"top_p":0}"#,
                Some("top_p"),
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"n":2}"#,
                Some("n"),
            ),
            (
                r#"{"model":"m","messages":[{"role":"wizard","content":"x"}]}"#,
                Some("messages[0].role"),
            ),
            (
                r#"{"model":"m","messages":[{"role":"user"}]}"#,
                Some("messages[0].content"),
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"bogus":1}"#,
                None,
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream_options":{"include_usage":true}}"#,
                Some("stream_options"),
            ),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stop":["a","b","c","d","e","f","g","h","i","j","k","l","m","n","o","p","q"]}"#,
                Some("stop"),
            ),
            (r#"not json"#, None),
            (
                r#"{"model":"","messages":[{"role":"user","content":"x"}]}"#,
                Some("model"),
            ),
        ];
        for (json, param) in cases {
            let err = chat(json).expect_err(json);
            assert_eq!(err.status, 400, "{json}");
            assert_eq!(err.kind, "invalid_request_error", "{json}");
            assert_eq!(err.param.as_deref(), param, "{json}: {}", err.message);
            let body: serde_json::Value = serde_json::from_str(&err.body()).unwrap();
            assert!(body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()));
        }
    }

    #[test]
    fn completion_prompt_forms() {
        let prep = |j: &str| {
            parse_json::<CompletionRequest>(j.as_bytes()).and_then(CompletionRequest::prepare)
        };
        assert_eq!(
            prep(r#"{"model":"m","prompt":"hi"}"#).unwrap().input,
            PromptInput::Text("hi".into())
        );
        assert_eq!(
            prep(r#"{"model":"m","prompt":["hi"]}"#).unwrap().input,
            PromptInput::Text("hi".into())
        );
        assert_eq!(
            prep(r#"{"model":"m","prompt":[1,2]}"#).unwrap().input,
            PromptInput::Tokens(vec![1, 2])
        );
        assert_eq!(
            prep(r#"{"model":"m","prompt":"hi"}"#).unwrap().max_tokens,
            Some(16)
        );
        for bad in [
            r#"{"model":"m","prompt":[]}"#,
            r#"{"model":"m","prompt":["a","b"]}"#,
            r#"{"model":"m","prompt":[-1]}"#,
            r#"{"model":"m","prompt":3}"#,
        ] {
            assert_eq!(
                prep(bad).unwrap_err().param.as_deref(),
                Some("prompt"),
                "{bad}"
            );
        }
    }

    proptest::proptest! {
        // Whatever bytes arrive, parsing answers Ok or a 400; it never panics.
        #[test]
        fn arbitrary_bodies_never_panic(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            if let Ok(r) = parse_json::<ChatCompletionRequest>(&body) {
                let _ = r.prepare();
            }
        }
    }
}
