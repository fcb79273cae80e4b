//! `highside bench gateway`: what Highside adds in front of an inference server. A static
//! upstream (an in-process HTTP server answering every chat request with the same completion)
//! is reached directly, through Highside (identity, reference monitor, durable audit records
//! and metering all on, the upstream configured as a route) and through LiteLLM's proxy, in
//! the same run, by the same load generator; added latency is the gateway's percentile minus
//! the direct one. A benchmark program, not a test.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::BenchError;

/// What to run.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The `highside` executable to start as the gateway under test.
    pub highside_exe: std::path::PathBuf,
    /// Concurrent connections, e.g. 1, 16, 64.
    pub connections: Vec<u32>,
    /// Requests measured per scenario (after a warm-up).
    pub requests: u32,
    /// Repetitions of each scenario; medians are reported.
    pub repeat: u32,
    /// Also run LiteLLM's proxy (`pip install 'litellm[proxy]'`).
    pub with_litellm: bool,
    /// Where to append the results table.
    pub results_file: Option<std::path::PathBuf>,
    /// The command line, recorded with the results.
    pub command: String,
}

const ANSWER: &str = r#"{"id":"chatcmpl-static","object":"chat.completion","created":1,"model":"static","choices":[{"index":0,"message":{"role":"assistant","content":"Paris."},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}"#;

/// The static upstream, on its own single-threaded runtime so it never waits on the load
/// generator's. Returns its port.
fn static_upstream() -> Result<u16, BenchError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let port = listener.local_addr()?.port();
    std::thread::Builder::new()
        .name("static-upstream".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the static upstream");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let app = axum::Router::new()
                    .route(
                        "/v1/chat/completions",
                        axum::routing::post(|| async {
                            (
                                [(axum::http::header::CONTENT_TYPE, "application/json")],
                                ANSWER,
                            )
                        }),
                    )
                    .route(
                        "/v1/models",
                        axum::routing::get(|| async {
                            (
                                [(axum::http::header::CONTENT_TYPE, "application/json")],
                                r#"{"object":"list","data":[{"id":"static","object":"model"}]}"#,
                            )
                        }),
                    );
                let _ = axum::serve(listener, app).await;
            });
        })?;
    Ok(port)
}

