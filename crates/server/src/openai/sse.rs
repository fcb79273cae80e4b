//! Turning engine events into OpenAI responses: one JSON body, or server-sent events that end
//! in `data: [DONE]`.

use std::convert::Infallible;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use futures_util::{Stream, StreamExt};
use highside_inference::{FinishReason, Usage};
use highside_openai::{
    finish_reason_str, ApiError, ChatChoice, ChatChunk, ChatChunkChoice, ChatCompletion,
    ChunkDelta, Completion, CompletionChoice, CompletionChunk, HighsideMeta, ResponseMessage,
    UsageBody,
};
use serde::Serialize;

use highside_pipeline::answer::{Answer, Piece};

use crate::Generation;

/// Which endpoint's shapes to produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Chat,
    Completion,
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub(crate) fn new_id(kind: Kind) -> String {
    let prefix = match kind {
        Kind::Chat => "chatcmpl",
        Kind::Completion => "cmpl",
    };
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// An OpenAI answer in one body.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum Body {
    Chat(ChatCompletion),
    Completion(Completion),
}

/// Waits for the whole generation and builds the OpenAI answer.
pub(crate) async fn collect(kind: Kind, id: String, mut g: Generation) -> Result<Body, ApiError> {
    let highside = Some(HighsideMeta {
        label: g.label.clone(),
        pii: std::mem::take(&mut g.pii),
    });
    let model = std::mem::take(&mut g.model);
    // `whole` returns only once the completion record is durable.
    let whole = g.whole().await?;
    let created = now_secs();
    let usage = UsageBody::from(whole.usage);
    let mut finish_reason = finish_reason_str(whole.finish);
    let text = whole.text;
    let (content, tool_calls) = if whole.calls.is_empty() {
        (Some(text.clone()), None)
    } else {
        // A call cut off by max_tokens says so, as OpenAI's do.
        if whole.finish != FinishReason::Length {
            finish_reason = "tool_calls";
        }
        (
            (!text.is_empty()).then(|| text.clone()),
            Some(whole.calls.into_iter().map(Into::into).collect()),
        )
    };
    Ok(match kind {
        Kind::Chat => Body::Chat(ChatCompletion {
            id,
            object: "chat.completion",
            created,
            model,
            choices: vec![ChatChoice {
                index: 0,
                message: ResponseMessage {
                    role: "assistant",
                    content,
                    tool_calls,
                },
                finish_reason,
                logprobs: None,
            }],
            usage,
            highside,
        }),
        Kind::Completion => Body::Completion(Completion {
            id,
            object: "text_completion",
            created,
            model,
            choices: vec![CompletionChoice {
                text,
                index: 0,
                logprobs: None,
                finish_reason: Some(finish_reason),
            }],
            usage,
            highside,
        }),
    })
}

/// One thing an OpenAI stream sends.
#[derive(Debug)]
pub(crate) enum Frame {
    /// A chat completion chunk.
    Chat(Box<ChatChunk>),
    /// A text completion chunk.
    Completion(Box<CompletionChunk>),
    /// The stream failed (its last frame).
    Error(ApiError),
    /// `[DONE]`, once the completion record is durable.
    Done,
}

impl Frame {
    /// As server-sent events.
    fn sse(&self) -> String {
        match self {
            Frame::Chat(c) => data(c),
            Frame::Completion(c) => data(c),
            Frame::Error(e) => format!("data: {}\n\n", e.body()),
            Frame::Done => "data: [DONE]\n\n".into(),
        }
    }
}

fn data(value: &impl Serialize) -> String {
    // Serialising these plain structs cannot fail; an empty object keeps the stream parseable.
    format!(
        "data: {}\n\n",
        serde_json::to_string(value).unwrap_or_else(|_| "{}".into())
    )
}

/// Builds the chunks of one stream.
struct Chunker {
    kind: Kind,
    id: String,
    model: String,
    created: u64,
    /// Every chunk carries the output's label, so a client that reads any chunk sees it.
    highside: HighsideMeta,
    /// The banner line to send before the first token, if asked for.
    banner: Option<String>,
}

impl Chunker {
    /// One chunk; `finish_reason` as OpenAI spells it (`stop`, `length`, `tool_calls`).
    fn chunk(
        &self,
        text: Option<String>,
        role: bool,
        finish_reason: Option<&'static str>,
    ) -> Frame {
        match self.kind {
            Kind::Chat => Frame::Chat(Box::new(ChatChunk {
                id: self.id.clone(),
                object: "chat.completion.chunk",
                created: self.created,
                model: self.model.clone(),
                choices: vec![ChatChunkChoice {
                    index: 0,
                    delta: ChunkDelta {
                        role: role.then_some("assistant"),
                        content: text,
                        tool_calls: None,
                    },
                    finish_reason,
                    logprobs: None,
                }],
                usage: None,
                highside: Some(self.highside.clone()),
            })),
            Kind::Completion => Frame::Completion(Box::new(CompletionChunk {
                id: self.id.clone(),
                object: "text_completion",
                created: self.created,
                model: self.model.clone(),
                choices: vec![CompletionChoice {
                    text: text.unwrap_or_default(),
                    index: 0,
                    logprobs: None,
                    finish_reason,
                }],
                usage: None,
                highside: Some(self.highside.clone()),
            })),
        }
    }

