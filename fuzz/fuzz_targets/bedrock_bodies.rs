//! Feeds arbitrary bytes to the Bedrock request-body mappings (Converse and InvokeModel
//! bodies come from clients). No input may panic; whatever maps must be a JSON object naming
//! the model from the path.
#![no_main]

use highside_bedrock::converse::ConverseRequest;
use highside_bedrock::invoke;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = serde_json::from_slice::<ConverseRequest>(data) {
        for stream in [false, true] {
            if let Ok(chat) = r.to_chat("m", stream) {
                assert_eq!(chat["model"], "m");
                assert!(chat["messages"].as_array().is_some_and(|m| !m.is_empty()));
            }
        }
    }
    for stream in [false, true] {
        if let Ok((_, body)) = invoke::to_openai("m", data, stream) {
            assert_eq!(body["model"], "m");
        }
    }
});
