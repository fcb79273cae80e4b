//! The results table, with ratios against the peers and the targets.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use highside_engine::RawBenchResult;

use crate::{BenchConfig, LoadResult};

fn find<'a>(rows: &'a [(&str, u32, LoadResult)], who: &str, c: u32) -> Option<&'a LoadResult> {
    rows.iter()
        .find(|(w, n, _)| *w == who && *n == c)
        .map(|(_, _, r)| r)
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "NOT met"
    }
}

/// Renders the markdown section for one run.
pub(crate) fn render(
    config: &BenchConfig,
    prompt_tokens: usize,
    rows: &[(&str, u32, LoadResult)],
    raw: &[(u32, RawBenchResult)],
) -> String {
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut s = String::new();
    let _ = writeln!(s, "## Serving benchmark, {now}\n");
    let _ = writeln!(s, "Command: `{}`\n", config.command);
    let _ = writeln!(
        s,
        "Machine: {cores} cores. Model: `{}`. Chat prompt of {prompt_tokens} tokens, greedy, max_tokens {}, at least {} requests per scenario (one per client beyond that), medians of {} repetitions. Engine threads: {} (0 = all cores).\n",
        config.model.file_name().map(|f| f.to_string_lossy()).unwrap_or_default(),
        config.max_tokens,
        config.min_requests,
        config.repeat,
        config.threads,
    );
    let _ = writeln!(
        s,
        "| clients | Highside tok/s | raw loop tok/s (decode only) | raw loop tok/s (with prefill) | Highside / raw (with prefill) | llama-cpp-python tok/s | Highside / llama-cpp-python | Highside TTFT p50 / p99 ms | Highside ITL p50 / p99 ms | llama-cpp-python TTFT p50 / p99 ms | llama-cpp-python ITL p50 / p99 ms | Highside per-stream tok/s | tokens/request | failed requests (Highside / llama-cpp-python) |"
    );
    let _ = writeln!(
        s,
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for (c, r) in raw {
        let hs = find(rows, "highside", *c);
        let lcp = find(rows, "llama-cpp-python", *c);
        let fmt1 = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}"));
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
            _ => "-".to_owned(),
        };
        let pair = |r: Option<&LoadResult>, ttft: bool| {
            r.map_or("-".to_owned(), |r| {
                if ttft {
                    format!("{:.0} / {:.0}", r.ttft_p50_ms, r.ttft_p99_ms)
                } else {
                    format!("{:.1} / {:.1}", r.itl_p50_ms, r.itl_p99_ms)
                }
            })
        };
        let hs_agg = hs.map(|r| r.aggregate_tok_s);
        let lcp_agg = lcp.map(|r| r.aggregate_tok_s);
        let _ = writeln!(
            s,
            "| {c} | {} | {:.1} | {:.1} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {} |",
            fmt1(hs_agg),
            r.decode_tok_per_s,
            r.end_to_end_tok_per_s,
            ratio(hs_agg, Some(r.end_to_end_tok_per_s)),
            fmt1(lcp_agg),
            ratio(hs_agg, lcp_agg),
            pair(hs, true),
            pair(hs, false),
            pair(lcp, true),
            pair(lcp, false),
            fmt1(hs.map(|r| r.stream_tok_s)),
            fmt1(hs.map(|r| r.tokens_per_request)),
            hs.map_or("-".to_owned(), |r| r.errors.to_string()),
            lcp.map_or("-".to_owned(), |r| r.errors.to_string()),
        );
    }
    let _ = writeln!(
        s,
        "\n\"tok/s\" is generated tokens over the wall time of the whole scenario (prefill and HTTP included for the servers). The raw loop is llama.cpp alone on the same prompts: \"with prefill\" prefills every prompt in one batch and then decodes all sequences together, the best schedule there is for this load; \"decode only\" leaves the prefill out. Per-stream tok/s is (tokens - 1) / (last token time - first token time).\n"
    );
    let raw_of = |c: u32| {
        raw.iter()
            .find(|(n, _)| *n == c)
            .map(|(_, r)| r.end_to_end_tok_per_s)
    };
    let raw_decode = |c: u32| {
        raw.iter()
            .find(|(n, _)| *n == c)
            .map(|(_, r)| r.decode_tok_per_s)
    };
    if let (Some(hs), Some(raw1)) = (find(rows, "highside", 1), raw_decode(1)) {
        let ratio = hs.stream_tok_s / raw1;
        let _ = writeln!(
            s,
            "- One stream: decodes at {:.1} tok/s vs the raw loop's decode rate of {raw1:.1} = {:.0}% (target >= 95%: {}).",
            hs.stream_tok_s,
            ratio * 100.0,
            verdict(ratio >= 0.95)
        );
    }
    if let (Some(hs), Some(raw32)) = (find(rows, "highside", 32), raw_of(32)) {
        let ratio = hs.aggregate_tok_s / raw32;
        let _ = writeln!(
            s,
            "- 32 streams: {:.1} tok/s vs the raw loop's {raw32:.1} with prefill = {:.0}% (target >= 90%: {}).",
            hs.aggregate_tok_s,
            ratio * 100.0,
            verdict(ratio >= 0.90)
        );
    }
    if let (Some(hs), Some(lcp)) = (
        find(rows, "highside", 16),
        find(rows, "llama-cpp-python", 16),
    ) {
        let ratio = hs.aggregate_tok_s / lcp.aggregate_tok_s;
        let _ = writeln!(
            s,
            "- 16 clients: {ratio:.1}x llama-cpp-python's aggregate (target >= 3x: {}).",
            verdict(ratio >= 3.0)
        );
    }
    s
}

/// Appends a section to the results file, creating it with a title if needed.
pub(crate) fn append(path: &Path, text: &str) -> std::io::Result<()> {
    let new = !path.exists();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    if new {
        writeln!(
            f,
            "# Benchmark results\n\nEach section was appended by the command it names.\n"
        )?;
    }
    writeln!(f, "{text}")
}
