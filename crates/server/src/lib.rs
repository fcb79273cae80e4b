//! Highside's HTTP API: the listeners, the router and its surfaces (`openai/`, `bedrock/`,
//! `admin/`), health checks and graceful shutdown.
//!
//! Handlers only move bytes: they read a bounded body, convert it to the neutral request,
//! hand it to `highside_pipeline` (which owns the governed path from a parsed request to a
//! backend's stream, and is testable without HTTP) and encode the answer in their surface's
//! wire format. Start at `http.rs` (`router`, `admitted`).
#![forbid(unsafe_code)]

mod admin;
mod auth;
mod bedrock;
mod conn;
mod http;
mod listener;
mod metrics;
mod openai;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::serve::Listener;
use highside_label::Encodings;
use highside_monitor::Monitor;
use highside_store::{IdentityStore, MeteringStore, Store};
use highside_tenancy::{Admin, Authenticator};

pub use highside_pipeline::{
    Accreditation, Auditor, Caller, EmbeddingModel, Generation, LoadedModel, Meter, RateHeaders,
    Registry, Service, UpstreamRoute,
};
pub use listener::{
    peer_certificate, tls_config, ClientInfo, PlainListener, TlsError, TlsListener, TlsSettings,
};
pub use metrics::install as install_metrics;
// The pipeline's modules under their old paths, for the handlers.
use highside_pipeline::{audit, output, upstream};

/// Settings the HTTP layer needs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest request body accepted.
    pub max_body_bytes: u64,
    /// Time a client has to send its headers (and an idle keep-alive connection stays open).
    pub header_timeout: Duration,
    /// Time a client has to send a whole body (408 otherwise).
    pub body_timeout: Duration,
    /// Time an answer waits for a client that does not read it.
    pub write_timeout: Duration,
    /// Connections one client address (an IPv6 /64) may hold open at once.
    pub connections_per_address: usize,
    /// Failed authentications per client address in a burst, refilled per minute; beyond
    /// it, 429 and one aggregate audit record per address per `auth_report_every`.
    pub auth_failures_per_minute: u32,
    /// How often the failures refused by that throttle are recorded, per address.
    pub auth_report_every: Duration,
    /// Free bytes the audit log's disk must keep before new work is refused (503).
    pub audit_min_free_bytes: u64,
    /// Time streams get to finish after shutdown begins.
    pub shutdown_grace: Duration,
    /// The Prometheus recorder `/metrics` renders (see [`install_metrics`]); `None` answers 404.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// The master AWS access key pairs derive from; `None` turns Signature V4 off.
    pub aws_keys: Option<Arc<highside_identity::AwsKeyMaster>>,
}

impl Default for ServerConfig {
    /// The defaults of `highside.toml`.
    fn default() -> Self {
        Self {
            max_body_bytes: 4 * 1024 * 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(60),
            connections_per_address: 128,
            auth_failures_per_minute: 20,
            auth_report_every: Duration::from_secs(60),
            audit_min_free_bytes: 64 * 1024 * 1024,
            shutdown_grace: Duration::from_secs(10),
            metrics: None,
            aws_keys: None,
        }
    }
}

/// Shared state of a running server.
pub struct AppState {
    pub(crate) service: Service,
    pub(crate) config: ServerConfig,
    pub(crate) auth_throttle: auth::AuthThrottle,
    pub(crate) shutting_down: AtomicBool,
    pub(crate) auth: Authenticator,
    pub(crate) admin: Admin,
    pub(crate) catalog: Arc<dyn Store>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("service", &self.service)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// Wraps a loaded registry, the identity store every request is authenticated against,
    /// the catalog (for accreditation changes), the reference monitor, the audit log and
    /// the metering store.
    pub fn new(
        registry: Registry,
        config: ServerConfig,
        stores: Stores,
        monitor: Monitor,
        auditor: Arc<Auditor>,
    ) -> Arc<Self> {
        let encodings = Arc::new(monitor.encodings().clone());
        let Stores {
            identity,
            catalog,
            metering,
        } = stores;
        let mut auth = Authenticator::new(Arc::clone(&identity), Arc::clone(&encodings));
        let limits = Arc::clone(&metering);
        let mut admin = Admin::new(identity, encodings).with_key_limits(Arc::new(move |key| {
            Ok(limits
                .limits(highside_store::LimitScope::Key, key.as_str())?
                .is_some_and(|l| l != highside_store::Limits::default()))
        }));
        if let Some(master) = &config.aws_keys {
            auth = auth.with_aws_master(Arc::clone(master));
            admin = admin.with_aws_master(Arc::clone(master));
        }
        Arc::new(Self {
            service: Service::new(registry, monitor, auditor, Meter::new(metering)),
            auth_throttle: auth::AuthThrottle::new(config.auth_failures_per_minute),
            config,
            shutting_down: AtomicBool::new(false),
            auth,
            admin,
            catalog,
        })
    }

