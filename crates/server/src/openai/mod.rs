//! The OpenAI surface: `/v1/models`, `/v1/chat/completions`, `/v1/completions` and
//! `/v1/embeddings`. Bodies are read into the neutral request by `highside_openai`, admitted
//! through the one governed path, and answered in OpenAI's shapes (`sse` for the answer
//! encoders, `embeddings` for vectors).

pub(crate) mod embeddings;
pub(crate) mod sse;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use highside_identity::Principal;
use highside_openai::{
    parse_json, ApiError, ChatCompletionRequest, CompletionRequest, HighsideMeta, ModelList,
    ModelObject, Prepared,
};

use crate::http::{
    incoming, label_headers, read_body, start, with_rate_headers, HttpError, Incoming, LABEL_HEADER,
};
use crate::AppState;
use sse::Kind;

/// The OpenAI routes.
pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/models", get(list_models))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/completions", post(completions))
        .route("/v1/embeddings", post(embeddings::embeddings))
}

async fn list_models(State(state): State<Arc<AppState>>) -> Response {
    let registry = state.service.registry();
    let object = |id: &str, created: u64, label: String| ModelObject {
        id: id.to_owned(),
        object: "model",
        created,
        owned_by: "highside",
        highside: Some(HighsideMeta {
            label,
            pii: Vec::new(),
        }),
    };
    let mut data: Vec<ModelObject> = registry
        .iter()
        .map(|m| object(&m.name, m.created, m.accreditation().banner))
        .collect();
    data.extend(
        registry
            .embeddings()
            .map(|m| object(&m.name, m.created, m.accreditation().banner)),
    );
    // A route's label is its most accredited deployment's: the highest it can serve.
    data.extend(registry.routes().map(|r| {
        let label = r
            .targets
            .iter()
            .map(|(d, _)| d.settings())
            .reduce(|a, b| if b.label.dominates(&a.label) { b } else { a })
            .map(|s| s.banner.clone())
            .unwrap_or_default();
        object(&r.name, r.created, label)
    }));
    axum::Json(ModelList {
        object: "list",
        data,
    })
    .into_response()
}

/// The request's decision and generation; every answer, an error too, names the request ID
/// its audit records carry.
async fn generate(
    state: Arc<AppState>,
    inc: Incoming,
    kind: Kind,
    prepared: Result<Prepared, ApiError>,
) -> Response {
    let id = sse::new_id(kind);
    let mut res = match generate_inner(state, inc, kind, &id, prepared).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert("x-request-id", v);
    }
    res
}

async fn generate_inner(
    state: Arc<AppState>,
    inc: Incoming,
    kind: Kind,
    id: &str,
    prepared: Result<Prepared, ApiError>,
) -> Result<Response, HttpError> {
    let route = match kind {
        Kind::Chat => "POST /v1/chat/completions",
        Kind::Completion => "POST /v1/completions",
    };
    let generation = match start(&state, inc, route, id, prepared).await {
        Ok(g) => g,
        Err(refusal) => {
            return Ok(with_rate_headers(
                HttpError(refusal.error).into_response(),
                &refusal.headers,
            ))
        }
    };
    let rate_headers = generation.rate_headers.clone();
    let (label, pii) = label_headers(&generation)?;
    let mut res = if generation.stream {
        Response::builder()
            .header(header::CONTENT_TYPE, "text/event-stream")
            .header(header::CACHE_CONTROL, "no-cache")
            .body(Body::from_stream(sse::stream(
                kind,
                id.to_owned(),
                generation,
            )))
            .map_err(|e| ApiError::internal(e.to_string()))?
    } else {
        axum::Json(sse::collect(kind, id.to_owned(), generation).await?).into_response()
    };
    res.headers_mut().insert(LABEL_HEADER, label);
    if let Some(pii) = pii {
        res.headers_mut().insert("x-highside-pii", pii);
    }
    Ok(with_rate_headers(res, &rate_headers))
}

async fn chat_completions(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    req: Request,
) -> Response {
    let inc = incoming(principal, &req);
    let prepared = match read_body(req, &state.config).await {
        Ok(body) => {
            parse_json::<ChatCompletionRequest>(&body).and_then(ChatCompletionRequest::prepare)
        }
        Err(e) => Err(e),
    };
    generate(state, inc, Kind::Chat, prepared).await
}

async fn completions(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    req: Request,
) -> Response {
    let inc = incoming(principal, &req);
    let prepared = match read_body(req, &state.config).await {
        Ok(body) => parse_json::<CompletionRequest>(&body).and_then(CompletionRequest::prepare),
        Err(e) => Err(e),
    };
    generate(state, inc, Kind::Completion, prepared).await
}
