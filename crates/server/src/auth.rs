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

/// Bodies of signed requests read before their signature is verified, at most, at once.
static UNVERIFIED_BODIES: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(64);

/// The signing name boto3's `bedrock-runtime` client uses.
const SIGV4_SERVICE: &str = "bedrock";

/// The authenticated request's client address, for audit records.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientAddr(pub Option<std::net::SocketAddr>);

fn unauthorized(message: String) -> Response {
    let mut res = HttpError(ApiError::unauthorized(message)).into_response();
    res.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    res
}

/// How a refused request is answered: OpenAI's 401, or on the Bedrock routes AWS's 403 with
/// the exception boto3 expects.
#[derive(Debug, Clone, Copy)]
enum Answer {
    OpenAi,
    /// `x-amzn-ErrorType` of the refusal.
    Aws(&'static str),
}

/// Records an authentication failure durably, then answers 401 (503 if it cannot be
/// recorded). The record names the route and reason, never the credential.
async fn refuse(
    state: &AppState,
    route: String,
    client: Option<std::net::SocketAddr>,
    reason: String,
    answer: Answer,
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
    let mut res = match (recorded, answer) {
        (Ok(_), Answer::OpenAi) => unauthorized(reason),
        (Ok(_), Answer::Aws(kind)) => crate::bedrock::aws_error(403, kind, &reason),
        (Err(e), Answer::OpenAi) => HttpError(e).into_response(),
        (Err(e), Answer::Aws(_)) => crate::bedrock::error_response(&e),
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
    req: Request,
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
    let bedrock = crate::bedrock::is_bedrock_path(req.uri().path());
    let answer = if bedrock {
        Answer::Aws("UnrecognizedClientException")
    } else {
        Answer::OpenAi
    };
    let certificate = client.as_ref().and_then(|c| c.certificate.clone());
    let sigv4 = auth.len() == 1 && auth[0].starts_with(b"AWS4-HMAC-SHA256 ");
    let (result, req) = if sigv4 {
        // SigV4 signs the body, so it is read before the caller is known: only for a header
        // that parses with a current date, and only so many at once.
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let amz_date = req
            .headers()
            .get("x-amz-date")
            .and_then(|v| v.to_str().ok());
        let pre = std::str::from_utf8(auth[0])
            .map_err(|_| highside_sigv4::SigError::Missing)
            .and_then(|h| highside_sigv4::precheck(h, amz_date, SIGV4_SERVICE, now));
        if let Err(e) = pre {
            let answer = match answer {
                Answer::Aws(_) => Answer::Aws("InvalidSignatureException"),
                a => a,
            };
            return refuse(&state, route, addr, e.to_string(), answer).await;
        }
        let Ok(_permit) = UNVERIFIED_BODIES.try_acquire() else {
            let e = ApiError::unavailable("too many signed requests are being verified; retry");
            return if bedrock {
                crate::bedrock::error_response(&e)
            } else {
                HttpError(e).into_response()
            };
        };
        let (parts, body) = req.into_parts();
        let limit = state.config.max_body_bytes;
        let bytes =
            match crate::http::read_body(Request::from_parts(parts.clone(), body), limit).await {
                Ok(b) => b,
                Err(e) if bedrock => return crate::bedrock::error_response(&e),
                Err(e) => return HttpError(e).into_response(),
            };
        let st = Arc::clone(&state);
        let (p, b) = (parts.clone(), bytes.clone());
        let result = tokio::task::spawn_blocking(move || {
            let headers: Vec<(&str, &str)> = p
                .headers
                .iter()
                .filter_map(|(n, v)| v.to_str().ok().map(|v| (n.as_str(), v)))
                .collect();
            let signed = highside_sigv4::Request {
                method: p.method.as_str(),
                path: p.uri.path(),
                query: p.uri.query().unwrap_or(""),
                headers: &headers,
                body: &b,
            };
            st.auth.authenticate_sigv4(
                &signed,
                SIGV4_SERVICE,
                certificate.as_ref(),
                time::OffsetDateTime::now_utc(),
            )
        })
        .await;
        (
            result,
            Request::from_parts(parts, axum::body::Body::from(bytes)),
        )
    } else {
        let key = match parse_credentials(&auth, &api_key) {
            Ok(k) => k,
            Err(e) => {
                tracing::info!(path = %req.uri().path(), reason = %e, "authentication failed");
                return refuse(&state, route, addr, e.to_string(), answer).await;
            }
        };
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
        (result, req)
    };
    let mut req = req;
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
            let answer = match (&e, answer) {
                (AuthError::Signature(_), Answer::Aws(_)) => {
                    Answer::Aws("InvalidSignatureException")
                }
                (_, a) => a,
            };
            return refuse(&state, route, addr, e.to_string(), answer).await;
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
