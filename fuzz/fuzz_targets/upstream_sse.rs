//! Feeds arbitrary bytes, split at an arbitrary point, to the SSE decoder that reads upstream
//! streams, and every event to both wire formats' chunk parsers. No input may panic, and the
//! split must not change the events.
#![no_main]

use highside_providers::sse::SseDecoder;
use highside_providers::{anthropic, openai};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, bytes)) = data.split_first() else {
        return;
    };
    let whole = SseDecoder::new(4096).feed(bytes);
    let at = (cut as usize).min(bytes.len());
    let mut d = SseDecoder::new(4096);
    let split = d
        .feed(&bytes[..at])
        .and_then(|mut a| d.feed(&bytes[at..]).map(|b| {
            a.extend(b);
            a
        }));
    if let (Ok(w), Ok(s)) = (&whole, &split) {
        assert_eq!(w, s);
        for e in w {
            let _ = openai::parse_chunk(&e.data);
            let _ = anthropic::parse_event(e.event.as_deref(), &e.data);
        }
    }
    let _ = openai::parse_embeddings(bytes, 2);
});
