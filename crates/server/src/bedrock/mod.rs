//! The Bedrock Runtime API: `POST /model/{modelId}/converse`, `/converse-stream`, `/invoke`
//! and `/invoke-with-response-stream`. Each body becomes the neutral request (`highside_bedrock`
//! converts Converse and Llama bodies; an OpenAI chat body sent to invoke is read by
//! `highside_openai`), then takes the one governed path (`Service::admit`: role check,
//! monitor, audit, metering, then the backend); answers and errors leave in Bedrock's shapes
//! (`x-amzn-ErrorType`, event-stream frames), so boto3's `bedrock-runtime` client works
//! unchanged.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Router};
use futures_util::{Stream, StreamExt};
use highside_bedrock::converse::{self, ConverseRequest};
use highside_bedrock::{eventstream, invoke};
use highside_identity::Principal;
use highside_openai::{parse_json, ApiError, ChatCompletionRequest, Prepared};
use highside_pipeline::answer::{Answer, Piece};
use serde_json::{json, Value};

use crate::http::{incoming, label_headers, read_body, start, with_rate_headers, LABEL_HEADER};
use crate::openai::sse::{self, Kind};
use crate::{AppState, Generation};

pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/model/{model_id}/converse", post(converse_route))
        .route("/model/{model_id}/converse-stream", post(converse_stream))
        .route("/model/{model_id}/invoke", post(invoke_route))
        .route(
            "/model/{model_id}/invoke-with-response-stream",
            post(invoke_stream_route),
        )
}

/// An AWS error answer: `x-amzn-ErrorType` names the exception, the body carries the message.
pub(crate) fn aws_error(status: u16, kind: &str, message: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut res = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({ "message": message }).to_string(),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(kind) {
        res.headers_mut().insert("x-amzn-errortype", v);
    }
    res
}

/// An [`ApiError`] in Bedrock's shape.
pub(crate) fn error_response(e: &ApiError) -> Response {
    let (kind, _) = converse::error(e.status, &e.message);
    let mut res = aws_error(e.status, kind, &e.message);
    if let Some(secs) = e.retry_after {
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    res
}

/// A request ID in the header boto3 reads (`ResponseMetadata.RequestId`) and ours.
fn with_request_id(mut res: Response, id: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(id) {
        res.headers_mut().insert("x-amzn-requestid", v.clone());
        res.headers_mut().insert("x-request-id", v);
    }
    res
}

fn model_id(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    path.map(|Path(m)| m).map_err(|e| {
        ApiError::bad_request(format!("the model ID in the path is invalid: {e}"), None)
    })
}

fn validation(e: converse::Validation) -> ApiError {
    ApiError::bad_request(e.0, None)
}

/// Runs a prepared request and answers with `encode` applied to the generation, or an error
/// in Bedrock's shape.
async fn run<F, Fut>(
    state: Arc<AppState>,
    req_parts: (crate::http::Incoming, &'static str),
    kind: Kind,
    prepared: Result<Prepared, ApiError>,
    encode: F,
) -> Response
where
    F: FnOnce(String, Generation) -> Fut,
    Fut: std::future::Future<Output = Result<Response, ApiError>>,
{
    let (inc, route) = req_parts;
    let id = sse::new_id(kind);
    let res = match start(&state, inc, route, &id, prepared).await {
        Err(refusal) => with_rate_headers(error_response(&refusal.error), &refusal.headers),
        Ok(g) => {
            let rate = g.rate_headers.clone();
            match label_headers(&g) {
                Err(e) => error_response(&e),
                Ok((label, pii)) => match encode(id.clone(), g).await {
                    Ok(mut res) => {
                        res.headers_mut().insert(LABEL_HEADER, label);
                        if let Some(pii) = pii {
                            res.headers_mut().insert("x-highside-pii", pii);
                        }
                        with_rate_headers(res, &rate)
                    }
                    Err(e) => error_response(&e),
                },
            }
        }
    };
    with_request_id(res, &id)
}

/// The request of a Converse body addressed to `model`.
async fn prepare_converse(
    state: &AppState,
    req: Request,
    model: Result<String, ApiError>,
    stream: bool,
) -> Result<Prepared, ApiError> {
    let model = model?;
    let body = read_body(req, &state.config).await?;
    let converse: ConverseRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!("the Converse request is invalid: {e}"), None)
    })?;
    converse.to_request(&model, stream).map_err(validation)
}

