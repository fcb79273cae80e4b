//! 10^4 random tamperings of a closed log, each checked by `verify` with the final checkpoint
//! the auditor kept: bit flips, deleted, reordered, inserted and truncated entries, and records
//! rewritten with a valid frame checksum but no new signature. Every one must be detected.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use highside_audit::frame::{decode, encode};
use highside_audit::{verify_segments, AuditLog, Disk, Kind, Options, Signer};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

#[test]
fn ten_thousand_random_tamperings_are_all_detected() {
    let dir = tempfile::tempdir().unwrap();
    let (_, signer) = Signer::generate().unwrap();
    let public = signer.public_key();
    let options = Options {
        node: "tamper".into(),
        segment_bytes: 1 << 20,
        checkpoint_every: 16,
        checkpoint_interval: Duration::from_secs(3600),
    };
    let log = AuditLog::open(dir.path(), signer, Arc::new(Disk), options).unwrap();
    for i in 0..100 {
        log.append(
            format!(
                "{{\"kind\":\"decision\",\"i\":{i},\"user\":\"u{}\"}}",
                i % 7
            )
            .into_bytes(),
        )
        .unwrap();
    }
    let trusted = log.close().unwrap();
    let path = dir.path().join(highside_audit::segment_name(1));
    let clean = std::fs::read(&path).unwrap();
    let check = |bytes: &[u8]| {
        verify_segments(
            &[(1, PathBuf::from("segment"), bytes)],
            &public,
            Some(&trusted),
        )
    };
    check(&clean).expect("the untouched log verifies");
    // Frame boundaries and kinds.
    let mut frames = Vec::new();
    let mut at = 0;
    while at < clean.len() {
        let (kind, _, len) = decode(&clean[at..]).unwrap();
        frames.push((at, len, kind));
        at += len;
    }
    let records: Vec<usize> = (0..frames.len())
        .filter(|&i| frames[i].2 == Kind::Record)
        .collect();
    let span = |i: usize| frames[i].0..frames[i].0 + frames[i].1;

    let mut runner = TestRunner::new(Config {
        cases: 10_000,
        failure_persistence: None,
        ..Config::default()
    });
    let n = clean.len();
    let strategy = (
        0u8..6,
        0usize..n * 8,
        0usize..frames.len(),
        0usize..records.len(),
    );
    runner
        .run(&strategy, |(how, bit, f, r)| {
            let mut t = clean.clone();
            match how {
                // Flip one bit anywhere.
                0 => t[bit / 8] ^= 1 << (bit % 8),
                // Delete an entry.
                1 => {
                    t.drain(span(f));
                }
                // Swap a record with the next record.
                2 => {
                    let (a, b) = (records[r], records[(r + 1) % records.len()]);
                    let (a, b) = (a.min(b), a.max(b));
                    if a == b {
                        t.truncate(t.len() - 1);
                    } else {
                        let mut out = clean[..frames[a].0].to_vec();
                        out.extend_from_slice(&clean[span(b)]);
                        out.extend_from_slice(&clean[span(a).end..frames[b].0]);
                        out.extend_from_slice(&clean[span(a)]);
                        out.extend_from_slice(&clean[span(b).end..]);
                        t = out;
                    }
                }
                // Truncate anywhere (at entry boundaries too).
                3 => t.truncate(bit % n),
                // Rewrite a record's payload with a valid frame checksum, not re-signed.
                4 => {
                    let (_, payload, _) = decode(&clean[span(records[r])]).unwrap();
                    let forged = String::from_utf8_lossy(payload).replace("decision", "decisioN");
                    let mut frame = Vec::new();
                    encode(Kind::Record, forged.as_bytes(), &mut frame);
                    t.splice(span(records[r]), frame);
                }
                // Insert a well-framed forged record.
                _ => {
                    let mut frame = Vec::new();
                    encode(Kind::Record, b"{\"kind\":\"forged\"}", &mut frame);
                    let at = frames[f].0;
                    t.splice(at..at, frame);
                }
            }
            prop_assert!(t != clean);
            prop_assert!(check(&t).is_err(), "tampering {} went undetected", how);
            Ok(())
        })
        .unwrap();
}
