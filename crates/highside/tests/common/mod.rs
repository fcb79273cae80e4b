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

/// A data directory with the demo model imported as `smollm2`.
pub fn data_dir_with_model() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = highside(dir.path(), &["init"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
    dir
}

pub struct Server {
    pub child: Child,
    pub base: String,
    pub dir: tempfile::TempDir,
}

impl Server {
    pub async fn start(extra: &[&str]) -> Self {
        let dir = data_dir_with_model();
        let port_file = dir.path().join("port");
        let child = Command::new(BIN)
            .arg("--data")
            .arg(dir.path())
            .args(["serve", "--listen", "127.0.0.1:0", "--port-file"])
            .arg(&port_file)
            .args(extra)
            .env("HIGHSIDE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn highside serve");
        let mut server = Self {
            child,
            base: String::new(),
            dir,
        };
        // Poll for readiness (a condition, with a deadline), never a fixed sleep.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            assert!(
                server.child.try_wait().unwrap().is_none(),
                "highside serve exited during start-up"
            );
            if let Ok(port) = std::fs::read_to_string(&port_file) {
                server.base = format!("http://127.0.0.1:{}", port.trim());
                let ready = reqwest::get(format!("{}/health/ready", server.base)).await;
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
