//! The HTTP layer every surface shares: the router (which names each route's surface, and so
//! its error shape), authentication in front of every route but the health checks, bounded
//! body reading, the request headers the governed path reads, and the one prelude
//! ([`admitted`]) every generating or embedding route runs before `Service::admit`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use highside_identity::Principal;
use highside_openai::{ApiError, Prepared};

use crate::AppState;
use highside_pipeline::Caller;

/// An [`ApiError`] as an HTTP response.
pub(crate) struct HttpError(pub ApiError);

impl From<ApiError> for HttpError {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut res = (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            self.0.body(),
        )
            .into_response();
        if let Some(secs) = self.0.retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        res
    }
}

/// Which API a route belongs to. The router says it for every route, and it decides the
/// shape of every error the route answers, authentication's included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Surface {
    /// OpenAI's, and Highside's own (administration, metrics, health, unknown paths).
    OpenAi,
    /// Bedrock Runtime's (`x-amzn-ErrorType`).
    Bedrock,
}

impl Surface {
    /// `e` in this surface's error shape.
    pub(crate) fn error(self, e: &ApiError) -> Response {
        match self {
            Surface::OpenAi => HttpError(e.clone()).into_response(),
            Surface::Bedrock => crate::bedrock::error_response(e),
        }
    }
}

/// The state of the authentication layer of one surface's routes.
#[derive(Clone)]
struct Guard {
    state: Arc<AppState>,
    surface: Surface,
}

pub(crate) fn router(state: Arc<AppState>) -> Router {
    // Every surface's routes are built through this, last, so none is left unguarded.
    let guarded = |surface, routes: Router<Arc<AppState>>| {
        routes.layer(axum::middleware::from_fn_with_state(
            Guard {
                state: Arc::clone(&state),
                surface,
            },
            authenticate_unless_health,
        ))
    };
    // Each surface's routes carry their own authentication layer, so an error is rendered
    // for the surface the router matched; the fallback (unknown paths) is behind the
    // OpenAI-shaped one, so nothing is reachable without a credential except the two
    // health checks, which are exempted by exact path.
    let own = guarded(
        Surface::OpenAi,
        crate::openai::routes()
            .merge(crate::admin::routes())
            .route("/metrics", get(crate::metrics::scrape))
            .route(LIVE, get(live))
            .route(READY, get(ready))
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed),
    );
    let bedrock = guarded(
        Surface::Bedrock,
        crate::bedrock::routes().method_not_allowed_fallback(|| async {
            Surface::Bedrock.error(&ApiError::method_not_allowed())
        }),
    );
    own.merge(bedrock)
        // Outermost: counts every answer, 401s included.
        .layer(axum::middleware::from_fn(crate::metrics::track))
        .with_state(state)
}

const LIVE: &str = "/health/live";
const READY: &str = "/health/ready";

async fn authenticate_unless_health(
    State(Guard { state, surface }): State<Guard>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    let path = req.uri().path();
    // Readiness is public as a status word; with a credential it is authenticated like any
    // route and carries the details (models and their load).
    let credentials = req.headers().contains_key(header::AUTHORIZATION)
        || req.headers().contains_key("x-api-key");
    if path == LIVE || (path == READY && !credentials) {
        return next.run(req).await;
    }
    // A node whose audit log failed answers nothing it could not record.
    if state.service.auditor().is_failed() {
        return surface.error(&crate::audit::unavailable());
    }
    if state.service.auditor().disk_low() {
        return surface.error(&crate::audit::disk_low());
    }
    crate::auth::require_principal(state, surface, req, next).await
}

async fn not_found(uri: Uri) -> HttpError {
    ApiError::route_not_found(uri.path()).into()
}

async fn method_not_allowed() -> HttpError {
    ApiError::method_not_allowed().into()
}

/// Reads at most `max_body_bytes` within `body_timeout`: a larger body is a 413 whether or
/// not it declared its length, a slower one a 408.
pub(crate) async fn read_body(
    req: Request,
    config: &crate::ServerConfig,
) -> Result<Bytes, ApiError> {
    read_body_within(req, config, config.body_timeout).await
}

/// [`read_body`] within `deadline` instead of `body_timeout`.
pub(crate) async fn read_body_within(
    req: Request,
    config: &crate::ServerConfig,
    deadline: std::time::Duration,
) -> Result<Bytes, ApiError> {
    let limit = config.max_body_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::too_large(limit));
    }
    let read = axum::body::to_bytes(
        req.into_body(),
        usize::try_from(limit).unwrap_or(usize::MAX),
    );
    let Ok(read) = tokio::time::timeout(deadline, read).await else {
        return Err(ApiError {
            status: 408,
            kind: "invalid_request_error",
            code: Some("request_timeout"),
            ..ApiError::bad_request(
                format!(
                    "the request body did not arrive within {} s",
                    deadline.as_secs()
                ),
                None,
            )
        });
    };
    read.map_err(|e| {
        let too_large = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if too_large {
            ApiError::too_large(limit)
        } else {
            ApiError::bad_request(format!("Could not read the request body: {e}"), None)
        }
    })
}

pub(crate) fn check_running(state: &AppState) -> Result<(), ApiError> {
    if state.shutting_down.load(Ordering::SeqCst) {
        Err(ApiError::unavailable("Highside is shutting down"))
    } else {
        Ok(())
    }
}

/// `X-Highside-Label` headers: the label a client declares outside the body.
pub(crate) const LABEL_HEADER: &str = "x-highside-label";