    /// The enclave's label encodings.
    pub fn encodings(&self) -> &Encodings {
        self.service.monitor().encodings()
    }

    /// The request pipeline.
    pub fn service(&self) -> &Service {
        &self.service
    }
}

/// The stores a server works on (one SQLite database by default, behind three traits).
pub struct Stores {
    /// Agencies, users, keys, certificate mappings.
    pub identity: Arc<dyn IdentityStore>,
    /// Models.
    pub catalog: Arc<dyn Store>,
    /// Prices, plans, limits, reservations, the usage ledger.
    pub metering: Arc<dyn MeteringStore>,
}

/// Why the server stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listener failed.
    #[error("the HTTP server failed: {0}")]
    Io(#[from] std::io::Error),
    /// The audit log failed: the node stopped serving rather than serve unaudited.
    #[error("the audit log failed; stopped serving rather than serve unaudited")]
    AuditFailed,
}

/// Serves the API on `listener` until `shutdown` resolves, then drains: new requests get 503,
/// running streams have `shutdown_grace` to finish, after which they are cancelled.
pub async fn serve<L>(
    listener: L,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError>
where
    L: Listener<Addr = ClientInfo>,
{
    let app = http::router(Arc::clone(&state));
    let (tx, rx) = tokio::sync::watch::channel(false);
    let deadlines = conn::Deadlines {
        header: state.config.header_timeout,
        write: state.config.write_timeout,
        per_address: state.config.connections_per_address,
    };
    let server = async move {
        conn::run(listener, app, deadlines, rx).await;
        Ok::<(), std::io::Error>(())
    };
    tokio::pin!(server);
    let health = tokio::spawn(health_checks(state.service.registry().deployments()));
    let _stop_health = AbortOnDrop(health);
    let _stop_housekeeping = AbortOnDrop(tokio::spawn(housekeeping(Arc::clone(&state))));
    let mut audit_failed = false;
    tokio::select! {
        r = &mut server => return r.map_err(ServeError::from),
        () = shutdown => {}
        () = state.service.auditor().failed() => audit_failed = true,
    }
    if audit_failed {
        // Every request is already refused by the middleware; stop at once, no grace.
        tracing::error!("audit log failed: stopping");
        state.shutting_down.store(true, Ordering::SeqCst);
        let _ = tx.send(true);
        state.service.registry().begin_shutdown();
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut server).await;
        return Err(ServeError::AuditFailed);
    }
    // Failures the throttle refused since the last report are recorded before the end.
    auth::report_refused(&state).await;
    tracing::info!(
        "shutting down: no new requests; running streams get {:?}",
        state.config.shutdown_grace
    );
    state.shutting_down.store(true, Ordering::SeqCst);
    let _ = tx.send(true);
    tokio::select! {
        r = &mut server => return r.map_err(ServeError::from),
        () = tokio::time::sleep(state.config.shutdown_grace) => {}
    }
    tracing::warn!("shutdown grace period over: cancelling the remaining streams");
    state.service.registry().begin_shutdown();
    match tokio::time::timeout(Duration::from_secs(5), &mut server).await {
        Ok(r) => r.map_err(ServeError::from),
        Err(_) => {
            tracing::warn!("connections still open after cancelling streams; closing them");
            Ok(())
        }
    }
}

/// How often the audit log's disk is measured.
const DISK_EVERY: Duration = Duration::from_secs(5);

/// The node's periodic chores: the audit log's disk is measured, and the failed
/// authentications the throttle refused are recorded, one record per address.
async fn housekeeping(state: Arc<AppState>) {
    let mut disk = tokio::time::interval(DISK_EVERY);
    let mut report = tokio::time::interval(state.config.auth_report_every);
    report.tick().await;
    loop {
        tokio::select! {
            _ = disk.tick() => {
                let st = Arc::clone(&state);
                let _ = tokio::task::spawn_blocking(move || {
                    st.service.auditor().check_disk(st.config.audit_min_free_bytes)
                })
                .await;
            }
            _ = report.tick() => auth::report_refused(&state).await,
        }
    }
}

/// How often every upstream deployment is probed.
const HEALTH_EVERY: Duration = Duration::from_secs(10);

/// Active health checks: probes each deployment every [`HEALTH_EVERY`]; an unhealthy one is
/// skipped by routes until a probe succeeds again.
async fn health_checks(deployments: Vec<Arc<highside_providers::Deployment>>) {
    if deployments.is_empty() {
        return;
    }
    let mut every = tokio::time::interval(HEALTH_EVERY);
    loop {
        every.tick().await;
        futures_util::future::join_all(deployments.iter().map(|d| d.probe())).await;
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
