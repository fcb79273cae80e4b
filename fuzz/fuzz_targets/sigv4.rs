//! Feeds arbitrary text as the Authorization and X-Amz-Date headers, path and query of a
//! request to the SigV4 verifier (they arrive from any client of the Bedrock API). No input
//! may panic, and nothing verifies without the secret.
#![no_main]

use highside_sigv4::{parse_authorization, verify, Request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_authorization(text);
    let mut parts = text.splitn(4, '\n');
    let (auth, date, path, query) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or("/"),
        parts.next().unwrap_or(""),
    );
    let headers = [("authorization", auth), ("x-amz-date", date), ("host", "h")];
    let req = Request { method: "POST", path, query, headers: &headers, body: data };
    // Any time: the signature cannot match without the secret, which is random here.
    let r = verify(&req, "bedrock", 1_795_000_000, |_| Some("not-the-secret".into()));
    assert!(r.is_err());
});
