//! A route's deployments as a backend: a task runs `highside_providers::run`, which yields the
//! same neutral events as the embedded engine (announcing each deployment it tries, and a
//! deployment's calls whole), so the output scan, the answer encoders, audit and metering
//! treat an upstream exactly like the engine.

use std::sync::Arc;

use highside_engine::{Event, Failure};
use highside_inference::{ToolChoice, ToolDef};
use highside_openai::tools::Tools;
use highside_openai::ApiError;
use highside_providers::{ChatRequest, Deployment};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

/// Starts the request on the current runtime; dropping the receiver cancels it (the upstream
/// connection is closed). A request no deployment answered ends in `Event::Failed` with the
/// last upstream status.
pub fn spawn(
    candidates: Vec<Arc<Deployment>>,
    attempts: u32,
    req: ChatRequest,
) -> UnboundedReceiver<Event> {
    let (tx, rx) = unbounded_channel();
    tokio::runtime::Handle::current().spawn(async move {
        let watch = tx.clone();
        tokio::select! {
            // The client left: dropping `run` closes the upstream connection.
            () = watch.closed() => {}
            r = highside_providers::run(&candidates, attempts, &req, &tx) => {
                if let Err(e) = r {
                    let _ = tx.send(Event::Failed(Failure {
                        message: e.message,
                        status: e.status,
                    }));
                }
            }
        }
    });
    rx
}

/// The request's tools in the terms every deployment protocol shares.
pub fn offered(tools: Option<&Tools>) -> (Vec<ToolDef>, ToolChoice) {
    match tools {
        Some(t) => (t.defs.clone(), t.choice.clone()),
        None => (Vec::new(), ToolChoice::Auto),
    }
}

/// The HTTP error for a request no deployment answered: the upstream's own 400 (the request
/// itself is at fault), 429 when every deployment is throttling, 502 otherwise.
pub fn error(failure: Failure) -> ApiError {
    match failure.status {
        Some(400) | Some(413) | Some(422) => ApiError {
            code: Some("upstream_rejected"),
            ..ApiError::bad_request(failure.message, None)
        },
        Some(429) => ApiError::overloaded(failure.message, 1),
        _ => ApiError {
            status: 502,
            message: failure.message,
            kind: "api_error",
            param: None,
            code: Some("upstream_unavailable"),
            retry_after: None,
        },
    }
}
