//! How a conversation with tools reaches a chat template. A template with tool support gets
//! the `tools` list and the `tool` role as they are; any other gets the tools as a system
//! prompt (Hermes format) and tool results as user turns wrapped in `<tool_response>`.

use highside_openai::tools::Tools;
use highside_template::Message;

/// The messages to render.
pub(crate) fn messages(messages: &[Message], tools: Option<&Tools>, native: bool) -> Vec<Message> {
    let mut out: Vec<Message> = messages
        .iter()
        .map(|m| {
            if !native && m.role == "tool" {
                Message {
                    role: "user".into(),
                    content: format!("<tool_response>\n{}\n</tool_response>", m.content),
                }
            } else {
                m.clone()
            }
        })
        .collect();
    if let (Some(t), false) = (tools, native) {
        let prompt = t.system_prompt();
        match out.first_mut() {
            Some(m) if m.role == "system" => m.content = format!("{}\n\n{prompt}", m.content),
            _ => out.insert(
                0,
                Message {
                    role: "system".into(),
                    content: prompt,
                },
            ),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(role: &str, content: &str) -> Message {
        Message {
            role: role.into(),
            content: content.into(),
        }
    }

    #[test]
    fn tools_become_a_system_prompt_and_results_user_turns_without_template_support() {
        let tools = Tools::parse(
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
}
