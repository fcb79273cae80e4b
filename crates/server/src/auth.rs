//! The one place a request becomes attributed: every route but the health checks passes
//! through [`require_principal`] before its handler runs.

use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use highside_identity::{parse_credentials, Principal};
use highside_openai::ApiError;
use highside_tenancy::AuthError;

use crate::http::HttpError;
use crate::listener::ClientInfo;
use crate::AppState;

/// The authenticated request's client address, for audit records.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientAddr(pub Option<std::net::SocketAddr>);

fn unauthorized(message: String) -> Response {
    let mut res = HttpError(ApiError::unauthorized(message)).into_response();
    res.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    res
}

/// Records an authentication failure durably, then answers 401 (503 if it cannot be
/// recorded). The record names the route and reason, never the credential.
async fn refuse(
    state: &AppState,
    route: String,
    client: Option<std::net::SocketAddr>,
    reason: String,
) -> Response {
    let request_id = format!("auth-{}", uuid::Uuid::new_v4().simple());
    let recorded = state
        .service
        .auditor()
        .record(highside_audit::Event::AuthFailure {
            request_id: request_id.clone(),
            client: client.map(|c| c.to_string()),
            route,
            reason: reason.clone(),
        })
        .await;
    let mut res = match recorded {
        Ok(_) => unauthorized(reason),
        Err(e) => HttpError(e).into_response(),
    };
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        res.headers_mut().insert("x-request-id", v);
    }
    res
}

/// Authenticates the request and stores its [`Principal`] in the request extensions, or
/// answers 401. Credentials never reach a log line or an error message.
pub(crate) async fn require_principal(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let headers = req.headers();
    let auth: Vec<&[u8]> = headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect();
    let api_key: Vec<&[u8]> = headers
        .get_all("x-api-key")
        .iter()
        .map(HeaderValue::as_bytes)
        .collect();
    let client = req
        .extensions()
        .get::<ConnectInfo<ClientInfo>>()
        .map(|c| c.0.clone());
    let route = format!("{} {}", req.method(), req.uri().path());
    let addr = client.as_ref().map(|c| c.addr);
    let key = match parse_credentials(&auth, &api_key) {
        Ok(k) => k,
        Err(e) => {
            tracing::info!(path = %req.uri().path(), reason = %e, "authentication failed");
            return refuse(&state, route, addr, e.to_string()).await;
        }
    };
    let certificate = client.as_ref().and_then(|c| c.certificate.clone());
    let st = Arc::clone(&state);
    // SQLite calls block; keep them off the async workers.
    let result = tokio::task::spawn_blocking(move || {
        st.auth.authenticate(
            key.as_ref(),
            certificate.as_ref(),
            time::OffsetDateTime::now_utc(),
        )
    })
    .await;
    let principal: Principal = match result {
        Ok(Ok(p)) => p,
        Ok(Err(AuthError::Store(e))) => {
            tracing::error!(error = %e, "identity store failed during authentication");
            return HttpError(ApiError::internal("cannot check credentials")).into_response();
        }
        Ok(Err(e)) => {
            tracing::info!(
                path = %req.uri().path(),
                client = ?addr,
                reason = %e,
                "authentication failed"
            );
            return refuse(&state, route, addr, e.to_string()).await;
        }
        Err(e) => {
            tracing::error!(error = %e, "authentication task failed");
            return HttpError(ApiError::internal("cannot check credentials")).into_response();
        }
    };
    tracing::debug!(
        user = %principal.user,
        agency = %principal.agency,
        key = ?principal.key,
        path = %req.uri().path(),
        "authenticated"
    );
    req.extensions_mut().insert(principal);
    req.extensions_mut().insert(ClientAddr(addr));
    next.run(req).await
}
