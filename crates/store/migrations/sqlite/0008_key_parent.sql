-- The key a key was minted with (when a request authenticated by a key created it): a key
-- made for its own user dies with its parent (revoked or expired), and a key with live
-- children of its own user takes no limits that would not bind them.
ALTER TABLE api_keys ADD COLUMN parent_key_id TEXT REFERENCES api_keys (id);
CREATE INDEX api_keys_parent ON api_keys (parent_key_id);
