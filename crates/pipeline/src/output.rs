//! Scanning what a model generates before it leaves: [`Output`] sits between a generation's
//! events (engine or upstream) and every answer encoder, OpenAI's and Bedrock's alike.
//!
//! A model accredited above a request's label can write a marking above it (`(S)` in an
//! answer to an UNCLASSIFIED user); that text must not leave at the request's label. Output
//! is therefore released one line at a time: a line leaves only once it is complete (or ends
//! at a sentence break, so long paragraphs still stream) and the text it completes, with the
//! end of what was released before it (a marking may wrap), holds no marking the request's
//! label does not dominate and no unknown marking word. A line that does ends the generation:
//! it is withheld, the consumer gets `Event::Failed` and [`Output::take_refusal`] names it
//! (`output_label_exceeded`), and the engine or upstream is cancelled. What was sent before
//! was scanned and is at the request's label. A deployment's tool calls are scanned as they
//! arrive (before the `Done` that makes encoders read them) and kept for
//! [`Output::take_calls`].

use std::collections::VecDeque;
use std::sync::Arc;

use highside_engine::{Event, Failure};
use highside_inference::ToolCall;
use highside_label::{Detector, Folded, Label};
use highside_openai::tools::{new_call_id, valid_call_id};
use highside_openai::ApiError;
use tokio::sync::mpsc::UnboundedReceiver;

/// Folded context kept from released text, for markings that wrap across the release point
/// (a marking is at most 1,024 folded bytes, so its start stays in the context). Kept folded,
/// so characters that fold to nothing cannot push a marking's start out of it.
const CONTEXT: usize = 2048;

/// The finish reason a completion record gives a generation stopped by the output scan.
pub const EXCEEDED: &str = "output_label_exceeded";

/// A generation's events, scanned.
#[derive(Debug)]
pub struct Output {
    inner: UnboundedReceiver<Event>,
    scan: Scanner,
    queue: VecDeque<Event>,
    finished: bool,
    refusal: Option<Refused>,
    /// Tokens the engine (or pieces the upstream) generated, released or not.
    generated: u64,
    /// An event read before the scan began (the first output of an upstream, waited for).
    first: Option<Event>,
    /// A deployment's calls, scanned.
    calls: Vec<ToolCall>,
}

/// Why the scan stopped a generation.
#[derive(Debug, Clone)]
pub struct Refused {
    /// The label of what was withheld (the join of its markings), as a banner; empty for an
    /// unknown marking word.
    pub label: String,
    /// The client's error.
    pub error: ApiError,
}

#[derive(Debug)]
struct Scanner {
    detector: Arc<Detector>,
    /// The request's label: everything released is dominated by it.
    label: Label,
    /// The end of what was released, folded (context for wrapped markings), then what is
    /// being checked.
    tail: Folded,
    /// Generated, not yet released.
    pending: String,
}

impl Output {
    /// Scans `inner` against `label` with the monitor's detector.
    pub fn scanned(inner: UnboundedReceiver<Event>, detector: Arc<Detector>, label: Label) -> Self {
        Self {
            inner,
            generated: 0,
            first: None,
            calls: Vec::new(),
            scan: Scanner {
                detector,
                label,
                tail: Folded::empty(),
                pending: String::new(),
            },
            queue: VecDeque::new(),
            finished: false,
            refusal: None,
        }
    }

