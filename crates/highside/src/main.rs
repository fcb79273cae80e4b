//! `highside`: the command line. Parsing and wiring only; the work happens in the library crates.

mod bench;
mod chat;
mod models;
mod serve;

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
    /// Create a data directory with a documented default highside.toml.
    Init,
    /// Load every imported model and serve the API.
    Serve(serve::ServeArgs),
    /// Import, list and remove models.
    #[command(subcommand)]
    Models(models::ModelsCommand),
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
        Command::Init => init(&cli.data),
        Command::Serve(args) => serve::run(&cli.data, args),
        Command::Models(cmd) => models::run(&cli.data, cmd),
        Command::Chat(args) => chat::run(args),
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

fn init(data: &std::path::Path) -> anyhow::Result<()> {
    let dir = highside_store::DataDir::create(data)?;
    let config = data.join(highside_config::CONFIG_FILE);
    if !config.exists() {
        std::fs::write(&config, highside_config::Config::default_file_text())?;
    }
    println!("initialised {}", dir.root().display());
    Ok(())
}
