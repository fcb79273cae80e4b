//! The one enumeration of client-supplied text: every string of a request that can reach a
//! model or an external deployment, whichever surface it came in through (`/v1/chat/...`,
//! `/v1/completions`, `/v1/embeddings`, and the Bedrock routes, which are mapped onto these).
//! The reference monitor reads exactly what [`client_texts`] returns, so a field that reaches
//! a backend must be listed here; the destructuring below is exhaustive, so a new field of a
//! request does not compile until it is.
//!
//! Text that is JSON (a tool result, call arguments, a schema) is also listed decoded, value
//! by value and key by key: an escaped `\n` must not hide a banner line.

use std::borrow::Cow;

use highside_inference::SamplingParams;
use highside_inference::{Message, ToolCall as MessageToolCall};
use serde_json::Value;

use crate::embeddings::PreparedEmbedding;
use highside_inference::{ToolChoice, ToolDef};

use crate::tools::{json_strings, Tools};
use crate::{Prepared, PromptInput};

/// A validated request of any kind.
#[derive(Debug, Clone, Copy)]
pub enum Work<'a> {
    /// A chat or text completion.
    Generate(&'a Prepared),
    /// Embeddings.
    Embed(&'a PreparedEmbedding),
}

/// Every client-supplied string of `work` that can reach a model or a deployment. Token-id
/// prompts are read back to text with `detokenize`, so markings cannot hide in token ids.
pub fn client_texts<'a>(
    work: Work<'a>,
    detokenize: &dyn Fn(&[i32]) -> String,
) -> Vec<Cow<'a, str>> {
    let mut out = Texts(Vec::new());
    match work {
        Work::Generate(p) => {
            let Prepared {
                // The name of a model is not sent to it (routes send their own).
                model: _,
                input,
                params,
                max_tokens: _,
                stream: _,
                include_usage: _,
                // Read by the monitor as a declared label, not as text.
                declared_label: _,
                banner: _,
                tools,
            } = p;
            match input {
                PromptInput::Chat(messages) => out.messages(messages),
                PromptInput::Text(t) => out.text(t),
                PromptInput::Tokens(ids) => out.owned(detokenize(ids)),
            }
            out.params(params);
            if let Some(t) = tools {
                out.tools(t);
            }
        }
        Work::Embed(e) => {
            let PreparedEmbedding {
                model: _,
                inputs,
                base64: _,
                dimensions: _,
                declared_label: _,
            } = e;
            for t in inputs {
                out.text(t);
            }
        }
    }
    out.0
}

/// The texts of a conversation (contents, earlier calls' ids, names and arguments, the ids
/// tool results answer), for checks that look at messages alone.
pub fn message_texts(messages: &[Message]) -> Vec<Cow<'_, str>> {
    let mut out = Texts(Vec::new());
    out.messages(messages);
    out.0
}

/// The texts the tools put before a model (names, descriptions, every string of the schemas),
/// for checks that look at the tools alone.
pub fn tool_texts(tools: &Tools) -> Vec<Cow<'_, str>> {
    let mut out = Texts(Vec::new());
    out.tools(tools);
    out.0
}

struct Texts<'a>(Vec<Cow<'a, str>>);

impl<'a> Texts<'a> {
    fn text(&mut self, t: &'a str) {
        self.0.push(Cow::Borrowed(t));
        self.decoded(t);
    }

    fn owned(&mut self, t: String) {
        let mut decoded = Vec::new();
        if let Some(v) = as_json(&t) {
            json_strings(&v, &mut decoded);
        }
        self.0.push(Cow::Owned(t));
        self.0.extend(decoded.into_iter().map(Cow::Owned));
    }

    /// The strings of `t` when it is JSON.
    fn decoded(&mut self, t: &str) {
        if let Some(v) = as_json(t) {
            let mut decoded = Vec::new();
            json_strings(&v, &mut decoded);
            self.0.extend(decoded.into_iter().map(Cow::Owned));
        }
    }

