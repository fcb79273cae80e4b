//! OpenAI's tool shapes: `tools`, `tool_choice` and `parallel_tool_calls` parsed into the
//! neutral [`Tools`], and the `tool_calls` of an answer. How tools are shown to an embedded
//! model and how its calls are found live in `highside_inference::tools`.

use serde::Serialize;
use serde_json::{json, Value};

pub use highside_inference::tools::{
    json_strings, new_call_id, valid_call_id, valid_name, CallSource, Tools, ToolsError, MAX_TOOLS,
};
use highside_inference::{ToolCall as Call, ToolChoice, ToolDef};

use crate::ApiError;

/// A call the model made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ToolCall {
    /// `call_…`, unique per call.
    pub id: String,
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The function and its arguments.
    pub function: FunctionCall,
}

impl From<Call> for ToolCall {
    fn from(c: Call) -> Self {
        Self {
            id: c.id,
            kind: "function",
            function: FunctionCall {
                name: c.name,
                arguments: c.arguments,
            },
        }
    }
}

/// A call in a stream chunk: the call with its position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChunkToolCall {
    /// Position among the answer's calls.
    pub index: u32,
    /// The call.
    #[serde(flatten)]
    pub call: ToolCall,
}

/// The function part of a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FunctionCall {
    /// The function's name.
    pub name: String,
    /// Its arguments as JSON text.
    pub arguments: String,
}

fn bad(param: &str, msg: impl Into<String>) -> ApiError {
    ApiError::bad_request(msg, Some(param))
}

impl From<ToolsError> for ApiError {
    fn from(e: ToolsError) -> Self {
        ApiError::bad_request(e.message, Some(&e.param))
    }
}

