//! The neutral vocabulary of inference: what a request asks for and what comes back, in
//! terms no wire format and no backend owns. Surfaces (`openai`, `bedrock`) convert their
//! typed bodies to and from these types; backends (the embedded engine, external
//! deployments) take and yield them. Nothing here knows JSON shapes of any protocol; JSON
//! appears only as the content of a tool schema.
#![forbid(unsafe_code)]

mod sampling;
pub mod tools;

use serde::{Deserialize, Serialize};

pub use sampling::{ParamError, SamplingParams, MAX_STOP_STRINGS};
pub use tools::Tools;

/// What the engine is asked to continue.
#[derive(Debug, Clone, PartialEq)]
pub enum PromptInput {
    /// A conversation, rendered with the model's chat template.
    Chat(Vec<Message>),
    /// Raw prompt text (tokenized without special-token parsing).
    Text(String),
    /// Token ids given directly.
    Tokens(Vec<i32>),
}

/// A validated generation request, ready for a backend: what every surface's body becomes.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    /// Model name.
    pub model: String,
    /// The prompt.
    pub input: PromptInput,
    /// Sampling; `max_tokens` is filled in once the prompt length is known.
    pub params: SamplingParams,
    /// The client's limit; `None` means "as much as the context allows".
    pub max_tokens: Option<u32>,
    /// Answer as it is generated instead of in one body.
    pub stream: bool,
    /// Send a usage chunk at the end of a stream.
    pub include_usage: bool,
    /// The label the client declared in the body, not yet parsed.
    pub declared_label: Option<String>,
    /// Start the generated text with the output's banner line.
    pub banner: bool,
    /// Functions the model may call (chat only).
    pub tools: Option<Tools>,
}

/// One chat message. Templates see `role` and `content`; calls and call ids travel beside
/// them (the caller decides how they are written for an embedded model).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Message {
    /// `system`, `user`, `assistant` or `tool`.
    pub role: String,
    /// The text of the message.
    pub content: String,
    /// The calls an assistant turn made.
    #[serde(skip)]
    pub tool_calls: Vec<ToolCall>,
    /// The call a `tool` turn answers.
    #[serde(skip)]
    pub tool_call_id: Option<String>,
}

impl Message {
    /// A plain message: no tool calls, no call answered.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
            ..Self::default()
        }
    }
}

/// A function call: one an earlier assistant turn made, or one a model has just made.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ToolCall {
    /// The id its result refers to.
    pub id: String,
    /// The function.
    pub name: String,
    /// Its arguments, JSON text.
    pub arguments: String,
}

/// One function a model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolDef {
    /// Its name (`[A-Za-z0-9_-]{1,64}` once a surface has validated it).
    pub name: String,
    /// What it does.
    pub description: String,
    /// JSON Schema of its arguments (an object).
    pub parameters: serde_json::Value,
}

/// How a model must use the tools it is offered.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ToolChoice {
    /// It may not call any: an embedded model is not shown the tools; an external
    /// deployment gets them with its own "none" (a history with calls needs them there).
    None,
    /// The model decides.
    #[default]
    Auto,
    /// It must call one of them.
    Required,
    /// It must call this one.
    Named(String),
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-generation token, a stop string or the end of an upstream's answer.
    Stop,
    /// `max_tokens` or the context window was reached.
    Length,
}

/// Token counts of a finished generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Tokens in the prompt.
    pub prompt_tokens: u64,
    /// Tokens generated (an end-of-generation token is not counted).
    pub completion_tokens: u64,
}

/// What a backend's stream carries for one generation: the embedded engine's tokens, or an
/// upstream route's pieces, calls and attempts. Every backend yields these, so the output
/// scan, the answer encoders, audit and metering treat them alike.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// One generated token and the text it completed (possibly empty while a UTF-8 character
    /// or a possible stop string is incomplete).
    Token {
        /// The token id.
        id: i32,
        /// Text released by this token.
        text: String,
    },
    /// Text without a token of its own: a held-back stop-string prefix at the end, or a
    /// piece of an upstream's answer.
    Text(String),
    /// The calls a backend returned whole, after all of its text (an upstream's; an
    /// embedded model's calls are parsed from its text).
    ToolCalls(Vec<ToolCall>),
    /// The request is about to be sent to this deployment (for the completion record);
    /// attempts all come before the first output.
    Attempt(String),
    /// Generation ended normally; always the last event.
    Done {
        /// Why it ended.
        finish_reason: FinishReason,
        /// Token counts.
        usage: Usage,
    },
    /// The backend failed this request; always the last event.
    Failed(Failure),
}

/// Why a backend failed a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What went wrong, for the client and the log.
    pub message: String,
    /// The HTTP status an upstream answered with, when one did (its 400 means the request is
    /// at fault, its 429 that it is throttling).
    pub status: Option<u16>,
}

impl Failure {
    /// A failure of our own (no upstream status).
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            status: None,
        }
    }
}

/// The wire protocol an external deployment speaks (named in `highside.toml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// OpenAI chat completions (`POST {url}/chat/completions`): vLLM, llama.cpp's server,
    /// Ollama, TGI, llama-cpp-python, another Highside, hosted OpenAI-style APIs.
    Openai,
    /// The Anthropic Messages API (`POST {url}/v1/messages`).
    Anthropic,
}
