//! External inference servers. A [`Deployment`] is one operator-configured upstream (URL,
//! model, accreditation label, credential, timeouts, a concurrency cap, a circuit breaker and
//! the result of its last health check); [`run`] sends one chat request along a route's
//! candidates: attempts with backoff on retryable errors, then the next candidate, never
//! after output has reached the client. The caller decides which candidates a request may
//! use (accreditation); this crate only never connects anywhere else.
#![forbid(unsafe_code)]

pub mod anthropic;
pub mod openai;
pub mod sse;

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use highside_label::Label;
use tokio::sync::mpsc::UnboundedSender;

/// Largest upstream answer or stream event read.
const MAX_ANSWER_BYTES: usize = 16 << 20;
/// Consecutive failures that open a deployment's circuit.
const BREAKER_FAILURES: u32 = 3;
/// How long an open circuit keeps a deployment out of rotation before one trial request.
const BREAKER_COOLDOWN: Duration = Duration::from_secs(10);

use highside_inference::{
    Event, FinishReason, Message, Protocol, ToolCall, ToolChoice, ToolDef, Usage,
};

/// A chat request in the terms every protocol shares.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    /// The conversation.
    pub messages: Vec<Message>,
    /// Most tokens to generate; `None` leaves it to the upstream.
    pub max_tokens: Option<u32>,
    /// Sampling temperature.
    pub temperature: Option<f32>,
    /// Nucleus sampling.
    pub top_p: Option<f32>,
    /// Stop strings.
    pub stop: Vec<String>,
    /// Sampling seed.
    pub seed: Option<u32>,
    /// Stream the upstream's answer through as it comes.
    pub stream: bool,
    /// Functions offered; empty for none.
    pub tools: Vec<ToolDef>,
    /// How they must be used (ignored without tools).
    pub tool_choice: ToolChoice,
    /// Whether the model may make several calls at once; `None` leaves it to the upstream.
    pub parallel_tool_calls: Option<bool>,
}

/// One parsed piece of an upstream stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chunk {
    /// Text, pieces of tool calls, a finish reason and/or usage.
    Data {
        /// New text.
        text: Option<String>,
        /// Pieces of calls.
        calls: Vec<CallDelta>,
        /// Set on the last content chunk.
        finish: Option<FinishReason>,
        /// Counts, when the upstream reports them.
        usage: Option<Usage>,
    },
    /// The stream's end marker.
    End,
}

/// A piece of a streamed call: the first piece of a call has its id and name, and every
/// piece may add to its arguments.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CallDelta {
    /// Which call of the answer it belongs to; `None` from a server that sends each call
    /// whole without one (a piece with an id then starts a new call).
    pub index: Option<u64>,
    /// Its id, on the first piece.
    pub id: Option<String>,
    /// Its function, on the first piece.
    pub name: Option<String>,
    /// More of its arguments' JSON text.
    pub arguments: String,
}

/// A whole (non-streamed) answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Its text.
    pub text: String,
    /// The calls it made.
    pub calls: Vec<ToolCall>,
    /// Why it ended.
    pub finish: FinishReason,
    /// Token counts, when the upstream gave them.
    pub usage: Option<Usage>,
}

/// The calls of a stream, assembled from their pieces.
#[derive(Debug, Default)]
pub struct CallAssembly {
    calls: std::collections::BTreeMap<u64, ToolCall>,
    bytes: usize,
}

impl CallAssembly {
    /// Adds one piece.
    pub fn add(&mut self, d: CallDelta) -> Result<(), ProtocolError> {
        let last = self.calls.keys().next_back().copied();
        let index = match (d.index, &d.id) {
            (Some(i), _) => i,
            (None, Some(_)) => last.map_or(0, |l| l.saturating_add(1)),
            (None, None) => last.unwrap_or(0),
        };
        if self.calls.len() >= MAX_CALLS && !self.calls.contains_key(&index) {
            return Err(ProtocolError("the answer makes too many tool calls"));
        }
        // One bound for all of an answer's calls together.
        self.bytes += d.arguments.len();
        if self.bytes > MAX_ANSWER_BYTES {
            return Err(ProtocolError("the answer's tool calls are too long"));
        }
        let call = self.calls.entry(index).or_default();
        if let Some(id) = d.id.filter(|i| !i.is_empty()) {
            call.id = id;
        }
        if let Some(name) = d.name.filter(|n| !n.is_empty()) {
            call.name = name;
        }
        call.arguments.push_str(&d.arguments);
        Ok(())
    }

