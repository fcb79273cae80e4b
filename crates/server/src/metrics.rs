//! Prometheus metrics on `GET /metrics` (operators and auditors). Counters and histograms are
//! recorded where things happen through the `metrics` facade; engine gauges are read at scrape
//! time. Without an installed recorder (library tests) every call is a no-op.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use highside_identity::{Principal, Role};
use highside_openai::ApiError;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::http::HttpError;
use crate::AppState;

/// Seconds: from a millisecond to two minutes.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// Installs the process-wide recorder and returns the handle `/metrics` renders; `None` if
/// one is installed already.
pub fn install() -> Option<PrometheusHandle> {
    PrometheusBuilder::new()
        .set_buckets(BUCKETS)
        .ok()?
        .install_recorder()
        .ok()
}

/// Counts every answer by route template, method and status, and times it to its headers.
pub(crate) async fn track(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let started = Instant::now();
    let res = next.run(req).await;
    let status = res.status().as_u16().to_string();
    metrics::counter!("highside_http_requests_total", "route" => route.clone(), "method" => method, "status" => status)
        .increment(1);
    metrics::histogram!("highside_http_request_duration_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    res
}

/// `GET /metrics`.
pub(crate) async fn scrape(
    State(state): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
) -> Result<Response, HttpError> {
    if !(p.is_operator() || p.roles.contains(Role::Auditor)) {
        return Err(ApiError::forbidden("metrics need the operator or auditor role").into());
    }
    let Some(handle) = &state.config.metrics else {
        return Err(ApiError::not_found("metrics (no recorder is installed)").into());
    };
    for m in state.service.registry().iter() {
        let s = m.engine.stats();
        let model = m.name.clone();
        metrics::gauge!("highside_engine_active_sequences", "model" => model.clone())
            .set(s.active_sequences as f64);
        metrics::gauge!("highside_engine_queue_depth", "model" => model.clone())
            .set(s.queued as f64);
        metrics::gauge!("highside_engine_batch_tokens", "model" => model)
            .set(s.last_batch_tokens as f64);
    }
    handle.run_upkeep();
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
        .into_response())
}
