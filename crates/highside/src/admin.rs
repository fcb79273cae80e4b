//! `highside admin ...`: the admin API from the command line, against a running server.

use anyhow::Context;
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Map, Value};

use crate::client::{check, Connection};

#[derive(Args)]
pub struct AdminArgs {
    #[command(flatten)]
    connection: Connection,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Show who the key authenticates as.
    Whoami,
    /// Agencies (operators).
    #[command(subcommand)]
    Agencies(AgencyCommand),
    /// Users.
    #[command(subcommand)]
    Users(UserCommand),
    /// API keys.
    #[command(subcommand)]
    Keys(KeyCommand),
    /// Client-certificate mappings.
    #[command(subcommand)]
    Certs(CertCommand),
    /// Models' accreditations (operators).
    #[command(subcommand)]
    Models(ModelCommand),
    /// Model prices per million tokens (operators set them).
    #[command(subcommand)]
    Prices(PriceCommand),
    /// Rate limits, quotas and budgets of an agency, user or key.
    #[command(subcommand)]
    Limits(LimitCommand),
    /// Agencies' contract plans (operators).
    #[command(subcommand)]
    Plans(PlanCommand),
}

#[derive(Subcommand)]
enum PriceCommand {
    /// List every model's prices.
    List,
    /// Set a model's prices, in dollars per million tokens (e.g. 0.15).
    Set {
        model: String,
        #[arg(long)]
        input: String,
        #[arg(long)]
        output: String,
    },
}

#[derive(Subcommand)]
enum LimitCommand {
    /// Show the limits of `agency ID`, `user ID` or `key ID`.
    Get { scope: String, id: String },
    /// Replace the limits of `agency ID`, `user ID` or `key ID` (an omitted one is no limit).
    Set {
        scope: String,
        id: String,
        #[arg(long)]
        requests_per_minute: Option<u64>,
        #[arg(long)]
        tokens_per_minute: Option<u64>,
        #[arg(long)]
        daily_tokens: Option<u64>,
        #[arg(long)]
        monthly_tokens: Option<u64>,
        /// Dollars per month, e.g. 250.00.
        #[arg(long)]
        monthly_budget: Option<String>,
    },
}

#[derive(Subcommand)]
enum PlanCommand {
    /// Show an agency's contract plan.
    Get { agency: String },
    /// Set an agency's contract plan.
    Set {
        agency: String,
        /// Dollars per year, billed a twelfth a month.
        #[arg(long)]
        annual_fee: String,
        /// Tokens included each month.
        #[arg(long, default_value_t = 0)]
        included_tokens: u64,
        /// Dollars per million prompt tokens beyond the included ones (with --overage-output;
        /// without both, each model's prices apply).
        #[arg(long, requires = "overage_output")]
        overage_input: Option<String>,
        /// Dollars per million generated tokens beyond the included ones.
        #[arg(long, requires = "overage_input")]
        overage_output: Option<String>,
        /// The most a month's usage may be billed, dollars.
        #[arg(long)]
        monthly_cap: Option<String>,
        /// The contract's first month, YYYY-MM.
        #[arg(long)]
        starts_on: String,
    },
}

#[derive(Subcommand)]
enum ModelCommand {
    /// Change the highest label a model is accredited to process (never above system high).
    Label {
        /// The model name.
        name: String,
        /// The accreditation, e.g. "SECRET//NOFORN".
        marking: String,
    },
}

#[derive(Args)]
struct Paging {
    /// Page size (1 to 100).
    #[arg(long)]
    limit: Option<u32>,
    /// Start after this ID (the previous page's last_id).
    #[arg(long)]
    after: Option<String>,
}