    /// The calls in order, each checked against the tools `req` offered (see
    /// [`checked_calls`]).
    pub fn finish(
        self,
        req: &ChatRequest,
        finish: FinishReason,
    ) -> Result<Vec<ToolCall>, ProtocolError> {
        checked_calls(self.calls.into_values().collect(), req, finish)
    }
}

/// Most calls one answer may make.
const MAX_CALLS: usize = 128;

/// `calls` if each names an offered function and has a JSON object for arguments (empty
/// arguments are `{}`). An upstream that calls something never offered, or sends arguments
/// that are not an object, is not speaking its protocol. An answer cut off by `max_tokens`
/// (`finish` is `Length`) may end inside a call's arguments: those pass as they are, and the
/// answer says `length`, as OpenAI's do.
pub fn checked_calls(
    mut calls: Vec<ToolCall>,
    req: &ChatRequest,
    finish: FinishReason,
) -> Result<Vec<ToolCall>, ProtocolError> {
    if calls.len() > MAX_CALLS {
        return Err(ProtocolError("the answer makes too many tool calls"));
    }
    for c in &mut calls {
        if !req.tools.iter().any(|t| t.name == c.name) {
            return Err(ProtocolError(
                "the answer calls a function that was not offered",
            ));
        }
        if c.arguments.trim().is_empty() && finish != FinishReason::Length {
            c.arguments = "{}".into();
        }
        if finish == FinishReason::Length {
            continue;
        }
        let args: serde_json::Value = serde_json::from_str(&c.arguments)
            .map_err(|_| ProtocolError("a tool call's arguments are not JSON"))?;
        if !args.is_object() {
            return Err(ProtocolError(
                "a tool call's arguments are not a JSON object",
            ));
        }
    }
    Ok(calls)
}

/// The upstream said something that is not its protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ProtocolError(pub &'static str);

/// An upstream's credential. Debug and Display redact it.
#[derive(Clone)]
pub struct Credential(String);

impl Credential {
    /// Wraps a credential read from a file or environment variable (surrounding whitespace
    /// dropped).
    pub fn new(secret: &str) -> Self {
        Self(secret.trim().to_owned())
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credential([REDACTED])")
    }
}

/// A failed call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CallError {
    /// What went wrong (never the credential).
    pub message: String,
    /// The upstream's HTTP status, if it answered.
    pub status: Option<u16>,
    /// Worth another attempt (connection, timeout, 429, 5xx, a broken stream).
    pub retryable: bool,
    /// Output already went to the client: no other attempt may follow.
    pub emitted: bool,
}

impl CallError {
    fn retry(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            status: None,
            retryable: true,
            emitted: false,
        }
    }
}

/// What a deployment is, as the operator configured it.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Unique name.
    pub name: String,
    /// Wire protocol.
    pub protocol: Protocol,
    /// Base URL.
    pub url: String,
    /// The upstream's model name.
    pub model: String,
    /// Accreditation.
    pub label: Label,
    /// Its banner, for records.
    pub banner: String,
    /// Credential, if any.
    pub credential: Option<Credential>,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Whole-request timeout.
    pub timeout: Duration,
    /// Requests in flight at once.
    pub max_concurrency: u32,
    /// Context window: the reservation of a request without `max_tokens`.
    pub context_length: u32,
}

/// Why a deployment could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("deployment '{name}': {message}")]
pub struct SetupError {
    /// The deployment.
    pub name: String,
    /// What failed.
    pub message: String,
}

#[derive(Debug, Default)]
struct Breaker {
    failures: u32,
    open_until: Option<Instant>,
}

/// One upstream, ready to call.
#[derive(Debug)]
pub struct Deployment {
    settings: Settings,
    client: reqwest::Client,
    permits: tokio::sync::Semaphore,
    breaker: Mutex<Breaker>,
    healthy: AtomicBool,
}

