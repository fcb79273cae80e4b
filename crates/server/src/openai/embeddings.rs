//! `POST /v1/embeddings`: the same identity, monitor, audit and metering path as chat, then
//! the embedded encoder (batched with concurrent requests on its thread).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use base64::Engine as _;
use highside_identity::Principal;
use highside_openai::embeddings::{
    EmbeddingList, EmbeddingObject, EmbeddingRequest, EmbeddingUsage, Vector,
};
use highside_openai::{parse_json, ApiError, HighsideMeta};

use crate::http::{incoming, read_body, with_rate_headers, HttpError, Incoming, LABEL_HEADER};
use crate::AppState;
use highside_pipeline::EmbeddingWork;

const ROUTE: &str = "POST /v1/embeddings";

pub(crate) async fn embeddings(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    req: Request,
) -> Response {
    let inc = incoming(principal, &req);
    let id = format!("emb-{}", uuid::Uuid::new_v4().simple());
    let prepared = match read_body(req, &state.config).await {
        Ok(body) => parse_json::<EmbeddingRequest>(&body).and_then(EmbeddingRequest::prepare),
        Err(e) => Err(e),
    };
    let mut res = match run(state, inc, &id, prepared).await {
        Ok(r) => r,
        Err(r) => r,
    };
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert("x-request-id", v);
    }
    res
}

async fn run(
    state: Arc<AppState>,
    inc: Incoming,
    id: &str,
    prepared: Result<highside_openai::embeddings::PreparedEmbedding, ApiError>,
) -> Result<Response, Response> {
    let fail = |e: ApiError| HttpError(e).into_response();
    let model = prepared
        .as_ref()
        .map(|p| p.model.clone())
        .unwrap_or_default();
    let work = prepared.clone();
    let started = crate::http::admitted(&state, inc, ROUTE, id, model, work, |s, c, p| {
        s.start_embedding(c, &p)
    })
    .await
    .map_err(|r| with_rate_headers(HttpError(r.error).into_response(), &r.headers))?;
    let prepared = prepared.map_err(fail)?;
    let mut audit = started.audit;
    let mut tokens = started.tokens;
    let computed = match started.work {
        EmbeddingWork::Local(ids) => match state.service.registry().embedding(&prepared.model) {
            Some(model) => model
                .embedder
                .embed(ids)
                .await
                .map_err(|e| ApiError::internal(e.to_string())),
            None => Err(ApiError::model_not_found(&prepared.model)),
        },
        EmbeddingWork::Upstream {
            candidates,
            attempts,
        } => {
            let (attempted, r) =
                highside_providers::run_embed(&candidates, attempts, &prepared.inputs).await;
            audit.deployments = Some(attempted);
            r.map(|(vectors, counted)| {
                // The upstream's count, never above what was reserved.
                if let Some(n) = counted {
                    tokens = n.min(tokens);
                }
                vectors
            })
            .map_err(|e| {
                crate::upstream::error(highside_engine::Failure {
                    message: e.message,
                    status: e.status,
                })
            })
        }
    };
    let vectors = match computed {
        Ok(v) => v,
        Err(e) => {
            // Nothing was computed: the reservation goes back.
            audit.unfinished = crate::audit::Unfinished::Error;
            audit.abort().await;
            return Err(fail(e));
        }
    };
    audit.prompt_tokens(tokens);
    let data: Vec<EmbeddingObject> = vectors
        .into_iter()
        .enumerate()
        .map(|(index, v)| EmbeddingObject {
            object: "embedding",
            index,
            embedding: if prepared.base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                Vector::Base64(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                Vector::Float(v)
            },
        })
        .collect();
    let body = serde_json::to_vec(&EmbeddingList {
        object: "list",
        data,
        model: prepared.model.clone(),
        usage: EmbeddingUsage {
            prompt_tokens: tokens,
            total_tokens: tokens,
        },
        highside: HighsideMeta {
            label: started.label.clone(),
            pii: started.pii.clone(),
        },
    })
    .map_err(|e| fail(ApiError::internal(e.to_string())))?;
    audit.output_bytes(&body);
    // The answer leaves only once its completion record is durable.
    audit.finish("stop", 0).await.map_err(fail)?;
    let mut res = (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&started.label) {
        res.headers_mut().insert(LABEL_HEADER, v);
    }
    Ok(with_rate_headers(res, &started.rate_headers))
}
