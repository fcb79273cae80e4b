//! The server's side of the audit log: records made durable before the answer they cover, and
//! the rule that a node whose log failed stops serving rather than serve unaudited.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use highside_audit::{Actor, AuditError, AuditLog, Event, PublicKey, Record};
use highside_identity::Principal;
use highside_openai::ApiError;
use sha2::{Digest, Sha256};

/// The open audit log of this node.
pub struct Auditor {
    log: AuditLog,
    node: String,
    dir: PathBuf,
    public_key: PublicKey,
    failed: Arc<tokio::sync::watch::Sender<bool>>,
    /// Set while the log's disk has less free space than the configured floor.
    disk_low: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Auditor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auditor")
            .field("node", &self.node)
            .field("dir", &self.dir)
            .field("failed", &self.is_failed())
            .finish_non_exhaustive()
    }
}

/// The answer new work gets while the log's disk is below its floor of free space.
pub fn disk_low() -> ApiError {
    ApiError {
        code: Some("audit_disk_low"),
        ..ApiError::unavailable(
            "the audit log's disk is nearly full, so this node takes no new work until an operator frees space",
        )
    }
}

/// The answer every request gets once the log has failed.
pub fn unavailable() -> ApiError {
    ApiError {
        code: Some("audit_unavailable"),
        retry_after: None,
        ..ApiError::unavailable(
            "the audit log cannot record this request, so this node has stopped serving",
        )
    }
}

impl Auditor {
    /// Wraps an open log in `dir`, written as `node`, verifiable with `public_key`.
    pub fn new(log: AuditLog, node: &str, dir: &Path, public_key: PublicKey) -> Self {
        let (failed, _) = tokio::sync::watch::channel(false);
        Self {
            log,
            node: node.to_owned(),
            dir: dir.to_path_buf(),
            public_key,
            failed: Arc::new(failed),
            disk_low: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Measures the log's disk: its free bytes and the log's own size become metrics, and
    /// below `min_free` free bytes the node takes no new work ([`Auditor::disk_low`]) until
    /// space is freed, instead of failing the log when the disk is full.
    pub fn check_disk(&self, min_free: u64) -> Option<u64> {
        let free = match rustix::fs::statvfs(&self.dir) {
            Ok(v) => v.f_bavail.saturating_mul(v.f_frsize),
            Err(e) => {
                tracing::warn!(error = %e, "cannot measure the audit log's disk");
                return None;
            }
        };
        let size: u64 = std::fs::read_dir(&self.dir)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0);
        metrics::gauge!("highside_audit_disk_free_bytes").set(free as f64);
        metrics::gauge!("highside_audit_log_bytes").set(size as f64);
        let low = free < min_free;
        let was = self.disk_low.swap(low, std::sync::atomic::Ordering::SeqCst);
        if low && !was {
            tracing::error!(
                free,
                min_free,
                "the audit log's disk is nearly full: new work is refused until space is freed"
            );
        } else if was && !low {
            tracing::info!(free, "the audit log's disk has space again: serving");
        }
        Some(free)
    }

    /// Whether the log's disk is below its floor of free space (new work gets 503).
    pub fn disk_low(&self) -> bool {
        self.disk_low.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The key its checkpoints verify with.
    pub fn public_key(&self) -> &PublicKey {
        &self.public_key
    }

    /// This node's name in records.
    pub fn node(&self) -> &str {
        &self.node
    }

    fn encode(&self, event: Event) -> Result<Vec<u8>, ApiError> {
        Record::now(&self.node, event)
            .to_bounded_json()
            .map_err(|e| {
                tracing::error!(error = %e, "cannot encode an audit record");
                unavailable()
            })
    }

    fn fail(failed: &tokio::sync::watch::Sender<bool>, e: &AuditError) {
        tracing::error!(error = %e, "audit log failed: this node stops serving");
        failed.send_replace(true);
    }

    /// What an append error means: a record this request cannot have (too large) is its own
    /// 400; anything else is the log failing, and stops the node.
    fn refused(failed: &tokio::sync::watch::Sender<bool>, e: &AuditError) -> ApiError {
        match e {
            AuditError::TooLarge => {
                ApiError::bad_request("the request carries a value too large to be audited", None)
            }
            _ => {
                Self::fail(failed, e);
                unavailable()
            }
        }
    }

    /// Appends `event` and returns once it is durable. Blocks: only for blocking threads.
    pub fn record_blocking(&self, event: Event) -> Result<u64, ApiError> {
        let bytes = self.encode(event)?;
        let started = Instant::now();
        let r = self
            .log
            .append(bytes)
            .map_err(|e| Self::refused(&self.failed, &e));
        metrics::histogram!("highside_audit_commit_seconds")
            .record(started.elapsed().as_secs_f64());
        r
    }

    /// Appends `event` and resolves once it is durable.
    pub async fn record(&self, event: Event) -> Result<u64, ApiError> {
        let bytes = self.encode(event)?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        let started = Instant::now();
        self.log.submit(
            bytes,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        let r = rx.await.unwrap_or(Err(AuditError::Closed));
        metrics::histogram!("highside_audit_commit_seconds")
            .record(started.elapsed().as_secs_f64());
        r.map_err(|e| Self::refused(&self.failed, &e))
    }

    /// Appends `event` without waiting (for records made where nobody can wait, such as a
    /// stream dropped by its client). A failure still stops the node.
    pub fn record_detached(&self, event: Event) {
        let Ok(bytes) = self.encode(event) else {
            return;
        };
        let failed = Arc::clone(&self.failed);
        self.log.submit(
            bytes,
            Box::new(move |r| {
                if let Err(e) = r {
                    let _ = Self::refused(&failed, &e);
                }
            }),
        );
    }

    /// Whether the log has failed (the node must not serve). A failure the writer found on
    /// its own (a timed checkpoint while idle) is passed on here, so `serve` stops too.
    pub fn is_failed(&self) -> bool {
        if *self.failed.borrow() {
            return true;
        }
        if self.log.is_failed() {
            self.failed.send_replace(true);
            return true;
        }
        false
    }

    /// Resolves once the log has failed.
    pub async fn failed(&self) {
        let mut rx = self.failed.subscribe();
        // Woken by a failure a request saw; polled for one the writer found while idle.
        while !self.is_failed() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), rx.changed()).await;
        }
    }