    /// The chunk that carries a whole answer's tool calls.
    fn tool_calls(&self, calls: Vec<highside_inference::ToolCall>) -> Frame {
        let calls = calls
            .into_iter()
            .enumerate()
            .map(|(i, call)| highside_openai::tools::ChunkToolCall {
                index: i as u32,
                call: call.into(),
            })
            .collect();
        Frame::Chat(Box::new(ChatChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk",
            created: self.created,
            model: self.model.clone(),
            choices: vec![ChatChunkChoice {
                index: 0,
                delta: ChunkDelta {
                    role: None,
                    content: None,
                    tool_calls: Some(calls),
                },
                finish_reason: None,
                logprobs: None,
            }],
            usage: None,
            highside: Some(self.highside.clone()),
        }))
    }

    /// The end of an answer whose output was held back to look for tool calls: the text as
    /// one chunk, and the calls if there are any, then the finishing chunk.
    fn held(
        &self,
        text: String,
        calls: Vec<highside_inference::ToolCall>,
        finish: &'static str,
    ) -> Vec<Frame> {
        let mut out = Vec::new();
        if !text.is_empty() {
            out.push(self.chunk(Some(text), false, None));
        }
        if calls.is_empty() {
            out.push(self.chunk(None, false, Some(finish)));
            return out;
        }
        out.push(self.tool_calls(calls));
        let reason = if finish == "length" {
            "length"
        } else {
            "tool_calls"
        };
        out.push(self.chunk(None, false, Some(reason)));
        out
    }

    fn usage(&self, usage: Usage) -> Frame {
        let usage = Some(UsageBody::from(usage));
        match self.kind {
            Kind::Chat => Frame::Chat(Box::new(ChatChunk {
                id: self.id.clone(),
                object: "chat.completion.chunk",
                created: self.created,
                model: self.model.clone(),
                choices: vec![],
                usage,
                highside: Some(self.highside.clone()),
            })),
            Kind::Completion => Frame::Completion(Box::new(CompletionChunk {
                id: self.id.clone(),
                object: "text_completion",
                created: self.created,
                model: self.model.clone(),
                choices: vec![],
                usage,
                highside: Some(self.highside.clone()),
            })),
        }
    }
}

enum Phase {
    Start,
    Running,
    Ended,
}

/// The SSE body of a streaming generation. Dropping it (client gone) drops the engine
/// receiver, which cancels the sequence, and the completion record, which records that.
/// `[DONE]` is sent only once the completion record is durable.
pub(crate) fn stream(
    kind: Kind,
    id: String,
    g: Generation,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send {
    frames(kind, id, g).map(|frames| {
        let text: String = frames.iter().map(Frame::sse).collect();
        Ok(Bytes::from(text))
    })
}

/// The frames of a streaming generation, a step at a time: what [`stream`] sends as
/// server-sent events, and Bedrock's invoke stream as event-stream chunks.
pub(crate) fn frames(
    kind: Kind,
    id: String,
    g: Generation,
) -> impl Stream<Item = Vec<Frame>> + Send {
    let banner_line = g.banner_line();
    let Generation {
        model,
        events,
        include_usage,
        label,
        pii,
        audit,
        tools,
        ..
    } = g;
    let chunker = Chunker {
        kind,
        id,
        model,
        created: now_secs(),
        highside: HighsideMeta { label, pii },
        banner: banner_line,
    };
    let state = Streaming {
        // With tools offered, the output is held until the end to find the calls in it.
        answer: Answer::new(events, audit, tools),
        chunker,
        phase: Phase::Start,
    };
    futures_util::stream::unfold(state, move |mut st| async move {
        match st.phase {
            Phase::Ended => None,
            Phase::Start => {
                st.phase = Phase::Running;
                let c = &st.chunker;
                let first = match (&c.banner, c.kind) {
                    (banner, Kind::Chat) => {
                        Some(c.chunk(Some(banner.clone().unwrap_or_default()), true, None))
                    }
                    (Some(banner), Kind::Completion) => {
                        Some(c.chunk(Some(banner.clone()), false, None))
                    }
                    (None, Kind::Completion) => None,
                };
                if let Some(b) = &c.banner {
                    // What the client is sent is what the record hashes.
                    st.answer.sent(b);
                }
                match first {
                    Some(f) => Some((vec![f], st)),
                    None => {
                        let out = st.next(include_usage).await;
                        Some((out, st))
                    }
                }
            }
            Phase::Running => {
                let out = st.next(include_usage).await;
                Some((out, st))
            }
        }
    })
}

/// A stream in progress.
struct Streaming {
    answer: Answer,
    chunker: Chunker,
    phase: Phase,
}

impl Streaming {
    /// The next frames: a token chunk, or the end of the stream.
    async fn next(&mut self, include_usage: bool) -> Vec<Frame> {
        let c = &self.chunker;
        match self.answer.next().await {
            Some(Piece::Text(text)) => vec![c.chunk(Some(text), false, None)],
            Some(Piece::End {
                held,
                calls,
                finish,
                usage,
            }) => {
                let reason = finish_reason_str(finish);
                let mut out = match held {
                    Some(text) => c.held(text, calls, reason),
                    None => vec![c.chunk(None, false, Some(reason))],
                };
                if c.kind == Kind::Completion {
                    // Completion chunks carry text, not a delta: the final one is empty.
                    out = vec![c.chunk(Some(String::new()), false, Some(reason))];
                }
                if include_usage {
                    out.push(c.usage(usage));
                }
                out.push(Frame::Done);
                self.phase = Phase::Ended;
                out
            }
            Some(Piece::Failed(err)) => {
                self.phase = Phase::Ended;
                vec![Frame::Error(err)]
            }
            None => {
                self.phase = Phase::Ended;
                Vec::new()
            }
        }
    }
}
