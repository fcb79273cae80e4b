//! Turning engine events into OpenAI responses: one JSON body, or server-sent events that end
//! in `data: [DONE]`.

use std::convert::Infallible;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use futures_util::Stream;
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

/// Waits for the whole generation and builds the JSON answer.
pub(crate) async fn collect(
    kind: Kind,
    id: String,
    g: Generation,
) -> Result<serde_json::Value, ApiError> {
    let mut text = if g.banner {
        format!("{}\n", g.label)
    } else {
        String::new()
    };
    let highside = Some(HighsideMeta {
        label: g.label.clone(),
        pii: g.pii.clone(),
    });
    let mut answer = Answer::new(g.events, g.audit, g.tools);
    // `next` returns the end only once the completion record is durable.
    let (held, calls, reason, usage) = loop {
        match answer.next().await {
            Some(Piece::Text(t)) => text.push_str(&t),
            Some(Piece::End {
                held,
                calls,
                finish,
                usage,
            }) => break (held, calls, finish, usage),
            Some(Piece::Failed(e)) => return Err(e),
            None => return Err(ApiError::internal("the answer ended twice")),
        }
    };
    let created = now_secs();
    let usage = UsageBody::from(usage);
    let mut finish_reason = finish_reason_str(reason);
    if let Some(held) = held {
        text.push_str(&held);
    }
    let (content, tool_calls) = if calls.is_empty() {
        (Some(text.clone()), None)
    } else {
        // A call cut off by max_tokens says so, as OpenAI's do.
        if reason != FinishReason::Length {
            finish_reason = "tool_calls";
        }
        (
            (!text.is_empty()).then(|| text.clone()),
            Some(calls.into_iter().map(Into::into).collect()),
        )
    };
    let value = match kind {
        Kind::Chat => serde_json::to_value(ChatCompletion {
            id,
            object: "chat.completion",
            created,
            model: g.model,
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
        Kind::Completion => serde_json::to_value(Completion {
            id,
            object: "text_completion",
            created,
            model: g.model,
            choices: vec![CompletionChoice {
                text,
                index: 0,
                logprobs: None,
                finish_reason: Some(finish_reason),
            }],
            usage,
            highside,
        }),
    };
    value.map_err(|e| ApiError::internal(format!("cannot encode the answer: {e}")))
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

fn frame(value: &impl Serialize) -> String {
    // Serialising these plain structs cannot fail; an empty object keeps the stream parseable.
    format!(
        "data: {}\n\n",
        serde_json::to_string(value).unwrap_or_else(|_| "{}".into())
    )
}

impl Chunker {
    /// One chunk; `finish_reason` as OpenAI spells it (`stop`, `length`, `tool_calls`).
    fn chunk(
        &self,
        text: Option<String>,
        role: bool,
        finish_reason: Option<&'static str>,
    ) -> String {
        match self.kind {
            Kind::Chat => frame(&ChatChunk {
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
            }),
            Kind::Completion => frame(&CompletionChunk {
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
            }),
        }
    }

    /// The chunk that carries a whole answer's tool calls.
    fn tool_calls(&self, calls: Vec<highside_inference::ToolCall>) -> String {
        let calls = calls
            .into_iter()
            .enumerate()
            .map(|(i, call)| highside_openai::tools::ChunkToolCall {
                index: i as u32,
                call: call.into(),
            })
            .collect();
        frame(&ChatChunk {
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
        })
    }

    /// The end of an answer whose output was held back to look for tool calls: the text as
    /// one chunk, and the calls if there are any, then the finishing chunk.
    fn held(
        &self,
        text: String,
        calls: Vec<highside_inference::ToolCall>,
        finish: &'static str,
    ) -> String {
        let mut out = if text.is_empty() {
            String::new()
        } else {
            self.chunk(Some(text), false, None)
        };
        if calls.is_empty() {
            out.push_str(&self.chunk(None, false, Some(finish)));
            return out;
        }
        out.push_str(&self.tool_calls(calls));
        let reason = if finish == "length" {
            "length"
        } else {
            "tool_calls"
        };
        out.push_str(&self.chunk(None, false, Some(reason)));
        out
    }

    fn usage(&self, usage: Usage) -> String {
        let usage = Some(UsageBody::from(usage));
        match self.kind {
            Kind::Chat => frame(&ChatChunk {
                id: self.id.clone(),
                object: "chat.completion.chunk",
                created: self.created,
                model: self.model.clone(),
                choices: vec![],
                usage,
                highside: Some(self.highside.clone()),
            }),
            Kind::Completion => frame(&CompletionChunk {
                id: self.id.clone(),
                object: "text_completion",
                created: self.created,
                model: self.model.clone(),
                choices: vec![],
                usage,
                highside: Some(self.highside.clone()),
            }),
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
    let Generation {
        model,
        events,
        include_usage,
        label,
        banner,
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
        highside: HighsideMeta {
            label: label.clone(),
            pii,
        },
        banner: banner.then(|| format!("{label}\n")),
    };
    let state = Streaming {
        // With tools offered, the output is held until the end to find the calls in it.
        answer: Answer::new(events, audit, tools),
        chunker,
        phase: Phase::Start,
    };
    futures_util::stream::unfold(state, move |mut st| async move {
        let c = &st.chunker;
        match st.phase {
            Phase::Ended => None,
            Phase::Start if c.kind == Kind::Chat => {
                let first = c.chunk(Some(c.banner.clone().unwrap_or_default()), true, None);
                st.phase = Phase::Running;
                Some((Ok(Bytes::from(first)), st))
            }
            Phase::Start if c.banner.is_some() => {
                let first = c.chunk(c.banner.clone(), false, None);
                st.phase = Phase::Running;
                Some((Ok(Bytes::from(first)), st))
            }
            Phase::Start | Phase::Running => {
                let out = st.next(include_usage).await;
                Some((Ok(Bytes::from(out)), st))
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
    /// The next frame: a token chunk, or the end of the stream.
    async fn next(&mut self, include_usage: bool) -> String {
        self.phase = Phase::Running;
        let c = &self.chunker;
        match self.answer.next().await {
            Some(Piece::Text(text)) => c.chunk(Some(text), false, None),
            Some(Piece::End {
                held,
                calls,
                finish,
                usage,
            }) => {
                let reason = finish_reason_str(finish);
                let mut out = match held {
                    Some(text) => c.held(text, calls, reason),
                    None => c.chunk(None, false, Some(reason)),
                };
                if c.kind == Kind::Completion {
                    // Completion chunks carry text, not a delta: the final one is empty.
                    out = c.chunk(Some(String::new()), false, Some(reason));
                }
                if include_usage {
                    out.push_str(&c.usage(usage));
                }
                out.push_str("data: [DONE]\n\n");
                self.phase = Phase::Ended;
                out
            }
            Some(Piece::Failed(err)) => {
                self.phase = Phase::Ended;
                format!("data: {}\n\n", err.body())
            }
            None => {
                self.phase = Phase::Ended;
                String::new()
            }
        }
    }
}