impl Deployment {
    /// A client for `settings` (no connection is made yet).
    pub fn new(settings: Settings) -> Result<Self, SetupError> {
        let client = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.timeout)
            // Redirects could take a request somewhere the operator never named.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| SetupError {
                name: settings.name.clone(),
                message: e.to_string(),
            })?;
        Ok(Self {
            permits: tokio::sync::Semaphore::new(settings.max_concurrency as usize),
            settings,
            client,
            breaker: Mutex::new(Breaker::default()),
            healthy: AtomicBool::new(true),
        })
    }

    /// Its configuration.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Whether it takes requests now: healthy at the last check and its circuit not open
    /// (an open circuit lets one trial through after its cooldown).
    pub fn available(&self) -> bool {
        let open = self
            .breaker
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .open_until
            .is_some_and(|t| Instant::now() < t);
        !open && self.healthy.load(Ordering::Relaxed)
    }

    fn record(&self, ok: bool) {
        let mut b = self.breaker.lock().unwrap_or_else(|p| p.into_inner());
        if ok {
            *b = Breaker::default();
        } else {
            b.failures += 1;
            if b.failures >= BREAKER_FAILURES {
                if b.open_until.is_none_or(|t| Instant::now() >= t) {
                    tracing::warn!(deployment = %self.settings.name, failures = b.failures, "circuit open");
                }
                b.open_until = Some(Instant::now() + BREAKER_COOLDOWN);
            }
        }
    }

    fn request(&self, path: &str) -> reqwest::RequestBuilder {
        let url = format!("{}{path}", self.settings.url.trim_end_matches('/'));
        let mut r = self.client.post(url);
        r = match (self.settings.protocol, &self.settings.credential) {
            (Protocol::Openai, Some(c)) => r.bearer_auth(&c.0),
            (Protocol::Anthropic, Some(c)) => r.header("x-api-key", &c.0),
            (_, None) => r,
        };
        if self.settings.protocol == Protocol::Anthropic {
            r = r.header("anthropic-version", anthropic::VERSION);
        }
        r
    }

    /// Sends `body` to `path`: the answer if it is a success, else the error (a transport
    /// failure, or the HTTP status; 429 and 5xx are worth another attempt).
    async fn post(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<reqwest::Response, CallError> {
        let name = &self.settings.name;
        let res = self.request(path).json(body).send().await.map_err(|e| {
            CallError::retry(format!("cannot reach deployment '{name}': {}", kind_of(&e)))
        })?;
        let status = res.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(res);
        }
        // The body may echo the prompt or a credential: only its length and digest are
        // logged (enough to match it against the upstream's own logs), and it never reaches
        // the client.
        let text = read_limited(res, 64 * 1024).await.unwrap_or_default();
        tracing::info!(
            deployment = %name,
            status,
            body_bytes = text.len(),
            body_sha256 = %hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&text)),
            "upstream error"
        );
        Err(CallError {
            message: format!("deployment '{name}' answered HTTP {status}"),
            status: Some(status),
            retryable: status == 429 || status >= 500,
            emitted: false,
        })
    }

    /// Active health check: any answer below 500 from the model listing counts as up.
    pub async fn probe(&self) -> bool {
        let path = match self.settings.protocol {
            Protocol::Openai => "/models",
            Protocol::Anthropic => "/v1/models",
        };
        let url = format!("{}{path}", self.settings.url.trim_end_matches('/'));
        let mut r = self
            .client
            .get(url)
            .timeout(self.settings.connect_timeout * 2);
        r = match (self.settings.protocol, &self.settings.credential) {
            (Protocol::Openai, Some(c)) => r.bearer_auth(&c.0),
            (Protocol::Anthropic, Some(c)) => r
                .header("x-api-key", &c.0)
                .header("anthropic-version", anthropic::VERSION),
            (_, None) => r,
        };
        let up = r.send().await.is_ok_and(|res| res.status().as_u16() < 500);
        let was = self.healthy.swap(up, Ordering::Relaxed);
        if was != up {
            tracing::warn!(deployment = %self.settings.name, healthy = up, "health changed");
        }
        up
    }

    /// A place under the concurrency cap. A deployment at its cap is skipped after the connect
    /// timeout rather than waited on for ever.
    async fn permit(&self) -> Result<tokio::sync::SemaphorePermit<'_>, CallError> {
        tokio::time::timeout(self.settings.connect_timeout, self.permits.acquire())
            .await
            .map_err(|_| {
                CallError::retry(format!(
                    "deployment '{}' is at its concurrency limit",
                    self.settings.name
                ))
            })?
            .map_err(|_| CallError::retry("the deployment is shutting down"))
    }

    /// Embeds `inputs` (OpenAI `POST {url}/embeddings`, floats): the vectors in input order
    /// and the upstream's token count, if it gave one.
    pub async fn embed(
        &self,
        inputs: &[String],
    ) -> Result<(Vec<Vec<f32>>, Option<u64>), CallError> {
        let s = &self.settings;
        if s.protocol != Protocol::Openai {
            return Err(CallError {
                message: format!("deployment '{}' serves no embeddings", s.name),
                status: Some(400),
                retryable: false,
                emitted: false,
            });
        }
        let _permit = self.permit().await?;
        let body =
            serde_json::json!({"model": s.model, "input": inputs, "encoding_format": "float"});
        let result = async {
            let res = self.post("/embeddings", &body).await?;
            let bytes = read_limited(res, MAX_ANSWER_BYTES)
                .await
                .map_err(|e| CallError::retry(format!("deployment '{}': {e}", s.name)))?;
            openai::parse_embeddings(&bytes, inputs.len())
                .map_err(|e| CallError::retry(format!("deployment '{}': {e}", s.name)))
        }
        .await;
        self.record(result.as_ref().map_or_else(|e| !e.retryable, |_| true));
        result
    }

    /// Sends one chat request and streams its output to `out`.
    pub async fn chat(
        &self,
        req: &ChatRequest,
        out: &UnboundedSender<Event>,
    ) -> Result<(), CallError> {
        let _permit = self.permit().await?;
        let result = self.call(req, out).await;
        // Only the upstream's own failures count against its circuit, not a 400.
        self.record(result.as_ref().map_or_else(|e| !e.retryable, |_| true));
        result
    }

    async fn call(&self, req: &ChatRequest, out: &UnboundedSender<Event>) -> Result<(), CallError> {
        let s = &self.settings;
        let (path, body) = match s.protocol {
            Protocol::Openai => ("/chat/completions", openai::body(&s.model, req)),
            Protocol::Anthropic => (
                "/v1/messages",
                anthropic::body(&s.model, req, s.context_length.min(4096)).map_err(|e| {
                    CallError {
                        message: format!("deployment '{}' cannot take this request: {e}", s.name),
                        status: Some(400),
                        retryable: false,
                        emitted: false,
                    }
                })?,
            ),
        };
        let res = self.post(path, &body).await?;
        let prompt_chars: usize = req
            .messages
            .iter()
            .map(|m| {
                m.content.chars().count()
                    + m.tool_calls
                        .iter()
                        .map(|c| c.arguments.chars().count())
                        .sum::<usize>()
            })
            .sum();
        if req.stream {
            self.pump(res, req, out, prompt_chars).await
        } else {
            let bytes = read_limited(res, MAX_ANSWER_BYTES)
                .await
                .map_err(|e| CallError::retry(format!("deployment '{}': {e}", s.name)))?;
            let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| {
                CallError::retry(format!(
                    "deployment '{}' answered with invalid JSON",
                    s.name
                ))
            })?;
            let answer = match s.protocol {
                Protocol::Openai => openai::parse_response(&v),
                Protocol::Anthropic => anthropic::parse_response(&v),
            }
            .map_err(|e| CallError::retry(format!("deployment '{}': {e}", s.name)))?;
            let answer = Answer {
                calls: checked_calls(answer.calls, req, answer.finish)
                    .map_err(|e| bad_calls(&s.name, &e, false))?,
                ..answer
            };
            let usage = answer.usage.unwrap_or_else(|| Usage {
                prompt_tokens: estimate(prompt_chars),
                completion_tokens: estimate(
                    answer.text.chars().count() + call_chars(&answer.calls),
                ),
            });
            let _ = out.send(Event::Text(answer.text));
            if !answer.calls.is_empty() {
                let _ = out.send(Event::ToolCalls(answer.calls));
            }
            tracing::debug!(deployment = %s.name, "upstream answered");
            let _ = out.send(Event::Done {
                finish_reason: answer.finish,
                usage,
            });
            Ok(())
        }
    }

    /// Passes a stream through, counting chunks where the upstream reports no usage.
    async fn pump(
        &self,
        res: reqwest::Response,
        req: &ChatRequest,
        out: &UnboundedSender<Event>,
        prompt_chars: usize,
    ) -> Result<(), CallError> {
        let s = &self.settings;
        let mut decoder = sse::SseDecoder::new(1 << 20);
        // Calls are passed on whole, at the end: their arguments arrive in pieces.
        let mut assembly = CallAssembly::default();
        let mut body = res.bytes_stream();
        let (mut emitted, mut chunks, mut text_bytes) = (false, 0u64, 0usize);
        let (mut finish, mut usage) = (None, None::<Usage>);
        let broken = |emitted: bool, what: String| CallError {
            message: format!("deployment '{}': {what}", s.name),
            status: None,
            retryable: true,
            emitted,
        };
        loop {
            let Some(piece) = body.next().await else {
                return Err(broken(
                    emitted,
                    "the stream ended before its end marker".into(),
                ));
            };
            let piece =
                piece.map_err(|e| broken(emitted, format!("the stream broke: {}", kind_of(&e))))?;
            for ev in decoder
                .feed(&piece)
                .map_err(|e| broken(emitted, e.to_string()))?
            {
                let chunk = match s.protocol {
                    Protocol::Openai => openai::parse_chunk(&ev.data),
                    Protocol::Anthropic => anthropic::parse_event(ev.event.as_deref(), &ev.data),
                }
                .map_err(|e| broken(emitted, e.to_string()))?;
                match chunk {
                    Chunk::Data {
                        text,
                        calls,
                        finish: f,
                        usage: u,
                    } => {
                        for d in calls {
                            assembly
                                .add(d)
                                .map_err(|e| bad_calls(&s.name, &e, emitted))?;
                        }
                        if let Some(t) = text {
                            chunks += 1;
                            text_bytes += t.len();
                            if text_bytes > MAX_ANSWER_BYTES {
                                return Err(broken(emitted, "the answer is too long".into()));
                            }
                            emitted = true;
                            if out.send(Event::Text(t)).is_err() {
                                // The client went away: stop reading, which closes the
                                // upstream connection and cancels its generation.
                                return Ok(());
                            }
                        }
                        finish = f.or(finish);
                        if let Some(u) = u {
                            let prev = usage.unwrap_or_default();
                            usage = Some(Usage {
                                prompt_tokens: prev.prompt_tokens.max(u.prompt_tokens),
                                completion_tokens: prev.completion_tokens.max(u.completion_tokens),
                            });
                        }
                    }
                    Chunk::End => {
                        let calls = std::mem::take(&mut assembly)
                            .finish(req, finish.unwrap_or(FinishReason::Stop))
                            .map_err(|e| bad_calls(&s.name, &e, emitted))?;
                        let counted = Usage {
                            prompt_tokens: estimate(prompt_chars),
                            completion_tokens: chunks + estimate(call_chars(&calls)),
                        };
                        if !calls.is_empty() {
                            let _ = out.send(Event::ToolCalls(calls));
                        }
                        let usage = match usage {
                            Some(u) if u.prompt_tokens > 0 => u,
                            Some(u) => Usage {
                                prompt_tokens: counted.prompt_tokens,
                                ..u
                            },
                            None => counted,
                        };
                        tracing::debug!(deployment = %s.name, "upstream answered");
                        let _ = out.send(Event::Done {
                            finish_reason: finish.unwrap_or(FinishReason::Stop),
                            usage,
                        });
                        return Ok(());
                    }
                }
            }
        }
    }
}

