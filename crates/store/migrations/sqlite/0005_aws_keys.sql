-- AWS-style access key pairs (Signature V4) live beside bearer keys with the same lifecycle:
-- the access key ID is the prefix, the secret is derived from the data directory's master
-- and `salt`, and `secret_hash` holds the SHA-256 of the derived secret.
ALTER TABLE api_keys ADD COLUMN kind TEXT NOT NULL DEFAULT 'bearer'
    CHECK (kind IN ('bearer', 'aws'));
ALTER TABLE api_keys ADD COLUMN salt TEXT
    CHECK (salt IS NULL OR length(salt) = 64);