fn header_labels(headers: &axum::http::HeaderMap) -> Result<Vec<String>, ApiError> {
    headers
        .get_all(LABEL_HEADER)
        .iter()
        .map(|v| {
            v.to_str().map(str::to_owned).map_err(|_| ApiError {
                code: Some("invalid_label"),
                ..ApiError::bad_request(
                    "the X-Highside-Label header must be a visible ASCII marking",
                    None,
                )
            })
        })
        .collect()
}

/// What a generating handler read from its request before the body.
pub(crate) struct Incoming {
    pub(crate) principal: Principal,
    pub(crate) header_labels: Result<Vec<String>, ApiError>,
    pub(crate) client: Option<std::net::SocketAddr>,
    pub(crate) idempotency_key: Result<Option<String>, ApiError>,
}

/// `Idempotency-Key`: at most 255 visible ASCII characters.
fn idempotency_key(headers: &axum::http::HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    match v.to_str() {
        Ok(k) if !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()) => {
            Ok(Some(k.to_owned()))
        }
        _ => Err(ApiError::bad_request(
            "the Idempotency-Key header must be 1 to 255 visible ASCII characters",
            None,
        )),
    }
}

pub(crate) fn incoming(principal: Principal, req: &Request) -> Incoming {
    Incoming {
        principal,
        header_labels: header_labels(req.headers()),
        client: req
            .extensions()
            .get::<axum::extract::ConnectInfo<crate::ClientInfo>>()
            .map(|c| c.0.addr),
        idempotency_key: idempotency_key(req.headers()),
    }
}

pub(crate) fn with_rate_headers(mut res: Response, headers: &crate::RateHeaders) -> Response {
    for (name, value) in headers.pairs() {
        if let Ok(v) = HeaderValue::from_str(&value) {
            res.headers_mut().insert(name, v);
        }
    }
    res
}

/// The `X-Highside-Label` and `x-highside-pii` values of a generation's answer.
pub(crate) fn label_headers(
    g: &crate::Generation,
) -> Result<(HeaderValue, Option<HeaderValue>), ApiError> {
    // Banners are ASCII by construction (the encodings allow only upper-case words).
    let label = HeaderValue::from_str(&g.label)
        .map_err(|_| ApiError::internal("the output label is not a valid header"))?;
    let pii = (!g.pii.is_empty())
        .then(|| HeaderValue::from_str(&g.pii.join(",")).ok())
        .flatten();
    Ok((label, pii))
}

/// The role check, the monitor's decision (durable before anything else), metering and the
/// backend's admission: every generating route, OpenAI's or Bedrock's, starts here.
pub(crate) async fn start(
    state: &Arc<AppState>,
    inc: Incoming,
    route: &'static str,
    id: &str,
    prepared: Result<Prepared, ApiError>,
) -> Result<crate::Generation, highside_pipeline::Refusal> {
    let model = prepared
        .as_ref()
        .map(|p| p.model.clone())
        .unwrap_or_default();
    admitted(state, inc, route, id, model, prepared, |s, c, p| {
        s.start(c, p)
    })
    .await
}

/// What every governed route does before its work: the node is running, the role check
/// (recorded when it refuses), the label and idempotency headers, then `begin` with the
/// caller on a blocking thread (the monitor's detection pass and the durable decision record
/// block). One prelude for chat, completions, embeddings and Bedrock, so none skips a step.
pub(crate) async fn admitted<W: Send + 'static, T: Send + 'static>(
    state: &Arc<AppState>,
    inc: Incoming,
    route: &'static str,
    id: &str,
    model: String,
    work: Result<W, ApiError>,
    begin: impl FnOnce(&highside_pipeline::Service, &Caller<'_>, W) -> Result<T, highside_pipeline::Refusal>
        + Send
        + 'static,
) -> Result<T, highside_pipeline::Refusal> {
    check_running(state)?;
    let Incoming {
        principal,
        header_labels,
        client,
        idempotency_key,
    } = inc;
    let st = Arc::clone(state);
    let request_id = id.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut caller = Caller {
            principal: &principal,
            header_labels: &[],
            request_id: &request_id,
            client,
            route,
            idempotency_key: None,
        };
        // First, whatever else is wrong with the request: a caller without the role learns
        // nothing more about it, and the refusal is recorded.
        st.service.role_check(&caller, &model)?;
        let header_labels = header_labels?;
        let idempotency_key = idempotency_key?;
        let work = work?;
        caller.header_labels = &header_labels;
        caller.idempotency_key = idempotency_key.as_deref();
        begin(&st.service, &caller, work)
    })
    .await
    .map_err(|_| ApiError::internal("the request task failed"))?
}

async fn live() -> Response {
    axum::Json(serde_json::json!({"status": "live"})).into_response()
}

async fn ready(
    State(state): State<Arc<AppState>>,
    principal: Option<Extension<Principal>>,
) -> Response {
    let registry = state.service.registry();
    let models: Vec<_> = registry
        .iter()
        .map(|m| {
            let s = m.engine.stats();
            serde_json::json!({
                "id": m.name,
                "active_sequences": s.active_sequences,
                "queued": s.queued,
                "in_flight": m.engine.in_flight(),
            })
        })
        .collect();
    let (status, word) = if state.service.auditor().is_failed() {
        (StatusCode::SERVICE_UNAVAILABLE, "audit_failed")
    } else if state.service.auditor().disk_low() {
        (StatusCode::SERVICE_UNAVAILABLE, "audit_disk_low")
    } else if state.shutting_down.load(Ordering::SeqCst) {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting_down")
    } else if registry.is_empty() {
        (StatusCode::SERVICE_UNAVAILABLE, "no_models")
    } else {
        (StatusCode::OK, "ready")
    };
    let body = match principal {
        Some(_) => serde_json::json!({"status": word, "models": models}),
        None => serde_json::json!({"status": word}),
    };
    (status, axum::Json(body)).into_response()
}
