//! The Converse API's JSON and its mapping onto the neutral vocabulary: a Converse request
//! becomes a [`Prepared`] request (checked by the same rules as an OpenAI chat body: the
//! tools by [`Tools::new`], sampling by its bounds), and an answer becomes the Converse
//! response.

use highside_inference::tools::{valid_call_id, valid_name};
use highside_inference::{
    FinishReason, Message as Turn, Prepared, PromptInput, SamplingParams, ToolCall, ToolChoice,
    ToolDef, Tools, Usage,
};
use serde::{Deserialize, Serialize};
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
    /// A call an earlier assistant turn made.
    #[serde(default, rename = "toolUse")]
    pub tool_use: Option<ToolUse>,
    /// The result of a call, in a user turn.
    #[serde(default, rename = "toolResult")]
    pub tool_result: Option<ToolResult>,
}

/// `toolUse` in a request.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ToolUse {
    /// The call's id.
    #[serde(default)]
    pub tool_use_id: Option<String>,
    /// The function.
    #[serde(default)]
    pub name: Option<String>,
    /// Its arguments (a JSON object; `{}` when absent, refused when anything else).
    #[serde(default = "empty_object")]
    pub input: Value,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

/// `toolResult`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ToolResult {
    /// The call it answers.
    #[serde(default)]
    pub tool_use_id: Option<String>,
    /// What the tool returned.
    #[serde(default)]
    pub content: Vec<ResultBlock>,
    /// `success` or `error`.
    #[serde(default)]
    pub status: Option<String>,
}

/// One block of a tool result: text or JSON.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultBlock {
    /// Text.
    #[serde(default)]
    pub text: Option<String>,
    /// A JSON document.
    #[serde(default)]
    pub json: Option<Value>,
}

/// `toolConfig`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ToolConfig {
    /// The tools.
    pub tools: Vec<Tool>,
    /// `{"auto": {}}`, `{"any": {}}` or `{"tool": {"name"}}`.
    #[serde(default)]
    pub tool_choice: Option<ToolChoiceSpec>,
}

/// `toolChoice`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum ToolChoiceSpec {
    /// The model decides.
    Auto {},
    /// It must call one.
    Any {},
    /// It must call this one.
    Tool {
        /// The function.
        name: String,
    },
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

/// A field's Bedrock name for the sampling parameter a check names.
fn bedrock_param(param: &str) -> &str {
    match param {
        "temperature" => "inferenceConfig.temperature",
        "top_p" => "inferenceConfig.topP",
        "stop" => "inferenceConfig.stopSequences",
        "max_tokens" => "inferenceConfig.maxTokens",
        other => other,
    }
}

/// Sampling for a Bedrock body: defaults as OpenAI's, checked against the same bounds.
pub(crate) fn sampling(
    temperature: Option<f64>,
    top_p: Option<f64>,
    stop: Vec<String>,
) -> Result<SamplingParams, Validation> {
    let defaults = SamplingParams::default();
    let params = SamplingParams {
        // JSON numbers are finite; f32 keeps every value the bounds allow.
        temperature: temperature.map_or(defaults.temperature, |t| t as f32),
        top_p: top_p.map_or(defaults.top_p, |p| p as f32),
        stop,
        // Filled in once the prompt length is known.
        max_tokens: 1,
        ..defaults
    };
    params
        .validate()
        .map_err(|e| Validation(format!("{} {}", bedrock_param(e.param), e.message)))?;
    Ok(params)
}

/// A token limit as Bedrock gives it: a positive integer.
pub(crate) fn token_limit(value: Option<i64>, param: &str) -> Result<Option<u32>, Validation> {
    match value {
        None => Ok(None),
        Some(v) => u32::try_from(v)
            .ok()
            .filter(|v| *v >= 1)
            .map(Some)
            .ok_or_else(|| Validation(format!("{param} must be a positive integer, not {v}"))),
    }
}

impl ToolChoiceSpec {
    fn choice(&self) -> ToolChoice {
        match self {
            Self::Auto {} => ToolChoice::Auto,
            Self::Any {} => ToolChoice::Required,
            Self::Tool { name } => ToolChoice::Named(name.clone()),
        }
    }
}