/// A deployment's answer whose calls cannot be passed on. Not retried: the same request
/// would most likely get the same calls; and not counted against the deployment's circuit,
/// which a client could otherwise open for everyone with a request of its choosing.
fn bad_calls(name: &str, e: &ProtocolError, emitted: bool) -> CallError {
    CallError {
        message: format!("deployment '{name}': {e}"),
        status: None,
        retryable: false,
        emitted,
    }
}

/// Characters of the calls' names and arguments.
fn call_chars(calls: &[ToolCall]) -> usize {
    calls
        .iter()
        .map(|c| c.name.chars().count() + c.arguments.chars().count())
        .sum()
}

/// Tokens of text without the upstream's tokenizer: one per four characters, rounded up.
fn estimate(chars: usize) -> u64 {
    (chars as u64).div_ceil(4)
}

/// The kind of a transport error, without URLs or anything sent.
fn kind_of(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "the answer broke off"
    } else {
        "request failed"
    }
}

async fn read_limited(res: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut body = res.bytes_stream();
    while let Some(piece) = body.next().await {
        let piece = piece.map_err(|e| kind_of(&e).to_owned())?;
        if out.len() + piece.len() > limit {
            return Err(format!("the answer is larger than {limit} bytes"));
        }
        out.extend_from_slice(&piece);
    }
    Ok(out)
}