    /// Writes the final checkpoint.
    pub fn close(&self) -> Result<(), AuditError> {
        self.log.close().map(|cp| {
            tracing::info!(records = cp.tree_size, root = %cp.root, "audit log closed with a signed checkpoint");
        })
    }
}

/// Who a principal is, as records name them.
pub fn actor(p: &Principal, client: Option<std::net::SocketAddr>) -> Actor {
    Actor {
        agency: Some(p.agency.to_string()),
        user: Some(p.user.to_string()),
        key: p.key.as_ref().map(ToString::to_string),
        client: client.map(|c| c.to_string()),
    }
}

/// What an allowed request's completion record says, and how its charge settles, if it ends
/// without finishing (dropped, or aborted on an error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unfinished {
    /// The backend does not have it yet (admission still under way on its blocking thread, or
    /// nothing was computed): recorded as `error`, the reservation handed back. A drop records
    /// it durably before the error is answered.
    Error,
    /// A limit refused it after the decision: as [`Unfinished::Error`], recorded as
    /// `rate_limited`.
    RateLimited,
    /// The backend has it and the request lives in async code: recorded as `cancelled`
    /// without blocking (the client is gone), and what was used is charged.
    Cancelled,
}

impl Unfinished {
    /// The record's `finish_reason`.
    fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::RateLimited => "rate_limited",
            Self::Cancelled => "cancelled",
        }
    }
}

/// The completion record of one allowed request, written exactly once: by [`finish`] when the
/// generation ends, or, if it never does (the client left, an error after the decision), when
/// this is dropped.
///
/// [`finish`]: CompletionAudit::finish
pub struct CompletionAudit {
    pub auditor: Arc<Auditor>,
    pub request_id: String,
    pub actor: Actor,
    pub model: String,
    pub prompt_tokens: u64,
    pub prompt_sha256: String,
    pub started: Instant,
    output: Sha256,
    tokens: u64,
    /// Bytes of output, for a partial charge where pieces hold several tokens (upstreams).
    bytes: u64,
    /// External deployments attempted, in order (a route's).
    pub deployments: Option<Vec<String>>,
    /// What a drop means: [`Unfinished::Error`] until the backend has the request,
    /// [`Unfinished::Cancelled`] after.
    pub unfinished: Unfinished,
    /// The request's metering charge: settled at the end, partly on a cancel, released on
    /// an error.
    pub charge: Option<crate::meter::Charge>,
    done: bool,
}

impl std::fmt::Debug for CompletionAudit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompletionAudit")
            .field("request_id", &self.request_id)
            .finish_non_exhaustive()
    }
}

