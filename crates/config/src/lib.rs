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
    /// Seconds a client has to send a request's headers, and that an idle keep-alive
    /// connection is kept open waiting for the next request. Default 10.
    pub header_timeout_secs: u64,
    /// Seconds a client has to send a request's whole body; slower is 408. Default 30.
    pub body_timeout_secs: u64,
    /// Seconds an answer may wait for a client that does not read it before the connection
    /// is closed. Default 60.
    pub write_timeout_secs: u64,
    /// Connections one client address (an IPv6 /64) may hold open at once; beyond, new ones
    /// are closed (the node serves 1,000 at most). Default 128.
    pub connections_per_address: u32,
    /// Failed authentications one client address may make in a burst; beyond it, 429 until
    /// the allowance refills at the same number per minute. Default 20.
    pub auth_failures_per_minute: u32,
    /// Seconds between the audit records that sum up the failures refused by that throttle
    /// (one per address). Default 60.
    pub auth_failure_report_secs: u64,
    /// Free bytes the audit log's disk must keep: below this, new work is refused with 503
    /// (the log is never left to fill the disk). Default 64 MiB.
    pub audit_min_free_bytes: u64,
    /// PEM certificate chain; with `tls_key`, the API is served over TLS. Default: none
    /// (plain HTTP). Relative paths in the file are relative to the data directory.
    pub tls_cert: Option<String>,
    /// PEM private key for `tls_cert`. Default: none.
    pub tls_key: Option<String>,
    /// PEM CA certificates; when set, every client must present a certificate this CA issued
    /// (mutual TLS), mapped to a user. Default: none.
    pub tls_client_ca: Option<String>,
    /// External inference servers (`[[deployments]]`). Default: none.
    pub deployments: Vec<Deployment>,
    /// Public model names served by deployments (`[[routes]]`). Default: none.
    pub routes: Vec<Route>,
}

/// The wire protocol of an external inference server (`protocol = "openai" | "anthropic"`).
pub use highside_inference::Protocol;

/// One external inference server and model, configured by the operator only: no request
/// can name a URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deployment {
    /// Unique name, used in routes, logs and audit records.
    pub name: String,
    /// Wire protocol.
    pub protocol: Protocol,
    /// Base URL: `http(s)://host:port/v1` for OpenAI-style servers, `http(s)://host:port` for
    /// Anthropic.
    pub url: String,
    /// The model name the upstream expects.
    pub model: String,
    /// Accreditation: the highest label this deployment may see (a marking such as `SECRET`).
    pub label: String,
    /// Environment variable holding the credential (bearer key or Anthropic `x-api-key`).
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// File holding the credential (relative paths: the data directory).
    #[serde(default)]
    pub api_key_file: Option<String>,
    /// Seconds to connect. Default 5.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
    /// Seconds a whole request may take. Default 300.
    #[serde(default = "default_request_timeout")]
    pub timeout_secs: u64,
    /// Requests in flight at once; more wait for a place. Default 64.
    #[serde(default = "default_concurrency")]
    pub max_concurrency: u32,
    /// The model's context window in tokens: what is reserved for a request without
    /// `max_tokens`. Default 8192.
    #[serde(default = "default_upstream_context")]
    pub context_length: u32,
}

fn default_connect_timeout() -> u64 {
    5
}
fn default_request_timeout() -> u64 {
    300
}
fn default_concurrency() -> u32 {
    64
}
fn default_upstream_context() -> u32 {
    8192
}

/// A public model name and the deployments that serve it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// The name clients ask for.
    pub model: String,
    /// Deployments by name with weights; the first choice is drawn by weight, the rest are
    /// fallbacks in weight order.
    pub deployments: Vec<RouteTarget>,
    /// Attempts per deployment on retryable errors (connection, timeout, 429, 5xx). Default 2.
    #[serde(default = "default_attempts")]
    pub attempts: u32,
}

fn default_attempts() -> u32 {
    2
}

