//! Chat templates: a model's own Jinja template (GGUF `tokenizer.chat_template`) rendered with
//! minijinja into the prompt text the engine tokenizes. Templates written for Hugging Face's
//! Python Jinja use Python string methods (`.strip()`, `.startswith()`), which the pycompat
//! layer supplies. Pure: no I/O, no model access.
#![forbid(unsafe_code)]

use minijinja::{Environment, ErrorKind, Value};

/// One chat message as the template sees it (`role` and `content`; calls travel beside).
use highside_inference::Message;

/// Why a template could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The model has no chat template in its metadata.
    #[error("the model has no chat template; use /v1/completions with a raw prompt instead")]
    Missing,
    /// The template is not valid Jinja.
    #[error("the model's chat template cannot be compiled: {0}")]
    Compile(String),
    /// The template itself rejected the conversation (e.g. `raise_exception`).
    #[error("the model's chat template rejected the conversation: {0}")]
    Rejected(String),
    /// Rendering failed for another reason.
    #[error("the model's chat template cannot be rendered: {0}")]
    Render(String),
}

/// A compiled chat template, ready to render many conversations.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: String,
    eos_token: String,
    tools: bool,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate").finish_non_exhaustive()
    }
}

const NAME: &str = "chat";

fn raise_exception(message: String) -> Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
}

impl ChatTemplate {
    /// Compiles `source`; `bos_token` and `eos_token` are the model's special-token texts.
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        // Hugging Face renders with trim_blocks and lstrip_blocks enabled.
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.add_function("raise_exception", raise_exception);
        env.add_template_owned(NAME, source.to_owned())
            .map_err(|e| TemplateError::Compile(describe(&e)))?;
        Ok(Self {
            // A template that never mentions `tools` would silently drop them.
            tools: source.contains("tools"),
            env,
            bos_token: bos_token.to_owned(),
            eos_token: eos_token.to_owned(),
        })
    }

    /// Whether the template renders a `tools` list itself (Hugging Face tool-use templates).
    pub fn supports_tools(&self) -> bool {
        self.tools
    }

    /// Renders a conversation into prompt text.
    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<String, TemplateError> {
        self.render_with_tools(messages, add_generation_prompt, None)
    }

    /// Renders a conversation with `tools` (a Hugging Face style list) in the context.
    pub fn render_with_tools(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
        tools: Option<&serde_json::Value>,
    ) -> Result<String, TemplateError> {
        let tmpl = self
            .env
            .get_template(NAME)
            .map_err(|e| TemplateError::Compile(describe(&e)))?;
        tmpl.render(minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token,
            eos_token => self.eos_token,
            tools => tools,
        })
        .map_err(|e| match e.kind() {
            ErrorKind::InvalidOperation => {
                TemplateError::Rejected(e.detail().unwrap_or("no reason given").to_owned())
            }
            _ => TemplateError::Render(describe(&e)),
        })
    }
}

fn describe(e: &minijinja::Error) -> String {
    match (e.detail(), e.line()) {
        (Some(d), Some(l)) => format!("{} (line {l}): {d}", e.kind()),
        (Some(d), None) => format!("{}: {d}", e.kind()),
        (None, Some(l)) => format!("{} (line {l})", e.kind()),
        (None, None) => e.kind().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // SmolLM2-135M-Instruct's template, as stored in its GGUF metadata.
    const CHATML: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    fn msg(role: &str, content: &str) -> Message {
        Message::new(role, content)
    }

    #[test]
    fn renders_chatml_with_generation_prompt() {
        let t = ChatTemplate::new(CHATML, "<|im_start|>", "<|im_end|>").unwrap();
        let out = t.render(&[msg("user", "Hi")], true).unwrap();
        assert_eq!(
            out,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        let out = t
            .render(&[msg("system", "S"), msg("user", "U")], false)
            .unwrap();
        assert_eq!(
            out,
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n"
        );
    }

    #[test]
    fn python_string_methods_work() {
        let t = ChatTemplate::new("{{ messages[0].content.strip().upper() }}", "", "").unwrap();
        assert_eq!(t.render(&[msg("user", "  hi ")], false).unwrap(), "HI");
    }

    #[test]
    fn raise_exception_is_a_rejection() {
        let t = ChatTemplate::new(
            "{% if messages[0].role != 'user' %}{{ raise_exception('first message must be user') }}{% endif %}ok",
            "",
            "",
        )
        .unwrap();
        assert_eq!(t.render(&[msg("user", "x")], false).unwrap(), "ok");
        let err = t.render(&[msg("assistant", "x")], false).unwrap_err();
        assert!(
            matches!(err, TemplateError::Rejected(ref m) if m.contains("first message must be user")),
            "{err}"
        );
    }

    #[test]
    fn broken_template_is_a_clear_error() {
        let err = ChatTemplate::new("{% for x in %}", "", "").unwrap_err();
        assert!(matches!(err, TemplateError::Compile(_)), "{err}");
    }
}