    fn messages(&mut self, messages: &'a [Message]) {
        for m in messages {
            let Message {
                // Validated to one of a few role names.
                role: _,
                content,
                tool_calls,
                tool_call_id,
            } = m;
            self.text(content);
            if let Some(id) = tool_call_id {
                self.text(id);
            }
            for c in tool_calls {
                let MessageToolCall {
                    id,
                    name,
                    arguments,
                } = c;
                self.text(id);
                self.text(name);
                self.text(arguments);
            }
        }
    }

    fn params(&mut self, p: &'a SamplingParams) {
        let SamplingParams {
            temperature: _,
            top_p: _,
            top_k: _,
            min_p: _,
            seed: _,
            presence_penalty: _,
            frequency_penalty: _,
            // Stop strings go to deployments and into the engine's matcher.
            stop,
            max_tokens: _,
            // Built by Highside from the tools, which are listed themselves.
            grammar: _,
        } = p;
        for s in stop {
            self.text(s);
        }
    }

    fn tools(&mut self, t: &'a Tools) {
        let Tools {
            defs,
            choice,
            parallel: _,
        } = t;
        for d in defs {
            let ToolDef {
                name,
                description,
                parameters,
            } = d;
            self.0.push(Cow::Borrowed(name));
            self.0.push(Cow::Borrowed(description));
            self.decoded(description);
            // Each string of a schema stands alone, so a banner line in one is its own line.
            let mut strings = Vec::new();
            json_strings(parameters, &mut strings);
            self.0.extend(strings.into_iter().map(Cow::Owned));
        }
        match choice {
            ToolChoice::Named(n) => self.0.push(Cow::Borrowed(n)),
            ToolChoice::None | ToolChoice::Auto | ToolChoice::Required => {}
        }
    }
}

/// `t` parsed, when it is a JSON object, array or string (the forms that hide text in
/// escapes). Parsing is linear in the text.
fn as_json(t: &str) -> Option<Value> {
    let first = t.trim_start().as_bytes().first()?;
    if !matches!(first, b'{' | b'[' | b'"') {
        return None;
    }
    serde_json::from_str(t).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{parse_json, ChatCompletionRequest};

    fn chat(body: serde_json::Value) -> Prepared {
        parse_json::<ChatCompletionRequest>(body.to_string().as_bytes())
            .and_then(ChatCompletionRequest::prepare)
            .unwrap()
    }

    fn all(p: &Prepared) -> Vec<String> {
        client_texts(Work::Generate(p), &|_| String::new())
            .into_iter()
            .map(Cow::into_owned)
            .collect()
    }

    #[test]
    fn stop_strings_tools_and_decoded_json_are_listed() {
        let p = chat(serde_json::json!({
            "model": "m",
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                    "function": {"name": "f", "arguments": "{\"q\": \"TOP SECRET\\nplan\"}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "{\"doc\": \"SECRET\\nbody\"}"},
            ],
            "stop": ["(TS) stop"],
            "tools": [{"type": "function", "function": {"name": "f", "description": "d",
                "parameters": {"type": "object", "properties": {"k (S)": {"enum": ["v1"]}}}}}],
        }));
        let t = all(&p);
        for want in [
            "hi",
            "TOP SECRET\nplan",
            "SECRET\nbody",
            "(TS) stop",
            "k (S)",
            "v1",
            "c1",
            "d",
        ] {
            assert!(t.iter().any(|x| x == want), "{want} missing from {t:?}");
        }
    }

    #[test]
    fn token_prompts_are_read_back() {
        let p = parse_json::<crate::CompletionRequest>(br#"{"model":"m","prompt":[1,2]}"#)
            .and_then(crate::CompletionRequest::prepare)
            .unwrap();
        let t = client_texts(Work::Generate(&p), &|ids| format!("tokens {ids:?}"));
        assert_eq!(t[0], "tokens [1, 2]");
    }
}
