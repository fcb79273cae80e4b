//! The contenders: a child `highside serve`, the raw llama.cpp loop, llama-cpp-python's server.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use highside_engine::{raw_batched_decode, Engine, EngineConfig, RawBenchResult};
use highside_store::DataDir;

use crate::{BenchConfig, BenchError};

/// `highside init` on `dir`, as an operator runs it (the first operator and the audit signing
/// key, without which `serve` refuses to start); returns the operator's key.
pub(crate) fn init(exe: &std::path::Path, dir: &std::path::Path) -> Result<String, BenchError> {
    let out = Command::new(exe)
        .arg("--data")
        .arg(dir)
        .arg("init")
        .stderr(Stdio::null())
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    Ok(stdout
        .lines()
        .last()
        .and_then(|l| l.strip_prefix("HIGHSIDE_API_KEY="))
        .ok_or_else(|| setup(format!("highside init printed no key: {stdout}")))?
        .to_owned())
}

fn setup(msg: impl Into<String>) -> BenchError {
    BenchError::Setup(msg.into())
}

/// Waits (bounded) until `url` answers 200, failing early if the child died.
async fn wait_ready(child: &mut Child, url: &str, what: &str) -> Result<(), BenchError> {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if let Some(status) = child.try_wait()? {
            return Err(setup(format!("{what} exited during start-up ({status})")));
        }
        if reqwest::get(url)
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(setup(format!("{what} did not become ready at {url}")));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn free_port() -> Result<u16, BenchError> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `highside serve` on a fresh data directory with the model imported as `smollm2`.
pub(crate) struct HighsideServer {
    child: Child,
    pub(crate) base_url: String,
    /// The operator key the load generator authenticates with.
    pub(crate) api_key: String,
    _dir: tempfile::TempDir,
}

impl HighsideServer {
    pub(crate) async fn start(config: &BenchConfig) -> Result<Self, BenchError> {
        let dir = tempfile::tempdir()?;
        let api_key = init(&config.highside_exe, dir.path())?;
        let data = DataDir::open(dir.path()).map_err(|e| setup(e.to_string()))?;
        let store = data.open_store().map_err(|e| setup(e.to_string()))?;
        highside_catalog::import(
            &data,
            &store,
            &config.model,
            "smollm2",
            "UNCLASSIFIED",
            &mut highside_catalog::NoProgress,
        )
        .map_err(|e| setup(e.to_string()))?;
        let port = free_port()?;
        let max_seq = config.clients.iter().copied().max().unwrap_or(1);
        let mut child = Command::new(&config.highside_exe)
            .arg("--data")
            .arg(dir.path())
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--max-sequences", &max_seq.to_string()])
            .args(["--engine-threads", &config.threads.to_string()])
            .env("HIGHSIDE_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()?;
        let base_url = format!("http://127.0.0.1:{port}");
        wait_ready(
            &mut child,
            &format!("{base_url}/health/ready"),
            "highside serve",
        )
        .await?;
        Ok(Self {
            child,
            base_url,
            api_key,
            _dir: dir,
        })
    }

    pub(crate) async fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// llama-cpp-python's OpenAI-compatible server on the same model and thread count.
pub(crate) struct LlamaCppPython {
    child: Child,
    pub(crate) base_url: String,
}

impl LlamaCppPython {
    pub(crate) async fn start(config: &BenchConfig) -> Result<Self, BenchError> {
        let port = free_port()?;
        let threads = if config.threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
        } else {
            config.threads
        };
        let mut child = Command::new("python3")
            .args(["-m", "llama_cpp.server", "--model"])
            .arg(&config.model)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args([
                "--n_threads",
                &threads.to_string(),
                "--n_ctx",
                "2048",
                "--model_alias",
                "smollm2",
                // Its default aborts the running stream whenever a new request arrives,
                // which would count the peer's own choice against it as failures.
                "--interrupt_requests",
                "False",
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(
                std::env::temp_dir().join("highside-bench-llama-cpp-python.log"),
            )?)
            .spawn()
            .map_err(|e| {
                setup(format!(
                    "cannot start llama-cpp-python ({e}); pip install 'llama-cpp-python[server]'"
                ))
            })?;
        let base_url = format!("http://127.0.0.1:{port}");
        wait_ready(
            &mut child,
            &format!("{base_url}/v1/models"),
            "llama-cpp-python's server",
        )
        .await?;
        Ok(Self { child, base_url })
    }

    pub(crate) async fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The benchmark prompt as the server sees it: rendered with the model's template, tokenized.
pub(crate) fn chat_prompt_tokens(
    config: &BenchConfig,
    prompt: &str,
) -> Result<Vec<i32>, BenchError> {
    let info = highside_gguf::validate_file(&config.model, &highside_gguf::Limits::default())
        .map_err(|e| setup(e.to_string()))?;
    let engine = Engine::load(
        &config.model,
        &EngineConfig {
            threads: config.threads,
            max_sequences: 1,
            context_length: 2048,
            queue_depth: 0,
            prefill_chunk: 64,
        },
    )?;
    let template = highside_template::ChatTemplate::new(
        info.chat_template
            .as_deref()
            .ok_or_else(|| setup("the model has no chat template"))?,
        &engine.info().bos_text,
        &engine.info().eos_text,
    )
    .map_err(|e| setup(e.to_string()))?;
    let text = template
        .render(&[highside_inference::Message::new("user", prompt)], true)
        .map_err(|e| setup(e.to_string()))?;
    Ok(engine.tokenize(&text, true))
}

/// The raw batched loop for `n_seq` sequences, median of `repeat` runs.
pub(crate) fn raw_loop(
    config: &BenchConfig,
    n_seq: u32,
    prompt: &[i32],
) -> Result<RawBenchResult, BenchError> {
    let mut runs = Vec::new();
    for _ in 0..config.repeat.max(1) {
        runs.push(raw_batched_decode(
            &config.model,
            config.threads,
            n_seq,
            prompt,
            config.max_tokens,
        )?);
    }
    runs.sort_by(|a, b| a.decode_tok_per_s.total_cmp(&b.decode_tok_per_s));
    Ok(runs[runs.len() / 2])
}
