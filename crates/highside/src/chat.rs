use std::io::Write;

use anyhow::{bail, Context};
use clap::Args;
use futures_util::StreamExt;

#[derive(Args)]
pub struct ChatArgs {
    /// The model name (see `highside models list`).
    model: String,
    /// What to ask.
    prompt: String,
    #[command(flatten)]
    connection: crate::client::Connection,
    /// An optional system message.
    #[arg(long)]
    system: Option<String>,
    /// Most tokens to generate.
    #[arg(long, default_value_t = 256)]
    max_tokens: u32,
    /// Sampling temperature (0 = greedy).
    #[arg(long, default_value_t = 0.7)]
    temperature: f32,
    /// Declare the prompt's classification, e.g. "SECRET//NOFORN" (sent as X-Highside-Label).
    #[arg(long)]
    label: Option<String>,
}

pub fn run(args: ChatArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(chat(args))
}

async fn chat(args: ChatArgs) -> anyhow::Result<()> {
    let mut messages = Vec::new();
    if let Some(s) = &args.system {
        messages.push(serde_json::json!({"role": "system", "content": s}));
    }
    messages.push(serde_json::json!({"role": "user", "content": args.prompt}));
    let body = serde_json::json!({
        "model": args.model,
        "messages": messages,
        "max_tokens": args.max_tokens,
        "temperature": args.temperature,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    let conn = &args.connection;
    let mut req = conn
        .request(
            &conn.client()?,
            reqwest::Method::POST,
            "/v1/chat/completions",
        )
        .json(&body);
    if let Some(l) = &args.label {
        req = req.header("x-highside-label", l);
    }
    let res = req
        .send()
        .await
        .with_context(|| format!("cannot reach {}; is `highside serve` running?", conn.url))?;
    let res = crate::client::check(res).await?;
    // The answer's classification goes to stderr, so stdout stays the answer alone.
    if let Some(label) = res.headers().get("x-highside-label") {
        eprintln!("[output label: {}]", label.to_str().unwrap_or("?"));
    }
    let mut stdout = std::io::stdout();
    let mut buf = Vec::new();
    let mut usage = None;
    let mut bytes = res.bytes_stream();
    while let Some(chunk) = bytes.next().await {
        buf.extend_from_slice(&chunk?);
        // SSE events are separated by a blank line.
        while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = buf.drain(..end + 2).collect();
            let line = String::from_utf8_lossy(&event);
            let Some(data) = line.trim().strip_prefix("data: ") else {
                continue;
            };
            if data == "[DONE]" {
                writeln!(stdout)?;
                if let Some(u) = usage {
                    eprintln!("[{u}]");
                }
                return Ok(());
            }
            let v: serde_json::Value =
                serde_json::from_str(data).context("the server sent malformed JSON")?;
            if let Some(err) = v.get("error") {
                bail!(
                    "the server failed mid-answer: {}",
                    err["message"].as_str().unwrap_or("unknown error")
                );
            }
            if let Some(text) = v["choices"][0]["delta"]["content"].as_str() {
                write!(stdout, "{text}")?;
                stdout.flush()?;
            }
            if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
                usage = Some(format!(
                    "{} prompt + {} completion tokens",
                    u["prompt_tokens"], u["completion_tokens"]
                ));
            }
        }
    }
    bail!("the stream ended before [DONE]")
}