    /// The next event: text only once scanned, then the end.
    pub async fn recv(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.queue.pop_front() {
                return Some(e);
            }
            if self.finished {
                return None;
            }
            let event = match self.first.take() {
                Some(e) => Some(e),
                None => self.inner.recv().await,
            };
            if matches!(event, Some(Event::Token { .. } | Event::Text(_))) {
                self.generated += 1;
            }
            let scan = &mut self.scan;
            match event {
                Some(Event::Token { id, text }) => match scan.push(&text) {
                    // One event per token, so consumers count what was generated.
                    Ok(released) => return Some(Event::Token { id, text: released }),
                    Err(r) => return Some(self.refuse(*r)),
                },
                Some(Event::Text(text)) => match scan.push(&text) {
                    Ok(released) if released.is_empty() => {}
                    Ok(released) => return Some(Event::Text(released)),
                    Err(r) => return Some(self.refuse(*r)),
                },
                Some(done @ Event::Done { .. }) => match scan.finish() {
                    Ok(rest) => {
                        self.finished = true;
                        if rest.is_empty() {
                            return Some(done);
                        }
                        self.queue.push_back(done);
                        return Some(Event::Text(rest));
                    }
                    Err(r) => return Some(self.refuse(*r)),
                },
                Some(Event::ToolCalls(made)) => {
                    // The client sends the id back; one Highside would refuse is replaced.
                    let made = made.into_iter().map(|c| ToolCall {
                        id: if valid_call_id(&c.id) {
                            c.id
                        } else {
                            new_call_id()
                        },
                        ..c
                    });
                    for c in made {
                        if let Err(r) = scan.check_call(&c) {
                            return Some(self.refuse(*r));
                        }
                        self.calls.push(c);
                    }
                }
                // Every attempt precedes the first output, which the route's start waited
                // for: none reaches here, and one that did would carry no text.
                Some(Event::Attempt(_)) => {}
                Some(failed @ Event::Failed(_)) => {
                    self.finished = true;
                    return Some(failed);
                }
                None => {
                    self.finished = true;
                    return None;
                }
            }
        }
    }

    /// Puts back an event read before the scan began: it is scanned first.
    pub fn with_first(mut self, first: Event) -> Self {
        self.first = Some(first);
        self
    }

    /// The calls a deployment returned whole, scanned (empty for an embedded model, whose
    /// calls are parsed from its text); read once its `Done` has been received.
    pub fn take_calls(&mut self) -> Vec<ToolCall> {
        std::mem::take(&mut self.calls)
    }

    /// What was generated so far, released or withheld (tokens, or an upstream's pieces).
    pub fn generated(&self) -> u64 {
        self.generated
    }

    /// Why the generation was stopped, once [`Output::recv`] has answered `Event::Failed` for
    /// a withheld line; `None` for any other failure.
    pub fn take_refusal(&mut self) -> Option<Refused> {
        self.refusal.take()
    }

    fn refuse(&mut self, r: Refused) -> Event {
        // Nothing more is read: the engine frees the sequence, an upstream is disconnected.
        self.inner.close();
        self.finished = true;
        let why = r.error.message.clone();
        tracing::warn!(withheld = %r.label, "output scan: generated text above the request's label withheld");
        metrics::counter!("highside_output_withheld_total").increment(1);
        self.refusal = Some(r);
        Event::Failed(Failure::new(why))
    }
}

/// The error a failed generation is answered with, once its completion record is durable:
/// the refusal of withheld output (`output_label_exceeded`), or an internal error.
pub async fn fail(
    events: &mut Output,
    audit: crate::audit::CompletionAudit,
    why: Failure,
) -> ApiError {
    let why = why.message;
    match events.take_refusal() {
        Some(r) => {
            audit.withheld(r.label, events.generated()).await;
            r.error
        }
        None => {
            audit.abort().await;
            ApiError::internal(why)
        }
    }
}

/// Where text may be released: after the last line or sentence break (no marking contains
/// one, so none can span it; raw ASCII bytes fold to themselves).
fn release_point(pending: &str) -> usize {
    pending
        .as_bytes()
        .iter()
        .rposition(|&c| matches!(c, b'\n' | b'.' | b'!' | b'?' | b';' | b':' | b'"'))
        .map_or(0, |i| i + 1)
}

impl Scanner {
    /// Adds generated text; returns what may leave now.
    fn push(&mut self, text: &str) -> Result<String, Box<Refused>> {
        // The last break is the last of the new text's, or one pending already held back, so
        // only the new text is searched: linear, however long a line without punctuation grows.
        let before = self.pending.len();
        self.pending.push_str(text);
        let cut = match release_point(&self.pending[before..]) {
            0 => return Ok(String::new()),
            at => before + at,
        };
        // Text the decoded reading has not read yet (inside an escape, reference, tag or
        // comment that may still close) stays pending, with what follows it, until it has:
        // releasing it after the plain check alone would let `<!-- \u0053ECRET` out. What is
        // held is bounded by the fold's windows (4 KiB for a comment), after which it is read.
        let mut tail = self.tail.clone();
        tail.push_str(&self.pending[..cut]);
        if tail.holds_back() {
            return Ok(String::new());
        }
        let rest = self.pending.split_off(cut);
        let ready = std::mem::replace(&mut self.pending, rest);
        self.tail = tail;
        self.check_tail(false)?;
        Ok(ready)
    }

    /// The rest, at the end of the generation.
    fn finish(&mut self) -> Result<String, Box<Refused>> {
        let ready = std::mem::take(&mut self.pending);
        self.check(&ready, true)?;
        Ok(ready)
    }

    /// Checks `ready` in the context of what was released before it (`last`: nothing follows
    /// it), and keeps it as context. A refusal ends the generation, so the context is only
    /// read again once `ready` is released.
    fn check(&mut self, ready: &str, last: bool) -> Result<(), Box<Refused>> {
        self.tail.push_str(ready);
        self.check_tail(last)
    }

