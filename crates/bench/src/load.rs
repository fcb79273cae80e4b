//! The load generator: N clients, each sending streaming chat requests back to back.

use std::time::{Duration, Instant};

use futures_util::StreamExt;

use crate::{BenchConfig, BenchError, PROMPT};

/// One load shape against one server.
#[derive(Debug, Clone)]
pub struct Scenario {
    base_url: String,
    api_key: Option<String>,
    model: String,
    clients: u32,
    requests_per_client: u32,
    max_tokens: u32,
}

/// Medians over the repetitions of one scenario.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadResult {
    /// Generated tokens per second over all clients and the whole run.
    pub aggregate_tok_s: f64,
    /// Per-stream decode rate (tokens after the first / time from first to last token).
    pub stream_tok_s: f64,
    /// Time to first token, median over requests, in ms.
    pub ttft_p50_ms: f64,
    /// Time to first token, 99th percentile, in ms.
    pub ttft_p99_ms: f64,
    /// Gap between streamed chunks, median, in ms.
    pub itl_p50_ms: f64,
    /// Gap between streamed chunks, 99th percentile, in ms.
    pub itl_p99_ms: f64,
    /// Mean tokens per request (to see early stops).
    pub tokens_per_request: f64,
    /// Requests that failed (HTTP error or a stream cut short), summed over repetitions.
    pub errors: u64,
}

struct RequestTrace {
    ttft: Duration,
    gaps: Vec<Duration>,
    tokens: u64,
    decode_span: Duration,
}

impl Scenario {
    /// A scenario with `clients` concurrent streams.
    pub fn new(
        base_url: &str,
        api_key: Option<&str>,
        model: &str,
        clients: u32,
        config: &BenchConfig,
    ) -> Self {
        Self {
            base_url: base_url.to_owned(),
            api_key: api_key.map(str::to_owned),
            model: model.to_owned(),
            clients,
            // At least `min_requests` per scenario, spread over the clients.
            requests_per_client: config.min_requests.div_ceil(clients.max(1)).max(1),
            max_tokens: config.max_tokens,
        }
    }

    async fn one_request(&self, http: &reqwest::Client) -> Result<RequestTrace, BenchError> {
        let body = serde_json::json!({
            "model": self.model,
            "messages": [{"role": "user", "content": PROMPT}],
            "max_tokens": self.max_tokens,
            "temperature": 0,
            "stream": true,
            "stream_options": {"include_usage": true},
        });
        let start = Instant::now();
        let mut req = http.post(format!("{}/v1/chat/completions", self.base_url));
        if let Some(key) = &self.api_key {
            req = req.bearer_auth(key);
        }
        let res = req.json(&body).send().await?.error_for_status()?;
        let mut stream = res.bytes_stream();
        let mut buf = Vec::new();
        let mut first: Option<Instant> = None;
        let mut last = start;
        let mut gaps = Vec::new();
        let mut chunks = 0u64;
        let mut usage_tokens = None;
        while let Some(bytes) = stream.next().await {
            let now = Instant::now();
            buf.extend_from_slice(&bytes?);
            while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
                let event: Vec<u8> = buf.drain(..end + 2).collect();
                let text = String::from_utf8_lossy(&event);
                let Some(data) = text.trim().strip_prefix("data: ") else {
                    continue;
                };
                if data == "[DONE]" {
                    continue;
                }
                let Ok(v) = serde_json::from_str::<serde_json::Value>(data) else {
                    continue;
                };
                if let Some(n) = v["usage"]["completion_tokens"].as_u64() {
                    usage_tokens = Some(n);
                }
                let has_text = v["choices"][0]["delta"]["content"]
                    .as_str()
                    .is_some_and(|s| !s.is_empty());
                if has_text {
                    chunks += 1;
                    match first {
                        None => first = Some(now),
                        Some(_) => gaps.push(now - last),
                    }
                    last = now;
                }
            }
        }
        let first = first.unwrap_or(last);
        Ok(RequestTrace {
            ttft: first - start,
            gaps,
            tokens: usage_tokens.unwrap_or(chunks),
            decode_span: last - first,
        })
    }

    /// Runs the scenario once.
    async fn run_once(&self) -> Result<(f64, Vec<RequestTrace>, u64), BenchError> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()?;
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..self.clients {
            let me = self.clone();
            let http = http.clone();
            tasks.push(tokio::spawn(async move {
                let mut traces = Vec::new();
                let mut errors = 0u64;
                for _ in 0..me.requests_per_client {
                    // A failed request is counted and reported, not fatal to the whole run.
                    match me.one_request(&http).await {
                        Ok(t) => traces.push(t),
                        Err(e) => {
                            if errors == 0 {
                                eprintln!("a request to {} failed: {e:?}", me.base_url);
                            }
                            errors += 1;
                        }
                    }
                }
                (traces, errors)
            }));
        }
        let mut traces = Vec::new();
        let mut errors = 0;
        for t in tasks {
            let (t, e) = t.await.map_err(|e| BenchError::Setup(e.to_string()))?;
            traces.extend(t);
            errors += e;
        }
        Ok((start.elapsed().as_secs_f64(), traces, errors))
    }
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((p * values.len() as f64).ceil() as usize).clamp(1, values.len());
    values[rank - 1]
}

