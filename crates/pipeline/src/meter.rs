//! Metering on the request path. Before a generation starts, [`Meter::admit`] reserves its
//! prompt tokens plus `max_tokens` (and what they would cost) against the daily and monthly
//! quotas and monthly budgets of its agency, user and key in one atomic store step, then takes
//! the requests- and tokens-per-minute limits (GCRA, in this node's memory). The [`Charge`] it
//! returns settles the real usage when the generation ends, or what was used so far if it never
//! does (error, cancel, client gone); a node that dies leaves reservations that expire.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use highside_metering::{Gcra, GcraError, Micros, Price};
use highside_openai::ApiError;
use highside_store::{
    LedgerEntry, LimitScope, Limits, MeteringStore, ReservationRequest, StoreError, Subjects,
};

/// How long an unsettled reservation counts. It must outlast any generation (queue time
/// included), or a running request's budget would be handed to others; a dead node's
/// reservations hold that long.
const RESERVATION_TTL: Duration = Duration::from_secs(60 * 60);

/// The rate-limit state of one agency, user or key: theoretical arrival times.
#[derive(Debug, Default, Clone, Copy)]
struct Tat {
    requests: u64,
    tokens: u64,
}

/// Metering of this node.
pub struct Meter {
    store: Arc<dyn MeteringStore>,
    rates: Mutex<HashMap<(LimitScope, String), Tat>>,
    epoch: Instant,
    /// Set when a settlement could not be written: usage would go uncounted and budgets
    /// could be overspent, so nothing more is admitted.
    failed: std::sync::atomic::AtomicBool,
    /// The settlement writer: concurrent settlements share one transaction (one sync).
    settler: Mutex<std::sync::mpsc::Sender<Settlement>>,
}

/// One settlement for the writer thread (`entry` `None`: a barrier that only asks to be told
/// once everything before it is written); `reply` is told when it is durable.
struct Settlement {
    id: String,
    entry: Option<LedgerEntry>,
    reply: Option<Box<dyn FnOnce() + Send>>,
}

/// Most settlements committed together.
const SETTLE_BATCH: usize = 256;

/// The settlement writer: takes every waiting settlement and commits them in one store
/// transaction; if that fails, each alone, so one bad entry fails only itself.
fn settle_loop(
    meter: std::sync::Weak<Meter>,
    store: Arc<dyn MeteringStore>,
    rx: std::sync::mpsc::Receiver<Settlement>,
) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < SETTLE_BATCH {
            match rx.try_recv() {
                Ok(s) => batch.push(s),
                Err(_) => break,
            }
        }
        let items: Vec<(String, LedgerEntry)> = batch
            .iter()
            .filter_map(|s| s.entry.clone().map(|e| (s.id.clone(), e)))
            .collect();
        if !items.is_empty() && store.settle_many(&items).is_err() {
            for (id, entry) in &items {
                if let Err(e) = store.settle(id, entry) {
                    if let Some(m) = meter.upgrade() {
                        m.fail(id, &e);
                    }
                }
            }
        }
        for s in batch {
            if let Some(reply) = s.reply {
                reply();
            }
        }
    }
}

impl std::fmt::Debug for Meter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Meter").finish_non_exhaustive()
    }
}

/// The `x-ratelimit-*` headers of an answer: the tightest level's figures.
#[derive(Debug, Clone, Default)]
pub struct RateHeaders {
    /// (limit, remaining, reset seconds) for requests per minute, if any level limits them.
    pub requests: Option<(u64, u64, u64)>,
    /// The same for tokens per minute.
    pub tokens: Option<(u64, u64, u64)>,
}

impl RateHeaders {
    /// As header name/value pairs, in OpenAI's names.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut v = Vec::new();
        if let Some((limit, remaining, reset)) = self.requests {
            v.push(("x-ratelimit-limit-requests", limit.to_string()));
            v.push(("x-ratelimit-remaining-requests", remaining.to_string()));
            v.push(("x-ratelimit-reset-requests", format!("{reset}s")));
        }
        if let Some((limit, remaining, reset)) = self.tokens {
            v.push(("x-ratelimit-limit-tokens", limit.to_string()));
            v.push(("x-ratelimit-remaining-tokens", remaining.to_string()));
            v.push(("x-ratelimit-reset-tokens", format!("{reset}s")));
        }
        v
    }
}

/// A request refused before it started, with the rate-limit headers its answer carries.
#[derive(Debug)]
pub struct Refusal {
    /// The error (a 429 carries `retry_after`).
    pub error: ApiError,
    /// `x-ratelimit-*` (empty unless rate limits apply); boxed to keep results small.
    pub headers: Box<RateHeaders>,
}