    /// Checks the context with what was just appended to it (see [`Scanner::check`]).
    fn check_tail(&mut self, last: bool) -> Result<(), Box<Refused>> {
        if last {
            self.tail.flush();
        }
        let found = self
            .detector
            .label_of_folded([&self.tail])
            .map_err(|u| unknown_word(&u.word))?;
        self.tail.keep_end(CONTEXT);
        self.judge(found)
    }

    /// Checks a deployment's call: its id, name, arguments and every string in them.
    fn check_call(&self, c: &ToolCall) -> Result<(), Box<Refused>> {
        let mut texts = vec![c.id.clone(), c.name.clone(), c.arguments.clone()];
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&c.arguments) {
            highside_openai::tools::json_strings(&v, &mut texts);
        }
        texts.iter().try_for_each(|t| self.check_alone(t))
    }

    fn check_alone(&self, text: &str) -> Result<(), Box<Refused>> {
        let found = self
            .detector
            .label_of([text])
            .map_err(|u| unknown_word(&u.word))?;
        self.judge(found)
    }

    /// Refuses a label of released text the request's label does not dominate.
    fn judge(&self, found: Option<Label>) -> Result<(), Box<Refused>> {
        match found {
            Some(found) if !self.label.dominates(&found) => Err(Box::new(Refused {
                label: self.detector.encodings().banner(&found),
                error: exceeded(
                    "the model's output carries a marking above this request's label; the rest of the answer was withheld".to_owned(),
                ),
            })),
            _ => Ok(()),
        }
    }
}

/// The refusal of output holding a marking with a word the encodings do not know.
fn unknown_word(word: &str) -> Box<Refused> {
    Box::new(Refused {
        label: String::new(),
        error: exceeded(format!(
            "the model's output contains a marking with '{word}', which is not a word of this enclave's label encodings; the rest of the answer was withheld"
        )),
    })
}

