-- The model catalog: one row per imported model. The file lives in models/<digest>.gguf.
CREATE TABLE models (
    name           TEXT PRIMARY KEY NOT NULL,
    digest         TEXT NOT NULL CHECK (length(digest) = 64),
    architecture   TEXT,
    parameters     INTEGER NOT NULL CHECK (parameters >= 0),
    context_length INTEGER CHECK (context_length IS NULL OR context_length >= 0),
    chat_template  TEXT,
    size_bytes     INTEGER NOT NULL CHECK (size_bytes >= 0),
    label          TEXT NOT NULL,
    imported_at    TEXT NOT NULL
) STRICT;
CREATE INDEX models_digest ON models (digest);