impl From<ApiError> for Refusal {
    fn from(error: ApiError) -> Self {
        Self {
            error,
            headers: Box::default(),
        }
    }
}

fn store_error(e: StoreError) -> ApiError {
    tracing::error!(error = %e, "metering store failed");
    ApiError::internal("the metering store failed")
}

fn quota_error(limit: &str, scope: LimitScope, retry_after: u64) -> ApiError {
    let (code, what) = match limit {
        "monthly_budget" => ("insufficient_quota", "monthly budget"),
        "daily_tokens" => ("insufficient_quota", "daily token quota"),
        _ => ("insufficient_quota", "monthly token quota"),
    };
    ApiError {
        code: Some(code),
        ..ApiError::overloaded(
            format!(
                "this request would exceed the {} {what}; it resets in {retry_after} s",
                scope.as_str()
            ),
            retry_after,
        )
    }
}

/// The UTC day and month of `t`, and the seconds until each ends.
fn periods(t: time::OffsetDateTime) -> (String, String, u64, u64) {
    let date = t.date();
    let day = format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    );
    let month = format!("{:04}-{:02}", date.year(), u8::from(date.month()));
    let secs_today =
        u64::from(t.hour()) * 3600 + u64::from(t.minute()) * 60 + u64::from(t.second());
    let to_midnight = 86_400 - secs_today;
    let days_left = u64::from(date.month().length(date.year()) - date.day());
    (day, month, to_midnight, to_midnight + days_left * 86_400)
}

/// What a started generation will be charged when it ends.
pub struct Charge {
    meter: Arc<Meter>,
    id: String,
    subjects: Subjects,
    model: String,
    price: Price,
    prompt_tokens: u64,
    /// The most it may generate (what was reserved): settlement never counts more.
    max_tokens: u64,
    /// The reserved cost, the ceiling of what settlement may charge.
    reserved_cost: Micros,
    /// Whether the store holds a reservation to hand back.
    reserved: bool,
    done: bool,
}

impl std::fmt::Debug for Charge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Charge")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// An admitted request: its charge and the headers for its answer.
#[derive(Debug)]
pub struct Admission {
    /// Settles on finish, or on drop.
    pub charge: Charge,
    /// `x-ratelimit-*`.
    pub headers: RateHeaders,
}

impl Meter {
    /// Metering over `store`.
    pub fn new(store: Arc<dyn MeteringStore>) -> Arc<Self> {
        let (tx, rx) = std::sync::mpsc::channel();
        let meter = Arc::new(Self {
            store: Arc::clone(&store),
            rates: Mutex::new(HashMap::new()),
            epoch: Instant::now(),
            failed: std::sync::atomic::AtomicBool::new(false),
            settler: Mutex::new(tx),
        });
        let weak = Arc::downgrade(&meter);
        // Without the writer thread every settlement is written directly (see `write`).
        let _ = std::thread::Builder::new()
            .name("meter-settle".into())
            .spawn(move || settle_loop(weak, store, rx));
        meter
    }

    /// Hands a settlement to the writer; `reply` is called once it is durable. False when
    /// there is no writer (it never started, or died).
    fn send(&self, id: &str, entry: &LedgerEntry, reply: Option<Box<dyn FnOnce() + Send>>) -> bool {
        self.settler
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(Settlement {
                id: id.to_owned(),
                entry: Some(entry.clone()),
                reply,
            })
            .is_ok()
    }

    /// Writes a settlement on the calling thread: without the writer, or when in doubt
    /// whether it wrote it (a second settlement of the same request changes nothing).
    fn direct(&self, id: &str, entry: &LedgerEntry) {
        if let Err(e) = self.store.settle(id, entry) {
            self.fail(id, &e);
        }
    }

    /// Hands a settlement to the writer; `wait` blocks until it is durable.
    fn write(&self, id: String, entry: LedgerEntry, wait: bool) {
        if !wait {
            if !self.send(&id, &entry, None) {
                self.direct(&id, &entry);
            }
            return;
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let reply = Box::new(move || {
            let _ = tx.send(());
        });
        if !self.send(&id, &entry, Some(reply)) || rx.recv().is_err() {
            self.direct(&id, &entry);
        }
    }

    /// Hands a settlement to the writer and resolves once it is durable, without holding a
    /// thread while it waits.
    async fn write_async(self: &Arc<Self>, id: String, entry: LedgerEntry) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let reply = Box::new(move || {
            let _ = tx.send(());
        });
        if !self.send(&id, &entry, Some(reply)) || rx.await.is_err() {
            let meter = Arc::clone(self);
            let _ = tokio::task::spawn_blocking(move || meter.direct(&id, &entry)).await;
        }
    }