/// SHA-256 of `bytes`, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl CompletionAudit {
    pub fn new(
        auditor: Arc<Auditor>,
        request_id: &str,
        actor: Actor,
        model: &str,
        started: Instant,
    ) -> Self {
        Self {
            auditor,
            request_id: request_id.to_owned(),
            actor,
            model: model.to_owned(),
            prompt_tokens: 0,
            prompt_sha256: sha256_hex(b""),
            started,
            output: Sha256::new(),
            tokens: 0,
            bytes: 0,
            deployments: None,
            unfinished: Unfinished::Error,
            charge: None,
            done: false,
        }
    }

    /// Adds generated text (as sent to the client) to the output digest; the first piece
    /// times the time to first token.
    pub fn output(&mut self, text: &str) {
        if self.tokens == 0 {
            metrics::histogram!("highside_time_to_first_token_seconds", "model" => self.model.clone())
                .record(self.started.elapsed().as_secs_f64());
        }
        self.output.update(text.as_bytes());
        self.tokens += 1;
        self.bytes += text.len() as u64;
    }

    /// What a generation cut short is charged: its pieces, or a token per four bytes when
    /// pieces hold several tokens (upstream chunks), whichever is more.
    fn partial_tokens(&self) -> u64 {
        self.tokens.max(self.bytes.div_ceil(4))
    }

    /// The prompt's size as the generation reports it at the end (an upstream's count may
    /// differ from the estimate reserved at the start; the charge never exceeds that).
    pub fn prompt_tokens(&mut self, n: u64) {
        self.prompt_tokens = n;
        if let Some(c) = &mut self.charge {
            c.prompt_tokens(n);
        }
    }

    /// Adds a whole answer (an embedding list) to the output digest.
    pub fn output_bytes(&mut self, bytes: &[u8]) {
        self.output.update(bytes);
    }

    fn event(&mut self, finish_reason: &str, completion_tokens: Option<u64>) -> Event {
        self.event_labelled(finish_reason, completion_tokens, None)
    }

    fn event_labelled(
        &mut self,
        finish_reason: &str,
        completion_tokens: Option<u64>,
        output_label: Option<String>,
    ) -> Event {
        self.done = true;
        Event::Completion {
            request_id: std::mem::take(&mut self.request_id),
            actor: std::mem::take(&mut self.actor),
            model: std::mem::take(&mut self.model),
            prompt_tokens: self.prompt_tokens,
            completion_tokens: completion_tokens.unwrap_or(self.tokens),
            finish_reason: finish_reason.to_owned(),
            latency_ms: self.started.elapsed().as_millis() as u64,
            prompt_sha256: std::mem::take(&mut self.prompt_sha256),
            output_sha256: hex::encode(std::mem::take(&mut self.output).finalize()),
            deployments: self.deployments.take().unwrap_or_default(),
            output_label,
        }
    }

    /// Records that the generation failed (`error`), durably, before the failure is answered.
    pub async fn abort(mut self) {
        if let Some(charge) = self.charge.take() {
            if self.unfinished == Unfinished::Cancelled {
                // The engine or upstream had it: what was generated before the failure is
                // charged; otherwise the reservation goes back.
                charge.settle_partial(self.partial_tokens());
            }
        }
        self.unfinished = Unfinished::Error;
        let event = self.event("error", None);
        let auditor = Arc::clone(&self.auditor);
        let _ = auditor.record(event).await;
    }

    /// Records a generation the output scan stopped (`output_label_exceeded`, with the label of
    /// what was withheld), durably, before the error is sent. Everything generated was used,
    /// so it is charged: `generated` pieces, at least.
    pub async fn withheld(mut self, label: String, generated: u64) {
        if let Some(charge) = self.charge.take() {
            charge.settle_partial(self.partial_tokens().max(generated));
        }
        let event = self.event_labelled(
            crate::output::EXCEEDED,
            Some(self.tokens.max(generated)),
            Some(label),
        );
        let auditor = Arc::clone(&self.auditor);
        let _ = auditor.record(event).await;
    }

    /// Records a generation's end from the engine's (or upstream's) counts: the prompt size it
    /// reports, then [`finish`](Self::finish).
    pub async fn finish_usage(
        mut self,
        reason: highside_inference::FinishReason,
        usage: highside_inference::Usage,
    ) -> Result<(), ApiError> {
        self.prompt_tokens(usage.prompt_tokens);
        self.finish(
            highside_openai::finish_reason_str(reason),
            usage.completion_tokens,
        )
        .await
    }

    /// Records the end of the generation and resolves once the record is durable.
    pub async fn finish(
        mut self,
        finish_reason: &str,
        completion_tokens: u64,
    ) -> Result<(), ApiError> {
        // The ledger row and the completion record are written at the same time (two
        // independent syncs); the answer ends only when both are done.
        let settle = self
            .charge
            .take()
            .map(|charge| charge.settle_async(completion_tokens));
        let model = self.model.clone();
        metrics::counter!("highside_prompt_tokens_total", "model" => model.clone())
            .increment(self.prompt_tokens);
        metrics::counter!("highside_completion_tokens_total", "model" => model.clone())
            .increment(completion_tokens);
        metrics::histogram!("highside_generation_duration_seconds", "model" => model)
            .record(self.started.elapsed().as_secs_f64());
        let event = self.event(finish_reason, Some(completion_tokens));
        let auditor = Arc::clone(&self.auditor);
        let (recorded, ()) = tokio::join!(auditor.record(event), async {
            if let Some(settle) = settle {
                settle.await;
            }
        });
        recorded.map(|_| ())
    }
}

impl Drop for CompletionAudit {
    fn drop(&mut self) {
        if let Some(charge) = self.charge.take() {
            if self.unfinished == Unfinished::Cancelled {
                // The engine had it: the prompt and what was generated were used.
                charge.settle_partial(self.partial_tokens());
            }
            // Otherwise dropping the charge hands the whole reservation back.
        }
        if !self.done {
            let unfinished = self.unfinished;
            let event = self.event(unfinished.as_str(), None);
            match unfinished {
                // On the admitting blocking thread: durable before the error is answered.
                Unfinished::Error | Unfinished::RateLimited => {
                    let _ = self.auditor.record_blocking(event);
                }
                Unfinished::Cancelled => self.auditor.record_detached(event),
            }
        }
    }
}
