-- Metering: model prices, agency contract plans, limits, the usage ledger with per-period
-- counters, and live reservations. Money is INTEGER micro-dollars, never floating point.
CREATE TABLE model_prices (
    model              TEXT PRIMARY KEY NOT NULL,
    input_per_million  INTEGER NOT NULL CHECK (input_per_million >= 0),
    output_per_million INTEGER NOT NULL CHECK (output_per_million >= 0),
    updated_at         TEXT NOT NULL
) STRICT;

CREATE TABLE contract_plans (
    agency_id       TEXT PRIMARY KEY NOT NULL REFERENCES agencies (id),
    annual_fee      INTEGER NOT NULL CHECK (annual_fee >= 0),
    included_tokens INTEGER NOT NULL CHECK (included_tokens >= 0),
    overage_input   INTEGER CHECK (overage_input >= 0),
    overage_output  INTEGER CHECK (overage_output >= 0),
    monthly_cap     INTEGER CHECK (monthly_cap >= 0),
    -- YYYY-MM of the contract's first month.
    starts_on       TEXT NOT NULL CHECK (length(starts_on) = 7),
    updated_at      TEXT NOT NULL,
    CHECK ((overage_input IS NULL) = (overage_output IS NULL))
) STRICT;

-- Limits of one agency, user or key; a NULL column is no limit of that kind.
CREATE TABLE limits (
    scope               TEXT NOT NULL CHECK (scope IN ('agency', 'user', 'key')),
    subject_id          TEXT NOT NULL,
    requests_per_minute INTEGER CHECK (requests_per_minute > 0),
    tokens_per_minute   INTEGER CHECK (tokens_per_minute > 0),
    daily_tokens        INTEGER CHECK (daily_tokens >= 0),
    monthly_tokens      INTEGER CHECK (monthly_tokens >= 0),
    monthly_budget      INTEGER CHECK (monthly_budget >= 0),
    updated_at          TEXT NOT NULL,
    PRIMARY KEY (scope, subject_id)
) STRICT;

-- One row per settled completion; request_id makes a settlement happen once.
CREATE TABLE usage_ledger (
    id                INTEGER PRIMARY KEY,
    request_id        TEXT NOT NULL UNIQUE,
    time              TEXT NOT NULL,
    day               TEXT NOT NULL CHECK (length(day) = 10),
    month             TEXT NOT NULL CHECK (length(month) = 7),
    agency_id         TEXT NOT NULL,
    user_id           TEXT NOT NULL,
    key_id            TEXT,
    model             TEXT NOT NULL,
    prompt_tokens     INTEGER NOT NULL CHECK (prompt_tokens >= 0),
    completion_tokens INTEGER NOT NULL CHECK (completion_tokens >= 0),
    cached_tokens     INTEGER NOT NULL CHECK (cached_tokens >= 0),
    cost              INTEGER NOT NULL CHECK (cost >= 0),
    -- The model's prices when it was used, so invoices never re-price history.
    input_price       INTEGER NOT NULL CHECK (input_price >= 0),
    output_price      INTEGER NOT NULL CHECK (output_price >= 0)
) STRICT;
CREATE INDEX usage_ledger_agency_month ON usage_ledger (agency_id, month);
CREATE INDEX usage_ledger_month ON usage_ledger (month);

-- Settled totals per subject and period ('YYYY-MM-DD' or 'YYYY-MM'), written in the same
-- transaction as the ledger row, so a limit check reads a row instead of summing the ledger.
CREATE TABLE usage_counters (
    scope      TEXT NOT NULL CHECK (scope IN ('agency', 'user', 'key')),
    subject_id TEXT NOT NULL,
    period     TEXT NOT NULL,
    tokens     INTEGER NOT NULL,
    cost       INTEGER NOT NULL,
    PRIMARY KEY (scope, subject_id, period)
) STRICT;

-- What running requests may still use: counted against every limit until settled,
-- released or expired (a reservation of a node that died expires).
CREATE TABLE reservations (
    id         TEXT PRIMARY KEY NOT NULL,
    agency_id  TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    key_id     TEXT,
    tokens     INTEGER NOT NULL CHECK (tokens >= 0),
    cost       INTEGER NOT NULL CHECK (cost >= 0),
    -- Unix milliseconds.
    expires_at INTEGER NOT NULL
) STRICT;
CREATE INDEX reservations_agency ON reservations (agency_id);
CREATE INDEX reservations_user ON reservations (user_id);
CREATE INDEX reservations_key ON reservations (key_id);