impl ConverseRequest {
    /// The neutral request for `model`: the same messages, tools and sampling an OpenAI chat
    /// body would give, checked by the same rules.
    pub fn to_request(self, model: &str, stream: bool) -> Result<Prepared, Validation> {
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
            messages.push(Turn::new("system", text.join("\n")));
        }
        for (i, m) in self.messages.into_iter().enumerate() {
            if m.role != "user" && m.role != "assistant" {
                return Err(Validation(format!(
                    "messages.{i}.role must be user or assistant"
                )));
            }
            let mut text = String::new();
            let mut calls = Vec::new();
            let results = m.content.iter().any(|b| b.tool_result.is_some());
            for (j, b) in m.content.into_iter().enumerate() {
                let at = || format!("messages.{i}.content.{j}");
                if b.image.is_some() || b.document.is_some() {
                    return Err(Validation(format!(
                        "{}: only text and tool content is supported by this model",
                        at()
                    )));
                }
                if let Some(u) = b.tool_use {
                    if m.role != "assistant" {
                        return Err(Validation(format!(
                            "{}: toolUse belongs to assistant turns",
                            at()
                        )));
                    }
                    let (Some(id), Some(name)) = (u.tool_use_id, u.name) else {
                        return Err(Validation(format!(
                            "{}: toolUse needs toolUseId and name",
                            at()
                        )));
                    };
                    if !valid_call_id(&id) {
                        return Err(Validation(format!(
                            "{}: toolUseId must be 1 to 64 letters, digits, '_' or '-'",
                            at()
                        )));
                    }
                    let input = u.input;
                    if !valid_name(&name) {
                        return Err(Validation(format!(
                            "{}: toolUse name must be 1 to 64 letters, digits, '_' or '-'",
                            at()
                        )));
                    }
                    if !input.is_object() {
                        return Err(Validation(format!(
                            "{}: toolUse input must be a JSON object",
                            at()
                        )));
                    }
                    calls.push(ToolCall {
                        id,
                        name,
                        arguments: input.to_string(),
                    });
                } else if let Some(r) = b.tool_result {
                    if m.role != "user" {
                        return Err(Validation(format!(
                            "{}: toolResult belongs to user turns",
                            at()
                        )));
                    }
                    let id = r.tool_use_id.ok_or_else(|| {
                        Validation(format!("{}: toolResult needs toolUseId", at()))
                    })?;
                    if !valid_call_id(&id) {
                        return Err(Validation(format!(
                            "{}: toolUseId must be 1 to 64 letters, digits, '_' or '-'",
                            at()
                        )));
                    }
                    let mut out = String::new();
                    for c in r.content {
                        match c {
                            ResultBlock {
                                text: Some(t),
                                json: None,
                            } => out.push_str(&t),
                            ResultBlock {
                                text: None,
                                json: Some(j),
                            } => out.push_str(&j.to_string()),
                            _ => {
                                return Err(Validation(format!(
                                    "{}: toolResult content must be text or json",
                                    at()
                                )))
                            }
                        }
                    }
                    if r.status.as_deref() == Some("error") {
                        out = format!("error: {out}");
                    }
                    messages.push(Turn {
                        role: "tool".into(),
                        content: out,
                        tool_calls: Vec::new(),
                        tool_call_id: Some(id),
                    });
                } else {
                    let t = b
                        .text
                        .ok_or_else(|| Validation(format!("{} has no text", at())))?;
                    text.push_str(&t);
                }
            }
            if !calls.is_empty() {
                messages.push(Turn {
                    role: "assistant".into(),
                    content: text,
                    tool_calls: calls,
                    tool_call_id: None,
                });
            } else if !text.is_empty() || !results {
                messages.push(Turn::new(m.role, text));
            }
        }
        let tools = match self.tool_config {
            None => None,
            Some(t) => {
                let defs = t
                    .tools
                    .into_iter()
                    .map(|t| ToolDef {
                        name: t.tool_spec.name,
                        description: t.tool_spec.description.unwrap_or_default(),
                        parameters: t.tool_spec.input_schema.json,
                    })
                    .collect();
                let choice = t
                    .tool_choice
                    .as_ref()
                    .map_or(ToolChoice::Auto, ToolChoiceSpec::choice);
                Tools::new(defs, choice, None)
                    .map_err(|e| Validation(format!("toolConfig: {}", e.message)))?
            }
        };
        let config = self.inference_config.unwrap_or_default();
        let max_tokens = token_limit(config.max_tokens, "inferenceConfig.maxTokens")?;
        let params = sampling(config.temperature, config.top_p, config.stop_sequences)?;
        Ok(Prepared {
            model: model.to_owned(),
            input: PromptInput::Chat(messages),
            params,
            max_tokens,
            stream,
            include_usage: stream,
            declared_label: None,
            banner: false,
            tools,
        })
    }
}

