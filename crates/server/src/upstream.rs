//! The bridge from a route's deployments to the engine's event stream: a task runs
//! `highside_providers::run` and turns its output into `highside_engine::Event`s, so the
//! answer encoders, audit and metering treat an upstream exactly like the embedded engine.

use std::sync::{Arc, Mutex};

use highside_engine::Event;
use highside_inference::{ToolCall, ToolChoice, ToolDef};
use highside_openai::tools::{new_call_id, valid_call_id, Tools};
use highside_openai::ApiError;
use highside_providers::{CallError, ChatRequest, Deployment, Output};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

/// Where the task leaves the error that ended a failed request, for its HTTP status.
pub(crate) type Failure = Arc<Mutex<Option<CallError>>>;

/// Starts the request on the current runtime; dropping the receiver cancels it (the upstream
/// connection is closed).
pub(crate) fn spawn(
    candidates: Vec<Arc<Deployment>>,
    attempts: u32,
    req: ChatRequest,
    calls: Calls,
) -> (UnboundedReceiver<Event>, Failure, Attempts) {
    let (tx, rx) = unbounded_channel();
    let failure: Failure = Arc::default();
    let failed = Arc::clone(&failure);
    let attempts_made: Attempts = Arc::default();
    let attempted = Arc::clone(&attempts_made);
    let watch = tx.clone();
    tokio::runtime::Handle::current().spawn(async move {
        let (otx, mut orx) = unbounded_channel::<Output>();
        let run = async move {
            let r = highside_providers::run(&candidates, attempts, &req, &otx).await;
            drop(otx);
            r
        };
        let forward = async {
            while let Some(o) = orx.recv().await {
                let event = match o {
                    Output::Attempt(name) => {
                        attempted
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(name);
                        continue;
                    }
                    Output::Text(t) => Event::Text(t),
                    // Left whole for the answer encoders (`CallSource::Upstream`), before the
                    // `Done` that makes them look.
                    Output::ToolCalls(made) => {
                        let mut slot = calls.lock().unwrap_or_else(|p| p.into_inner());
                        // The client sends the id back; one Highside would refuse is replaced.
                        slot.extend(made.into_iter().map(|c| ToolCall {
                            id: if valid_call_id(&c.id) {
                                c.id
                            } else {
                                new_call_id()
                            },
                            ..c
                        }));
                        continue;
                    }
                    Output::Done {
                        finish,
                        usage,
                        deployment,
                    } => {
                        tracing::debug!(%deployment, "upstream answered");
                        Event::Done {
                            finish_reason: finish,
                            usage,
                        }
                    }
                };
                if tx.send(event).is_err() {
                    return;
                }
            }
        };
        tokio::select! {
            // The client left: dropping `run` closes the upstream connection.
            () = watch.closed() => {}
            (r, ()) = async { tokio::join!(run, forward) } => {
                if let Err(e) = r {
                    let why = e.message.clone();
                    *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                    let _ = watch.send(Event::Failed(why));
                }
            }
        }
    });
    (rx, failure, attempts_made)
}

/// The request's tools in the terms every deployment protocol shares.
pub(crate) fn offered(tools: Option<&Tools>) -> (Vec<ToolDef>, ToolChoice) {
    match tools {
        Some(t) => (t.defs.clone(), t.choice.clone()),
        None => (Vec::new(), ToolChoice::Auto),
    }
}

/// Where a deployment's calls are left for the answer encoders.
pub(crate) type Calls = Arc<Mutex<Vec<ToolCall>>>;

/// The deployments a request was sent to, in order.
pub(crate) type Attempts = Arc<Mutex<Vec<String>>>;

/// A receiver that yields `first`, then everything from `rest`.
pub(crate) fn prepend(
    first: Event,
    mut rest: UnboundedReceiver<Event>,
) -> UnboundedReceiver<Event> {
    let (tx, rx) = unbounded_channel();
    let _ = tx.send(first);
    tokio::runtime::Handle::current().spawn(async move {
        loop {
            tokio::select! {
                () = tx.closed() => return,
                e = rest.recv() => match e {
                    Some(e) => {
                        if tx.send(e).is_err() {
                            return;
                        }
                    }
                    None => return,
                },
            }
        }
    });
    rx
}

/// The HTTP error for a request no deployment answered: the upstream's own 400 (the request
/// itself is at fault), 429 when every deployment is throttling, 502 otherwise.
pub(crate) fn error(failure: &Failure, why: String) -> ApiError {
    let e = failure.lock().unwrap_or_else(|p| p.into_inner()).take();
    call_error(e, why)
}

/// The HTTP error for a failed call (see [`error`]).
pub(crate) fn call_error(e: Option<CallError>, why: String) -> ApiError {
    match e.and_then(|e| e.status) {
        Some(400) | Some(413) | Some(422) => ApiError {
            code: Some("upstream_rejected"),
            ..ApiError::bad_request(why, None)
        },
        Some(429) => ApiError::overloaded(why, 1),
        _ => ApiError {
            status: 502,
            message: why,
            kind: "api_error",
            param: None,
            code: Some("upstream_unavailable"),
            retry_after: None,
        },
    }
}
