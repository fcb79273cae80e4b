//! The path from a validated request to an engine stream, with no HTTP types in sight.

use highside_engine::{EngineError, Event};
use highside_openai::{ApiError, Prepared, PromptInput};
use highside_template::TemplateError;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::Registry;

/// The request pipeline over the loaded models.
#[derive(Debug)]
pub struct Service {
    registry: Registry,
}

/// A generation that has been admitted by an engine.
#[derive(Debug)]
pub struct Generation {
    /// The model name as requested.
    pub model: String,
    /// Engine events; dropping this cancels the generation.
    pub events: UnboundedReceiver<Event>,
    /// Tokens in the prompt.
    pub prompt_tokens: u32,
    /// Whether the client asked for server-sent events.
    pub stream: bool,
    /// Whether a usage chunk ends the stream.
    pub include_usage: bool,
}

fn engine_error(e: EngineError, param: &str) -> ApiError {
    match e {
        EngineError::Overloaded { .. } => ApiError::overloaded(e.to_string(), 1),
        EngineError::ContextOverflow { .. } => ApiError {
            code: Some("context_length_exceeded"),
            ..ApiError::bad_request(e.to_string(), Some(param))
        },
        EngineError::EmptyPrompt => ApiError::bad_request(e.to_string(), Some(param)),
        EngineError::Param(p) => ApiError::bad_request(
            format!("Invalid '{}': {}", p.param, p.message),
            Some(p.param),
        ),
        EngineError::Stopped | EngineError::Backend(_) | EngineError::Load { .. } => {
            ApiError::unavailable(e.to_string())
        }
    }
}

impl Service {
    /// Wraps the loaded models.
    pub fn new(registry: Registry) -> Self {
        Self { registry }
    }

    /// The loaded models.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Renders and tokenizes the prompt, fixes `max_tokens`, and queues the generation.
    pub fn start(&self, req: Prepared) -> Result<Generation, ApiError> {
        let model = self
            .registry
            .get(&req.model)
            .ok_or_else(|| ApiError::model_not_found(&req.model))?;
        let engine = &model.engine;
        let (prompt, param) = match &req.input {
            PromptInput::Chat(messages) => {
                // Control-token text in a message would become real control tokens below.
                for (i, m) in messages.iter().enumerate() {
                    if let Some(t) = engine
                        .info()
                        .control_texts
                        .iter()
                        .find(|t| m.content.contains(t.as_str()))
                    {
                        return Err(ApiError::bad_request(
                            format!("messages[{i}].content contains the model's control token {t:?}, which could forge conversation structure"),
                            Some(&format!("messages[{i}].content")),
                        ));
                    }
                }
                let template = model
                    .template
                    .as_ref()
                    .map_err(|e| ApiError::internal(e.clone()))?;
                let text = template.render(messages, true).map_err(|e| match e {
                    TemplateError::Rejected(_) | TemplateError::Missing => {
                        ApiError::bad_request(e.to_string(), Some("messages"))
                    }
                    TemplateError::Compile(_) | TemplateError::Render(_) => {
                        ApiError::internal(e.to_string())
                    }
                })?;
                // The template wrote the control tokens, so special-token text is parsed here.
                (engine.tokenize(&text, true), "messages")
            }
            PromptInput::Text(text) => (engine.tokenize(text, false), "prompt"),
            PromptInput::Tokens(ids) => {
                let n_vocab = engine.info().n_vocab;
                if let Some(bad) = ids.iter().find(|&&t| t as u32 >= n_vocab) {
                    return Err(ApiError::bad_request(
                        format!("token id {bad} is outside the model's vocabulary of {n_vocab}"),
                        Some("prompt"),
                    ));
                }
                (ids.clone(), "prompt")
            }
        };
        let context = engine.info().context_length;
        let mut params = req.params;
        params.max_tokens = match req.max_tokens {
            Some(m) => m,
            // No limit given: whatever the context window leaves, never a truncated prompt.
            None => context
                .saturating_sub(prompt.len().min(u32::MAX as usize) as u32)
                .max(1),
        };
        let prompt_tokens = prompt.len() as u32;
        let events = engine
            .submit(prompt, params)
            .map_err(|e| engine_error(e, param))?;
        Ok(Generation {
            model: req.model,
            events,
            prompt_tokens,
            stream: req.stream,
            include_usage: req.include_usage,
        })
    }
}
