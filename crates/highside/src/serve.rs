use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use highside_config::Config;
use highside_engine::EngineConfig;
use highside_server::{
    tls_config, AppState, Auditor, PlainListener, Registry, ServerConfig, TlsListener, TlsSettings,
};
use highside_store::DataDir;

/// Flags override environment variables, which override highside.toml.
#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "HIGHSIDE_LISTEN")]
    listen: Option<String>,
    /// Decode threads per engine; 0 = all cores.
    #[arg(long, env = "HIGHSIDE_ENGINE_THREADS")]
    engine_threads: Option<u32>,
    /// Sequences decoded together.
    #[arg(long, env = "HIGHSIDE_MAX_SEQUENCES")]
    max_sequences: Option<u32>,
    /// Context window per sequence, in tokens.
    #[arg(long, env = "HIGHSIDE_CONTEXT_LENGTH")]
    context_length: Option<u32>,
    /// Requests that may wait for a sequence before 429.
    #[arg(long, env = "HIGHSIDE_QUEUE_DEPTH")]
    queue_depth: Option<u32>,
    /// Largest request body in bytes.
    #[arg(long, env = "HIGHSIDE_MAX_BODY_BYTES")]
    max_body_bytes: Option<u64>,
    /// Prompt tokens prefilled per step while other streams decode.
    #[arg(long, env = "HIGHSIDE_PREFILL_CHUNK")]
    prefill_chunk: Option<u32>,
    /// Seconds streams get to finish after SIGTERM.
    #[arg(long, env = "HIGHSIDE_SHUTDOWN_GRACE_SECS")]
    shutdown_grace_secs: Option<u64>,
    /// Seconds a client has to send its headers (and an idle connection stays open).
    #[arg(long, env = "HIGHSIDE_HEADER_TIMEOUT_SECS")]
    header_timeout_secs: Option<u64>,
    /// Seconds a client has to send a whole request body.
    #[arg(long, env = "HIGHSIDE_BODY_TIMEOUT_SECS")]
    body_timeout_secs: Option<u64>,
    /// Seconds an answer waits for a client that does not read it.
    #[arg(long, env = "HIGHSIDE_WRITE_TIMEOUT_SECS")]
    write_timeout_secs: Option<u64>,
    /// Connections one client address may hold open at once.
    #[arg(long, env = "HIGHSIDE_CONNECTIONS_PER_ADDRESS")]
    connections_per_address: Option<u32>,
    /// Failed authentications per client address in a burst, refilled per minute.
    #[arg(long, env = "HIGHSIDE_AUTH_FAILURES_PER_MINUTE")]
    auth_failures_per_minute: Option<u32>,
    /// Seconds between the audit records that count throttled failures.
    #[arg(long, env = "HIGHSIDE_AUTH_FAILURE_REPORT_SECS")]
    auth_failure_report_secs: Option<u64>,
    /// Free bytes the audit log's disk must keep before new work is refused.
    #[arg(long, env = "HIGHSIDE_AUDIT_MIN_FREE_BYTES")]
    audit_min_free_bytes: Option<u64>,
    /// PEM certificate chain: serve over TLS (with --tls-key).
    #[arg(long, env = "HIGHSIDE_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "HIGHSIDE_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// PEM CA: require client certificates it issued (mutual TLS).
    #[arg(long, env = "HIGHSIDE_TLS_CLIENT_CA")]
    tls_client_ca: Option<PathBuf>,
    /// Write the bound port to this file once listening (for scripts and tests).
    #[arg(long)]
    port_file: Option<PathBuf>,
    /// This node's name in audit records and checkpoints.
    #[arg(long, env = "HIGHSIDE_NODE", default_value = "node-1")]
    node: String,
}

impl ServeArgs {
    fn apply(&self, mut c: Config) -> anyhow::Result<Config> {
        if let Some(v) = &self.listen {
            c.listen = v.clone();
        }
        let path = |p: &PathBuf| p.display().to_string();
        if let Some(p) = &self.tls_cert {
            c.tls_cert = Some(path(p));
        }
        if let Some(p) = &self.tls_key {
            c.tls_key = Some(path(p));
        }
        if let Some(p) = &self.tls_client_ca {
            c.tls_client_ca = Some(path(p));
        }
        macro_rules! set {
            ($($f:ident),*) => { $(if let Some(v) = self.$f { c.$f = v; })* };
        }
        set!(
            engine_threads,
            max_sequences,
            context_length,
            queue_depth,
            max_body_bytes,
            prefill_chunk,
            shutdown_grace_secs,
            header_timeout_secs,
            body_timeout_secs,
            write_timeout_secs,
            connections_per_address,
            auth_failures_per_minute,
            auth_failure_report_secs,
            audit_min_free_bytes
        );
        c.validate()?;
        Ok(c)
    }
}

