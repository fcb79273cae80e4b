//! `highside usage ...`: usage reports and invoices from a running server.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::Value;

use crate::client::{check, Connection};

#[derive(Args)]
pub struct UsageArgs {
    #[command(flatten)]
    connection: Connection,
    #[command(subcommand)]
    command: UsageCommand,
}

#[derive(Subcommand)]
enum UsageCommand {
    /// Tokens and cost of a month, grouped by agency, user, model or day.
    Report {
        /// Only this agency (an agency's administrators and auditors see only their own).
        #[arg(long)]
        agency: Option<String>,
        /// The month, YYYY-MM.
        #[arg(long)]
        month: String,
        /// agency, user, model or day.
        #[arg(long, default_value = "agency")]
        group_by: String,
        /// Print the JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// An agency's invoice for a month under its contract plan.
    Invoice {
        /// The agency.
        agency: String,
        /// The month, YYYY-MM.
        #[arg(long)]
        month: String,
        /// json, csv or html (a printable page).
        #[arg(long, default_value = "json")]
        format: String,
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

pub fn run(args: UsageArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let conn = &args.connection;
        let client = conn.client()?;
        let send = |req: reqwest::RequestBuilder| async move {
            let res = req.send().await.with_context(|| {
                format!("cannot reach {}; is `highside serve` running?", conn.url)
            })?;
            check(res).await
        };
        match &args.command {
            UsageCommand::Report {
                agency,
                month,
                group_by,
                json,
            } => {
                let mut q = vec![("month", month.clone()), ("group_by", group_by.clone())];
                if let Some(a) = agency {
                    q.push(("agency", a.clone()));
                }
                let req = conn
                    .request(&client, Method::GET, "/admin/v1/usage")
                    .query(&q);
                let v: Value = send(req).await?.json().await?;
                if *json {
                    println!("{}", serde_json::to_string_pretty(&v)?);
                    return Ok(());
                }
                println!(
                    "{:<32} {:>9} {:>14} {:>14} {:>16}",
                    group_by.to_uppercase(),
                    "REQUESTS",
                    "PROMPT TOKENS",
                    "OUTPUT TOKENS",
                    "COST (USD)"
                );
                for r in v["data"].as_array().into_iter().flatten() {
                    println!(
                        "{:<32} {:>9} {:>14} {:>14} {:>16}",
                        r["group"].as_str().unwrap_or("-"),
                        r["requests"].as_u64().unwrap_or(0),
                        r["prompt_tokens"].as_u64().unwrap_or(0),
                        r["completion_tokens"].as_u64().unwrap_or(0),
                        r["cost"].as_str().unwrap_or("-")
                    );
                }
                Ok(())
            }
            UsageCommand::Invoice {
                agency,
                month,
                format,
                out,
            } => {
                let req = conn
                    .request(
                        &client,
                        Method::GET,
                        &format!("/admin/v1/invoices/{agency}"),
                    )
                    .query(&[("month", month), ("format", format)]);
                let text = send(req).await?.text().await?;
                match out {
                    Some(path) => std::fs::write(path, text)
                        .with_context(|| format!("cannot write {}", path.display()))?,
                    None => print!("{text}"),
                }
                Ok(())
            }
        }
    })
}
