//! Highside's configuration: the `highside.toml` file in the data directory, with documented
//! defaults. Flags and environment variables are layered on top by the binary; this crate only
//! knows the settings, their defaults, their bounds and how to read and write the file.
//! It does no networking and knows nothing about the engine or the HTTP server.
#![forbid(unsafe_code)]

use std::path::Path;

use serde::{Deserialize, Serialize};

/// File name of the configuration inside the data directory.
pub const CONFIG_FILE: &str = "highside.toml";

/// Everything `highside serve` can be told, with the defaults documented on each field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP API listens on. Default `127.0.0.1:8080` (loopback only).
    pub listen: String,
    /// CPU threads each engine uses for decoding; 0 means every available core. Default 0.
    pub engine_threads: u32,
    /// Sequences one engine decodes together in a batch. Default 16.
    pub max_sequences: u32,
    /// Context window of each sequence in tokens (prompt plus completion). Default 2048.
    pub context_length: u32,
    /// Requests allowed to wait once every sequence slot is busy; beyond it, 429. Default 64.
    pub queue_depth: u32,
    /// Largest accepted request body in bytes; larger gets 413. Default 4 MiB.
    pub max_body_bytes: u64,
    /// Prompt tokens prefilled per engine step while other streams decode. Default 64.
    pub prefill_chunk: u32,
    /// Seconds that running streams get to finish after SIGTERM before they are cancelled. Default 10.
    pub shutdown_grace_secs: u64,
    /// PEM certificate chain; with `tls_key`, the API is served over TLS. Default: none
    /// (plain HTTP). Relative paths in the file are relative to the data directory.
    pub tls_cert: Option<String>,
    /// PEM private key for `tls_cert`. Default: none.
    pub tls_key: Option<String>,
    /// PEM CA certificates; when set, every client must present a certificate this CA issued
    /// (mutual TLS), mapped to a user. Default: none.
    pub tls_client_ca: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".to_owned(),
            engine_threads: 0,
            max_sequences: 16,
            context_length: 2048,
            queue_depth: 64,
            max_body_bytes: 4 * 1024 * 1024,
            prefill_chunk: 64,
            shutdown_grace_secs: 10,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
        }
    }
}

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file exists but could not be read or written.
    #[error("cannot access {path}: {source}")]
    Io {
        /// The file in question.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown keys or wrong types.
    #[error("{path} is not a valid Highside configuration: {message}")]
    Parse {
        /// The file in question.
        path: String,
        /// What the parser said.
        message: String,
    },
    /// A value is outside the range Highside can work with.
    #[error("setting `{key}` = {value} is out of range: {reason}")]
    OutOfRange {
        /// The setting's name in highside.toml.
        key: &'static str,
        /// The rejected value.
        value: String,
        /// What would be accepted.
        reason: &'static str,
    },
}

