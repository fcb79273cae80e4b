//! The one loop over an admitted generation's output, shared by every surface: text as the
//! output scan releases it (hashed into the completion record as it goes), held back while
//! tools are offered so calls can be found in it, then the end, returned only once the
//! completion record (and the charge's settlement) is durable. A surface renders each
//! [`Piece`] in its own wire format and never touches the record itself.

use highside_engine::Event;
use highside_inference::{FinishReason, ToolCall, Usage};
use highside_openai::tools::CallSource;
use highside_openai::ApiError;

use crate::audit::CompletionAudit;
use crate::output::Output;

/// What a surface sends next.
#[derive(Debug)]
pub enum Piece {
    /// Released text, to send now (never empty).
    Text(String),
    /// The end, after the completion record is durable.
    End {
        /// With tools offered: the text that was held back (before the calls, when there
        /// are calls).
        held: Option<String>,
        /// The calls the model made (parsed from an embedded model's text, or a
        /// deployment's, whole).
        calls: Vec<ToolCall>,
        /// Why it ended.
        finish: FinishReason,
        /// Token counts.
        usage: Usage,
    },
    /// It failed, and that is recorded (durably): the output scan withheld text above the
    /// request's label (`output_label_exceeded`), the backend failed, or the record could not
    /// be made durable.
    Failed(ApiError),
}

/// A whole answer, for surfaces that answer in one body.
#[derive(Debug, Clone, PartialEq)]
pub struct Whole {
    /// All of its text: the banner line first when one was sent, and, when there are calls,
    /// the text before them.
    pub text: String,
    /// The calls the model made.
    pub calls: Vec<ToolCall>,
    /// Why it ended.
    pub finish: FinishReason,
    /// Token counts.
    pub usage: Usage,
}

/// An admitted generation's output with its completion record.
#[derive(Debug)]
pub struct Answer {
    events: Output,
    /// Taken when the record is written; `None` once the answer has ended.
    audit: Option<CompletionAudit>,
    /// With tools offered: how calls are found, and the text held back so far.
    held: Option<(CallSource, String)>,
}

impl Answer {
    /// The output of a generation whose record is `audit`; with `tools`, text is held until
    /// the end to find the calls in it.
    pub fn new(events: Output, audit: CompletionAudit, tools: Option<CallSource>) -> Self {
        Self {
            events,
            audit: Some(audit),
            held: tools.map(|t| (t, String::new())),
        }
    }

    /// Text a surface sends beside the generation (a banner line): part of the recorded
    /// output.
    pub fn sent(&mut self, text: &str) {
        if let Some(a) = &mut self.audit {
            a.output(text);
        }
    }

    /// Waits for the whole answer, starting it with `banner` (recorded as sent); returns
    /// once the completion record is durable, or the failure.
    pub async fn whole(mut self, banner: Option<String>) -> Result<Whole, ApiError> {
        let mut text = String::new();
        if let Some(b) = banner {
            self.sent(&b);
            text = b;
        }
        loop {
            match self.next().await {
                Some(Piece::Text(t)) => text.push_str(&t),
                Some(Piece::End {
                    held,
                    calls,
                    finish,
                    usage,
                }) => {
                    text.push_str(&held.unwrap_or_default());
                    return Ok(Whole {
                        text,
                        calls,
                        finish,
                        usage,
                    });
                }
                Some(Piece::Failed(e)) => return Err(e),
                None => return Err(ApiError::internal("the answer ended twice")),
            }
        }
    }

    /// The next piece; `None` once the end or a failure has been returned.
    pub async fn next(&mut self) -> Option<Piece> {
        self.audit.as_ref()?;
        loop {
            match self.events.recv().await {
                Some(Event::Token { text, .. }) | Some(Event::Text(text)) => {
                    if text.is_empty() {
                        continue;
                    }
                    if let Some(a) = &mut self.audit {
                        a.output(&text);
                    }
                    match &mut self.held {
                        Some((_, held)) => held.push_str(&text),
                        None => return Some(Piece::Text(text)),
                    }
                }
                // The scan keeps a deployment's calls and attempts; it never yields them.
                Some(Event::ToolCalls(_) | Event::Attempt(_)) => {}
                Some(Event::Done {
                    finish_reason,
                    usage,
                }) => {
                    let audit = self.audit.take()?;
                    // The end leaves only once its completion record is durable.
                    if let Err(e) = audit.finish_usage(finish_reason, usage).await {
                        return Some(Piece::Failed(e));
                    }
                    let returned = self.events.take_calls();
                    let (held, calls) = match self.held.take() {
                        None => (None, Vec::new()),
                        Some((source, text)) => match source.calls(&text, returned) {
                            Some((before, calls)) => (Some(before), calls),
                            None => (Some(text), Vec::new()),
                        },
                    };
                    return Some(Piece::End {
                        held,
                        calls,
                        finish: finish_reason,
                        usage,
                    });
                }
                Some(Event::Failed(why)) => {
                    let audit = self.audit.take()?;
                    return Some(Piece::Failed(
                        crate::output::fail(&mut self.events, audit, why).await,
                    ));
                }
                None => {
                    let audit = self.audit.take()?;
                    audit.abort().await;
                    return Some(Piece::Failed(ApiError::unavailable(
                        "the engine stopped before the answer was complete",
                    )));
                }
            }
        }
    }
}
