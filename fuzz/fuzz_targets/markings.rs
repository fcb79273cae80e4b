//! Feeds arbitrary text to the marking parser and the marking detector (both read what clients
//! send: the X-Highside-Label header, `highside.label`, every message, every model's output).
//! No input may panic; a parsed label must format to a banner and portion mark that parse back
//! to the same label; detection only ever finds labels that are labels of the encodings; and
//! the request path's `label_of` (which joins as it reads) agrees with the join of `scan`; and
//! text folded in two pieces (as streamed output is) folds as the whole does.
#![no_main]

use std::sync::OnceLock;

use highside_label::{Detector, Encodings, Folded};
use libfuzzer_sys::fuzz_target;

fn fixtures() -> &'static (Encodings, Detector) {
    static F: OnceLock<(Encodings, Detector)> = OnceLock::new();
    F.get_or_init(|| {
        let e = Encodings::builtin();
        let d = Detector::new(&e);
        (e, d)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (e, d) = fixtures();
    if let Ok(label) = e.parse(text) {
        assert_eq!(e.parse(&e.banner(&label)).as_ref(), Ok(&label));
        assert_eq!(e.parse(&e.portion(&label)).as_ref(), Ok(&label));
    }
    let scan = d.scan(text);
    for found in &scan.found {
        assert_eq!(e.parse(&e.banner(&found.label)).as_ref(), Ok(&found.label));
    }
    let joined = scan
        .found
        .into_iter()
        .map(|f| f.label)
        .reduce(|a, b| a.join(&b));
    match d.label_of([text]) {
        Ok(l) => assert!(scan.unknown.is_empty() && l == joined),
        Err(u) => assert_eq!(Some(&u.word), scan.unknown.first().map(|u| &u.word)),
    }
    let whole = Folded::new(text);
    let mut cut = usize::from(data.first().copied().unwrap_or(0)) * text.len() / 256;
    while !text.is_char_boundary(cut) {
        cut += 1;
    }
    let mut parts = Folded::empty();
    parts.push_str(&text[..cut]);
    parts.push_str(&text[cut..]);
    parts.flush();
    assert_eq!(parts.as_str(), whole.as_str());
    assert_eq!(parts.decoded_str(), whole.decoded_str());
});