fn free_port() -> Result<u16, BenchError> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn wait_ready(child: &mut Child, url: &str, what: &str) -> Result<(), BenchError> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Some(status) = child.try_wait()? {
            return Err(BenchError::Setup(format!(
                "{what} exited during start-up ({status})"
            )));
        }
        if reqwest::get(url)
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(BenchError::Setup(format!(
                "{what} did not become ready at {url}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

struct Gateway {
    child: Child,
    url: String,
    key: Option<String>,
    model: &'static str,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn highside(exe: &std::path::Path, upstream: u16) -> Result<Gateway, BenchError> {
    let dir = tempfile::tempdir()?;
    let key = crate::peers::init(exe, dir.path())?;
    let toml = format!(
        "\n[[deployments]]\nname = \"static\"\nprotocol = \"openai\"\nurl = \"http://127.0.0.1:{upstream}/v1\"\nmodel = \"static\"\nlabel = \"UNCLASSIFIED\"\nmax_concurrency = 1024\n[[routes]]\nmodel = \"static\"\ndeployments = [{{ name = \"static\" }}]\n"
    );
    let cfg = dir.path().join("highside.toml");
    let mut text = std::fs::read_to_string(&cfg).unwrap_or_default();
    text.push_str(&toml);
    std::fs::write(&cfg, text)?;
    let port = free_port()?;
    let mut child = Command::new(exe)
        .arg("--data")
        .arg(dir.path())
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("HIGHSIDE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let url = format!("http://127.0.0.1:{port}");
    wait_ready(&mut child, &format!("{url}/health/ready"), "highside serve").await?;
    Ok(Gateway {
        child,
        url,
        key: Some(key),
        model: "static",
        _dir: Some(dir),
    })
}

async fn litellm(upstream: u16) -> Result<Gateway, BenchError> {
    let dir = tempfile::tempdir()?;
    let cfg = dir.path().join("litellm.yaml");
    std::fs::write(
        &cfg,
        format!(
            "model_list:\n  - model_name: static\n    litellm_params:\n      model: openai/static\n      api_base: http://127.0.0.1:{upstream}/v1\n      api_key: sk-static\ngeneral_settings:\n  master_key: {LITELLM_KEY}\n"
        ),
    )?;
    let port = free_port()?;
    let mut child = Command::new("litellm")
        .arg("--config")
        .arg(&cfg)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(
            std::env::temp_dir().join("highside-bench-litellm.log"),
        )?)
        .spawn()?;
    let url = format!("http://127.0.0.1:{port}");
    wait_ready(&mut child, &format!("{url}/health/liveliness"), "litellm").await?;
    Ok(Gateway {
        child,
        url,
        key: Some(LITELLM_KEY.to_owned()),
        model: "static",
        _dir: Some(dir),
    })
}

/// LiteLLM refuses to start without a master key (its only authentication without a
/// database), so it checks one too.
const LITELLM_KEY: &str = "sk-highside-bench-0123456789abcdef";

/// One measured scenario.
#[derive(Debug, Clone, Copy, Default)]
struct Measured {
    p50_ms: f64,
    p99_ms: f64,
    rps: f64,
    errors: u64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn measure(
    url: &str,
    key: Option<&str>,
    model: &str,
    conns: u32,
    requests: u32,
) -> Result<Measured, BenchError> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(conns as usize)
        .build()?;
    let body = serde_json::json!({"model": model, "messages": [{"role": "user", "content": "What is the capital of France?"}], "max_tokens": 8});
    let target = format!("{url}/v1/chat/completions");
    // Warm-up: connections open, caches filled.
    for _ in 0..conns.max(20) {
        let mut r = http.post(&target).json(&body);
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        let _ = r.send().await?.bytes().await;
    }
    let left = Arc::new(AtomicU32::new(requests));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (http, target, body, left) = (
            http.clone(),
            target.clone(),
            body.clone(),
            Arc::clone(&left),
        );
        let key = key.map(str::to_owned);
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            while left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                let t = Instant::now();
                let mut r = http.post(&target).json(&body);
                if let Some(k) = &key {
                    r = r.bearer_auth(k);
                }
                match r.send().await {
                    Ok(res) if res.status().is_success() => {
                        let _ = res.bytes().await;
                        lat.push(t.elapsed().as_secs_f64() * 1000.0);
                    }
                    _ => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let mut lat = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.map_err(|e| BenchError::Setup(e.to_string()))?;
        lat.extend(l);
        errors += e;
    }
    let wall = start.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    Ok(Measured {
        p50_ms: percentile(&lat, 0.5),
        p99_ms: percentile(&lat, 0.99),
        rps: lat.len() as f64 / wall,
        errors,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

async fn repeat(
    url: &str,
    key: Option<&str>,
    model: &str,
    conns: u32,
    cfg: &GatewayConfig,
) -> Result<Measured, BenchError> {
    let mut runs = Vec::new();
    for _ in 0..cfg.repeat.max(1) {
        runs.push(measure(url, key, model, conns, cfg.requests).await?);
    }
    Ok(Measured {
        p50_ms: median(runs.iter().map(|m| m.p50_ms).collect()),
        p99_ms: median(runs.iter().map(|m| m.p99_ms).collect()),
        rps: median(runs.iter().map(|m| m.rps).collect()),
        errors: runs.iter().map(|m| m.errors).sum(),
    })
}

/// Runs the benchmark and returns the report text.
pub async fn run(cfg: &GatewayConfig) -> Result<String, BenchError> {
    let upstream = static_upstream()?;
    let direct_url = format!("http://127.0.0.1:{upstream}");
    let mut rows: Vec<(&str, u32, Measured)> = Vec::new();
    let bar = indicatif::ProgressBar::new(
        (cfg.connections.len() * if cfg.with_litellm { 3 } else { 2 }) as u64,
    );
    for &c in &cfg.connections {
        rows.push((
            "direct",
            c,
            repeat(&direct_url, None, "static", c, cfg).await?,
        ));
        bar.inc(1);
    }
    {
        let hs = highside(&cfg.highside_exe, upstream).await?;
        for &c in &cfg.connections {
            rows.push((
                "highside",
                c,
                repeat(&hs.url, hs.key.as_deref(), hs.model, c, cfg).await?,
            ));
            bar.inc(1);
        }
    }
    if cfg.with_litellm {
        let ll = litellm(upstream).await?;
        for &c in &cfg.connections {
            rows.push((
                "litellm",
                c,
                repeat(&ll.url, ll.key.as_deref(), ll.model, c, cfg).await?,
            ));
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    let text = render(cfg, &rows);
    if let Some(path) = &cfg.results_file {
        crate::report::append(path, &text)?;
    }
    Ok(text)
}

fn render(cfg: &GatewayConfig, rows: &[(&str, u32, Measured)]) -> String {
    use std::fmt::Write;
    let find = |who: &str, c: u32| rows.iter().find(|r| r.0 == who && r.1 == c).map(|r| r.2);
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\n## Gateway overhead: Highside vs LiteLLM in front of a static upstream ({now})\n"
    );
    let _ = writeln!(s, "Command: `{}`\n", cfg.command);
    let _ = writeln!(s, "Non-streaming chat requests; {} measured per scenario after a warm-up, medians of {} runs. Added = gateway minus direct at the same percentile.\n", cfg.requests, cfg.repeat);
    let _ = writeln!(
        s,
        "| target | conns | p50 ms | p99 ms | added p50 ms | added p99 ms | req/s | errors |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for (who, c, m) in rows {
        let d = find("direct", *c).unwrap_or_default();
        let (a50, a99) = if *who == "direct" {
            ("-".to_owned(), "-".to_owned())
        } else {
            (
                format!("{:.2}", m.p50_ms - d.p50_ms),
                format!("{:.2}", m.p99_ms - d.p99_ms),
            )
        };
        let _ = writeln!(
            s,
            "| {who} | {c} | {:.2} | {:.2} | {a50} | {a99} | {:.0} | {} |",
            m.p50_ms, m.p99_ms, m.rps, m.errors
        );
    }
    let max = |who: &str| {
        rows.iter()
            .filter(|r| r.0 == who)
            .map(|r| r.2.rps)
            .fold(0.0, f64::max)
    };
    if cfg.with_litellm && max("litellm") > 0.0 {
        let _ = writeln!(
            s,
            "\nMaximum req/s: Highside {:.0}, LiteLLM {:.0}: ratio {:.1}x.",
            max("highside"),
            max("litellm"),
            max("highside") / max("litellm")
        );
    }
    s
}
