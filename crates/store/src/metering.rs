//! Metering records and the operations every backend provides: prices, contract plans,
//! limits, live reservations and the usage ledger. Money is `i64` micro-dollars here; the
//! arithmetic lives in `highside-metering`.

use serde::{Deserialize, Serialize};

use crate::StoreError;

/// Which level of an agency → user → key hierarchy a limit or counter belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitScope {
    /// An agency.
    Agency,
    /// A user.
    User,
    /// An API key.
    Key,
}

impl LimitScope {
    /// The database and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitScope::Agency => "agency",
            LimitScope::User => "user",
            LimitScope::Key => "key",
        }
    }

    /// The reservations column that holds this level's subject.
    pub(crate) fn column(self) -> &'static str {
        match self {
            LimitScope::Agency => "agency_id",
            LimitScope::User => "user_id",
            LimitScope::Key => "key_id",
        }
    }
}

/// The limits of one agency, user or key; `None` is no limit of that kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Requests per minute.
    pub requests_per_minute: Option<u64>,
    /// Tokens (prompt + max_tokens reserved) per minute.
    pub tokens_per_minute: Option<u64>,
    /// Tokens per UTC day.
    pub daily_tokens: Option<u64>,
    /// Tokens per UTC month.
    pub monthly_tokens: Option<u64>,
    /// Micro-dollars per UTC month.
    pub monthly_budget: Option<i64>,
}

/// A model's prices, micro-dollars per million tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceRecord {
    /// The model's public name.
    pub model: String,
    /// Per million prompt tokens.
    pub input_per_million: i64,
    /// Per million generated tokens.
    pub output_per_million: i64,
    /// RFC 3339 time of the last change.
    pub updated_at: String,
}

/// An agency's contract plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanRecord {
    /// The agency.
    pub agency_id: String,
    /// Flat fee per year, micro-dollars.
    pub annual_fee: i64,
    /// Tokens included each month.
    pub included_tokens: u64,
    /// Overage prices per million (input, output); `None` bills each model's prices.
    pub overage: Option<(i64, i64)>,
    /// Most a month's usage charges may come to.
    pub monthly_cap: Option<i64>,
    /// `YYYY-MM` of the contract's first month.
    pub starts_on: String,
    /// RFC 3339 time of the last change.
    pub updated_at: String,
}

/// Who a request is charged to, at every level.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subjects {
    /// The agency.
    pub agency: String,
    /// The user.
    pub user: String,
    /// The key, when a key (not a certificate) authenticated the request.
    pub key: Option<String>,
}

impl Subjects {
    /// Each level with its subject.
    pub fn levels(&self) -> Vec<(LimitScope, &str)> {
        let mut v = vec![
            (LimitScope::Agency, self.agency.as_str()),
            (LimitScope::User, self.user.as_str()),
        ];
        if let Some(k) = &self.key {
            v.push((LimitScope::Key, k.as_str()));
        }
        v
    }
}

/// A reservation to make: the most a request may use.
#[derive(Debug, Clone)]
pub struct ReservationRequest {
    /// Its ID (the request ID).
    pub id: String,
    /// Who pays.
    pub subjects: Subjects,
    /// Prompt tokens plus the most it may generate.
    pub tokens: u64,
    /// What those tokens would cost at most, micro-dollars.
    pub cost: i64,
    /// The UTC day (`YYYY-MM-DD`) and month (`YYYY-MM`) it counts in.
    pub day: String,
    /// See `day`.
    pub month: String,
    /// Now, Unix milliseconds (reservations that expired before it are ignored and removed).
    pub now_ms: i64,
    /// When the reservation stops counting if it is never settled or released.
    pub expires_at_ms: i64,
}

/// A limit a reservation would break.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Exceeded {
    /// The level.
    pub scope: LimitScope,
    /// Its subject.
    pub subject: String,
    /// `daily_tokens`, `monthly_tokens` or `monthly_budget`.
    pub limit: &'static str,
    /// The limit's value.
    pub allowed: i64,
    /// Settled so far in the period.
    pub used: i64,
    /// Held by running requests.
    pub reserved: i64,
    /// What this request asked for.
    pub requested: i64,
}