fn median(mut values: Vec<f64>) -> f64 {
    percentile(&mut values, 0.5)
}

/// Runs a scenario `times` times and reports the median of each metric.
pub async fn repeat(scenario: &Scenario, times: u32) -> Result<LoadResult, BenchError> {
    let bar = indicatif::ProgressBar::new(u64::from(times));
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:20}] {pos}/{len}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_message(format!(
        "{} clients against {}",
        scenario.clients, scenario.base_url
    ));
    let mut runs = Vec::new();
    for _ in 0..times.max(1) {
        let (wall, traces, errors) = scenario.run_once().await?;
        let tokens: u64 = traces.iter().map(|t| t.tokens).sum();
        let mut ttft: Vec<f64> = traces.iter().map(|t| t.ttft.as_secs_f64() * 1e3).collect();
        let mut itl: Vec<f64> = traces
            .iter()
            .flat_map(|t| t.gaps.iter().map(|g| g.as_secs_f64() * 1e3))
            .collect();
        let stream: Vec<f64> = traces
            .iter()
            .filter(|t| t.tokens > 1 && !t.decode_span.is_zero())
            .map(|t| (t.tokens - 1) as f64 / t.decode_span.as_secs_f64())
            .collect();
        runs.push(LoadResult {
            aggregate_tok_s: tokens as f64 / wall,
            stream_tok_s: median(stream),
            ttft_p50_ms: percentile(&mut ttft, 0.5),
            ttft_p99_ms: percentile(&mut ttft, 0.99),
            itl_p50_ms: percentile(&mut itl, 0.5),
            itl_p99_ms: percentile(&mut itl, 0.99),
            tokens_per_request: tokens as f64 / traces.len().max(1) as f64,
            errors,
        });
        bar.inc(1);
    }
    bar.finish_and_clear();
    let m = |f: fn(&LoadResult) -> f64| median(runs.iter().map(f).collect());
    Ok(LoadResult {
        aggregate_tok_s: m(|r| r.aggregate_tok_s),
        stream_tok_s: m(|r| r.stream_tok_s),
        ttft_p50_ms: m(|r| r.ttft_p50_ms),
        ttft_p99_ms: m(|r| r.ttft_p99_ms),
        itl_p50_ms: m(|r| r.itl_p50_ms),
        itl_p99_ms: m(|r| r.itl_p99_ms),
        tokens_per_request: m(|r| r.tokens_per_request),
        errors: runs.iter().map(|r| r.errors).sum(),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn percentiles_use_nearest_rank() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(super::percentile(&mut v, 0.5), 50.0);
        assert_eq!(super::percentile(&mut v, 0.99), 99.0);
        assert_eq!(super::percentile(&mut [3.0], 0.99), 3.0);
        assert!(super::percentile(&mut [], 0.5).is_nan());
    }
}
