//! `POST /v1/embeddings`.

use serde::{Deserialize, Serialize};

use crate::{ApiError, HighsideMeta};

/// Most inputs in one request.
pub const MAX_INPUTS: usize = 2048;

/// The request.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingRequest {
    /// The embedding model.
    pub model: String,
    /// A string or a list of strings.
    pub input: serde_json::Value,
    /// `float` (default) or `base64` (little-endian f32, what the OpenAI SDK asks for).
    #[serde(default)]
    pub encoding_format: Option<String>,
    /// Must equal the model's dimensions when given (no truncated embeddings).
    #[serde(default)]
    pub dimensions: Option<u32>,
    /// Accepted, unused.
    #[serde(default)]
    pub user: Option<String>,
    /// Highside's options (a declared label).
    #[serde(default)]
    pub highside: Option<crate::HighsideOptions>,
}

/// A validated request.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedEmbedding {
    /// The model.
    pub model: String,
    /// The texts, in order.
    pub inputs: Vec<String>,
    /// Encode as base64.
    pub base64: bool,
    /// Requested dimensions, checked against the model later.
    pub dimensions: Option<u32>,
    /// Declared label, not yet parsed.
    pub declared_label: Option<String>,
}

impl EmbeddingRequest {
    /// Validates the request.
    pub fn prepare(self) -> Result<PreparedEmbedding, ApiError> {
        let bad = |m: &str| ApiError::bad_request(m.to_owned(), Some("input"));
        let inputs = match self.input {
            serde_json::Value::String(s) => vec![s],
            serde_json::Value::Array(items) if !items.is_empty() => items
                .into_iter()
                .map(|v| match v {
                    serde_json::Value::String(s) => Ok(s),
                    _ => Err(ApiError::bad_request(
                        "token-id inputs are not supported: send text",
                        Some("input"),
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?,
            _ => {
                return Err(bad(
                    "'input' must be a string or a non-empty list of strings",
                ))
            }
        };
        if inputs.len() > MAX_INPUTS {
            return Err(bad(&format!("at most {MAX_INPUTS} inputs per request")));
        }
        if let Some(i) = inputs.iter().position(String::is_empty) {
            return Err(ApiError::bad_request(
                format!("'input[{i}]' is empty"),
                Some("input"),
            ));
        }
        let base64 = match self.encoding_format.as_deref() {
            None | Some("float") => false,
            Some("base64") => true,
            Some(_) => {
                return Err(ApiError::bad_request(
                    "'encoding_format' must be float or base64",
                    Some("encoding_format"),
                ))
            }
        };
        if self.model.is_empty() {
            return Err(ApiError::bad_request(
                "'model' must not be empty",
                Some("model"),
            ));
        }
        Ok(PreparedEmbedding {
            model: self.model,
            inputs,
            base64,
            dimensions: self.dimensions,
            declared_label: self.highside.and_then(|h| h.label),
        })
    }
}

/// One embedding in the answer: a list of floats or base64 text.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Vector {
    /// Floats.
    Float(Vec<f32>),
    /// Little-endian f32 bytes in base64.
    Base64(String),
}

/// `{"object": "embedding", ...}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EmbeddingObject {
    /// Always `embedding`.
    pub object: &'static str,
    /// Position of its input.
    pub index: usize,
    /// The vector.
    pub embedding: Vector,
}

/// Token counts of an embedding answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EmbeddingUsage {
    /// Tokens of every input.
    pub prompt_tokens: u64,
    /// The same.
    pub total_tokens: u64,
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EmbeddingList {
    /// Always `list`.
    pub object: &'static str,
    /// One per input, in order.
    pub data: Vec<EmbeddingObject>,
    /// The model.
    pub model: String,
    /// Tokens.
    pub usage: EmbeddingUsage,
    /// The output's label.
    pub highside: HighsideMeta,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req(v: serde_json::Value) -> Result<PreparedEmbedding, ApiError> {
        serde_json::from_value::<EmbeddingRequest>(v)
            .map_err(|e| ApiError::bad_request(e.to_string(), None))?
            .prepare()
    }

    #[test]
    fn inputs_and_formats() {
        let p = req(json!({"model": "m", "input": "hi"})).unwrap();
        assert_eq!((p.inputs.len(), p.base64), (1, false));
        let p =
            req(json!({"model": "m", "input": ["a", "b"], "encoding_format": "base64"})).unwrap();
        assert_eq!((p.inputs.len(), p.base64), (2, true));
        for bad in [
            json!({"model": "m", "input": []}),
            json!({"model": "m", "input": [1, 2]}),
            json!({"model": "m", "input": [""]}),
            json!({"model": "m", "input": "x", "encoding_format": "int8"}),
            json!({"model": "", "input": "x"}),
            json!({"model": "m", "input": "x", "bogus": 1}),
        ] {
            assert!(req(bad.clone()).is_err(), "{bad}");
        }
    }
}
