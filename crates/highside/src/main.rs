//! `highside`: the command line. Parsing and wiring only; the work happens in the library crates.

mod admin;
mod audit;
mod bench;
mod chat;
mod client;
mod label;
mod models;
mod serve;
mod usage;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "highside",
    version,
    about = "Governed AI serving for classified and sovereign networks"
)]
struct Cli {
    /// The data directory (database, configuration, model store).
    #[arg(
        long,
        env = "HIGHSIDE_DATA",
        default_value = "highside-data",
        global = true
    )]
    data: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a data directory with a documented default highside.toml and the first
    /// operator; prints the operator's one-time key as the last line: HIGHSIDE_API_KEY=<key>.
    Init(InitArgs),
    /// Load every imported model and serve the API.
    Serve(serve::ServeArgs),
    /// Import, list and remove models.
    #[command(subcommand)]
    Models(models::ModelsCommand),
    /// Manage agencies, users, keys and certificate mappings on a running server.
    Admin(admin::AdminArgs),
    /// The audit log: verify, query, export, prove (offline with only the public key).
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Classification markings: parse, canonicalise, compare.
    #[command(subcommand)]
    Label(label::LabelCommand),
    /// Usage reports and invoices from a running server.
    Usage(usage::UsageArgs),
    /// Stream an answer from a running server to the terminal.
    Chat(chat::ChatArgs),
    /// Benchmarks (programs that measure; never part of the test suite).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("HIGHSIDE_LOG").unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("info,llama-cpp-2=warn,llama_cpp_2=off")
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Init(args) => init(&cli.data, args),
        Command::Admin(args) => admin::run(args),
        Command::Label(cmd) => label::run(&cli.data, cmd),
        Command::Audit(cmd) => audit::run(&cli.data, cmd),
        Command::Serve(args) => serve::run(&cli.data, args),
        Command::Models(cmd) => models::run(&cli.data, cmd),
        Command::Chat(args) => chat::run(args),
        Command::Usage(args) => usage::run(args),
        Command::Bench(cmd) => bench::run(cmd),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Who the first operator is. The clearance should be the enclave's system high: nobody can
/// later be given more than the operator holds.
#[derive(clap::Args)]
struct InitArgs {
    /// The operator's agency.
    #[arg(long, default_value = "Enclave Operations")]
    agency: String,
    /// The agency's branch: executive, legislative or judicial.
    #[arg(long, default_value = "executive")]
    branch: String,
    /// The operator's user name.
    #[arg(long, default_value = "operator")]
    operator: String,
    /// The operator's clearance (default: the level and compartments of the enclave's system
    /// high, from DATA/label-encodings.toml or the built-in encodings).
    #[arg(long)]
    clearance: Option<String>,
    /// The operator's nationality (ISO 3166-1 alpha-3).
    #[arg(long, default_value = "USA")]
    nationality: String,
}

fn init(data: &std::path::Path, args: InitArgs) -> anyhow::Result<()> {
    let dir = highside_store::DataDir::create(data)?;
    // Created now so a backup of a fresh data directory already holds it.
    dir.aws_key_master()?;
    let config = data.join(highside_config::CONFIG_FILE);
    if !config.exists() {
        std::fs::write(&config, highside_config::Config::default_file_text())?;
    }
    let store = dir.open_store()?;
    let encodings = label::encodings(data, None)?;
    let policies = data.join(label::POLICIES_FILE);
    if !policies.exists() {
        std::fs::write(&policies, label::DEFAULT_POLICIES)?;
    }
    let public = audit_key(data)?;
    let log = audit::open(data, "local")?;
    let clearance = args
        .clearance
        .unwrap_or_else(|| highside_identity::Clearance::highest(&encodings).to_string());
    let branch = args
        .branch
        .parse()
        .map_err(|e| anyhow::anyhow!("--branch: {e}"))?;
    let (user, key) = highside_tenancy::bootstrap(
        &store,
        &encodings,
        &highside_tenancy::Bootstrap {
            agency_name: args.agency,
            branch,
            operator_name: args.operator,
            clearance,
            nationality: args.nationality,
        },
    )?;
    audit::record_local(
        &log,
        "enclave.init",
        &user.id.to_string(),
        serde_json::Value::Null,
        serde_json::json!({ "operator": user, "key": key.record }),
    )?;
    println!("initialised {}", dir.root().display());
    println!(
        "audit signing key: {} (owner-only); public key for auditors: {} = {public}",
        data.join(audit::KEY_FILE).display(),
        data.join(audit::PUBLIC_FILE).display()
    );
    println!(
        "operator '{}' ({}) created; its key is shown once, below, and cannot be recovered",
        user.name, user.id
    );
    println!("HIGHSIDE_API_KEY={}", key.secret.expose());
    Ok(())
}

/// Creates the audit signing key unless it exists (never replaced: it anchors every
/// checkpoint already written) and writes the public key; returns the public key's hex.
fn audit_key(data: &std::path::Path) -> anyhow::Result<String> {
    use anyhow::Context;
    let path = data.join(audit::KEY_FILE);
    let signer = if path.exists() {
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        highside_audit::Signer::from_pkcs8(&bytes)?
    } else {
        let (pkcs8, signer) = highside_audit::Signer::generate()?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        std::io::Write::write_all(&mut file, &pkcs8)?;
        file.sync_all()?;
        signer
    };
    let public = signer.public_key().to_hex();
    std::fs::write(data.join(audit::PUBLIC_FILE), format!("{public}\n"))?;
    Ok(public)
}