/// The order a route tries its deployments: the first drawn by weight with `draw` (any
/// random number), then the others by descending weight, ties in configuration order.
pub fn order<T: Clone>(targets: &[(T, u32)], draw: u64) -> Vec<T> {
    let total: u64 = targets.iter().map(|(_, w)| u64::from(*w)).sum();
    if total == 0 {
        return Vec::new();
    }
    let mut at = draw % total;
    let mut first = 0;
    for (i, (_, w)) in targets.iter().enumerate() {
        if at < u64::from(*w) {
            first = i;
            break;
        }
        at -= u64::from(*w);
    }
    let mut rest: Vec<usize> = (0..targets.len()).filter(|&i| i != first).collect();
    rest.sort_by_key(|&i| std::cmp::Reverse(targets[i].1));
    std::iter::once(first)
        .chain(rest)
        .map(|i| targets[i].0.clone())
        .collect()
}

/// Embeds `inputs` along `candidates` as [`run`] sends chat requests; returns, beside the
/// result, each deployment tried, in order (for the completion record).
pub async fn run_embed(
    candidates: &[Arc<Deployment>],
    attempts: u32,
    inputs: &[String],
) -> (Vec<String>, Result<(Vec<Vec<f32>>, Option<u64>), CallError>) {
    let mut attempted = Vec::new();
    let r = along(
        candidates,
        attempts,
        |name| attempted.push(name.to_owned()),
        |d| d.embed(inputs),
    )
    .await;
    (attempted, r)
}