/// A `toolUse` content block of the response.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolUseOut {
    /// The call's id.
    pub tool_use_id: String,
    /// The function.
    pub name: String,
    /// Its arguments.
    pub input: Value,
}

impl From<&ToolCall> for ToolUseOut {
    fn from(c: &ToolCall) -> Self {
        Self {
            tool_use_id: c.id.clone(),
            name: c.name.clone(),
            // A call's arguments are a JSON object (checked where it was made).
            input: serde_json::from_str(&c.arguments)
                .unwrap_or_else(|_| Value::Object(Default::default())),
        }
    }
}

/// A content block of the response.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum OutBlock {
    /// Text.
    Text(String),
    /// A function call.
    ToolUse(ToolUseOut),
}

/// The assistant's message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutMessage {
    /// Always `assistant`.
    pub role: &'static str,
    /// Its blocks.
    pub content: Vec<OutBlock>,
}

/// `output`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Output {
    /// The answer.
    pub message: OutMessage,
}

/// `usage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenUsage {
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Generated tokens.
    pub output_tokens: u64,
    /// Their sum.
    pub total_tokens: u64,
}

impl From<Usage> for TokenUsage {
    fn from(u: Usage) -> Self {
        Self {
            input_tokens: u.prompt_tokens,
            output_tokens: u.completion_tokens,
            total_tokens: u.prompt_tokens.saturating_add(u.completion_tokens),
        }
    }
}

/// `metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Metrics {
    /// Time to the whole answer.
    pub latency_ms: u64,
}

/// The Converse response.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConverseResponse {
    /// The answer.
    pub output: Output,
    /// Why it ended.
    pub stop_reason: &'static str,
    /// Token counts.
    pub usage: TokenUsage,
    /// Timing.
    pub metrics: Metrics,
}

/// Bedrock's stop reason for an answer that ended for `finish` with `calls`.
pub fn stop_reason(finish: FinishReason, calls: bool) -> &'static str {
    match finish {
        FinishReason::Length => "max_tokens",
        FinishReason::Stop if calls => "tool_use",
        FinishReason::Stop => "end_turn",
    }
}