    /// Waits until every settlement handed to the writer so far is written (at shutdown).
    pub fn flush(&self) {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let sent = self
            .settler
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(Settlement {
                id: String::new(),
                entry: None,
                reply: Some(Box::new(move || {
                    let _ = tx.send(());
                })),
            });
        if sent.is_ok() {
            let _ = rx.recv();
        }
    }

    fn now_nanos(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// The store (for the admin API and reports).
    pub fn store(&self) -> &Arc<dyn MeteringStore> {
        &self.store
    }

    /// The model's prices; a model without prices is free (quotas in tokens still apply).
    fn price(&self, model: &str) -> Result<Price, StoreError> {
        Ok(self.store.price(model)?.map_or(Price::FREE, |p| Price {
            input_per_million: Micros(p.input_per_million),
            output_per_million: Micros(p.output_per_million),
        }))
    }

    /// Admits a request of `prompt_tokens` that may generate `max_tokens` (already clamped to
    /// the model's context) or says which limit it would break. `id` names the reservation and
    /// the ledger row: a retry with the same ID (an idempotency key) is charged once. Blocks
    /// on the store.
    pub fn admit(
        self: &Arc<Self>,
        id: &str,
        idempotent: bool,
        subjects: &Subjects,
        model: &str,
        prompt_tokens: u64,
        max_tokens: u64,
    ) -> Result<Admission, Refusal> {
        if self.failed.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(ApiError {
                code: Some("metering_unavailable"),
                ..ApiError::unavailable(
                    "usage could not be recorded, so this node admits no more requests",
                )
            }
            .into());
        }
        let price = self.price(model).map_err(store_error)?;
        let tokens = prompt_tokens.saturating_add(max_tokens);
        let cost = price
            .cost(prompt_tokens, max_tokens)
            .map_err(|e| ApiError::bad_request(e.to_string(), Some("max_tokens")))?;
        let now = time::OffsetDateTime::now_utc();
        let (day, month, to_midnight, to_month_end) = periods(now);
        let now_ms = i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX);
        let mut limits = Vec::new();
        for (scope, subject) in subjects.levels() {
            if let Some(l) = self.store.limits(scope, subject).map_err(store_error)? {
                limits.push((scope, subject.to_owned(), l));
            }
        }
        let reservation = ReservationRequest {
            id: id.to_owned(),
            subjects: subjects.clone(),
            tokens,
            cost: cost.0,
            day,
            month,
            now_ms,
            expires_at_ms: now_ms.saturating_add(RESERVATION_TTL.as_millis() as i64),
        };
        // With no quota or budget at any level there is nothing to hold back: skip the
        // reservation (the settlement still writes the ledger), unless an idempotency key
        // needs it to refuse a concurrent or later rerun.
        let guarded = idempotent
            || limits.iter().any(|(_, _, l)| {
                l.daily_tokens.is_some() || l.monthly_tokens.is_some() || l.monthly_budget.is_some()
            });
        let result = if guarded {
            self.store.reserve(&reservation)
        } else {
            Ok(None)
        };
        match result {
            Ok(None) => {}
            Ok(Some(e)) => {
                metrics::counter!("highside_limit_rejections_total", "limit" => e.limit, "scope" => e.scope.as_str())
                    .increment(1);
                let reset = if e.limit == "daily_tokens" {
                    to_midnight
                } else {
                    to_month_end
                };
                return Err(quota_error(e.limit, e.scope, reset).into());
            }
            Err(StoreError::Duplicate(_)) => {
                // Replaying the first answer would need it stored; refusing is the honest
                // alternative to running (and not billing) the work again.
                return Err(ApiError {
                    code: Some("idempotency_key_reused"),
                    ..ApiError::conflict(
                        "a request with this Idempotency-Key is running or has completed; \
                         it is not run again (use a new key for a new request)",
                    )
                }
                .into());
            }
            Err(e) => return Err(store_error(e).into()),
        }
        // Rates after the durable check, so a quota refusal does not spend rate; a rate
        // refusal hands the reservation back.
        match self.take_rates(&limits, tokens) {
            Ok(headers) => Ok(Admission {
                charge: Charge {
                    meter: Arc::clone(self),
                    id: id.to_owned(),
                    subjects: subjects.clone(),
                    model: model.to_owned(),
                    price,
                    prompt_tokens,
                    max_tokens,
                    reserved_cost: cost,
                    reserved: guarded,
                    done: false,
                },
                headers,
            }),
            Err(refused) => {
                metrics::counter!("highside_limit_rejections_total", "limit" => "per_minute_rate", "scope" => "any")
                    .increment(1);
                if guarded {
                    if let Err(e) = self.store.release(id) {
                        tracing::error!(error = %e, "cannot release a reservation");
                    }
                }
                Err(refused)
            }
        }
    }

    /// A settlement failed: this usage is not in the ledger (the audit log's completion
    /// record still has its tokens) and its reservation only expires; stop admitting.
    fn fail(&self, id: &str, e: &StoreError) {
        tracing::error!(error = %e, request = %id, "usage could not be settled: admitting no more requests");
        self.failed.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Takes one request and `tokens` from every level's per-minute limits, all or none.
    fn take_rates(
        &self,
        limits: &[(LimitScope, String, Limits)],
        tokens: u64,
    ) -> Result<RateHeaders, Refusal> {
        let now = self.now_nanos();
        let mut rates = self.rates.lock().unwrap_or_else(|p| p.into_inner());
        let mut updates = Vec::new();
        let mut headers = RateHeaders::default();
        let mut wait: Option<u64> = None;
        let mut never = false;
        for (scope, subject, l) in limits {
            let tat = rates
                .get(&(*scope, subject.clone()))
                .copied()
                .unwrap_or_default();
            let mut next = tat;
            for (limit, units, slot, header) in [
                (
                    l.requests_per_minute,
                    1,
                    &mut next.requests,
                    &mut headers.requests,
                ),
                (
                    l.tokens_per_minute,
                    tokens,
                    &mut next.tokens,
                    &mut headers.tokens,
                ),
            ] {
                let Some(g) = limit.and_then(Gcra::per_minute) else {
                    continue;
                };
                match g.take(*slot, now, units) {
                    Ok(t) => *slot = t,
                    Err(GcraError::RetryAfter(n)) => wait = Some(wait.unwrap_or(0).max(n)),
                    Err(GcraError::TooLarge) => never = true,
                }
                let remaining = g.remaining(*slot, now);
                let reset = slot.saturating_sub(now).div_ceil(1_000_000_000);
                let limit = limit.unwrap_or(0);
                if header.is_none_or(|(_, r, _)| remaining < r) {
                    *header = Some((limit, remaining, reset));
                }
            }
            updates.push(((*scope, subject.clone()), next));
        }
        if never {
            return Err(Refusal {
                error: ApiError {
                    code: Some("rate_limit_exceeded"),
                    retry_after: None,
                    ..ApiError::overloaded(
                        "this request needs more tokens than the tokens-per-minute limit allows at once; lower max_tokens",
                        0,
                    )
                },
                headers: Box::new(headers),
            });
        }
        if let Some(n) = wait {
            let secs = n.div_ceil(1_000_000_000).max(1);
            return Err(Refusal {
                error: ApiError::overloaded(format!("rate limit reached; retry in {secs} s"), secs),
                headers: Box::new(headers),
            });
        }
        for (k, v) in updates {
            rates.insert(k, v);
        }
        Ok(headers)
    }
}

