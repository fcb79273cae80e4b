//! Audit log benchmark: durable appends (throughput and acknowledgement latency) with 1, 16
//! and 256 concurrent appenders, the latency two records add to a request at 1,000 requests/s,
//! and verification speed. Baseline in the same run: one write + fdatasync per record, what a
//! log without group commit pays.
//!
//! `cargo bench -p highside-audit --bench audit` (HIGHSIDE_BENCH_DIR picks the disk; default
//! the system temp dir). Each figure is the median of RUNS runs.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use highside_audit::{AuditLog, Disk, Options, Signer};

const RUNS: usize = 5;

fn record(i: usize) -> Vec<u8> {
    // About the size of a real decision record.
    format!(
        r#"{{"time":"2026-11-23T12:00:00.123456789Z","node":"node-1","type":"decision","request_id":"chatcmpl-{i:032x}","agency":"ag_0123456789abcdef","user":"us_0123456789abcdef","key":"key_0123456789abcdef","client":"10.1.2.3:54321","route":"POST /v1/chat/completions","model":"smollm2","clearance":"TOP SECRET//SI/TK","nationality":"USA","request_label":"SECRET//NOFORN","model_label":"SECRET//NOFORN","decision":"allow","reasons":[],"pii":[]}}"#
    )
    .into_bytes()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}

fn base_dir() -> std::path::PathBuf {
    std::env::var_os("HIGHSIDE_BENCH_DIR")
        .map(Into::into)
        .unwrap_or_else(std::env::temp_dir)
}

fn open(dir: &std::path::Path) -> AuditLog {
    let (_, signer) = Signer::generate().unwrap();
    AuditLog::open(dir, signer, Arc::new(Disk), Options::default()).unwrap()
}

/// `appenders` threads each append `per` records; returns (records/s, p50, p99).
fn appends(appenders: usize, per: usize) -> (f64, Duration, Duration) {
    let dir = tempfile::tempdir_in(base_dir()).unwrap();
    let log = Arc::new(open(dir.path()));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(appenders * per)));
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..appenders {
            let (log, latencies) = (Arc::clone(&log), Arc::clone(&latencies));
            s.spawn(move || {
                let mut mine = Vec::with_capacity(per);
                for i in 0..per {
                    let payload = record(t * per + i);
                    let t0 = Instant::now();
                    log.append(payload).unwrap();
                    mine.push(t0.elapsed());
                }
                latencies.lock().unwrap().extend(mine);
            });
        }
    });
    let elapsed = start.elapsed();
    log.close().unwrap();
    let mut l = latencies.lock().unwrap();
    let rate = (appenders * per) as f64 / elapsed.as_secs_f64();
    (rate, percentile(&mut l, 0.5), percentile(&mut l, 0.99))
}

