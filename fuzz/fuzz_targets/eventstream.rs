//! Feeds arbitrary bytes to the AWS event-stream decoder (it will read upstream Bedrock
//! streams). No input may panic; what decodes re-encodes to the same bytes when its headers
//! are all strings.
#![no_main]

use highside_bedrock::eventstream::{decode, encode, Value};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((m, used)) = decode(data) {
        let strings: Option<Vec<(&str, &str)>> = m
            .headers
            .iter()
            .map(|(n, v)| match v {
                Value::String(s) => Some((n.as_str(), s.as_str())),
                _ => None,
            })
            .collect();
        if let Some(h) = strings {
            assert_eq!(encode(&h, &m.payload).unwrap(), &data[..used]);
        }
    }
});
