-- Reference monitor: each agency chooses what happens to prompts holding personal data.
-- 'off' (do not look), 'flag' (allow and report), 'block' (deny), 'cui' (raise the label to CUI).
ALTER TABLE agencies ADD COLUMN pii_action TEXT NOT NULL DEFAULT 'off'
    CHECK (pii_action IN ('off', 'flag', 'block', 'cui'));
