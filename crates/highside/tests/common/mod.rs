//! Drives the real `highside` binary: init, import, serve on a free port.
#![allow(dead_code)] // Each test binary uses a different part of these helpers.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_highside");

pub fn model_path() -> PathBuf {
    let path = std::env::var_os("HIGHSIDE_TEST_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache/highside/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    assert!(
        path.is_file(),
        "the demo model is missing at {}: run scripts/fetch-model or set HIGHSIDE_TEST_MODEL",
        path.display()
    );
    path
}

pub fn highside(data: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--data")
        .arg(data)
        .args(args)
        .env("HIGHSIDE_LOG", "warn")
        .output()
        .expect("run highside")
}

/// The key printed as the last line of `init` or `admin keys create`.
pub fn printed_key(stdout: &[u8]) -> String {
    let text = String::from_utf8_lossy(stdout);
    let last = text.lines().last().unwrap_or_default();
    last.strip_prefix("HIGHSIDE_API_KEY=")
        .unwrap_or_else(|| panic!("no key on the last line of: {text}"))
        .to_owned()
}

/// A data directory with the demo model imported as `smollm2`, and its operator's key.
pub fn data_dir_with_model() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = highside(dir.path(), &["init"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = printed_key(&out.stdout);
    let model = model_path();
    let out = highside(
        dir.path(),
        &[
            "models",
            "import",
            model.to_str().unwrap(),
            "--name",
            "smollm2",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (dir, key)
}

pub struct Server {
    pub child: Child,
    pub base: String,
    pub dir: tempfile::TempDir,
    /// The operator's key.
    pub key: String,
}

/// How to start a server beyond the defaults.
#[derive(Default)]
pub struct Options<'a> {
    /// Extra `serve` flags.
    pub args: &'a [&'a str],
    /// Where the server's stderr goes (inherited when `None`).
    pub log: Option<PathBuf>,
    /// `HIGHSIDE_LOG` (default `warn`).
    pub log_filter: Option<&'a str>,
    /// A client for readiness checks (https servers need their CA); plain by default.
    pub probe: Option<reqwest::Client>,
    /// `https` instead of `http`.
    pub tls: bool,
    /// Agency policies written to `DATA/policies.cedar` before the server starts.
    pub policies: Option<&'a str>,
}

impl Server {
    pub async fn start(extra: &[&str]) -> Self {
        Self::start_with(Options {
            args: extra,
            ..Options::default()
        })
        .await
    }

    pub async fn start_with(opts: Options<'_>) -> Self {
        let (dir, key) = data_dir_with_model();
        if let Some(p) = opts.policies {
            std::fs::write(dir.path().join("policies.cedar"), p).unwrap();
        }
        let port_file = dir.path().join("port");
        let stderr = match &opts.log {
            Some(path) => Stdio::from(std::fs::File::create(path).unwrap()),
            None => Stdio::inherit(),
        };
        let child = Command::new(BIN)
            .arg("--data")
            .arg(dir.path())
            .args(["serve", "--listen", "127.0.0.1:0", "--port-file"])
            .arg(&port_file)
            .args(opts.args)
            .env("HIGHSIDE_LOG", opts.log_filter.unwrap_or("warn"))
            // Tests fail authentication on purpose, many times, from one address; the
            // throttle has its own tests (which pass a lower `--auth-failures-per-minute`).
            .env("HIGHSIDE_AUTH_FAILURES_PER_MINUTE", "1000000")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn highside serve");
        let mut server = Self {
            child,
            base: String::new(),
            dir,
            key,
        };
        let probe = opts.probe.unwrap_or_default();
        // A TLS server's certificate names localhost; plain servers are reached by address.
        let (scheme, host) = if opts.tls {
            ("https", "localhost")
        } else {
            ("http", "127.0.0.1")
        };
        // Poll for readiness (a condition, with a deadline), never a fixed sleep.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            assert!(
                server.child.try_wait().unwrap().is_none(),
                "highside serve exited during start-up"
            );
            if let Ok(port) = std::fs::read_to_string(&port_file) {
                server.base = format!("{scheme}://{host}:{}", port.trim());
                let ready = probe
                    .get(format!("{}/health/ready", server.base))
                    .send()
                    .await;
                if ready.is_ok_and(|r| r.status() == 200) {
                    return server;
                }
            }
            assert!(
                Instant::now() < deadline,
                "highside serve did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A client that sends `key` on every request.
    pub fn client_with(key: &str) -> reqwest::Client {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {key}").parse().unwrap(),
        );
        reqwest::Client::builder()
            .default_headers(headers)
            .build()
            .unwrap()
    }

    /// POSTs JSON as `key`, expects 201, returns the body.
    pub async fn create(
        &self,
        key: &str,
        path: &str,
        body: serde_json::Value,
    ) -> serde_json::Value {
        let res = Self::client_with(key)
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.status(),
            201,
            "{path} {body}: {}",
            res.text().await.unwrap()
        );
        res.json().await.unwrap()
    }

    /// A client authenticated as the operator.
    pub fn http(&self) -> reqwest::Client {
        Self::client_with(&self.key)
    }

    /// Sends SIGTERM, waits for the exit, and keeps the data directory.
    pub async fn stop_keeping_data(mut self) -> (std::process::ExitStatus, tempfile::TempDir) {
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        (self.stop().await, dir)
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub async fn stop(mut self) -> std::process::ExitStatus {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "highside serve did not stop after SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
