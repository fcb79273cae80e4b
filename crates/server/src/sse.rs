//! Turning engine events into OpenAI responses: one JSON body, or server-sent events that end
//! in `data: [DONE]`.

use std::convert::Infallible;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use futures_util::Stream;
use highside_engine::{Event, FinishReason, Usage};
use highside_openai::{
    finish_reason_str, ApiError, ChatChoice, ChatChunk, ChatChunkChoice, ChatCompletion,
    ChunkDelta, Completion, CompletionChoice, CompletionChunk, HighsideMeta, ResponseMessage,
    UsageBody,
};
use serde::Serialize;

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
    mut g: Generation,
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
    let (reason, usage) = loop {
        match g.events.recv().await {
            Some(Event::Token { text: t, .. }) | Some(Event::Text(t)) => text.push_str(&t),
            Some(Event::Done {
                finish_reason,
                usage,
            }) => break (finish_reason, usage),
            Some(Event::Failed(why)) => return Err(ApiError::internal(why)),
            None => {
                return Err(ApiError::unavailable(
                    "the engine stopped before the answer was complete",
                ))
            }
        }
    };
    let created = now_secs();
    let usage = UsageBody::from(usage);
    let finish_reason = finish_reason_str(reason);
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
                    content: text,
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
    fn chunk(&self, text: Option<String>, role: bool, finish: Option<FinishReason>) -> String {
        let finish_reason = finish.map(finish_reason_str);
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
/// receiver, which cancels the sequence.
pub(crate) fn stream(
    kind: Kind,
    id: String,
    g: Generation,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send {
    let chunker = Chunker {
        kind,
        id,
        model: g.model.clone(),
        created: now_secs(),
        highside: HighsideMeta {
            label: g.label.clone(),
            pii: g.pii.clone(),
        },
        banner: g.banner.then(|| format!("{}\n", g.label)),
    };
    let include_usage = g.include_usage;
    futures_util::stream::unfold(
        (g, chunker, Phase::Start),
        move |(mut g, c, phase)| async move {
            match phase {
                Phase::Ended => None,
                Phase::Start if c.kind == Kind::Chat => {
                    let first = c.chunk(Some(c.banner.clone().unwrap_or_default()), true, None);
                    Some((Ok(Bytes::from(first)), (g, c, Phase::Running)))
                }
                Phase::Start if c.banner.is_some() => {
                    let first = c.chunk(c.banner.clone(), false, None);
                    Some((Ok(Bytes::from(first)), (g, c, Phase::Running)))
                }
                Phase::Start | Phase::Running => {
                    let out = loop {
                        match g.events.recv().await {
                            Some(Event::Token { text, .. }) | Some(Event::Text(text)) => {
                                if !text.is_empty() {
                                    break c.chunk(Some(text), false, None);
                                }
                            }
                            Some(Event::Done {
                                finish_reason,
                                usage,
                            }) => {
                                let mut out = c.chunk(None, false, Some(finish_reason));
                                if c.kind == Kind::Completion {
                                    // Completion chunks carry text, not a delta: the final one is empty.
                                    out = c.chunk(Some(String::new()), false, Some(finish_reason));
                                }
                                if include_usage {
                                    out.push_str(&c.usage(usage));
                                }
                                out.push_str("data: [DONE]\n\n");
                                return Some((Ok(Bytes::from(out)), (g, c, Phase::Ended)));
                            }
                            Some(Event::Failed(why)) => {
                                let err = ApiError::internal(why);
                                return Some((
                                    Ok(Bytes::from(format!("data: {}\n\n", err.body()))),
                                    (g, c, Phase::Ended),
                                ));
                            }
                            None => {
                                let err = ApiError::unavailable(
                                    "the engine stopped before the answer was complete",
                                );
                                return Some((
                                    Ok(Bytes::from(format!("data: {}\n\n", err.body()))),
                                    (g, c, Phase::Ended),
                                ));
                            }
                        }
                    };
                    Some((Ok(Bytes::from(out)), (g, c, Phase::Running)))
                }
            }
        },
    )
}
