//! Tool (function) calling for embedded models, in no wire format: the tools of one request,
//! how they are shown to a model (its chat template's `tools`, or a system prompt asking for
//! Hermes-style `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` blocks), the
//! grammar that forces a call for `tool_choice` `required` or a named function, and the
//! parser that finds calls in a model's output. Surfaces parse their own tool shapes into
//! [`ToolDef`]s and call [`Tools::new`], so every surface gets the same limits.

use serde_json::{json, Value};

use crate::{ToolCall as Call, ToolChoice, ToolDef};

/// The opening of a call block in the output.
pub const CALL_OPEN: &str = "<tool_call>";
/// Its close.
pub const CALL_CLOSE: &str = "</tool_call>";
/// Most functions one request may offer.
pub const MAX_TOOLS: usize = 128;
/// Most bytes of the grammar that forces a call. llama.cpp compiles a grammar on the engine
/// thread, where every sequence of the model waits, and matches every candidate token against
/// it: a schema that would make a larger one (a 100,000-value `enum`) is refused.
pub const MAX_GRAMMAR_BYTES: usize = 32 * 1024;
/// Most values of all `enum`s of the forced functions' schemas together.
const MAX_ENUM_VALUES: usize = 1024;

/// The tools of one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Tools {
    /// The functions.
    pub defs: Vec<ToolDef>,
    /// How the model must use them.
    pub choice: ToolChoice,
    /// `parallel_tool_calls` as the client gave it: passed to external deployments; an
    /// embedded model is not held to it.
    pub parallel: Option<bool>,
}

/// Tools a request may not offer: the field at fault and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ToolsError {
    /// The request field at fault, as OpenAI names it (`tools[2]`, `tool_choice`).
    pub param: String,
    /// What is wrong.
    pub message: String,
}

fn bad(param: &str, msg: impl Into<String>) -> ToolsError {
    ToolsError {
        param: param.to_owned(),
        message: msg.into(),
    }
}