/// One write + fdatasync per record from one thread: records/s and p99.
fn raw_fsync(n: usize) -> (f64, Duration) {
    let dir = tempfile::tempdir_in(base_dir()).unwrap();
    let mut f = std::fs::File::create(dir.path().join("raw.log")).unwrap();
    let mut lat = Vec::with_capacity(n);
    let start = Instant::now();
    for i in 0..n {
        let t0 = Instant::now();
        f.write_all(&record(i)).unwrap();
        f.sync_data().unwrap();
        lat.push(t0.elapsed());
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    (rate, percentile(&mut lat, 0.99))
}

/// Requests arrive at `rps` (open loop) for `secs`; each makes its decision record durable,
/// then its completion record. Returns the p50 and p99 time the two added to a request.
fn added_per_request(rps: u64, secs: u64) -> (Duration, Duration) {
    let dir = tempfile::tempdir_in(base_dir()).unwrap();
    let log = Arc::new(open(dir.path()));
    let added = Arc::new(Mutex::new(Vec::new()));
    let interval = Duration::from_nanos(1_000_000_000 / rps);
    let n = (rps * secs) as usize;
    let start = Instant::now();
    for i in 0..n {
        let due = start + interval * i as u32;
        // Sleep, not spin: on two cores a spinning generator would steal the writer's core.
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let (log2, added2) = (Arc::clone(&log), Arc::clone(&added));
        let t0 = Instant::now();
        log.submit(
            record(2 * i),
            Box::new(move |r| {
                r.unwrap();
                // The completion record follows the decision's acknowledgement.
                let added3 = Arc::clone(&added2);
                log2.submit(
                    record(2 * i + 1),
                    Box::new(move |r| {
                        r.unwrap();
                        added3.lock().unwrap().push(t0.elapsed());
                    }),
                );
            }),
        );
    }
    // Wait for the stragglers: every request's second record.
    while added.lock().unwrap().len() < n {
        std::thread::yield_now();
    }
    log.close().unwrap();
    let mut a = added.lock().unwrap();
    (percentile(&mut a, 0.5), percentile(&mut a, 0.99))
}

/// Writes `n` records, closes, and times full verification: records/s.
fn verify_speed(n: usize) -> f64 {
    let dir = tempfile::tempdir_in(base_dir()).unwrap();
    let (pkcs8, signer) = Signer::generate().unwrap();
    let public = signer.public_key();
    {
        let log = AuditLog::open(dir.path(), signer, Arc::new(Disk), Options::default()).unwrap();
        std::thread::scope(|s| {
            for t in 0..64 {
                let log = &log;
                s.spawn(move || {
                    for i in (t..n).step_by(64) {
                        log.append(record(i)).unwrap();
                    }
                });
            }
        });
        log.close().unwrap();
    }
    let _ = pkcs8;
    // Warm the page cache so the figure is the verifier's, not the disk's.
    highside_audit::verify(dir.path(), &public, None).unwrap();
    let t0 = Instant::now();
    let s = highside_audit::verify(dir.path(), &public, None).unwrap();
    assert_eq!(s.records, n as u64);
    n as f64 / t0.elapsed().as_secs_f64()
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    // `cargo bench` passes --bench; nothing else is taken.
    println!(
        "audit log benchmark, median of {RUNS} runs, dir {}",
        base_dir().display()
    );
    let raw: Vec<(f64, Duration)> = (0..RUNS).map(|_| raw_fsync(500)).collect();
    let raw_rate = median(raw.iter().map(|r| r.0).collect());
    let raw_p99 = median(raw.iter().map(|r| r.1.as_secs_f64()).collect());
    println!(
        "baseline: write+fdatasync per record, 1 thread: {raw_rate:.0} records/s, p99 {:.3} ms",
        raw_p99 * 1e3
    );
    println!("| appenders | durable records/s | p50 ack | p99 ack | vs. baseline |");
    println!("|---|---|---|---|---|");
    for (appenders, per) in [(1usize, 500usize), (16, 300), (256, 200)] {
        let runs: Vec<_> = (0..RUNS).map(|_| appends(appenders, per)).collect();
        let rate = median(runs.iter().map(|r| r.0).collect());
        let p50 = median(runs.iter().map(|r| r.1.as_secs_f64()).collect());
        let p99 = median(runs.iter().map(|r| r.2.as_secs_f64()).collect());
        println!(
            "| {appenders} | {rate:.0} | {} | {} | {:.1}x |",
            ms(Duration::from_secs_f64(p50)),
            ms(Duration::from_secs_f64(p99)),
            rate / raw_rate
        );
    }
    let runs: Vec<_> = (0..RUNS).map(|_| added_per_request(1000, 3)).collect();
    let p50 = median(runs.iter().map(|r| r.0.as_secs_f64()).collect());
    let p99 = median(runs.iter().map(|r| r.1.as_secs_f64()).collect());
    println!(
        "added to a request at 1000 requests/s (decision + completion record, both durable): p50 {}, p99 {}",
        ms(Duration::from_secs_f64(p50)),
        ms(Duration::from_secs_f64(p99))
    );
    let n = 200_000;
    let rate = median((0..RUNS).map(|_| verify_speed(n)).collect());
    println!("verify: {rate:.0} records/s ({n} records, every frame, leaf, node and signature)");
}