#[derive(Subcommand)]
enum AgencyCommand {
    /// Create an agency.
    Create {
        #[arg(long)]
        name: String,
        /// executive, legislative or judicial.
        #[arg(long)]
        branch: String,
        /// Prompts holding personal data: off (default), flag, block or cui.
        #[arg(long)]
        pii_action: Option<String>,
        /// ISO 3166-1 alpha-3: the nationality its administrators may give users (without
        /// one, only operators set its users' nationality).
        #[arg(long)]
        nationality: Option<String>,
    },
    /// List agencies.
    List {
        #[command(flatten)]
        paging: Paging,
    },
    /// Show an agency.
    Get { id: String },
    /// Change an agency.
    Update {
        id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        branch: Option<String>,
        /// Prompts holding personal data: off, flag, block or cui.
        #[arg(long)]
        pii_action: Option<String>,
        /// The nationality its administrators may give users.
        #[arg(long)]
        nationality: Option<String>,
    },
    /// Disable an agency: none of its users can authenticate.
    Disable { id: String },
    /// Enable a disabled agency.
    Enable { id: String },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user.
    Create {
        /// The agency (default: your own).
        #[arg(long)]
        agency: Option<String>,
        #[arg(long)]
        name: String,
        /// Clearance marking, e.g. SECRET or "TOP SECRET//SI/TK".
        #[arg(long)]
        clearance: String,
        /// ISO 3166-1 alpha-3 code, e.g. USA.
        #[arg(long)]
        nationality: String,
        /// Comma-separated roles: operator, agency-admin, user, auditor (default: user).
        #[arg(long, value_delimiter = ',')]
        roles: Option<Vec<String>>,
    },
    /// List users.
    List {
        #[arg(long)]
        agency: Option<String>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Show a user.
    Get { id: String },
    /// Change a user.
    Update {
        id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        clearance: Option<String>,
        #[arg(long)]
        nationality: Option<String>,
        #[arg(long, value_delimiter = ',')]
        roles: Option<Vec<String>>,
    },
    /// Disable a user: none of their keys or certificates authenticate.
    Disable { id: String },
    /// Enable a disabled user.
    Enable { id: String },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Create a key; its secret is printed once, as the last line: HIGHSIDE_API_KEY=<key>.
    Create {
        /// The user the key acts as (default: you).
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        name: String,
        /// Comma-separated roles the key may exercise (default: all of the owner's).
        #[arg(long, value_delimiter = ',')]
        scopes: Option<Vec<String>>,
        /// RFC 3339 expiry time.
        #[arg(long, conflicts_with = "expires_in_days")]
        expires_at: Option<String>,
        /// Expiry in days from now.
        #[arg(long)]
        expires_in_days: Option<u32>,
        /// `bearer` (default) or `aws`: an access key pair for SigV4 clients such as boto3,
        /// printed as AWS_ACCESS_KEY_ID=… and AWS_SECRET_ACCESS_KEY=… last lines.
        #[arg(long, value_parser = ["bearer", "aws"])]
        kind: Option<String>,
    },
    /// List keys (never their secrets).
    List {
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        agency: Option<String>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Show a key.
    Get { id: String },
    /// Revoke a key; it fails on its next use.
    Revoke { id: String },
}

#[derive(Subcommand)]
enum CertCommand {
    /// Map a client certificate's subject or subjectAltName to a user.
    Add {
        #[arg(long)]
        user: String,
        /// The subject as a distinguished name, e.g. "CN=alice, O=Agency" (write \, for a
        /// comma inside a value); matched RDN by RDN.
        #[arg(long, conflicts_with = "san", required_unless_present = "san")]
        subject: Option<String>,
        /// A DNS name, email address or URI from subjectAltName.
        #[arg(long)]
        san: Option<String>,
    },
    /// List mappings.
    List {
        #[arg(long)]
        user: Option<String>,
        #[command(flatten)]
        paging: Paging,
    },
    /// Show a mapping.
    Get { id: String },
    /// Remove a mapping.
    Remove { id: String },
}

/// Builds a JSON object from the given fields, leaving out the absent ones.
fn object(fields: &[(&str, Option<Value>)]) -> Value {
    let map: Map<String, Value> = fields
        .iter()
        .filter_map(|(k, v)| v.clone().map(|v| ((*k).to_owned(), v)))
        .collect();
    Value::Object(map)
}

fn s(v: &Option<String>) -> Option<Value> {
    v.as_ref().map(|x| json!(x))
}

fn list_query(paging: &Paging, extra: &[(&str, &Option<String>)]) -> Vec<(String, String)> {
    let mut q = Vec::new();
    if let Some(l) = paging.limit {
        q.push(("limit".into(), l.to_string()));
    }
    if let Some(a) = &paging.after {
        q.push(("after".into(), a.clone()));
    }
    for (k, v) in extra {
        if let Some(v) = v {
            q.push(((*k).into(), v.clone()));
        }
    }
    q
}

struct Call {
    method: Method,
    path: String,
    query: Vec<(String, String)>,
    body: Option<Value>,
}

fn call(method: Method, path: String) -> Call {
    Call {
        method,
        path,
        query: Vec::new(),
        body: None,
    }
}

fn plan(cmd: &AdminCommand) -> anyhow::Result<Call> {
    use AdminCommand as A;
    let p = |x: &str| format!("/admin/v1/{x}");
    Ok(match cmd {
        A::Whoami => call(Method::GET, p("whoami")),
        A::Agencies(c) => match c {
            AgencyCommand::Create {
                name,
                branch,
                pii_action,
                nationality,
            } => Call {
                body: Some(object(&[
                    ("name", Some(json!(name))),
                    ("branch", Some(json!(branch))),
                    ("pii_action", s(pii_action)),
                    ("nationality", s(nationality)),
                ])),
                ..call(Method::POST, p("agencies"))
            },
            AgencyCommand::List { paging } => Call {
                query: list_query(paging, &[]),
                ..call(Method::GET, p("agencies"))
            },
            AgencyCommand::Get { id } => call(Method::GET, p(&format!("agencies/{id}"))),
            AgencyCommand::Update {
                id,
                name,
                branch,
                pii_action,
                nationality,
            } => Call {
                body: Some(object(&[
                    ("name", s(name)),
                    ("branch", s(branch)),
                    ("pii_action", s(pii_action)),
                    ("nationality", s(nationality)),
                ])),
                ..call(Method::PATCH, p(&format!("agencies/{id}")))
            },
            AgencyCommand::Disable { id } | AgencyCommand::Enable { id } => Call {
                body: Some(
                    json!({"status": if matches!(c, AgencyCommand::Disable { .. }) { "disabled" } else { "active" }}),
                ),
                ..call(Method::PATCH, p(&format!("agencies/{id}")))
            },
        },
        A::Users(c) => match c {
            UserCommand::Create {
                agency,
                name,
                clearance,
                nationality,
                roles,
            } => Call {
                body: Some(object(&[
                    ("agency_id", s(agency)),
                    ("name", Some(json!(name))),
                    ("clearance", Some(json!(clearance))),
                    ("nationality", Some(json!(nationality))),
                    ("roles", roles.as_ref().map(|r| json!(r))),
                ])),
                ..call(Method::POST, p("users"))
            },
            UserCommand::List { agency, paging } => Call {
                query: list_query(paging, &[("agency_id", agency)]),
                ..call(Method::GET, p("users"))
            },
            UserCommand::Get { id } => call(Method::GET, p(&format!("users/{id}"))),
            UserCommand::Update {
                id,
                name,
                clearance,
                nationality,
                roles,
            } => Call {
                body: Some(object(&[
                    ("name", s(name)),
                    ("clearance", s(clearance)),
                    ("nationality", s(nationality)),
                    ("roles", roles.as_ref().map(|r| json!(r))),
                ])),
                ..call(Method::PATCH, p(&format!("users/{id}")))
            },
            UserCommand::Disable { id } | UserCommand::Enable { id } => Call {
                body: Some(
                    json!({"status": if matches!(c, UserCommand::Disable { .. }) { "disabled" } else { "active" }}),
                ),
                ..call(Method::PATCH, p(&format!("users/{id}")))
            },
        },
        A::Keys(c) => match c {
            KeyCommand::Create {
                user,
                name,
                scopes,
                expires_at,
                expires_in_days,
                kind,
            } => {
                let expires = match (expires_at, expires_in_days) {
                    (Some(t), _) => Some(t.clone()),
                    (None, Some(days)) => {
                        let t = time::OffsetDateTime::now_utc()
                            + time::Duration::days(i64::from(*days));
                        Some(t.format(&time::format_description::well_known::Rfc3339)?)
                    }
                    (None, None) => None,
                };
                Call {
                    body: Some(object(&[
                        ("user_id", s(user)),
                        ("name", Some(json!(name))),
                        ("scopes", scopes.as_ref().map(|r| json!(r))),
                        ("expires_at", s(&expires)),
                        ("kind", s(kind)),
                    ])),
                    ..call(Method::POST, p("keys"))
                }
            }
            KeyCommand::List {
                user,
                agency,
                paging,
            } => Call {
                query: list_query(paging, &[("user_id", user), ("agency_id", agency)]),
                ..call(Method::GET, p("keys"))
            },
            KeyCommand::Get { id } => call(Method::GET, p(&format!("keys/{id}"))),
            KeyCommand::Revoke { id } => call(Method::DELETE, p(&format!("keys/{id}"))),
        },
        A::Certs(c) => match c {
            CertCommand::Add { user, subject, san } => {
                let (kind, value) = match (subject, san) {
                    (Some(v), _) => ("subject", v),
                    (None, Some(v)) => ("san", v),
                    (None, None) => anyhow::bail!("give --subject or --san"),
                };
                Call {
                    body: Some(json!({"user_id": user, "kind": kind, "value": value})),
                    ..call(Method::POST, p("certificates"))
                }
            }
            CertCommand::List { user, paging } => Call {
                query: list_query(paging, &[("user_id", user)]),
                ..call(Method::GET, p("certificates"))
            },
            CertCommand::Get { id } => call(Method::GET, p(&format!("certificates/{id}"))),
            CertCommand::Remove { id } => call(Method::DELETE, p(&format!("certificates/{id}"))),
        },
        A::Models(ModelCommand::Label { name, marking }) => Call {
            body: Some(json!({ "label": marking })),
            ..call(Method::PATCH, p(&format!("models/{name}")))
        },
        A::Prices(PriceCommand::List) => call(Method::GET, p("prices")),
        A::Prices(PriceCommand::Set {
            model,
            input,
            output,
        }) => Call {
            body: Some(json!({"input_per_million": input, "output_per_million": output})),
            ..call(Method::PUT, p(&format!("prices/{model}")))
        },
        A::Limits(LimitCommand::Get { scope, id }) => {
            call(Method::GET, p(&format!("limits/{scope}/{id}")))
        }
        A::Limits(LimitCommand::Set {
            scope,
            id,
            requests_per_minute,
            tokens_per_minute,
            daily_tokens,
            monthly_tokens,
            monthly_budget,
        }) => Call {
            body: Some(object(&[
                ("requests_per_minute", requests_per_minute.map(|v| json!(v))),
                ("tokens_per_minute", tokens_per_minute.map(|v| json!(v))),
                ("daily_tokens", daily_tokens.map(|v| json!(v))),
                ("monthly_tokens", monthly_tokens.map(|v| json!(v))),
                ("monthly_budget", s(monthly_budget)),
            ])),
            ..call(Method::PUT, p(&format!("limits/{scope}/{id}")))
        },
        A::Plans(PlanCommand::Get { agency }) => call(Method::GET, p(&format!("plans/{agency}"))),
        A::Plans(PlanCommand::Set {
            agency,
            annual_fee,
            included_tokens,
            overage_input,
            overage_output,
            monthly_cap,
            starts_on,
        }) => Call {
            body: Some(object(&[
                ("annual_fee", Some(json!(annual_fee))),
                ("included_tokens", Some(json!(included_tokens))),
                ("overage_input_per_million", s(overage_input)),
                ("overage_output_per_million", s(overage_output)),
                ("monthly_cap", s(monthly_cap)),
                ("starts_on", Some(json!(starts_on))),
            ])),
            ..call(Method::PUT, p(&format!("plans/{agency}")))
        },
    })
}

pub fn run(args: AdminArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let call = plan(&args.command)?;
        let conn = &args.connection;
        let mut req = conn
            .request(&conn.client()?, call.method, &call.path)
            .query(&call.query);
        if let Some(b) = &call.body {
            req = req.json(b);
        }
        let res = req
            .send()
            .await
            .with_context(|| format!("cannot reach {}; is `highside serve` running?", conn.url))?;
        let mut value: Value = check(res).await?.json().await?;
        // The one-time secret goes last, alone on its line, for scripts (and never in the JSON
        // that might be pasted somewhere).
        let mut take = |field: &str| match value.as_object_mut().and_then(|o| o.remove(field)) {
            Some(Value::String(k)) => Some(k),
            _ => None,
        };
        let secret = take("key");
        let access = (take("access_key_id"), take("secret_access_key"));
        println!("{}", serde_json::to_string_pretty(&value)?);
        if let Some(k) = secret {
            println!("HIGHSIDE_API_KEY={k}");
        }
        if let (Some(id), Some(k)) = access {
            println!("AWS_ACCESS_KEY_ID={id}");
            println!("AWS_SECRET_ACCESS_KEY={k}");
        }
        anyhow::Ok(())
    })
}