/// One deployment of a route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteTarget {
    /// A deployment's name.
    pub name: String,
    /// Relative share of first choices. Default 1.
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
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
            header_timeout_secs: 10,
            body_timeout_secs: 30,
            write_timeout_secs: 60,
            connections_per_address: 128,
            auth_failures_per_minute: 20,
            auth_failure_report_secs: 60,
            audit_min_free_bytes: 64 * 1024 * 1024,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            deployments: Vec::new(),
            routes: Vec::new(),
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
    /// A deployment or route is inconsistent.
    #[error("{what}: {reason}")]
    Invalid {
        /// Which deployment or route.
        what: String,
        /// What is wrong.
        reason: String,
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
        for (name, v) in [
            ("header_timeout_secs", self.header_timeout_secs),
            ("body_timeout_secs", self.body_timeout_secs),
            ("write_timeout_secs", self.write_timeout_secs),
            ("auth_failure_report_secs", self.auth_failure_report_secs),
        ] {
            check(
                (1..=3600).contains(&v),
                name,
                v,
                "must be 1 to 3600 seconds",
            )?;
        }
        check(
            (1..=1000).contains(&self.connections_per_address),
            "connections_per_address",
            self.connections_per_address,
            "must be 1 to 1000",
        )?;
        check(
            (1..=1_000_000).contains(&self.auth_failures_per_minute),
            "auth_failures_per_minute",
            self.auth_failures_per_minute,
            "must be 1 to 1000000",
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
        self.validate_upstreams()
    }

    fn validate_upstreams(&self) -> Result<(), ConfigError> {
        let bad = |what: String, reason: &str| ConfigError::Invalid {
            what,
            reason: reason.to_owned(),
        };
        let mut names = std::collections::BTreeSet::new();
        for d in &self.deployments {
            let what = format!("deployment '{}'", d.name);
            if d.name.is_empty() || !names.insert(d.name.as_str()) {
                return Err(bad(what, "names must be unique and non-empty"));
            }
            let rest = d
                .url
                .strip_prefix("http://")
                .or_else(|| d.url.strip_prefix("https://"))
                .filter(|r| !r.is_empty() && !d.url.contains(char::is_whitespace));
            let Some(rest) = rest else {
                return Err(bad(what, "url must be an http:// or https:// URL"));
            };
            // Credentials in a URL would be logged and sent as Basic auth: use api_key_*.
            if rest
                .split(['/', '?', '#'])
                .next()
                .is_some_and(|authority| authority.contains('@'))
            {
                return Err(bad(
                    what,
                    "url must not hold credentials (user:password@); use api_key_env or api_key_file",
                ));
            }
            if d.model.is_empty() || d.label.trim().is_empty() {
                return Err(bad(what, "model and label are required"));
            }
            if d.api_key_env.is_some() && d.api_key_file.is_some() {
                return Err(bad(what, "give api_key_env or api_key_file, not both"));
            }
            if !(1..=3600).contains(&d.connect_timeout_secs)
                || !(1..=86_400).contains(&d.timeout_secs)
            {
                return Err(bad(
                    what,
                    "timeouts must be 1 s to 1 hour (connect) and 1 day (request)",
                ));
            }
            if !(1..=100_000).contains(&d.max_concurrency)
                || !(64..=10_000_000).contains(&d.context_length)
            {
                return Err(bad(
                    what,
                    "max_concurrency must be 1 to 100000 and context_length 64 to 10^7",
                ));
            }
        }
        let mut models = std::collections::BTreeSet::new();
        for r in &self.routes {
            let what = format!("route '{}'", r.model);
            if r.model.is_empty() || !models.insert(r.model.as_str()) {
                return Err(bad(what, "route model names must be unique and non-empty"));
            }
            if r.deployments.is_empty() || !(1..=10).contains(&r.attempts) {
                return Err(bad(
                    what,
                    "needs at least one deployment and 1 to 10 attempts",
                ));
            }
            for t in &r.deployments {
                if !names.contains(t.name.as_str()) {
                    return Err(bad(what, &format!("no deployment named '{}'", t.name)));
                }
                if t.weight == 0 || t.weight > 1_000_000 {
                    return Err(bad(what, "weights must be 1 to 1000000"));
                }
            }
        }
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
# Seconds a client has to send its headers, and an idle keep-alive connection stays open.
header_timeout_secs = {header}
# Seconds a client has to send a whole request body (slower: 408).
body_timeout_secs = {bodyt}
# Seconds an answer waits for a client that does not read it before the connection closes.
write_timeout_secs = {write}
# Connections one client address may hold open at once; beyond, new ones are closed. A
# reverse proxy in front makes every client one address: raise it there.
connections_per_address = {conns}
# Failed authentications per client address in a burst, refilled per minute (beyond: 429).
auth_failures_per_minute = {authf}
# Seconds between the audit records that count the failures refused with 429, per address.
auth_failure_report_secs = {authr}
# Free bytes the audit log's disk must keep; below this, new work gets 503.
audit_min_free_bytes = {free}
# TLS: certificate chain and key in PEM; paths relative to this directory (--tls-cert,
# --tls-key, HIGHSIDE_TLS_CERT, HIGHSIDE_TLS_KEY). Unset = plain HTTP.
# tls_cert = "tls/server.pem"
# tls_key = "tls/server.key"
# Mutual TLS: CA whose client certificates are accepted; each must be mapped to a user with
# `highside admin certs add` (--tls-client-ca, HIGHSIDE_TLS_CLIENT_CA).
# tls_client_ca = "tls/clients-ca.pem"

# External inference servers, and the public model names they serve. A request can never
# choose where Highside connects: only this file names URLs. A route falls back from one
# deployment to the next only where the deployment's accreditation (label) dominates the
# request's label.
# [[deployments]]
# name = "gpu-a"
# protocol = "openai"            # or "anthropic"
# url = "http://10.0.0.5:8000/v1"
# model = "llama-3.1-70b"        # the upstream's model name
# label = "SECRET"               # its accreditation
# api_key_env = "GPU_A_KEY"      # or api_key_file = "gpu-a.key"; never logged
# connect_timeout_secs = 5
# timeout_secs = 300
# max_concurrency = 64
# context_length = 8192
# [[routes]]
# model = "llama-70b"
# deployments = [{{ name = "gpu-a", weight = 3 }}, {{ name = "gpu-b" }}]
# attempts = 2
"#,
            listen = d.listen,
            threads = d.engine_threads,
            seqs = d.max_sequences,
            ctx = d.context_length,
            queue = d.queue_depth,
            body = d.max_body_bytes,
            chunk = d.prefill_chunk,
            grace = d.shutdown_grace_secs,
            header = d.header_timeout_secs,
            bodyt = d.body_timeout_secs,
            write = d.write_timeout_secs,
            conns = d.connections_per_address,
            authf = d.auth_failures_per_minute,
            authr = d.auth_failure_report_secs,
            free = d.audit_min_free_bytes,
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
    fn upstreams_parse_and_are_checked() {
        let good = r#"
[[deployments]]
name = "a"
protocol = "openai"
url = "http://127.0.0.1:9000/v1"
model = "m"
label = "SECRET"
api_key_env = "A_KEY"
[[deployments]]
name = "b"
protocol = "anthropic"
url = "https://claude.example"
model = "claude"
label = "UNCLASSIFIED"
[[routes]]
model = "public"
deployments = [{ name = "a", weight = 3 }, { name = "b" }]
"#;
        let c = Config::parse(good, "t").unwrap();
        assert_eq!(c.deployments[1].protocol, Protocol::Anthropic);
        assert_eq!(c.routes[0].deployments[1].weight, 1);
        assert_eq!(c.routes[0].attempts, 2);
        for (from, to) in [
            ("name = \"b\"", "name = \"a\""),
            ("http://127", "file:///127"),
            ("http://127", "http://user:pw@127"),
            ("{ name = \"b\" }", "{ name = \"c\" }"),
            ("weight = 3", "weight = 0"),
            (
                "api_key_env = \"A_KEY\"",
                "api_key_env = \"A\"\napi_key_file = \"f\"",
            ),
            ("protocol = \"openai\"", "protocol = \"grpc\""),
        ] {
            let bad = good.replacen(from, to, 1);
            assert!(Config::parse(&bad, "t").is_err(), "{bad}");
        }
    }

    #[test]
    fn partial_file_keeps_other_defaults() {
        let c = Config::parse("context_length = 4096", "t").unwrap();
        assert_eq!(c.context_length, 4096);
        assert_eq!(c.max_sequences, Config::default().max_sequences);
    }
}