/// Validates `tools`, `tool_choice` and `parallel_tool_calls`. `None`: no tools given.
pub fn parse_tools(
    tools: Option<Vec<Value>>,
    choice: Option<Value>,
    parallel: Option<bool>,
) -> Result<Option<Tools>, ApiError> {
    let tools = tools.unwrap_or_default();
    // Counted before anything is read from them.
    if tools.len() > MAX_TOOLS {
        return Err(bad("tools", format!("at most {MAX_TOOLS} tools")));
    }
    let mut defs = Vec::with_capacity(tools.len());
    for (i, t) in tools.into_iter().enumerate() {
        let param = format!("tools[{i}]");
        if t.get("type").and_then(Value::as_str) != Some("function") {
            return Err(bad(&param, format!("'{param}.type' must be 'function'")));
        }
        let f = t
            .get("function")
            .and_then(Value::as_object)
            .ok_or_else(|| bad(&param, format!("'{param}.function' is required")))?;
        if let Some(k) = f
            .keys()
            .find(|k| !matches!(k.as_str(), "name" | "description" | "parameters" | "strict"))
        {
            return Err(bad(&param, format!("unknown field '{param}.function.{k}'")));
        }
        defs.push(ToolDef {
            name: f
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            description: f
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            parameters: f
                .get("parameters")
                .cloned()
                .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
        });
    }
    let choice = match choice {
        None => ToolChoice::Auto,
        Some(Value::String(s)) => match s.as_str() {
            "auto" => ToolChoice::Auto,
            "required" => ToolChoice::Required,
            "none" => ToolChoice::None,
            _ => {
                return Err(bad(
                    "tool_choice",
                    "'tool_choice' must be none, auto, required or a function",
                ))
            }
        },
        Some(v) => {
            let name = v
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .filter(|_| v.get("type").and_then(Value::as_str) == Some("function"))
                .ok_or_else(|| bad("tool_choice", "'tool_choice' must be none, auto, required or {\"type\": \"function\", \"function\": {\"name\": ...}}"))?;
            ToolChoice::Named(name.to_owned())
        }
    };
    Ok(Tools::new(defs, choice, parallel)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use highside_inference::tools::{
        parse_calls, render_calls, CALL_CLOSE, CALL_OPEN, MAX_GRAMMAR_BYTES,
    };
    use highside_inference::ToolChoice;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn model_output_never_panics_the_parser(prefix in ".{0,40}", body in ".{0,80}", close in proptest::bool::ANY) {
            let t = parse_tools(Some(weather()), None, None).unwrap().unwrap();
            let text = format!("{prefix}{CALL_OPEN}{body}{}", if close { CALL_CLOSE } else { "" });
            if let Some((_, calls)) = parse_calls(&text, &t) {
                for c in calls {
                    prop_assert_eq!(c.name.as_str(), "get_weather");
                    let v: Value = serde_json::from_str(&c.arguments).unwrap();
                    prop_assert!(v.is_object());
                }
            }
        }
    }

    fn weather() -> Vec<Value> {
        vec![
            json!({"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}, "days": {"type": "integer"}},
                           "required": ["city", "unit"]}}}),
        ]
    }

    #[test]
    fn tools_and_choices_validate() {
        let t = parse_tools(Some(weather()), None, None).unwrap().unwrap();
        assert_eq!(t.choice, ToolChoice::Auto);
        assert!(t.grammar().is_none());
        let none = parse_tools(Some(weather()), Some(json!("none")), None)
            .unwrap()
            .unwrap();
        assert!(!none.callable() && none.grammar().is_none());
        assert!(parse_tools(None, Some(json!("none")), None)
            .unwrap()
            .is_none());
        let named = json!({"type": "function", "function": {"name": "get_weather"}});
        assert_eq!(
            parse_tools(Some(weather()), Some(named), None)
                .unwrap()
                .unwrap()
                .choice,
            ToolChoice::Named("get_weather".into())
        );
        for (tools, choice) in [
            (
                Some(vec![
                    json!({"type": "function", "function": {"name": "bad name"}}),
                ]),
                None,
            ),
            (Some(vec![json!({"type": "retrieval"})]), None),
            (
                Some(weather()),
                Some(json!({"type": "function", "function": {"name": "other"}})),
            ),
            (Some(weather()), Some(json!("sometimes"))),
            (None, Some(json!("required"))),
            (Some(vec![weather()[0].clone(), weather()[0].clone()]), None),
        ] {
            assert!(parse_tools(tools, choice, None).is_err());
        }
    }

    #[test]
    fn calls_parse_and_render_back() {
        let t = parse_tools(Some(weather()), None, None).unwrap().unwrap();
        let out = "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"unit\": \"c\"}}\n</tool_call>";
        let (before, calls) = parse_calls(out, &t).unwrap();
        assert_eq!(before, "Let me check.");
        assert_eq!(calls[0].name, "get_weather");
        let args: Value = serde_json::from_str(&calls[0].arguments).unwrap();
        assert_eq!(args["city"], "Paris");
        let again = render_calls([(calls[0].name.as_str(), calls[0].arguments.as_str())]);
        assert_eq!(
            (
                &parse_calls(&again, &t).unwrap().1[0].name,
                &parse_calls(&again, &t).unwrap().1[0].arguments
            ),
            (&calls[0].name, &calls[0].arguments)
        );
        for no in [
            "Plain answer.",
            "<tool_call>{\"name\": \"unknown\", \"arguments\": {}}</tool_call>",
            "<tool_call>{\"name\": \"get_weather\", \"arguments\": 3}</tool_call>",
            "<tool_call>{not json}</tool_call>",
            "<tool_call>{\"name\": \"get_weather\", \"arguments\": {}}",
        ] {
            assert!(parse_calls(no, &t).is_none(), "{no}");
        }
    }

    #[test]
    fn forced_grammars_are_bounded() {
        let big: Vec<Value> = (0..100_000).map(|i| json!(format!("v{i}"))).collect();
        let tool = json!({"type": "function", "function": {"name": "pick", "parameters": {"type": "object", "properties": {"x": {"enum": big}}, "required": ["x"]}}});
        // Offered freely, the schema is only text; forced, it would be a grammar.
        assert!(parse_tools(Some(vec![tool.clone()]), None, None).is_ok());
        let err = parse_tools(Some(vec![tool]), Some(json!("required")), None).unwrap_err();
        assert_eq!((err.status, err.param.as_deref()), (400, Some("tools")));
        assert!(err.message.contains("enum values"), "{}", err.message);
        // Long property names instead of many values: the grammar's size is bounded too.
        let props: serde_json::Map<String, Value> = (0..64)
            .map(|i| (format!("{i}{}", "p".repeat(600)), json!({"type": "string"})))
            .collect();
        let wide = json!({"type": "function", "function": {"name": "w", "parameters": {"type": "object", "properties": props}}});
        let err = parse_tools(Some(vec![wide]), Some(json!("required")), None).unwrap_err();
        assert!(err.message.contains("grammar of"), "{}", err.message);
        let small = parse_tools(Some(weather()), Some(json!("required")), None)
            .unwrap()
            .unwrap();
        assert!(small.grammar().unwrap().len() < MAX_GRAMMAR_BYTES);
    }

    #[test]
    fn forced_grammars_follow_the_schema() {
        let named = json!({"type": "function", "function": {"name": "get_weather"}});
        let t = parse_tools(Some(weather()), Some(named), None)
            .unwrap()
            .unwrap();
        let g = t.grammar().unwrap();
        assert!(g.starts_with("root ::= \"<tool_call>\\n\""), "{g}");
        assert!(g.contains(r#""\"city\": " string"#), "{g}");
        assert!(g.contains(r#""\"c\"" | "\"f\"""#), "{g}");
        assert!(!g.contains("days"), "optional properties are left out: {g}");
        assert!(t.system_prompt().contains("get_weather"));
    }
}