/// Sends `req` along `candidates` in order, each up to `attempts` times with exponential
/// backoff on retryable errors, skipping those that are unavailable, and never retrying once
/// output has been sent. Each deployment tried is announced first (`Event::Attempt`); on
/// success the last event is `Done`.
pub async fn run(
    candidates: &[Arc<Deployment>],
    attempts: u32,
    req: &ChatRequest,
    out: &UnboundedSender<Event>,
) -> Result<(), CallError> {
    along(
        candidates,
        attempts,
        |name| {
            let _ = out.send(Event::Attempt(name.to_owned()));
        },
        |d| d.chat(req, out),
    )
    .await
}

/// The attempt loop of a route: `call` on each available candidate in order, up to
/// `attempts` times with exponential backoff on retryable errors, `tried` told each
/// deployment's name first; a non-retryable error, or one after output, ends it.
async fn along<'a, T, Fut>(
    candidates: &'a [Arc<Deployment>],
    attempts: u32,
    mut tried: impl FnMut(&str),
    mut call: impl FnMut(&'a Deployment) -> Fut,
) -> Result<T, CallError>
where
    Fut: std::future::Future<Output = Result<T, CallError>>,
{
    let mut last = None;
    for d in candidates {
        if !d.available() {
            tracing::debug!(deployment = %d.settings.name, "skipped: unavailable");
            continue;
        }
        for attempt in 0..attempts.max(1) {
            tried(&d.settings.name);
            match call(d).await {
                Ok(v) => return Ok(v),
                Err(e) if e.emitted || !e.retryable => return Err(e),
                Err(e) => {
                    tracing::warn!(deployment = %d.settings.name, attempt, error = %e, "upstream attempt failed");
                    last = Some(e);
                    if attempt + 1 < attempts && d.available() {
                        tokio::time::sleep(Duration::from_millis(50 << attempt.min(5))).await;
                    } else {
                        break;
                    }
                }
            }
        }
    }
    Err(last.unwrap_or_else(|| CallError {
        message: "no deployment of this model is available".into(),
        status: None,
        retryable: true,
        emitted: false,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_choice_follows_the_weights_and_the_rest_fall_back() {
        let t = [("a", 3), ("b", 1), ("c", 2)];
        let mut firsts = std::collections::BTreeMap::new();
        for draw in 0..600u64 {
            let o = order(&t, draw);
            assert_eq!(o.len(), 3);
            *firsts.entry(o[0]).or_insert(0) += 1;
            let rest: Vec<_> = o[1..].to_vec();
            let mut sorted = rest.clone();
            sorted.sort_by_key(|n| std::cmp::Reverse(t.iter().find(|x| x.0 == *n).unwrap().1));
            assert_eq!(rest, sorted);
        }
        assert_eq!(firsts[&"a"], 300);
        assert_eq!(firsts[&"b"], 100);
        assert_eq!(firsts[&"c"], 200);
        assert!(order::<&str>(&[], 5).is_empty());
    }

    #[test]
    fn credentials_redact() {
        let c = Credential::new(" sk-secret\n");
        assert_eq!(c.0, "sk-secret");
        assert!(!format!("{c:?}").contains("secret"));
    }
}
