//! Feeds arbitrary bytes to the GGUF validator: any panic, abort, or runaway allocation is a bug.
#![no_main]

use highside_gguf::{validate_bytes, validate_reader, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let from_bytes = validate_bytes(data, &limits);
    // Byte-at-a-time reads stress the streaming path's short-read handling; results must agree.
    let trickle = std::io::BufReader::with_capacity(1, data);
    let from_reader = validate_reader(trickle, data.len() as u64, &limits);
    assert_eq!(from_bytes.is_ok(), from_reader.is_ok());
    if let (Ok(a), Ok(b)) = (from_bytes, from_reader) {
        assert_eq!(a, b);
    }
});
