use std::path::PathBuf;

use clap::{Args, Subcommand};

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Serving throughput and latency vs the raw llama.cpp loop and llama-cpp-python.
    Serve(ServeBench),
    /// Gateway overhead in front of a static upstream vs LiteLLM's proxy.
    Gateway(GatewayBench),
    /// Marking detection throughput on prose and adversarial input.
    Monitor(MonitorBench),
}

#[derive(Args)]
pub struct MonitorBench {
    /// Bytes per input.
    #[arg(long, default_value_t = 4_000_000)]
    size: usize,
    /// Timings per input (medians are reported).
    #[arg(long, default_value_t = 5)]
    repeat: u32,
    /// Append the results here.
    #[arg(long, default_value = "bench/RESULTS.md")]
    results: PathBuf,
}

#[derive(Args)]
pub struct GatewayBench {
    /// Concurrent connections, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    connections: Vec<u32>,
    /// Requests measured per scenario.
    #[arg(long, default_value_t = 2000)]
    requests: u32,
    /// Repetitions of every scenario (medians are reported).
    #[arg(long, default_value_t = 3)]
    repeat: u32,
    /// Skip LiteLLM.
    #[arg(long)]
    no_litellm: bool,
    /// Append the results here.
    #[arg(long, default_value = "bench/RESULTS.md")]
    results: PathBuf,
}

fn command_line() -> String {
    std::env::args()
        .map(|a| if a.contains(' ') { format!("'{a}'") } else { a })
        .collect::<Vec<_>>()
        .join(" ")
}

#[derive(Args)]
pub struct ServeBench {
    /// The GGUF model (default: the demo model fetched by scripts/fetch-model).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Concurrent streaming clients, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16,32")]
    clients: Vec<u32>,
    /// Tokens generated per request.
    #[arg(long, default_value_t = 128)]
    max_tokens: u32,
    /// Requests per scenario at least (spread over the clients).
    #[arg(long, default_value_t = 4)]
    min_requests: u32,
    /// Repetitions of every scenario (medians are reported).
    #[arg(long, default_value_t = 3)]
    repeat: u32,
    /// Engine threads for every contender (0 = all cores).
    #[arg(long, default_value_t = 0)]
    threads: u32,
    /// Skip llama-cpp-python's server.
    #[arg(long)]
    no_llama_cpp_python: bool,
    /// Append the results here.
    #[arg(long, default_value = "bench/RESULTS.md")]
    results: PathBuf,
}

pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    let args = match cmd {
        BenchCommand::Serve(args) => args,
        BenchCommand::Monitor(m) => {
            let (report, _) = highside_bench::monitor::run(m.size, m.repeat, &command_line());
            println!("{report}");
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(&m.results)?;
            std::io::Write::write_all(&mut f, format!("\n{report}").as_bytes())?;
            return Ok(());
        }
        BenchCommand::Gateway(g) => {
            let config = highside_bench::gateway::GatewayConfig {
                highside_exe: std::env::current_exe()?,
                connections: g.connections,
                requests: g.requests,
                repeat: g.repeat,
                with_litellm: !g.no_litellm,
                results_file: Some(g.results),
                command: command_line(),
            };
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let report = runtime.block_on(highside_bench::gateway::run(&config))?;
            println!("{report}");
            return Ok(());
        }
    };
    let model = match args.model {
        Some(m) => m,
        None => PathBuf::from(std::env::var("HOME").unwrap_or_default())
            .join(".cache/highside/SmolLM2-135M-Instruct.Q4_1.gguf"),
    };
    anyhow::ensure!(
        model.is_file(),
        "model {} not found (run scripts/fetch-model or pass --model)",
        model.display()
    );
    let config = highside_bench::BenchConfig {
        highside_exe: std::env::current_exe()?,
        model,
        clients: args.clients,
        max_tokens: args.max_tokens,
        min_requests: args.min_requests,
        repeat: args.repeat,
        threads: args.threads,
        with_llama_cpp_python: !args.no_llama_cpp_python,
        results_file: Some(args.results),
        command: std::env::args()
            .map(|a| if a.contains(' ') { format!("'{a}'") } else { a })
            .collect::<Vec<_>>()
            .join(" "),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(highside_bench::run(&config))?;
    println!("{report}");
    Ok(())
}