impl Charge {
    fn entry(&self, completion_tokens: u64) -> LedgerEntry {
        let now = time::OffsetDateTime::now_utc();
        let (day, month, _, _) = periods(now);
        // Never more than was reserved: the budget check counted exactly that.
        let completion_tokens = completion_tokens.min(self.max_tokens);
        let cost = self
            .price
            .cost(self.prompt_tokens, completion_tokens)
            .unwrap_or(self.reserved_cost)
            .min(self.reserved_cost);
        LedgerEntry {
            request_id: self.id.clone(),
            time: now
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            day,
            month,
            subjects: self.subjects.clone(),
            model: self.model.clone(),
            prompt_tokens: self.prompt_tokens,
            completion_tokens,
            cached_tokens: 0,
            cost: cost.0,
            input_price: self.price.input_per_million.0,
            output_price: self.price.output_per_million.0,
        }
    }

    /// The prompt's real size once an upstream reports it (the reservation held an upper
    /// estimate); never more than was reserved.
    pub fn prompt_tokens(&mut self, n: u64) {
        if n > self.prompt_tokens {
            // The bound was not one: the ledger keeps the reservation (the budget check
            // counted exactly that), and the difference is reported.
            tracing::warn!(request = %self.id, reported = n, reserved = self.prompt_tokens, "an upstream reported more prompt tokens than were reserved");
            metrics::counter!("highside_unreserved_prompt_tokens_total")
                .increment(n - self.prompt_tokens);
        }
        self.prompt_tokens = n.min(self.prompt_tokens);
    }