/// The Converse response for an answer: its text (an empty text is sent only when there
/// are no calls), its calls, why it ended and its token counts.
pub fn converse_response(
    text: String,
    calls: &[ToolCall],
    finish: FinishReason,
    usage: Usage,
    latency_ms: u64,
) -> ConverseResponse {
    let mut content = Vec::new();
    if calls.is_empty() || !text.is_empty() {
        content.push(OutBlock::Text(text));
    }
    content.extend(calls.iter().map(|c| OutBlock::ToolUse(c.into())));
    ConverseResponse {
        output: Output {
            message: OutMessage {
                role: "assistant",
                content,
            },
        },
        stop_reason: stop_reason(finish, !calls.is_empty()),
        usage: usage.into(),
        metrics: Metrics { latency_ms },
    }
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

    fn chat(r: &Prepared) -> &[Turn] {
        match &r.input {
            PromptInput::Chat(m) => m,
            other => panic!("not a chat: {other:?}"),
        }
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
        }))
        .to_request("smollm2", true)
        .unwrap();
        assert_eq!(r.model, "smollm2");
        let m = chat(&r);
        assert_eq!(m[0], Turn::new("system", "Be brief.\nBe kind."));
        assert_eq!(m[1], Turn::new("user", "Hello, world"));
        assert_eq!(m[3].content, "Bye");
        assert_eq!(r.max_tokens, Some(16));
        assert_eq!((r.params.temperature, r.params.top_p), (0.5, 0.9));
        assert_eq!(r.params.stop, ["\n"]);
        assert!(r.stream && r.include_usage);
        assert!(r.tools.is_none());
    }

    #[test]
    fn what_is_not_served_is_a_validation_error() {
        for bad in [
            json!({"messages": []}),
            json!({"messages": [{"role": "system", "content": [{"text": "x"}]}]}),
            json!({"messages": [{"role": "user", "content": [{"image": {}}]}]}),
            json!({"messages": [{"role": "user", "content": [{}]}]}),
            json!({"messages": [{"role": "user", "content": [{"toolUse": {"toolUseId": "a", "name": "f"}}]}]}),
            json!({"messages": [{"role": "assistant", "content": [{"toolUse": {"toolUseId": "a b", "name": "f"}}]}]}),
            json!({"messages": [{"role": "assistant", "content": [{"toolUse": {"toolUseId": "a", "name": "f", "input": 3}}]}]}),
            json!({"messages": [{"role": "assistant", "content": [{"toolUse": {"toolUseId": "a", "name": "f", "input": null}}]}]}),
            json!({"messages": [{"role": "assistant", "content": [{"toolUse": {"toolUseId": "a", "name": "f g"}}]}]}),
            json!({"messages": [{"role": "user", "content": [{"text": "x"}]}], "toolConfig": {"tools": [], "toolChoice": {"any": {}}}}),
            json!({"messages": [{"role": "user", "content": [{"text": "x"}]}], "toolConfig": {"tools": [
                {"toolSpec": {"name": "bad name", "inputSchema": {"json": {}}}}]}}),
            json!({"messages": [{"role": "user", "content": [{"text": "x"}]}], "additionalModelRequestFields": {}}),
            json!({"messages": [{"role": "user", "content": [{"text": "x"}]}], "inferenceConfig": {"temperature": 7.0}}),
            json!({"messages": [{"role": "user", "content": [{"text": "x"}]}], "inferenceConfig": {"maxTokens": 0}}),
        ] {
            let e = parse(bad.clone()).to_request("m", false).unwrap_err();
            assert!(!e.0.is_empty(), "{bad}");
        }
        for unreadable in [
            json!({"messages": [], "bogus": 1}),
            json!({"messages": [], "toolConfig": {"tools": [], "toolChoice": {"tool": {}}}}),
        ] {
            assert!(serde_json::from_value::<ConverseRequest>(unreadable).is_err());
        }
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
        }))
        .to_request("m", false)
        .unwrap();
        let tools = r.tools.as_ref().unwrap();
        assert_eq!(tools.choice, ToolChoice::Required);
        assert_eq!(tools.defs[0].name, "get_weather");
        let m = chat(&r);
        assert_eq!(m.len(), 3);
        assert_eq!(
            m[1].tool_calls,
            [ToolCall {
                id: "t1".into(),
                name: "get_weather".into(),
                arguments: "{\"city\":\"Oslo\"}".into()
            }]
        );
        assert_eq!(
            (
                m[2].role.as_str(),
                m[2].content.as_str(),
                m[2].tool_call_id.as_deref()
            ),
            ("tool", "{\"temp\":3}", Some("t1"))
        );
        let call = ToolCall {
            id: "call_1".into(),
            name: "get_weather".into(),
            arguments: "{\"city\":\"Oslo\"}".into(),
        };
        let usage = Usage {
            prompt_tokens: 1,
            completion_tokens: 1,
        };
        let c = serde_json::to_value(converse_response(
            String::new(),
            &[call],
            FinishReason::Stop,
            usage,
            1,
        ))
        .unwrap();
        assert_eq!(c["stopReason"], "tool_use");
        assert_eq!(
            c["output"]["message"]["content"].as_array().unwrap().len(),
            1
        );
        assert_eq!(
            c["output"]["message"]["content"][0]["toolUse"],
            json!({"toolUseId": "call_1", "name": "get_weather", "input": {"city": "Oslo"}})
        );
    }

    #[test]
    fn an_answer_becomes_a_converse_response() {
        let usage = Usage {
            prompt_tokens: 7,
            completion_tokens: 2,
        };
        let r = serde_json::to_value(converse_response(
            "Paris.".into(),
            &[],
            FinishReason::Length,
            usage,
            12,
        ))
        .unwrap();
        assert_eq!(
            r,
            json!({
                "output": {"message": {"role": "assistant", "content": [{"text": "Paris."}]}},
                "stopReason": "max_tokens",
                "usage": {"inputTokens": 7, "outputTokens": 2, "totalTokens": 9},
                "metrics": {"latencyMs": 12},
            })
        );
        assert_eq!(error(429, "slow down").0, "ThrottlingException");
    }
}