/// A settled completion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// The request.
    pub request_id: String,
    /// RFC 3339 UTC time.
    pub time: String,
    /// `YYYY-MM-DD`.
    pub day: String,
    /// `YYYY-MM`.
    pub month: String,
    /// Who pays.
    pub subjects: Subjects,
    /// The model.
    pub model: String,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Generated tokens.
    pub completion_tokens: u64,
    /// Prompt tokens served from cache.
    pub cached_tokens: u64,
    /// Micro-dollars, at the model's list prices.
    pub cost: i64,
    /// The model's price per million prompt tokens when it was used, micro-dollars.
    pub input_price: i64,
    /// The same for generated tokens.
    pub output_price: i64,
}

/// Settled totals of one subject in one period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Tokens.
    pub tokens: u64,
    /// Micro-dollars.
    pub cost: i64,
}

/// The metering operations every backend provides.
pub trait MeteringStore: Send + Sync {
    /// Sets (or replaces) a model's prices.
    fn set_price(&self, price: &PriceRecord) -> Result<(), StoreError>;
    /// Every model's prices, by model.
    fn prices(&self) -> Result<Vec<PriceRecord>, StoreError>;
    /// One model's prices (read on every request).
    fn price(&self, model: &str) -> Result<Option<PriceRecord>, StoreError>;
    /// Sets (or replaces) an agency's contract plan.
    fn set_plan(&self, plan: &PlanRecord) -> Result<(), StoreError>;
    /// An agency's contract plan.
    fn plan(&self, agency: &str) -> Result<Option<PlanRecord>, StoreError>;
    /// Sets (or replaces) the limits of one agency, user or key, changed at `updated_at`.
    fn set_limits(
        &self,
        scope: LimitScope,
        subject: &str,
        limits: &Limits,
        updated_at: &str,
    ) -> Result<(), StoreError>;
    /// The limits of one agency, user or key.
    fn limits(&self, scope: LimitScope, subject: &str) -> Result<Option<Limits>, StoreError>;
    /// In one atomic step: checks the reservation against the daily and monthly token quotas
    /// and monthly budgets of every level (settled usage + live reservations + this one) and
    /// records it; or names the first limit it would break and records nothing. An ID with a
    /// live reservation, or already in the ledger, is [`StoreError::Duplicate`].
    fn reserve(&self, r: &ReservationRequest) -> Result<Option<Exceeded>, StoreError>;
    /// In one atomic step: drops the reservation (if still there) and records the real usage
    /// in the ledger and the counters. A second settlement of the same request ID changes
    /// nothing and returns `false`.
    fn settle(&self, reservation_id: &str, entry: &LedgerEntry) -> Result<bool, StoreError>;
    /// Settles several requests at once, each exactly as [`settle`](Self::settle) would;
    /// a backend may commit them in one transaction (one sync for all). All or none.
    fn settle_many(&self, items: &[(String, LedgerEntry)]) -> Result<Vec<bool>, StoreError> {
        items.iter().map(|(id, e)| self.settle(id, e)).collect()
    }
    /// Drops a reservation without usage (an error, a cancel before any token).
    fn release(&self, reservation_id: &str) -> Result<(), StoreError>;
    /// How many reservations are live at `now_ms`.
    fn live_reservations(&self, now_ms: i64) -> Result<u64, StoreError>;
    /// Settled totals of a subject in a period (`YYYY-MM-DD` or `YYYY-MM`).
    fn totals(&self, scope: LimitScope, subject: &str, period: &str) -> Result<Totals, StoreError>;
    /// The ledger of a month (`YYYY-MM`), optionally of one agency, in the order it was settled.
    fn ledger(&self, month: &str, agency: Option<&str>) -> Result<Vec<LedgerEntry>, StoreError>;
}
