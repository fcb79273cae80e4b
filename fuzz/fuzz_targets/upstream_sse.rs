//! Feeds arbitrary bytes, split at an arbitrary point, to the SSE decoder that reads upstream
//! streams, and every event to both wire formats' chunk parsers. No input may panic, and the
//! split must not change the events. Each event's calls are assembled as a stream's would be,
//! and each event that is JSON is also read as a whole answer of both protocols.
#![no_main]

use highside_providers::sse::SseDecoder;
use highside_providers::{anthropic, checked_calls, openai, CallAssembly, ChatRequest, Chunk};
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
        let req = ChatRequest {
            messages: vec![],
            max_tokens: None,
            temperature: None,
            top_p: None,
            stop: vec![],
            seed: None,
            stream: true,
            tools: vec![highside_inference::ToolDef {
                name: "f".into(),
                description: String::new(),
                parameters: serde_json::json!({"type": "object"}),
            }],
            tool_choice: Default::default(),
            parallel_tool_calls: None,
        };
        let mut assembly = CallAssembly::default();
        for e in w {
            for chunk in [
                openai::parse_chunk(&e.data),
                anthropic::parse_event(e.event.as_deref(), &e.data),
            ]
            .into_iter()
            .flatten()
            {
                if let Chunk::Data { calls, .. } = chunk {
                    for d in calls {
                        let _ = assembly.add(d);
                    }
                }
            }
            if let Ok(v) = serde_json::from_str(&e.data) {
                for a in [openai::parse_response(&v), anthropic::parse_response(&v)]
                    .into_iter()
                    .flatten()
                {
                    let _ = checked_calls(a.calls, &req, a.finish);
                }
            }
        }
        let _ = assembly.finish(&req, highside_inference::FinishReason::Stop);
    }
    let _ = openai::parse_embeddings(bytes, 2);
});
