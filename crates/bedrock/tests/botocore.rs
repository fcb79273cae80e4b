//! Byte-for-byte against messages botocore's EventStreamBuffer decodes
//! (`tests/fixtures/eventstream.jsonl`, written by `tests/fixtures/make_eventstream.py`).

use highside_bedrock::eventstream::{decode, encode, Value};
use serde_json::Value as Json;

#[test]
fn encodes_exactly_what_botocore_decodes() {
    let text = include_str!("../../../tests/fixtures/eventstream.jsonl");
    let mut n = 0;
    for line in text.lines() {
        let v: Json = serde_json::from_str(line).unwrap();
        let headers: Vec<(String, String)> = v["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                (
                    h[0].as_str().unwrap().to_owned(),
                    h[1].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let h: Vec<(&str, &str)> = headers
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let payload = v["payload"].as_str().unwrap().as_bytes();
        let expected = hex::decode(v["bytes"].as_str().unwrap()).unwrap();
        let ours = encode(&h, payload).unwrap();
        assert_eq!(ours, expected, "line {n}");
        let (m, used) = decode(&expected).unwrap();
        assert_eq!(used, expected.len());
        assert_eq!(m.payload, payload);
        let back: Vec<(String, String)> = m
            .headers
            .into_iter()
            .map(|(k, v)| match v {
                Value::String(s) => (k, s),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(back, headers);
        n += 1;
    }
    assert_eq!(n, 100);
}
