use highside_inference::{FinishReason, Usage};
use serde::Serialize;

/// OpenAI's spelling of a finish reason.
pub fn finish_reason_str(r: FinishReason) -> &'static str {
    match r {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
    }
}

/// `highside` in responses: the output's label and what the monitor noticed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HighsideMeta {
    /// The canonical banner of the output's label (the request's high-water mark), or of a
    /// model's accreditation in `/v1/models`.
    pub label: String,
    /// Kinds of personal data found in the prompt, when the agency flags them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pii: Vec<&'static str>,
}

/// `usage` in responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct UsageBody {
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Generated tokens.
    pub completion_tokens: u64,
    /// Their sum.
    pub total_tokens: u64,
}

impl From<Usage> for UsageBody {
    fn from(u: Usage) -> Self {
        Self {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u.prompt_tokens.saturating_add(u.completion_tokens),
        }
    }
}

/// The assistant's message in a non-streaming answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResponseMessage {
    /// Always `assistant`.
    pub role: &'static str,
    /// The generated text (null when the answer is only tool calls).
    pub content: Option<String>,
    /// Functions the model called.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<crate::tools::ToolCall>>,
}

/// One choice of a chat completion.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatChoice {
    /// Always 0 (n = 1).
    pub index: u32,
    /// The answer.
    pub message: ResponseMessage,
    /// `stop` or `length`.
    pub finish_reason: &'static str,
    /// Not supported; always null.
    pub logprobs: Option<()>,
}

/// `chat.completion`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatCompletion {
    /// `chatcmpl-...`.
    pub id: String,
    /// Always `chat.completion`.
    pub object: &'static str,
    /// Unix seconds.
    pub created: u64,
    /// The model name as requested.
    pub model: String,
    /// Exactly one choice.
    pub choices: Vec<ChatChoice>,
    /// Token counts.
    pub usage: UsageBody,
    /// The output's label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub highside: Option<HighsideMeta>,
}

/// The delta of a streamed chunk.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct ChunkDelta {
    /// `assistant` on the first chunk only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    /// New text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Tool calls, each whole in one chunk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<crate::tools::ChunkToolCall>>,
}

/// One choice of a streamed chunk.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatChunkChoice {
    /// Always 0.
    pub index: u32,
    /// What is new.
    pub delta: ChunkDelta,
    /// Set on the last content chunk.
    pub finish_reason: Option<&'static str>,
    /// Not supported; always null.
    pub logprobs: Option<()>,
}

/// `chat.completion.chunk`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatChunk {
    /// Same id for every chunk of one answer.
    pub id: String,
    /// Always `chat.completion.chunk`.
    pub object: &'static str,
    /// Unix seconds.
    pub created: u64,
    /// The model name as requested.
    pub model: String,
    /// One choice, or none in the final usage chunk.
    pub choices: Vec<ChatChunkChoice>,
    /// Null except in the final usage chunk (with `include_usage`).
    pub usage: Option<UsageBody>,
    /// The output's label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub highside: Option<HighsideMeta>,
}

/// One choice of a text completion.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CompletionChoice {
    /// The generated text.
    pub text: String,
    /// Always 0.
    pub index: u32,
    /// Not supported; always null.
    pub logprobs: Option<()>,
    /// `stop` or `length` (null in intermediate stream chunks).
    pub finish_reason: Option<&'static str>,
}

/// `text_completion`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Completion {
    /// `cmpl-...`.
    pub id: String,
    /// Always `text_completion`.
    pub object: &'static str,
    /// Unix seconds.
    pub created: u64,
    /// The model name as requested.
    pub model: String,
    /// Exactly one choice.
    pub choices: Vec<CompletionChoice>,
    /// Token counts.
    pub usage: UsageBody,
    /// The output's label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub highside: Option<HighsideMeta>,
}

/// A streamed `text_completion` chunk.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CompletionChunk {
    /// Same id for every chunk.
    pub id: String,
    /// Always `text_completion`.
    pub object: &'static str,
    /// Unix seconds.
    pub created: u64,
    /// The model name as requested.
    pub model: String,
    /// One choice, or none in the final usage chunk.
    pub choices: Vec<CompletionChoice>,
    /// Null except in the final usage chunk.
    pub usage: Option<UsageBody>,
    /// The output's label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub highside: Option<HighsideMeta>,
}

/// One entry of `/v1/models`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelObject {
    /// The model name.
    pub id: String,
    /// Always `model`.
    pub object: &'static str,
    /// Import time, Unix seconds.
    pub created: u64,
    /// Always `highside`.
    pub owned_by: &'static str,
    /// The model's accreditation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub highside: Option<HighsideMeta>,
}

/// `/v1/models`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelList {
    /// Always `list`.
    pub object: &'static str,
    /// The models.
    pub data: Vec<ModelObject>,
}
