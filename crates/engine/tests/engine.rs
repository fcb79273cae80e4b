//! The engine on the real demo model: golden greedy tokens from an independent
//! implementation, batching invariance, cancellation, queue limits, stops and lengths.

mod common;

use common::{collect, engine, greedy, model_path, render_chat};
use highside_engine::{EngineError, SamplingParams};
use highside_inference::FinishReason;

#[derive(serde::Deserialize)]
struct Golden {
    cases: Vec<GoldenCase>,
}

#[derive(serde::Deserialize)]
struct GoldenCase {
    messages: Vec<GoldenMessage>,
    prompt: String,
    prompt_tokens: Vec<i32>,
    /// The engine pins flash attention on, so it is compared with the reference run that had
    /// it on too (`completion_tokens` is the same reference with it off: near-ties differ).
    completion_tokens_flash_attn: Vec<i32>,
}

#[derive(serde::Deserialize)]
struct GoldenMessage {
    role: String,
    content: String,
}

fn golden() -> Golden {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/golden/smollm2_greedy.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("golden file")).expect("golden JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greedy_tokens_match_the_independent_golden_file() {
    let engine = engine(4, 4, 64);
    let golden = golden();
    assert_eq!(golden.cases.len(), 3);
    for case in golden.cases {
        let messages: Vec<(&str, &str)> = case
            .messages
            .iter()
            .map(|m| (m.role.as_str(), m.content.as_str()))
            .collect();
        let prompt = render_chat(&engine, &messages);
        assert_eq!(
            prompt, case.prompt,
            "our template rendering differs from the reference"
        );
        let tokens = engine.tokenize(&prompt, true);
        assert_eq!(
            tokens, case.prompt_tokens,
            "our tokenization differs from the reference"
        );
        let out = collect(engine.submit(tokens, greedy(32)).unwrap()).await;
        // The golden file ends with the end-of-generation id when the model stopped early;
        // the engine reports that as finish_reason stop instead of a token.
        let mut expected = case.completion_tokens_flash_attn.clone();
        if expected.len() < 32 {
            expected.pop();
            assert_eq!(out.finish, FinishReason::Stop);
        }
        assert_eq!(
            out.tokens,
            expected,
            "greedy tokens differ for {:?}",
            case.messages.last().map(|m| &m.content)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batching_does_not_change_results() {
    // Prompts of different lengths, one long enough to be prefilled in several chunks while
    // the others decode.
    let long = "Describe the history of cartography in detail. ".repeat(30);
    let prompts = [
        "Write a poem about the sea.",
        "List five prime numbers.",
        "What is the capital of France?",
        "Explain photosynthesis to a child.",
        long.as_str(),
        "Tell me a joke about computers.",
        "How do airplanes fly?",
        "Name three colours.",
    ];
    let engine = engine(8, 8, 64);
    let tokens: Vec<Vec<i32>> = prompts
        .iter()
        .map(|p| engine.tokenize(&render_chat(&engine, &[("user", p)]), true))
        .collect();
    assert!(
        tokens[4].len() > 200,
        "the long prompt must span several prefill chunks"
    );
    let mut alone = Vec::new();
    for t in &tokens {
        alone.push(collect(engine.submit(t.clone(), greedy(24)).unwrap()).await);
    }
    let receivers: Vec<_> = tokens
        .iter()
        .map(|t| engine.submit(t.clone(), greedy(24)).unwrap())
        .collect();
    let together = futures_collect(receivers).await;
    for (i, (a, b)) in alone.iter().zip(&together).enumerate() {
        assert_eq!(
            a.tokens, b.tokens,
            "prompt {i} produced different tokens when batched"
        );
        assert_eq!(a.text, b.text);
        assert!(!a.tokens.is_empty());
    }
    assert_eq!(engine.in_flight(), 0);
}

async fn futures_collect(
    receivers: Vec<tokio::sync::mpsc::UnboundedReceiver<highside_engine::Event>>,
) -> Vec<common::Outcome> {
    let handles: Vec<_> = receivers
        .into_iter()
        .map(|rx| tokio::spawn(collect(rx)))
        .collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_receiver_frees_its_sequence() {
    let engine = engine(2, 2, 64);
    let prompt = engine.tokenize(
        &render_chat(&engine, &[("user", "Write a long story.")]),
        true,
    );
    let mut rx = engine.submit(prompt.clone(), greedy(500)).unwrap();
    // Wait for the first token so the sequence is certainly decoding, then hang up.
    assert!(matches!(
        rx.recv().await,
        Some(highside_engine::Event::Token { .. })
    ));
    drop(rx);
    // The engine frees cancelled sequences at the start of the next step, so once another
    // request has completed, the cancelled one is gone.
    let out = collect(engine.submit(prompt, greedy(4)).unwrap()).await;
    assert_eq!(out.tokens.len(), 4);
    assert_eq!(engine.in_flight(), 0);
    assert_eq!(engine.stats().active_sequences, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_queue_requests_are_refused() {
    let engine = engine(1, 1, 64);
    let prompt = engine.tokenize("Once upon a time", false);
    let _running = engine.submit(prompt.clone(), greedy(200)).unwrap();
    let _queued = engine.submit(prompt.clone(), greedy(200)).unwrap();
    let err = engine.submit(prompt.clone(), greedy(200)).unwrap_err();
    assert!(
        matches!(err, EngineError::Overloaded { capacity: 2 }),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_tokens_and_stop_strings() {
    let engine = engine(2, 2, 64);
    let prompt = engine.tokenize(
        &render_chat(
            &engine,
            &[("user", "Count from 1 to 20, separated by commas.")],
        ),
        true,
    );
    let full = collect(engine.submit(prompt.clone(), greedy(12)).unwrap()).await;
    assert_eq!(full.finish, FinishReason::Length);
    assert_eq!(full.tokens.len(), 12);
    assert_eq!(full.usage.completion_tokens, 12);
    assert_eq!(full.usage.prompt_tokens as usize, prompt.len());
    // Stop on a piece of text the greedy answer is known to contain.
    let cut = full
        .text
        .char_indices()
        .nth(full.text.chars().count() / 2)
        .map(|(i, _)| i)
        .unwrap();
    let stop: String = full.text[cut..].chars().take(2).collect();
    let params = SamplingParams {
        stop: vec![stop.clone()],
        ..greedy(12)
    };
    let stopped = collect(engine.submit(prompt, params).unwrap()).await;
    assert_eq!(stopped.finish, FinishReason::Stop);
    assert_eq!(stopped.text, full.text[..full.text.find(&stop).unwrap()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeded_sampling_is_reproducible() {
    let engine = engine(2, 2, 64);
    let prompt = engine.tokenize("The weather today is", false);
    let params = SamplingParams {
        temperature: 0.9,
        top_p: 0.95,
        top_k: 40,
        min_p: 0.05,
        seed: Some(42),
        presence_penalty: 0.5,
        frequency_penalty: 0.5,
        max_tokens: 16,
        stop: vec![],
        grammar: None,
    };
    let a = collect(engine.submit(prompt.clone(), params.clone()).unwrap()).await;
    let b = collect(engine.submit(prompt, params).unwrap()).await;
    assert_eq!(a.tokens, b.tokens);
    assert_eq!(a.tokens.len(), 16);
}

#[test]
fn prompts_that_do_not_fit_are_refused_not_truncated() {
    let engine = engine(1, 1, 64);
    let prompt = vec![1; 2040];
    let err = engine.submit(prompt, greedy(16)).unwrap_err();
    assert!(
        matches!(
            err,
            EngineError::ContextOverflow {
                prompt: 2040,
                max_tokens: 16,
                context: 2048,
                ..
            }
        ),
        "{err}"
    );
    assert!(matches!(
        engine.submit(vec![], greedy(1)).unwrap_err(),
        EngineError::EmptyPrompt
    ));
    assert_eq!(engine.in_flight(), 0);
}

#[test]
fn model_facts_are_read_from_the_file() {
    let engine = engine(1, 1, 64);
    let info = engine.info();
    assert_eq!(info.n_ctx_train, 8192);
    assert_eq!(info.context_length, 2048);
    assert!(info.n_vocab > 40_000);
    assert!(model_path().is_file());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grammar_constrains_the_output_and_a_bad_one_fails_only_its_request() {
    let engine = engine(2, 2, 64);
    let prompt = engine.tokenize("Is the sky green? Answer:", false);
    let forced = SamplingParams {
        grammar: Some("root ::= \" maybe\" | \" perhaps not\"\n".into()),
        ..greedy(16)
    };
    let out = collect(engine.submit(prompt.clone(), forced).unwrap()).await;
    assert!(
        out.text == " maybe" || out.text == " perhaps not",
        "{:?}",
        out.text
    );
    assert_eq!(out.finish, FinishReason::Stop);
    let broken = SamplingParams {
        grammar: Some("root ::= (".into()),
        ..greedy(4)
    };
    let mut events = engine.submit(prompt, broken).unwrap();
    let mut failed = false;
    while let Some(e) = events.recv().await {
        if let highside_engine::Event::Failed(why) = e {
            assert!(why.message.contains("grammar"), "{why:?}");
            failed = true;
        }
    }
    assert!(failed);
    // The engine still serves.
    let weather = engine.tokenize("The weather today is", false);
    let again = collect(engine.submit(weather, greedy(2)).unwrap()).await;
    assert_eq!(again.tokens.len(), 2, "{again:?}");
}