    /// Records the real usage and hands back the rest of the reservation. Blocks on the store.
    pub fn settle(mut self, completion_tokens: u64) {
        self.done = true;
        let entry = self.entry(completion_tokens);
        self.meter.write(self.id.clone(), entry, true);
    }

    /// [`Charge::settle`] for async code: resolves once the ledger row is durable.
    pub async fn settle_async(mut self, completion_tokens: u64) {
        self.done = true;
        let entry = self.entry(completion_tokens);
        let meter = Arc::clone(&self.meter);
        meter.write_async(self.id.clone(), entry).await;
    }

    /// On a path that never ends normally: settles what was generated so far (`tokens`).
    pub fn settle_partial(mut self, tokens: u64) {
        self.done = true;
        let entry = self.entry(tokens);
        // Not waited for: this runs on drop, possibly on an async worker.
        self.meter.write(self.id.clone(), entry, false);
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        if !self.done && self.reserved {
            // Neither settled nor handed on: nothing ran (an error before the engine had the
            // request), so the whole reservation goes back; off the async workers if on one.
            self.done = true;
            let store = Arc::clone(&self.meter.store);
            let id = std::mem::take(&mut self.id);
            let run = move || {
                if let Err(e) = store.release(&id) {
                    tracing::error!(error = %e, request = %id, "cannot release a reservation");
                }
            };
            match tokio::runtime::Handle::try_current() {
                Ok(h) => {
                    h.spawn_blocking(run);
                }
                Err(_) => run(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use highside_store::{Exceeded, LedgerEntry, PlanRecord, PriceRecord, SqliteStore, Totals};

    /// The real store, except that settlements fail.
    struct NoSettle(SqliteStore);

    impl MeteringStore for NoSettle {
        fn set_price(&self, p: &PriceRecord) -> Result<(), StoreError> {
            self.0.set_price(p)
        }
        fn prices(&self) -> Result<Vec<PriceRecord>, StoreError> {
            self.0.prices()
        }
        fn price(&self, m: &str) -> Result<Option<PriceRecord>, StoreError> {
            self.0.price(m)
        }
        fn set_plan(&self, p: &PlanRecord) -> Result<(), StoreError> {
            self.0.set_plan(p)
        }
        fn plan(&self, a: &str) -> Result<Option<PlanRecord>, StoreError> {
            self.0.plan(a)
        }
        fn set_limits(
            &self,
            s: LimitScope,
            id: &str,
            l: &Limits,
            t: &str,
        ) -> Result<(), StoreError> {
            self.0.set_limits(s, id, l, t)
        }
        fn limits(&self, s: LimitScope, id: &str) -> Result<Option<Limits>, StoreError> {
            self.0.limits(s, id)
        }
        fn reserve(&self, r: &ReservationRequest) -> Result<Option<Exceeded>, StoreError> {
            self.0.reserve(r)
        }
        fn settle(&self, _: &str, _: &LedgerEntry) -> Result<bool, StoreError> {
            Err(StoreError::Corrupt("injected settlement failure".into()))
        }
        fn release(&self, id: &str) -> Result<(), StoreError> {
            self.0.release(id)
        }
        fn live_reservations(&self, now: i64) -> Result<u64, StoreError> {
            self.0.live_reservations(now)
        }
        fn totals(&self, s: LimitScope, id: &str, p: &str) -> Result<Totals, StoreError> {
            self.0.totals(s, id, p)
        }
        fn ledger(&self, m: &str, a: Option<&str>) -> Result<Vec<LedgerEntry>, StoreError> {
            self.0.ledger(m, a)
        }
    }

    #[test]
    fn a_failed_settlement_stops_admission() {
        let dir = tempfile::tempdir().unwrap();
        let store = NoSettle(SqliteStore::open(&dir.path().join("db")).unwrap());
        let meter = Meter::new(Arc::new(store));
        let who = Subjects {
            agency: "agency_a".into(),
            user: "user_a".into(),
            key: None,
        };
        let first = meter.admit("r1", false, &who, "m", 10, 10).unwrap();
        first.charge.settle(5);
        let refused = meter.admit("r2", false, &who, "m", 10, 10).unwrap_err();
        assert_eq!(refused.error.status, 503);
        assert_eq!(refused.error.code, Some("metering_unavailable"));
    }
}