async fn converse_route(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    path: Result<Path<String>, PathRejection>,
    req: Request,
) -> Response {
    let started = Instant::now();
    let inc = incoming(principal, &req);
    let prepared = prepare_converse(&state, req, model_id(path), false).await;
    let route = "POST /model/{modelId}/converse";
    run(
        state,
        (inc, route),
        Kind::Chat,
        prepared,
        |_, g| async move {
            let whole = g.whole().await?;
            let latency = millis(started);
            let body = converse::converse_response(
                whole.text,
                &whole.calls,
                whole.finish,
                whole.usage,
                latency,
            );
            Ok(axum::Json(body).into_response())
        },
    )
    .await
}

async fn converse_stream(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    path: Result<Path<String>, PathRejection>,
    req: Request,
) -> Response {
    let started = Instant::now();
    let inc = incoming(principal, &req);
    let prepared = prepare_converse(&state, req, model_id(path), true).await;
    let route = "POST /model/{modelId}/converse-stream";
    run(
        state,
        (inc, route),
        Kind::Chat,
        prepared,
        |_, g| async move { eventstream_answer(event_stream(g, started)) },
    )
    .await
}

async fn invoke_route(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    path: Result<Path<String>, PathRejection>,
    req: Request,
) -> Response {
    let inc = incoming(principal, &req);
    let route = "POST /model/{modelId}/invoke";
    let (format, kind, prepared) = prepare_invoke(&state, path, req, false).await;
    run(state, (inc, route), kind, prepared, |id, g| async move {
        Ok(match format {
            invoke::Format::Chat => axum::Json(sse::collect(kind, id, g).await?).into_response(),
            invoke::Format::Llama => {
                let whole = g.whole().await?;
                axum::Json(invoke::llama_response(
                    whole.text,
                    whole.finish,
                    whole.usage,
                ))
                .into_response()
            }
        })
    })
    .await
}

async fn invoke_stream_route(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    path: Result<Path<String>, PathRejection>,
    req: Request,
) -> Response {
    let started = Instant::now();
    let inc = incoming(principal, &req);
    let route = "POST /model/{modelId}/invoke-with-response-stream";
    let (format, kind, prepared) = prepare_invoke(&state, path, req, true).await;
    run(state, (inc, route), kind, prepared, |id, g| async move {
        match format {
            invoke::Format::Chat => eventstream_answer(chat_chunks(sse::frames(kind, id, g))),
            invoke::Format::Llama => eventstream_answer(llama_chunks(g, started)),
        }
    })
    .await
}

/// An answer whose body is AWS event-stream frames.
fn eventstream_answer(
    frames: impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static,
) -> Result<Response, ApiError> {
    Response::builder()
        .header(header::CONTENT_TYPE, "application/vnd.amazon.eventstream")
        .body(Body::from_stream(frames))
        .map_err(|e| ApiError::internal(e.to_string()))
}

