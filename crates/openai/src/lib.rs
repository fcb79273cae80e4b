//! The OpenAI-compatible wire format: request and response types, validation of requests into
//! engine parameters, and OpenAI's error shape. Pure: parsing and checking only, so every rule
//! here is testable without a server or a model. The HTTP layer (`highside-server`) decides
//! nothing about the format; it calls into this crate.
#![forbid(unsafe_code)]

pub mod embeddings;
mod error;
mod request;
mod response;
pub mod texts;
pub mod tools;

pub use error::ApiError;
/// The neutral request every body becomes (re-exported for the surfaces that build one).
pub use highside_inference::{Prepared, PromptInput};
pub use request::{
    parse_json, ChatCompletionRequest, ChatMessage, CompletionRequest, HighsideOptions,
    MessageContent, Stop, StreamOptions,
};
pub use response::{
    finish_reason_str, ChatChoice, ChatChunk, ChatChunkChoice, ChatCompletion, ChunkDelta,
    Completion, CompletionChoice, CompletionChunk, HighsideMeta, ModelList, ModelObject,
    ResponseMessage, UsageBody,
};
pub use texts::{client_texts, Work};
