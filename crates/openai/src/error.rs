use serde::Serialize;

/// An error as OpenAI's API reports it: an HTTP status plus
/// `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {message}")]
pub struct ApiError {
    /// HTTP status code.
    pub status: u16,
    /// Human-readable explanation; never contains secrets or protected content.
    pub message: String,
    /// OpenAI error type, e.g. `invalid_request_error`.
    pub kind: &'static str,
    /// The request parameter at fault, when there is one.
    pub param: Option<String>,
    /// A machine-readable code, e.g. `model_not_found`.
    pub code: Option<&'static str>,
    /// Seconds a client should wait before retrying (429 and 503).
    pub retry_after: Option<u64>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

impl ApiError {
    fn new(status: u16, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            kind,
            param: None,
            code: None,
            retry_after: None,
        }
    }

    /// 400: the request is malformed or a parameter is invalid.
    pub fn bad_request(message: impl Into<String>, param: Option<&str>) -> Self {
        Self {
            param: param.map(str::to_owned),
            ..Self::new(400, "invalid_request_error", message)
        }
    }

    /// 404: the model does not exist (or the caller may not know that it does).
    pub fn model_not_found(model: &str) -> Self {
        Self {
            param: Some("model".into()),
            code: Some("model_not_found"),
            ..Self::new(
                404,
                "invalid_request_error",
                format!("The model '{model}' does not exist"),
            )
        }
    }

    /// 404 for a path that is not an API route.
    pub fn route_not_found(path: &str) -> Self {
        Self {
            code: Some("not_found"),
            ..Self::new(404, "invalid_request_error", format!("No route {path}"))
        }
    }

    /// 405 for a known path with the wrong method.
    pub fn method_not_allowed() -> Self {
        Self::new(
            405,
            "invalid_request_error",
            "Method not allowed for this route",
        )
    }

    /// 401: no credentials, or credentials that do not authenticate.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self {
            code: Some("invalid_api_key"),
            ..Self::new(401, "invalid_request_error", message)
        }
    }

    /// 403: authenticated, but this caller may not do this; the message names the rule.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self {
            code: Some("permission_denied"),
            ..Self::new(403, "permission_error", message)
        }
    }

    /// 404 for an object of the admin API (or one the caller may not know exists).
    pub fn not_found(what: &str) -> Self {
        Self {
            code: Some("not_found"),
            ..Self::new(404, "invalid_request_error", format!("No such {what}"))
        }
    }

    /// 409: a unique name is taken, or the change would lock the enclave out.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self {
            code: Some("conflict"),
            ..Self::new(409, "invalid_request_error", message)
        }
    }

    /// 413: the body exceeds the configured limit.
    pub fn too_large(limit: u64) -> Self {
        Self {
            code: Some("request_too_large"),
            ..Self::new(
                413,
                "invalid_request_error",
                format!("The request body exceeds the limit of {limit} bytes"),
            )
        }
    }

    /// 429: the engine is at capacity.
    pub fn overloaded(message: impl Into<String>, retry_after: u64) -> Self {
        Self {
            code: Some("rate_limit_exceeded"),
            retry_after: Some(retry_after),
            ..Self::new(429, "rate_limit_error", message)
        }
    }

    /// 503: not ready or shutting down.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            retry_after: Some(1),
            ..Self::new(503, "service_unavailable", message)
        }
    }

    /// 500: something failed inside Highside; the message says what without internals.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "server_error", message)
    }

    /// The JSON body.
    pub fn body(&self) -> String {
        serde_json::to_string(&Body {
            error: Inner {
                message: &self.message,
                kind: self.kind,
                param: self.param.as_deref(),
                code: self.code,
            },
        })
        .unwrap_or_else(|_| {
            r#"{"error":{"message":"error","type":"server_error","param":null,"code":null}}"#.into()
        })
    }
}