fn millis(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// One `chunk` event of an `InvokeModelWithResponseStream` answer: a body of the model's
/// native format, base64 in `bytes`.
fn chunk(piece: &impl serde::Serialize) -> Vec<u8> {
    use base64::Engine as _;
    let raw = serde_json::to_vec(piece).unwrap_or_default();
    let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
    event("chunk", &json!({ "bytes": b64 })).to_vec()
}

/// The chunk events of an OpenAI chat body's stream: the same chunks the OpenAI stream sends
/// (its frames already hold the completion record's durability); its error becomes
/// Bedrock's exception event.
fn chat_chunks(
    frames: impl Stream<Item = Vec<sse::Frame>> + Send,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send {
    frames.map(|frames| {
        let mut out = Vec::new();
        for f in frames {
            match f {
                sse::Frame::Chat(c) => out.extend(chunk(&c)),
                sse::Frame::Completion(c) => out.extend(chunk(&c)),
                sse::Frame::Error(e) => {
                    out.extend_from_slice(&exception("internalServerException", &e.message))
                }
                sse::Frame::Done => {}
            }
        }
        Ok(Bytes::from(out))
    })
}

/// The chunk events of a Llama body's stream: text pieces as they are released, then the
/// stop reason and, once the completion record is durable, the counts and metrics.
fn llama_chunks(
    g: Generation,
    started: Instant,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send {
    let answer = Some(Answer::new(g.events, g.audit, g.tools));
    futures_util::stream::unfold(answer, move |mut answer| async move {
        let out = match answer.as_mut()?.next().await? {
            Piece::Text(text) => chunk(&invoke::llama_text(text)),
            Piece::End { finish, usage, .. } => {
                answer = None;
                let [stop, last] = invoke::llama_end(finish, usage, millis(started));
                let mut out = chunk(&stop);
                out.extend(chunk(&last));
                out
            }
            Piece::Failed(e) => {
                answer = None;
                exception("internalServerException", &e.message).to_vec()
            }
        };
        Some((Ok(Bytes::from(out)), answer))
    })
}

/// The format and neutral request of an invoke body.
async fn prepare_invoke(
    state: &AppState,
    path: Result<Path<String>, PathRejection>,
    req: Request,
    stream: bool,
) -> (invoke::Format, Kind, Result<Prepared, ApiError>) {
    let body = async {
        let model = model_id(path)?;
        let body = read_body(req, &state.config).await?;
        let format = invoke::format(&body).map_err(validation)?;
        Ok((model, body, format))
    }
    .await;
    let (model, body, format) = match body {
        Ok(b) => b,
        Err(e) => return (invoke::Format::Chat, Kind::Chat, Err(e)),
    };
    match format {
        invoke::Format::Chat => (format, Kind::Chat, invoke_chat(&model, &body, stream)),
        invoke::Format::Llama => (
            format,
            Kind::Completion,
            invoke::llama_request(&model, &body, stream).map_err(validation),
        ),
    }
}

/// An OpenAI chat body sent to invoke: the path names the model (a body's own must agree),
/// and only the streaming route streams.
fn invoke_chat(model: &str, body: &[u8], stream: bool) -> Result<Prepared, ApiError> {
    let mut chat: ChatCompletionRequest = parse_json(body)?;
    if chat.model.is_empty() {
        chat.model = model.to_owned();
    } else if chat.model != model {
        return Err(ApiError::bad_request(
            "the body's model must be the model in the path",
            None,
        ));
    }
    if chat.streams() && !stream {
        return Err(ApiError::bad_request(
            "InvokeModel answers in one body; use invoke-with-response-stream to stream",
            None,
        ));
    }
    if stream {
        chat.stream_with_usage();
    }
    chat.prepare()
}

/// One event-stream frame; an event too large to frame (none is: a token is small) becomes
/// the stream's error.
fn event(kind: &str, payload: &Value) -> Bytes {
    let json = serde_json::to_vec(payload).unwrap_or_default();
    eventstream::event(kind, &json)
        .or_else(|_| {
            eventstream::exception(
                "internalServerException",
                br#"{"message":"an event was too large to frame"}"#,
            )
        })
        .map(Bytes::from)
        .unwrap_or_default()
}

fn exception(kind: &str, message: &str) -> Bytes {
    let json = serde_json::to_vec(&json!({ "message": message })).unwrap_or_default();
    eventstream::exception(kind, &json)
        .map(Bytes::from)
        .unwrap_or_default()
}

/// A `converse-stream` in progress.
struct Streaming {
    /// The generation's output; `None` once the stream has ended.
    answer: Option<Answer>,
    /// The banner line to send first, if asked for.
    banner: Option<String>,
    started: Instant,
    begun: bool,
}

impl Streaming {
    async fn next(&mut self) -> Option<Bytes> {
        let answer = self.answer.as_mut()?;
        if !self.begun {
            self.begun = true;
            let mut out = event("messageStart", &json!({"role": "assistant"})).to_vec();
            if let Some(text) = self.banner.take() {
                answer.sent(&text);
                out.extend_from_slice(&delta(&text));
            }
            return Some(Bytes::from(out));
        }
        match answer.next().await? {
            Piece::Text(text) => Some(delta(&text)),
            Piece::End {
                held,
                calls,
                finish,
                usage,
            } => {
                self.answer = None;
                // `next` returned the end once the completion record was durable.
                let latency = millis(self.started);
                let (input, output) = (usage.prompt_tokens, usage.completion_tokens);
                let stop = converse::stop_reason(finish, !calls.is_empty());
                let mut out = Vec::new();
                let mut index = 0;
                match held {
                    None => out.extend_from_slice(&event(
                        "contentBlockStop",
                        &json!({"contentBlockIndex": 0}),
                    )),
                    Some(text) => {
                        if !text.is_empty() || calls.is_empty() {
                            out.extend_from_slice(&delta(&text));
                            out.extend_from_slice(&event(
                                "contentBlockStop",
                                &json!({"contentBlockIndex": 0}),
                            ));
                            index = 1;
                        }
                        for call in &calls {
                            out.extend_from_slice(&tool_block(index, call));
                            index += 1;
                        }
                    }
                }
                out.extend_from_slice(&event("messageStop", &json!({"stopReason": stop})));
                out.extend_from_slice(&event(
                    "metadata",
                    &json!({
                        "usage": {"inputTokens": input, "outputTokens": output, "totalTokens": input + output},
                        "metrics": {"latencyMs": latency},
                    }),
                ));
                Some(Bytes::from(out))
            }
            Piece::Failed(e) => {
                self.answer = None;
                // The scan withheld the model's output: the stream ends as a model stream
                // error, with the monitor's reason.
                let kind = if e.code == Some(crate::output::EXCEEDED) {
                    "modelStreamErrorException"
                } else if e.status == 503 {
                    "serviceUnavailableException"
                } else {
                    "internalServerException"
                };
                Some(exception(kind, &e.message))
            }
        }
    }
}

/// The start, input and stop events of one tool call's content block.
fn tool_block(index: u32, call: &highside_inference::ToolCall) -> Vec<u8> {
    let mut out = event(
        "contentBlockStart",
        &json!({"contentBlockIndex": index, "start": {"toolUse": {"toolUseId": call.id, "name": call.name}}}),
    )
    .to_vec();
    out.extend_from_slice(&event(
        "contentBlockDelta",
        &json!({"contentBlockIndex": index, "delta": {"toolUse": {"input": call.arguments}}}),
    ));
    out.extend_from_slice(&event(
        "contentBlockStop",
        &json!({"contentBlockIndex": index}),
    ));
    out
}

fn delta(text: &str) -> Bytes {
    event(
        "contentBlockDelta",
        &json!({"contentBlockIndex": 0, "delta": {"text": text}}),
    )
}

/// The event-stream body of a `converse-stream` answer. Dropping it (client gone) drops the
/// engine receiver and the completion record, which records the cancellation.
fn event_stream(
    g: Generation,
    started: Instant,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send {
    let banner_line = g.banner_line();
    let Generation {
        events,
        audit,
        tools,
        ..
    } = g;
    let st = Streaming {
        answer: Some(Answer::new(events, audit, tools)),
        banner: banner_line,
        started,
        begun: false,
    };
    futures_util::stream::unfold(st, |mut st| async move {
        let out = st.next().await?;
        Some((Ok(out), st))
    })
}