/// The client's error for withheld output: a denial by the reference monitor.
fn exceeded(message: String) -> ApiError {
    ApiError {
        code: Some(EXCEEDED),
        ..ApiError::forbidden(format!("denied by the reference monitor: {message}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use highside_inference::{FinishReason, Usage};

    fn output(label: &str, events: Vec<Event>) -> Output {
        let e = highside_label::Encodings::builtin();
        let d = Arc::new(Detector::new(&e));
        let l = e.parse(label).unwrap();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        for ev in events {
            tx.send(ev).unwrap();
        }
        Output::scanned(rx, d, l)
    }

    fn tok(t: &str) -> Event {
        Event::Token {
            id: 1,
            text: t.to_owned(),
        }
    }

    fn done() -> Event {
        Event::Done {
            finish_reason: FinishReason::Stop,
            usage: Usage {
                prompt_tokens: 1,
                completion_tokens: 1,
            },
        }
    }

    async fn drain(o: &mut Output) -> (String, Option<Refused>) {
        let mut text = String::new();
        while let Some(e) = o.recv().await {
            match e {
                Event::Token { text: t, .. } | Event::Text(t) => text.push_str(&t),
                Event::Done { .. } => break,
                Event::Failed(_) => return (text, o.take_refusal()),
                other => panic!("the scan does not yield {other:?}"),
            }
        }
        (text, None)
    }

    #[tokio::test]
    async fn a_marked_line_above_the_label_is_withheld() {
        let mut o = output(
            "UNCLASSIFIED",
            vec![
                tok("Here is"),
                tok(" the answer.\n"),
                tok("(S) The"),
                tok(" plan\n"),
                done(),
            ],
        );
        let (sent, refused) = drain(&mut o).await;
        assert_eq!(sent, "Here is the answer.\n");
        let r = refused.expect("withheld");
        assert_eq!(r.label, "SECRET");
        assert_eq!(r.error.code, Some(EXCEEDED));
    }

    #[tokio::test]
    async fn markings_at_or_below_the_label_pass_and_one_event_per_token() {
        let mut o = output(
            "SECRET",
            vec![tok("(S) fine"), tok("\nok"), tok(" end"), done()],
        );
        let mut n = 0;
        let mut text = String::new();
        while let Some(e) = o.recv().await {
            match e {
                Event::Token { text: t, .. } => {
                    n += 1;
                    text.push_str(&t);
                }
                Event::Text(t) => text.push_str(&t),
                Event::Done { .. } => break,
                Event::Failed(w) => panic!("{w:?}"),
                other => panic!("the scan does not yield {other:?}"),
            }
        }
        assert_eq!((n, text.as_str()), (3, "(S) fine\nok end"));
    }

    fn call(id: &str, arguments: &str) -> ToolCall {
        ToolCall {
            id: id.into(),
            name: "lookup".into(),
            arguments: arguments.into(),
        }
    }

    #[tokio::test]
    async fn a_deployments_calls_are_scanned_kept_and_their_ids_made_safe() {
        let calls = vec![
            call("call_1", r#"{"q": "weather"}"#),
            call("bad id\n", "{}"),
        ];
        let mut o = output(
            "UNCLASSIFIED",
            vec![Event::Attempt("d1".into()), Event::ToolCalls(calls), done()],
        );
        let (sent, refused) = drain(&mut o).await;
        assert_eq!((sent.as_str(), refused.is_none()), ("", true));
        let kept = o.take_calls();
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[0].id, "call_1");
        assert_ne!(kept[1].id, "bad id\n");
        assert!(valid_call_id(&kept[1].id));
    }

    #[tokio::test]
    async fn a_deployments_call_above_the_label_ends_the_generation() {
        let calls = vec![call("call_1", r#"{"q": "TOP SECRET//SI the plan"}"#)];
        let mut o = output("SECRET", vec![Event::ToolCalls(calls), done()]);
        let (_, refused) = drain(&mut o).await;
        assert_eq!(refused.expect("withheld").label, "TOP SECRET//SI");
        assert!(o.take_calls().is_empty());
    }

    #[tokio::test]
    async fn a_marking_wrapped_after_release_is_still_caught() {
        let mut o = output("SECRET", vec![tok("SECRET//\n"), tok("NOFORN\n"), done()]);
        let (sent, refused) = drain(&mut o).await;
        assert_eq!(sent, "SECRET//\n");
        assert_eq!(refused.unwrap().label, "SECRET//NOFORN");
    }

    #[tokio::test]
    async fn the_last_line_is_scanned_at_the_end() {
        let mut o = output("UNCLASSIFIED", vec![tok("ok\nTOP SECRET"), done()]);
        let (sent, refused) = drain(&mut o).await;
        assert_eq!(sent, "ok\n");
        assert!(refused.is_some());
    }

    #[tokio::test]
    async fn a_marking_completed_after_a_long_line_keeps_its_start_in_context() {
        let long = format!("{}\n", "prose ".repeat(900));
        let mut o = output(
            "TOP SECRET//SI",
            vec![
                tok(&long),
                tok("TOP SECRET//SI//\n"),
                tok("TK//NOFORN\n"),
                done(),
            ],
        );
        let (sent, refused) = drain(&mut o).await;
        assert!(sent.ends_with("TOP SECRET//SI//\n"));
        assert_eq!(refused.unwrap().label, "TOP SECRET//SI/TK//NOFORN");
    }

    #[tokio::test]
    async fn characters_that_fold_to_nothing_do_not_push_a_marking_out_of_context() {
        // 3 bytes each, folded away: a raw-byte context would have lost the `TOP`.
        let padded = format!("TOP{}\n", "\u{200b}".repeat(4000));
        let mut o = output(
            "SECRET//SI",
            vec![tok(&padded), tok("SECRET//SI\n"), done()],
        );
        let (sent, refused) = drain(&mut o).await;
        assert_eq!(sent, padded);
        assert_eq!(refused.unwrap().label, "TOP SECRET//SI");
    }

    #[tokio::test]
    async fn markup_cut_by_a_release_still_reads_whole() {
        // The comment holds a sentence break, but nothing inside it leaves before it closes.
        let mut o = output(
            "SECRET",
            vec![tok("TOP<!-- a. "), tok("b -->SECRET\n"), done()],
        );
        let (sent, refused) = drain(&mut o).await;
        assert_eq!(sent, "");
        assert_eq!(refused.unwrap().label, "TOP SECRET");
    }

    #[tokio::test]
    async fn text_the_decoded_reading_has_not_read_does_not_leave() {
        // The escapes inside the comment are read only once it closes; the sentence break
        // inside it must not release them after the plain check alone.
        let mut o = output(
            "UNCLASSIFIED",
            vec![
                tok("ok.\n"),
                tok(r"<!-- \u0053\u0045\u0043\u0052\u0045\u0054//NOFORN. x"),
                tok(" -->\n"),
                done(),
            ],
        );
        let (sent, refused) = drain(&mut o).await;
        assert_eq!(sent, "ok.\n");
        assert_eq!(refused.unwrap().label, "SECRET//NOFORN");
        // A tag that never closes within its window is read as text and released.
        let open = format!("<a {}.\nend", "x".repeat(300));
        let mut o = output("UNCLASSIFIED", vec![tok(&open), done()]);
        let (sent, refused) = drain(&mut o).await;
        assert!(refused.is_none());
        assert_eq!(sent, open);
    }

    #[test]
    fn long_lines_release_at_sentence_breaks() {
        assert_eq!(release_point("One. Two"), 4);
        assert_eq!(release_point("a\nb. c"), 4);
        assert_eq!(release_point("no break"), 0);
    }
}
