//! Feeds arbitrary bytes to the Bedrock request-body mappings (Converse and InvokeModel
//! bodies come from clients). No input may panic; whatever maps must be a request for the
//! model from the path, with a prompt and sampling within their bounds.
#![no_main]

use highside_bedrock::converse::ConverseRequest;
use highside_bedrock::invoke;
use highside_inference::PromptInput;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = serde_json::from_slice::<ConverseRequest>(data) {
        for stream in [false, true] {
            if let Ok(req) = r.clone().to_request("m", stream) {
                assert_eq!(req.model, "m");
                assert_eq!(req.stream, stream);
                assert!(matches!(&req.input, PromptInput::Chat(m) if !m.is_empty()));
                assert!(req.params.validate().is_ok());
            }
        }
    }
    if invoke::format(data) == Ok(invoke::Format::Llama) {
        for stream in [false, true] {
            if let Ok(req) = invoke::llama_request("m", data, stream) {
                assert_eq!(req.model, "m");
                assert!(matches!(req.input, PromptInput::Text(_)));
                assert!(req.params.validate().is_ok());
            }
        }
    }
});
