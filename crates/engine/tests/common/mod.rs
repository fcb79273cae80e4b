//! Shared helpers for tests that run the real demo model.

use std::path::PathBuf;

use highside_engine::{Engine, EngineConfig, Event, SamplingParams};
use highside_inference::{FinishReason, Usage};

/// The demo model; tests fail (not skip) without it, saying how to get it.
pub fn model_path() -> PathBuf {
    let path = std::env::var_os("HIGHSIDE_TEST_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache/highside/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    assert!(
        path.is_file(),
        "the demo model is missing at {}: run scripts/fetch-model or set HIGHSIDE_TEST_MODEL",
        path.display()
    );
    path
}

pub fn engine(max_sequences: u32, queue_depth: u32, prefill_chunk: u32) -> Engine {
    Engine::load(
        &model_path(),
        &EngineConfig {
            threads: 0,
            max_sequences,
            context_length: 2048,
            queue_depth,
            prefill_chunk,
        },
    )
    .expect("load the demo model")
}

pub fn greedy(max_tokens: u32) -> SamplingParams {
    SamplingParams {
        temperature: 0.0,
        max_tokens,
        ..SamplingParams::default()
    }
}

/// Everything one generation produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub tokens: Vec<i32>,
    pub text: String,
    pub finish: FinishReason,
    pub usage: Usage,
}

pub async fn collect(mut rx: tokio::sync::mpsc::UnboundedReceiver<Event>) -> Outcome {
    let mut tokens = Vec::new();
    let mut text = String::new();
    loop {
        match rx.recv().await.expect("the stream ended without Done") {
            Event::Token { id, text: t } => {
                tokens.push(id);
                text.push_str(&t);
            }
            Event::Text(t) => text.push_str(&t),
            Event::Done {
                finish_reason,
                usage,
            } => {
                return Outcome {
                    tokens,
                    text,
                    finish: finish_reason,
                    usage,
                }
            }
            Event::Failed(why) => panic!("generation failed: {}", why.message),
            other => panic!("the engine does not yield {other:?}"),
        }
    }
}

/// Renders a conversation with the model's own template from its GGUF metadata.
pub fn render_chat(engine: &Engine, messages: &[(&str, &str)]) -> String {
    let info =
        highside_gguf::validate_file(&model_path(), &highside_gguf::Limits::default()).unwrap();
    let template = highside_template::ChatTemplate::new(
        info.chat_template
            .as_deref()
            .expect("the demo model has a chat template"),
        &engine.info().bos_text,
        &engine.info().eos_text,
    )
    .unwrap();
    let messages: Vec<_> = messages
        .iter()
        .map(|(r, c)| highside_inference::Message::new(*r, *c))
        .collect();
    template.render(&messages, true).unwrap()
}
