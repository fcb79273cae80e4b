-- Embedding models (a directory of config.json, model.safetensors and tokenizer.json) beside
-- GGUF chat models: `format` says which, and where the files are.
ALTER TABLE models ADD COLUMN format TEXT NOT NULL DEFAULT 'gguf'
    CHECK (format IN ('gguf', 'embedding'));
