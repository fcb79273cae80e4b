-- Identity and tenancy: branches, agencies, users, API keys, client-certificate mappings.
-- IDs are random prefixed strings; times are RFC 3339 UTC text; roles and scopes are
-- comma-separated role names, validated by the application on every read.
CREATE TABLE branches (
    name TEXT PRIMARY KEY NOT NULL
) STRICT;
INSERT INTO branches (name) VALUES ('executive'), ('legislative'), ('judicial');

CREATE TABLE agencies (
    id         TEXT PRIMARY KEY NOT NULL,
    name       TEXT NOT NULL UNIQUE,
    branch     TEXT NOT NULL REFERENCES branches (name),
    status     TEXT NOT NULL CHECK (status IN ('active', 'disabled')),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
) STRICT;

CREATE TABLE users (
    id          TEXT PRIMARY KEY NOT NULL,
    agency_id   TEXT NOT NULL REFERENCES agencies (id),
    name        TEXT NOT NULL,
    clearance   TEXT NOT NULL,
    nationality TEXT NOT NULL CHECK (length(nationality) = 3),
    roles       TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('active', 'disabled')),
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    UNIQUE (agency_id, name)
) STRICT;

-- Only the SHA-256 of a key is stored; `prefix` is its public part and finds the row.
CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY NOT NULL,
    prefix       TEXT NOT NULL UNIQUE,
    secret_hash  TEXT NOT NULL CHECK (length(secret_hash) = 64),
    user_id      TEXT NOT NULL REFERENCES users (id),
    name         TEXT NOT NULL,
    scopes       TEXT NOT NULL,
    expires_at   TEXT,
    created_at   TEXT NOT NULL,
    created_by   TEXT NOT NULL,
    last_used_at TEXT,
    revoked_at   TEXT
) STRICT;
CREATE INDEX api_keys_user ON api_keys (user_id);

-- A client certificate whose subject (kind 'subject') or any subjectAltName (kind 'san')
-- equals `value` authenticates as `user_id`.
CREATE TABLE cert_mappings (
    id         TEXT PRIMARY KEY NOT NULL,
    user_id    TEXT NOT NULL REFERENCES users (id),
    kind       TEXT NOT NULL CHECK (kind IN ('subject', 'san')),
    value      TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (kind, value)
) STRICT;
CREATE INDEX cert_mappings_user ON cert_mappings (user_id);
