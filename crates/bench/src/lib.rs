//! `highside bench serve`: drives a real `highside serve` over HTTP with 1..N concurrent
//! streaming clients and, in the same run on the same machine, the raw llama.cpp batched loop
//! (no HTTP, no scheduler) and llama-cpp-python's OpenAI server under the same load, then
//! prints a table of medians and ratios and appends it to `bench/RESULTS.md`.
//! A benchmark program, not a test: it asserts nothing and is never run by the test suite.
#![forbid(unsafe_code)]

pub mod gateway;
mod load;
pub mod monitor;
mod peers;
mod report;

use std::path::PathBuf;

pub use load::{LoadResult, Scenario};

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// The `highside` executable to start as the server under test.
    pub highside_exe: PathBuf,
    /// The GGUF model.
    pub model: PathBuf,
    /// Concurrent client counts.
    pub clients: Vec<u32>,
    /// Tokens generated per request.
    pub max_tokens: u32,
    /// Requests per scenario at least (one per client when there are more clients).
    pub min_requests: u32,
    /// Repetitions of each scenario; medians are reported.
    pub repeat: u32,
    /// Engine threads for every contender.
    pub threads: u32,
    /// Also run llama-cpp-python's server (needs `pip install 'llama-cpp-python[server]'`).
    pub with_llama_cpp_python: bool,
    /// Where to append the results table.
    pub results_file: Option<PathBuf>,
    /// The command line, recorded with the results.
    pub command: String,
}

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Preparing a server or data directory failed.
    #[error("{0}")]
    Setup(String),
    /// An HTTP request failed.
    #[error("HTTP request failed: {0}")]
    Http(#[from] reqwest::Error),
    /// A file operation failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The raw loop failed.
    #[error(transparent)]
    Engine(#[from] highside_engine::EngineError),
}

/// The prompt every contender continues: long answers, so few requests end early.
pub const PROMPT: &str =
    "Write a long, detailed story about a lighthouse keeper who finds a message in a bottle.";

/// Runs everything and returns the report text.
pub async fn run(config: &BenchConfig) -> Result<String, BenchError> {
    let mut rows = Vec::new();
    let raw_prompt = peers::chat_prompt_tokens(config, PROMPT)?;
    let server = peers::HighsideServer::start(config).await?;
    for &c in &config.clients {
        let scenario = Scenario::new(
            &server.base_url,
            Some(server.api_key.as_str()),
            "smollm2",
            c,
            config,
        );
        rows.push(("highside", c, load::repeat(&scenario, config.repeat).await?));
    }
    server.stop().await;

    let mut raw = Vec::new();
    for &c in &config.clients {
        raw.push((c, peers::raw_loop(config, c, &raw_prompt)?));
    }

    if config.with_llama_cpp_python {
        let peer = peers::LlamaCppPython::start(config).await?;
        for &c in &config.clients {
            let scenario = Scenario::new(&peer.base_url, None, "smollm2", c, config);
            rows.push((
                "llama-cpp-python",
                c,
                load::repeat(&scenario, config.repeat).await?,
            ));
        }
        peer.stop().await;
    }
    let text = report::render(config, raw_prompt.len(), &rows, &raw);
    if let Some(path) = &config.results_file {
        report::append(path, &text)?;
    }
    Ok(text)
}
