//! Per-request sampling parameters and their bounds.

/// How one sequence chooses its next token and when it stops.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 means greedy (argmax); otherwise the softmax temperature, up to 2.
    pub temperature: f32,
    /// Nucleus sampling mass in (0, 1]; 1 disables it.
    pub top_p: f32,
    /// Keep only the k most likely tokens; 0 disables it.
    pub top_k: u32,
    /// Drop tokens below this fraction of the best token's probability; 0 disables it.
    pub min_p: f32,
    /// Seed for the random sampler; `None` picks one at random.
    pub seed: Option<u32>,
    /// OpenAI presence penalty in [-2, 2].
    pub presence_penalty: f32,
    /// OpenAI frequency penalty in [-2, 2].
    pub frequency_penalty: f32,
    /// Generation ends before any of these strings; they are not part of the output.
    pub stop: Vec<String>,
    /// Most tokens to generate.
    pub max_tokens: u32,
    /// A GBNF grammar (root rule `root`) the output must follow, e.g. a forced tool call.
    pub grammar: Option<String>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            min_p: 0.0,
            seed: None,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            stop: Vec::new(),
            max_tokens: 16,
            grammar: None,
        }
    }
}

/// A parameter outside its documented range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{param} {message}")]
pub struct ParamError {
    /// The request field at fault.
    pub param: &'static str,
    /// What is wrong with it.
    pub message: String,
}

/// Most stop strings a request may give (OpenAI allows 4; we allow a few more).
pub const MAX_STOP_STRINGS: usize = 16;

impl SamplingParams {
    /// Checks every field against its range.
    pub fn validate(&self) -> Result<(), ParamError> {
        let err = |param, message: &str| {
            Err(ParamError {
                param,
                message: message.to_owned(),
            })
        };
        if !(0.0..=2.0).contains(&self.temperature) {
            return err("temperature", "must be between 0 and 2");
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return err("top_p", "must be greater than 0 and at most 1");
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return err("min_p", "must be between 0 and 1");
        }
        if !(-2.0..=2.0).contains(&self.presence_penalty) {
            return err("presence_penalty", "must be between -2 and 2");
        }
        if !(-2.0..=2.0).contains(&self.frequency_penalty) {
            return err("frequency_penalty", "must be between -2 and 2");
        }
        if self.max_tokens == 0 {
            return err("max_tokens", "must be at least 1");
        }
        if self.stop.len() > MAX_STOP_STRINGS {
            return err(
                "stop",
                &format!("may list at most {MAX_STOP_STRINGS} strings"),
            );
        }
        if self.stop.iter().any(|s| s.is_empty() || s.len() > 256) {
            return err("stop", "strings must be 1 to 256 bytes long");
        }
        Ok(())
    }

    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_enforced() {
        assert!(SamplingParams::default().validate().is_ok());
        let bad = [
            SamplingParams {
                temperature: 2.5,
                ..Default::default()
            },
            SamplingParams {
                temperature: f32::NAN,
                ..Default::default()
            },
            SamplingParams {
                top_p: 0.0,
                ..Default::default()
            },
            SamplingParams {
                min_p: -0.1,
                ..Default::default()
            },
            SamplingParams {
                presence_penalty: 3.0,
                ..Default::default()
            },
            SamplingParams {
                frequency_penalty: -3.0,
                ..Default::default()
            },
            SamplingParams {
                max_tokens: 0,
                ..Default::default()
            },
            SamplingParams {
                stop: vec![String::new()],
                ..Default::default()
            },
        ];
        for p in bad {
            assert!(p.validate().is_err(), "{p:?} should be rejected");
        }
    }
}