impl Config {
    /// Reads `highside.toml` from `data_dir`; a missing file means all defaults.
    pub fn load(data_dir: &Path) -> Result<Self, ConfigError> {
        let path = data_dir.join(CONFIG_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::parse(&text, &path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(ConfigError::Io {
                path: path.display().to_string(),
                source,
            }),
        }
    }

    /// Parses configuration text; `origin` names the source in error messages.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_owned(),
            message: e.message().to_owned(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every bound; called after each layer (file, env, flags) is applied.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn check(
            ok: bool,
            key: &'static str,
            value: impl ToString,
            reason: &'static str,
        ) -> Result<(), ConfigError> {
            if ok {
                Ok(())
            } else {
                Err(ConfigError::OutOfRange {
                    key,
                    value: value.to_string(),
                    reason,
                })
            }
        }
        check(
            self.listen.parse::<std::net::SocketAddr>().is_ok(),
            "listen",
            &self.listen,
            "must be an IP address and port such as 127.0.0.1:8080",
        )?;
        check(
            self.engine_threads <= 1024,
            "engine_threads",
            self.engine_threads,
            "must be 0 (all cores) to 1024",
        )?;
        check(
            (1..=256).contains(&self.max_sequences),
            "max_sequences",
            self.max_sequences,
            "must be 1 to 256",
        )?;
        check(
            (64..=1_048_576).contains(&self.context_length),
            "context_length",
            self.context_length,
            "must be 64 to 1048576 tokens",
        )?;
        check(
            self.queue_depth <= 1_000_000,
            "queue_depth",
            self.queue_depth,
            "must be at most 1000000",
        )?;
        check(
            (1024..=1 << 30).contains(&self.max_body_bytes),
            "max_body_bytes",
            self.max_body_bytes,
            "must be 1 KiB to 1 GiB",
        )?;
        check(
            (1..=8192).contains(&self.prefill_chunk),
            "prefill_chunk",
            self.prefill_chunk,
            "must be 1 to 8192",
        )?;
        check(
            self.shutdown_grace_secs <= 3600,
            "shutdown_grace_secs",
            self.shutdown_grace_secs,
            "must be at most 3600",
        )?;
        check(
            self.tls_cert.is_some() == self.tls_key.is_some(),
            "tls_key",
            self.tls_key.as_deref().unwrap_or("(none)"),
            "tls_cert and tls_key go together",
        )?;
        check(
            self.tls_client_ca.is_none() || self.tls_cert.is_some(),
            "tls_client_ca",
            self.tls_client_ca.as_deref().unwrap_or("(none)"),
            "client certificates need TLS: set tls_cert and tls_key too",
        )?;
        Ok(())
    }

    /// The documented default file that `highside init` writes.
    pub fn default_file_text() -> String {
        let d = Self::default();
        format!(
            r#"# Highside configuration. Every setting can also be given as a flag or an environment
# variable (flag > environment > this file > built-in default).

# Address the HTTP API listens on (--listen, HIGHSIDE_LISTEN).
listen = "{listen}"
# CPU threads per engine; 0 = all cores (--engine-threads, HIGHSIDE_ENGINE_THREADS).
engine_threads = {threads}
# Sequences decoded together in one batch (--max-sequences, HIGHSIDE_MAX_SEQUENCES).
max_sequences = {seqs}
# Context window per sequence in tokens, prompt plus completion (--context-length, HIGHSIDE_CONTEXT_LENGTH).
context_length = {ctx}
# Requests that may wait when every sequence is busy; beyond this, 429 (--queue-depth, HIGHSIDE_QUEUE_DEPTH).
queue_depth = {queue}
# Largest request body in bytes; larger gets 413 (--max-body-bytes, HIGHSIDE_MAX_BODY_BYTES).
max_body_bytes = {body}
# Prompt tokens prefilled per engine step while other streams decode (--prefill-chunk, HIGHSIDE_PREFILL_CHUNK).
prefill_chunk = {chunk}
# Seconds streams get to finish after SIGTERM (--shutdown-grace-secs, HIGHSIDE_SHUTDOWN_GRACE_SECS).
shutdown_grace_secs = {grace}
# TLS: certificate chain and key in PEM; paths relative to this directory (--tls-cert,
# --tls-key, HIGHSIDE_TLS_CERT, HIGHSIDE_TLS_KEY). Unset = plain HTTP.
# tls_cert = "tls/server.pem"
# tls_key = "tls/server.key"
# Mutual TLS: CA whose client certificates are accepted; each must be mapped to a user with
# `highside admin certs add` (--tls-client-ca, HIGHSIDE_TLS_CLIENT_CA).
# tls_client_ca = "tls/clients-ca.pem"
"#,
            listen = d.listen,
            threads = d.engine_threads,
            seqs = d.max_sequences,
            ctx = d.context_length,
            queue = d.queue_depth,
            body = d.max_body_bytes,
            chunk = d.prefill_chunk,
            grace = d.shutdown_grace_secs,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_file_parses_to_defaults() {
        let parsed = Config::parse(&Config::default_file_text(), "default").unwrap();
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn missing_file_means_defaults() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Config::load(dir.path()).unwrap(), Config::default());
    }

    #[test]
    fn unknown_key_is_rejected() {
        let err = Config::parse("listn = \"1.2.3.4:5\"", "t").unwrap_err();
        assert!(err.to_string().contains("listn"), "{err}");
    }

    #[test]
    fn out_of_range_is_rejected_with_the_key() {
        let err = Config::parse("max_sequences = 0", "t").unwrap_err();
        assert!(err.to_string().contains("max_sequences"), "{err}");
        let err = Config::parse("listen = \"localhost\"", "t").unwrap_err();
        assert!(err.to_string().contains("listen"), "{err}");
    }

    #[test]
    fn tls_settings_must_be_complete() {
        assert!(Config::parse("tls_cert = \"a\"", "t").is_err());
        assert!(Config::parse("tls_client_ca = \"c\"", "t").is_err());
        let c = Config::parse(
            "tls_cert = \"a\"\ntls_key = \"b\"\ntls_client_ca = \"c\"",
            "t",
        )
        .unwrap();
        assert_eq!(c.tls_client_ca.as_deref(), Some("c"));
    }

    #[test]
    fn partial_file_keeps_other_defaults() {
        let c = Config::parse("context_length = 4096", "t").unwrap();
        assert_eq!(c.context_length, 4096);
        assert_eq!(c.max_sequences, Config::default().max_sequences);
    }
}
