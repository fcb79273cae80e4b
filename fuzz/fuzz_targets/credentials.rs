//! Feeds arbitrary header bytes to the credential parser: no input may panic, and whatever is
//! accepted must be a well-formed key that was present in one of the headers.
#![no_main]

use highside_identity::{parse_credentials, ParsedKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte splits the input into an Authorization value and an x-api-key value.
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let at = usize::from(split).min(rest.len());
    let (auth, api_key) = rest.split_at(at);
    let auth_headers: Vec<&[u8]> = if auth.is_empty() { vec![] } else { vec![auth] };
    let key_headers: Vec<&[u8]> = if api_key.is_empty() { vec![] } else { vec![api_key] };
    if let Ok(Some(key)) = parse_credentials(&auth_headers, &key_headers) {
        let text = key.secret.expose();
        assert!(ParsedKey::parse(text).is_ok());
        let found = |h: &[u8]| h.windows(text.len()).any(|w| w == text.as_bytes());
        assert!(found(auth) || found(api_key));
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = ParsedKey::parse(s);
    }
});
