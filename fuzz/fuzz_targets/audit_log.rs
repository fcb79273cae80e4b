//! Feeds arbitrary bytes to the audit log reader as a segment file, and arbitrary JSON to the
//! proof checker: an auditor verifies logs and proofs from copies they do not control. No
//! input may panic; whatever scans must have a tree whose size is its record count.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use highside_audit::{PublicKey, Signer};
use libfuzzer_sys::fuzz_target;

fn key() -> &'static PublicKey {
    static K: OnceLock<PublicKey> = OnceLock::new();
    K.get_or_init(|| Signer::generate().expect("key").1.public_key())
}

fuzz_target!(|data: &[u8]| {
    let files = [(1u32, PathBuf::from("segment-00000001.log"), data)];
    for tolerate in [false, true] {
        if let Ok(s) = highside_audit::scan_segments(&files, key(), tolerate, |_, _| {}) {
            assert_eq!(s.tree.len(), s.records);
        }
    }
    let _ = highside_audit::verify_segments(&files, key(), None);
    if let Ok(proof) = serde_json::from_slice::<highside_audit::Proof>(data) {
        let _ = proof.verify(key());
    }
});
