//! How a conversation with tools reaches a chat template. An assistant turn's calls are
//! written into its text as the model writes them (`<tool_call>` blocks). A template with
//! tool support gets the `tools` list and the `tool` role as they are; any other gets the
//! tools as a system prompt (Hermes format) and tool results as user turns wrapped in
//! `<tool_response>`.

use highside_inference::tools::{render_calls, Tools};
use highside_inference::Message;

/// The messages to render.
pub fn messages(messages: &[Message], tools: Option<&Tools>, native: bool) -> Vec<Message> {
    let mut out: Vec<Message> = messages
        .iter()
        .map(|m| {
            if !native && m.role == "tool" {
                Message::new(
                    "user",
                    format!("<tool_response>\n{}\n</tool_response>", m.content),
                )
            } else if !m.tool_calls.is_empty() {
                let calls = render_calls(
                    m.tool_calls
                        .iter()
                        .map(|c| (c.name.as_str(), c.arguments.as_str())),
                );
                let content = if m.content.is_empty() {
                    calls
                } else {
                    format!("{}\n{calls}", m.content)
                };
                Message::new(m.role.clone(), content)
            } else {
                Message::new(m.role.clone(), m.content.clone())
            }
        })
        .collect();
    if let (Some(t), false) = (tools, native) {
        let prompt = t.system_prompt();
        match out.first_mut() {
            Some(m) if m.role == "system" => m.content = format!("{}\n\n{prompt}", m.content),
            _ => out.insert(0, Message::new("system", prompt)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use highside_inference::ToolCall as MessageToolCall;
    use highside_openai::texts::message_texts as texts;
    use std::borrow::Cow;

    fn m(role: &str, content: &str) -> Message {
        Message::new(role, content)
    }

    #[test]
    fn tools_become_a_system_prompt_and_results_user_turns_without_template_support() {
        let tools = highside_openai::tools::parse_tools(
            Some(vec![
                serde_json::json!({"type": "function", "function": {"name": "f"}}),
            ]),
            None,
            None,
        )
        .unwrap()
        .unwrap();
        let conv = [m("system", "Be brief."), m("user", "hi"), m("tool", "42")];
        let out = messages(&conv, Some(&tools), false);
        assert!(out[0].content.starts_with("Be brief.\n\n") && out[0].content.contains("\"f\""));
        assert_eq!(out[2], m("user", "<tool_response>\n42\n</tool_response>"));
        let plain = messages(&conv[1..], Some(&tools), false);
        assert_eq!(plain[0].role, "system");
        assert_eq!(messages(&conv, Some(&tools), true), conv.to_vec());
    }

    #[test]
    fn earlier_calls_are_written_as_the_model_writes_them_and_are_texts() {
        let call = Message {
            tool_calls: vec![MessageToolCall {
                id: "call_1".into(),
                name: "f".into(),
                arguments: "{\"x\":1}".into(),
            }],
            ..m("assistant", "Checking.")
        };
        let out = messages(std::slice::from_ref(&call), None, true);
        assert_eq!(
            out[0].content,
            "Checking.\n<tool_call>\n{\"name\":\"f\",\"arguments\":{\"x\":1}}\n</tool_call>"
        );
        assert!(out[0].tool_calls.is_empty());
        assert_eq!(
            texts(&[call]),
            ["Checking.", "call_1", "f", "{\"x\":1}", "x"]
        );
        let hidden = Message {
            tool_calls: vec![MessageToolCall {
                id: "c".into(),
                name: "f".into(),
                arguments: r#"{"note": "SECRET\nthe plan"}"#.into(),
            }],
            ..m("assistant", "")
        };
        assert!(texts(std::slice::from_ref(&hidden)).contains(&Cow::Borrowed("SECRET\nthe plan")));
    }
}