pub fn run(data: &Path, args: ServeArgs) -> anyhow::Result<()> {
    let dir = DataDir::open(data)?;
    let mut file_config = Config::load(data)?;
    // Paths in highside.toml are relative to the data directory; flags to the working one.
    for p in [
        &mut file_config.tls_cert,
        &mut file_config.tls_key,
        &mut file_config.tls_client_ca,
    ]
    .into_iter()
    .flatten()
    {
        *p = data.join(&*p).display().to_string();
    }
    let config = args.apply(file_config)?;
    let store = Arc::new(dir.open_store()?);
    let aws_keys = dir.aws_key_master()?;
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(tls_config(&TlsSettings {
            cert: cert.into(),
            key: key.into(),
            client_ca: config.tls_client_ca.as_ref().map(PathBuf::from),
        })?),
        _ => None,
    };
    let engine_config = EngineConfig {
        threads: config.engine_threads,
        max_sequences: config.max_sequences,
        context_length: config.context_length,
        queue_depth: config.queue_depth,
        prefill_chunk: config.prefill_chunk,
    };
    let encodings = std::sync::Arc::new(crate::label::encodings(data, None)?);
    let policies = crate::label::policies(data)?;
    tracing::info!(
        system_high = %encodings.banner(encodings.system_high()),
        policies = policies.len(),
        "reference monitor ready"
    );
    // The log before the models: a node that cannot audit must not start serving.
    let audit_dir = data.join(crate::audit::DIR);
    let signer = crate::audit::signer(data)?;
    let public_key = signer.public_key();
    let log = highside_audit::AuditLog::open(
        &audit_dir,
        signer,
        Arc::new(highside_audit::Disk),
        highside_audit::Options {
            node: args.node.clone(),
            ..highside_audit::Options::default()
        },
    )
    .context("cannot open the audit log")?;
    let auditor = Arc::new(Auditor::new(log, &args.node, &audit_dir, public_key));
    let mut registry = Registry::default();
    highside_pipeline::node::load_models(&dir, &*store, &encodings, &engine_config, &mut registry)?;
    highside_pipeline::node::upstream_routes(data, &config, &encodings, &mut registry)?;
    if registry.is_empty() {
        tracing::warn!("no models imported: /health/ready will answer 503 (import one with `highside models import`)");
    }
    let state = AppState::new(
        registry,
        ServerConfig {
            max_body_bytes: config.max_body_bytes,
            header_timeout: Duration::from_secs(config.header_timeout_secs),
            body_timeout: Duration::from_secs(config.body_timeout_secs),
            write_timeout: Duration::from_secs(config.write_timeout_secs),
            connections_per_address: config.connections_per_address as usize,
            auth_failures_per_minute: config.auth_failures_per_minute,
            auth_report_every: Duration::from_secs(config.auth_failure_report_secs),
            audit_min_free_bytes: config.audit_min_free_bytes,
            shutdown_grace: Duration::from_secs(config.shutdown_grace_secs),
            metrics: highside_server::install_metrics(),
            aws_keys: Some(Arc::new(aws_keys)),
        },
        highside_server::Stores {
            identity: store.clone(),
            catalog: store.clone(),
            metering: store,
        },
        highside_monitor::Monitor::new(encodings, policies),
        Arc::clone(&auditor),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let served = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr()?;
        if let Some(path) = &args.port_file {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, addr.port().to_string())?;
            std::fs::rename(&tmp, path)?;
        }
        let shutdown = highside_server::shutdown_signal();
        match tls {
            Some(tls) => {
                tracing::info!(%addr, mutual_tls = config.tls_client_ca.is_some(), "serving over TLS");
                highside_server::serve(TlsListener::new(listener, tls)?, state.clone(), shutdown)
                    .await?;
            }
            None => {
                tracing::info!(%addr, "serving");
                highside_server::serve(PlainListener::new(listener), state.clone(), shutdown)
                    .await?;
            }
        }
        anyhow::Ok(())
    });
    // Engines stop (and join their threads) when the state is dropped; records of streams
    // they cancel are queued before the log's final checkpoint, and their settlements are
    // written before the process ends.
    let meter = Arc::clone(state.service().meter());
    drop(state);
    drop(runtime);
    meter.flush();
    if let Err(e) = auditor.close() {
        tracing::error!(error = %e, "the audit log could not be closed with a checkpoint");
        served?;
        return Err(e.into());
    }
    served?;
    tracing::info!("stopped");
    Ok(())
}