/// Whether `n` may name a function: 1 to 64 letters, digits, `_` or `-`.
pub fn valid_name(n: &str) -> bool {
    (1..=64).contains(&n.len())
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl Tools {
    /// Checks the functions a request offers and how it asks for them to be used: their
    /// number, names (unique, `[A-Za-z0-9_-]{1,64}`), a named choice among them, and the size
    /// of a forced call's grammar. `None`: no tools offered (and none required).
    pub fn new(
        defs: Vec<ToolDef>,
        choice: ToolChoice,
        parallel: Option<bool>,
    ) -> Result<Option<Self>, ToolsError> {
        if defs.len() > MAX_TOOLS {
            return Err(bad("tools", format!("at most {MAX_TOOLS} tools")));
        }
        for (i, d) in defs.iter().enumerate() {
            let param = format!("tools[{i}]");
            if !valid_name(&d.name) {
                return Err(bad(
                    &param,
                    format!("'{param}.function.name' must be 1 to 64 letters, digits, '_' or '-'"),
                ));
            }
            if defs[..i].iter().any(|e| e.name == d.name) {
                return Err(bad(&param, format!("two tools are named '{}'", d.name)));
            }
            if !d.parameters.is_object() {
                return Err(bad(
                    &param,
                    format!("'{param}.function.parameters' must be a JSON Schema object"),
                ));
            }
        }
        if let ToolChoice::Named(name) = &choice {
            if !defs.iter().any(|d| &d.name == name) {
                return Err(bad(
                    "tool_choice",
                    format!("'tool_choice' names '{name}', which is not in 'tools'"),
                ));
            }
        }
        if defs.is_empty() {
            return match choice {
                ToolChoice::Auto | ToolChoice::None => Ok(None),
                _ => Err(bad("tool_choice", "'tool_choice' needs 'tools'")),
            };
        }
        let tools = Self {
            defs,
            choice,
            parallel,
        };
        tools.check_grammar()?;
        Ok(Some(tools))
    }

    /// A forced call's grammar must stay small (see [`MAX_GRAMMAR_BYTES`]); the schemas' enums
    /// are counted first, so an enormous one is refused before anything is built from it.
    fn check_grammar(&self) -> Result<(), ToolsError> {
        let forced: Vec<&ToolDef> = match &self.choice {
            ToolChoice::Auto | ToolChoice::None => return Ok(()),
            ToolChoice::Required => self.defs.iter().collect(),
            ToolChoice::Named(n) => self.defs.iter().filter(|d| &d.name == n).collect(),
        };
        let values: usize = forced.iter().map(|d| enum_values(&d.parameters, 0)).sum();
        if values > MAX_ENUM_VALUES {
            return Err(bad(
                "tools",
                format!("the forced tools' schemas hold {values} enum values; tool_choice 'required' or a named function allows at most {MAX_ENUM_VALUES}"),
            ));
        }
        let size = self.grammar().map_or(0, |g| g.len());
        if size > MAX_GRAMMAR_BYTES {
            return Err(bad(
                "tools",
                format!("the forced tools' schemas make a grammar of {size} bytes; tool_choice 'required' or a named function allows at most {MAX_GRAMMAR_BYTES}"),
            ));
        }
        Ok(())
    }

    /// Whether the model may call them (`tool_choice` is not `none`).
    pub fn callable(&self) -> bool {
        self.choice != ToolChoice::None
    }

    /// The tools as Hugging Face chat templates expect them (`tools` in the context).
    pub fn template_value(&self) -> Value {
        Value::Array(
            self.defs
                .iter()
                .map(|d| json!({"type": "function", "function": {"name": d.name, "description": d.description, "parameters": d.parameters}}))
                .collect(),
        )
    }

    /// Instructions for templates without tool support (Hermes format).
    pub fn system_prompt(&self) -> String {
        let mut s = String::from(
            "You may call functions to help with the user's request. The functions are described in JSON below, between <tools> and </tools>:\n<tools>\n",
        );
        for d in &self.defs {
            s.push_str(&json!({"type": "function", "function": {"name": d.name, "description": d.description, "parameters": d.parameters}}).to_string());
            s.push('\n');
        }
        s.push_str("</tools>\nTo call a function, answer with one block per call:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <arguments-object>}\n</tool_call>");
        match &self.choice {
            ToolChoice::Auto | ToolChoice::None => {}
            ToolChoice::Required => s.push_str("\nYou must call at least one function."),
            ToolChoice::Named(n) => s.push_str(&format!("\nYou must call the function {n}.")),
        }
        s
    }

    /// The grammar that forces a call (`required` or a named function); `None` for `auto`.
    pub fn grammar(&self) -> Option<String> {
        let names: Vec<&ToolDef> = match &self.choice {
            ToolChoice::Auto | ToolChoice::None => return None,
            ToolChoice::Required => self.defs.iter().collect(),
            ToolChoice::Named(n) => self.defs.iter().filter(|d| &d.name == n).collect(),
        };
        let mut g = Grammar::default();
        let calls: Vec<String> = names
            .iter()
            .map(|d| {
                let args = g.schema(&d.parameters, 0);
                format!(
                    "\"{{\\\"name\\\": \\\"{}\\\", \\\"arguments\\\": \" {args} \"}}\"",
                    d.name
                )
            })
            .collect();
        g.rules.insert(
            0,
            format!(
                "root ::= \"{CALL_OPEN}\\n\" ( {} ) \"\\n{CALL_CLOSE}\"",
                calls.join(" | ")
            ),
        );
        Some(g.finish())
    }
}

/// GBNF rules built from JSON schemas: the subset tools use (objects with properties,
/// strings, enums, numbers, integers, booleans, arrays); anything else is any JSON value.
/// Strings and whitespace are bounded so a small model cannot loop inside them forever.
#[derive(Default)]
struct Grammar {
    rules: Vec<String>,
    n: usize,
}

impl Grammar {
    fn rule(&mut self, body: String) -> String {
        self.n += 1;
        let name = format!("r{}", self.n);
        self.rules.push(format!("{name} ::= {body}"));
        name
    }

    fn schema(&mut self, s: &Value, depth: usize) -> String {
        if depth > 6 {
            return "value".into();
        }
        if let Some(values) = s.get("enum").and_then(Value::as_array) {
            let alts: Vec<String> = values
                .iter()
                .map(|v| gbnf_literal(&v.to_string()))
                .collect();
            if !alts.is_empty() {
                return self.rule(alts.join(" | "));
            }
        }
        match s.get("type").and_then(Value::as_str) {
            Some("string") => "string".into(),
            Some("integer") => "integer".into(),
            Some("number") => "number".into(),
            Some("boolean") => "boolean".into(),
            Some("array") => {
                let item = s
                    .get("items")
                    .map_or_else(|| "value".into(), |i| self.schema(i, depth + 1));
                self.rule(format!("\"[\" ( {item} ( \", \" {item} ){{0,15}} )? \"]\""))
            }
            Some("object") => {
                let props = s.get("properties").and_then(Value::as_object);
                let required: Vec<&str> = s
                    .get("required")
                    .and_then(Value::as_array)
                    .map(|r| r.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let Some(props) = props else {
                    return "object".into();
                };
                // Required properties, in the schema's order (all of them if none is marked).
                let keys: Vec<&String> = props
                    .keys()
                    .filter(|k| required.is_empty() || required.contains(&k.as_str()))
                    .collect();
                if keys.is_empty() {
                    return self.rule("\"{}\"".into());
                }
                let parts: Vec<String> = keys
                    .iter()
                    .map(|k| {
                        let v = self.schema(&props[k.as_str()], depth + 1);
                        format!("{} {v}", gbnf_literal(&format!("{}: ", json!(k))))
                    })
                    .collect();
                self.rule(format!("\"{{\" {} \"}}\"", parts.join(" \", \" ")))
            }
            _ => "value".into(),
        }
    }

    fn finish(mut self) -> String {
        self.rules.extend(
            [
                r#"value ::= object | array | string | number | boolean | "null""#,
                r#"object ::= "{" ws ( string ws ":" ws value ws ( "," ws string ws ":" ws value ws ){0,31} )? "}""#,
                r#"array ::= "[" ws ( value ws ( "," ws value ws ){0,31} )? "]""#,
                r#"string ::= "\"" ( [^"\\\x7F\x00-\x1F] | "\\" ( ["\\/bfnrt] | "u" [0-9a-fA-F]{4} ) ){0,128} "\"""#,
                r#"integer ::= "-"? ( "0" | [1-9] [0-9]{0,15} )"#,
                r#"number ::= integer ( "." [0-9]{1,16} )?"#,
                r#"boolean ::= "true" | "false""#,
                r#"ws ::= [ \t\n]{0,8}"#,
            ]
            .map(str::to_owned),
        );
        self.rules.join("\n") + "\n"
    }
}

/// Values of every `enum` in a schema, as deep as the grammar reads it.
fn enum_values(s: &Value, depth: usize) -> usize {
    if depth > 6 {
        return 0;
    }
    let own = s.get("enum").and_then(Value::as_array).map_or(0, Vec::len);
    let items = s.get("items").map_or(0, |i| enum_values(i, depth + 1));
    let props = s
        .get("properties")
        .and_then(Value::as_object)
        .map_or(0, |p| p.values().map(|v| enum_values(v, depth + 1)).sum());
    own + items + props
}

/// Every string in `v`, keys included, decoded (a JSON escape hides nothing from detection).
pub fn json_strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| json_strings(x, out)),
        Value::Object(o) => {
            for (k, x) in o {
                out.push(k.clone());
                json_strings(x, out);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// A GBNF string literal of `s`.
fn gbnf_literal(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The calls in a model's output: every `<tool_call>` block holding `{"name", "arguments"}`
/// for an offered function, with the text before the first block. `None` when the output
/// holds no valid call (it is then an ordinary answer).
pub fn parse_calls(text: &str, tools: &Tools) -> Option<(String, Vec<Call>)> {
    let first = text.find(CALL_OPEN)?;
    let mut calls = Vec::new();
    let mut rest = &text[first..];
    while let Some(start) = rest.find(CALL_OPEN) {
        let after = &rest[start + CALL_OPEN.len()..];
        let end = after.find(CALL_CLOSE)?;
        let v: Value = serde_json::from_str(after[..end].trim()).ok()?;
        let name = v.get("name")?.as_str()?;
        if !tools.defs.iter().any(|d| d.name == name) {
            return None;
        }
        let args = v.get("arguments").or_else(|| v.get("parameters"))?;
        if !args.is_object() {
            return None;
        }
        calls.push(Call {
            id: new_call_id(),
            name: name.to_owned(),
            arguments: args.to_string(),
        });
        rest = &after[end + CALL_CLOSE.len()..];
    }
    Some((text[..first].trim().to_owned(), calls))
}

/// The text an assistant turn with `calls` had, as the model would have written them.
pub fn render_calls<'a>(calls: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    calls
        .into_iter()
        .map(|(name, args)| {
            let args: Value =
                serde_json::from_str(args).unwrap_or_else(|_| Value::String(args.to_owned()));
            format!(
                "{CALL_OPEN}\n{}\n{CALL_CLOSE}",
                json!({"name": name, "arguments": args})
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether `id` may be a call id: 1 to 64 letters, digits, `_` or `-` (what Anthropic and
/// Bedrock accept, and what every id Highside makes looks like).
pub fn valid_call_id(id: &str) -> bool {
    valid_name(id)
}

/// A new call id, `call_` and 24 hex digits.
pub fn new_call_id() -> String {
    format!("call_{}", uuid_like())
}

/// Where an answer's calls come from.
#[derive(Debug, Clone)]
pub enum CallSource {
    /// An embedded model: they are parsed out of its output.
    Parsed(Tools),
    /// An external deployment: it returned them whole (its generation's events carry them
    /// before its `Done`), and its text is never parsed for calls.
    Upstream,
}

impl CallSource {
    /// The calls of an answer whose text is `text`, with the text before them; `None` for an
    /// answer without calls. `returned` are the calls a deployment returned whole.
    pub fn calls(&self, text: &str, returned: Vec<Call>) -> Option<(String, Vec<Call>)> {
        match self {
            Self::Parsed(tools) => parse_calls(text, tools),
            Self::Upstream => (!returned.is_empty()).then(|| (text.trim().to_owned(), returned)),
        }
    }
}

fn uuid_like() -> String {
    let mut b = [0u8; 12];
    // The id only correlates a call with its result; a failure to read randomness is not a
    // reason to fail the answer.
    let _ = getrandom::fill(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}
