//! The reference monitor: the one decision every inference request passes before any engine
//! sees it.
//!
//! [`Monitor::decide`] computes the request label (the join of what the client declared and
//! every marking found in the messages; PII may raise it to CUI), runs the native mandatory
//! access check ([`mac::check`]: no read up, releasability, no write down) and only then the
//! enclave's Cedar policies ([`Policies`]), which can deny more but never allow what the native
//! check denied. A [`Decision`] carries the label and every reason; reasons name rules, never
//! protected content. No I/O.
#![forbid(unsafe_code)]

pub mod mac;
mod pii;
mod policy;

use std::fmt;
use std::sync::Arc;

use highside_label::{Detector, Encodings, Label, UnknownMarking};

pub use pii::{PiiAction, PiiDetector, UnknownPiiAction};
pub use policy::{Policies, PolicyError, PolicyRequest, PERMIT_ALL, SCHEMA};

/// The rule behind a reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    /// The request's level is above the user's clearance.
    ReadUpLevel,
    /// The request carries a compartment the user's clearance lacks.
    ReadUpCompartment,
    /// The request is not releasable to the user's nationality.
    Releasability,
    /// The model is accredited below the request's level.
    WriteDownLevel,
    /// The model is not accredited for one of the request's compartments.
    WriteDownCompartment,
    /// The model is releasable more widely than the request.
    WriteDownReleasability,
    /// A label the client declared is not a label of this enclave.
    InvalidDeclaredLabel,
    /// A marking detected in the request holds a word the encodings do not know (it could be
    /// a control that raises the label, so the request cannot be labelled).
    UnknownMarking,
    /// The agency blocks prompts holding personal data.
    PiiBlocked,
    /// An agency policy forbids the request.
    PolicyForbid,
    /// No agency policy permits the request.
    PolicyNoPermit,
    /// An agency policy could not be evaluated (which denies).
    PolicyError,
}

impl Rule {
    /// A stable name for logs, audit records and error codes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReadUpLevel => "mac.no_read_up.level",
            Self::ReadUpCompartment => "mac.no_read_up.compartment",
            Self::Releasability => "mac.releasability",
            Self::WriteDownLevel => "mac.no_write_down.level",
            Self::WriteDownCompartment => "mac.no_write_down.compartment",
            Self::WriteDownReleasability => "mac.no_write_down.releasability",
            Self::InvalidDeclaredLabel => "label.invalid",
            Self::UnknownMarking => "label.unknown_marking",
            Self::PiiBlocked => "pii.blocked",
            Self::PolicyForbid => "policy.forbid",
            Self::PolicyNoPermit => "policy.no_permit",
            Self::PolicyError => "policy.error",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a request was denied: the rule and a sentence naming it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    /// The rule.
    pub rule: Rule,
    /// A sentence for the client; never protected content.
    pub message: String,
}

impl Reason {
    /// A reason for `rule`.
    pub fn new(rule: Rule, message: impl Into<String>) -> Self {
        Self {
            rule,
            message: message.into(),
        }
    }
}

/// The outcome of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may run.
    pub allowed: bool,
    /// The request label: what every output of the request is marked with.
    pub label: Label,
    /// Why it was denied (empty when allowed).
    pub reasons: Vec<Reason>,
    /// Whether any marking was found in the messages.
    pub detected: bool,
    /// Kinds of personal data found, when the agency looks.
    pub pii: Vec<&'static str>,
}

impl Decision {
    /// All reasons as one sentence.
    pub fn explain(&self) -> String {
        let parts: Vec<String> = self
            .reasons
            .iter()
            .map(|r| format!("{} [{}]", r.message, r.rule))
            .collect();
        parts.join("; ")
    }
}

/// A request's label and what it was made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestLabel {
    /// The join of the declared labels and every detected marking.
    pub label: Label,
    /// The join of the declared labels alone (the lowest label when none was declared).
    pub declared: Label,
    /// Whether any marking was found in the texts.
    pub detected: bool,
}

/// What the monitor read in one request's texts (see [`Monitor::read`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    /// The request label, or why it has none (a declared label that does not parse, an
    /// unknown word in a detected marking): either denies.
    pub label: Result<RequestLabel, Reason>,
    /// Kinds of personal data found (empty when the agency does not look).
    pub pii: Vec<&'static str>,
}

/// Who asks, of which model: the facts of a request the MAC check and the policies both read.
#[derive(Debug, Clone, Copy)]
pub struct Access<'a> {
    /// The user's id.
    pub user: &'a str,
    /// The user's name.
    pub user_name: &'a str,
    /// The user's agency id.
    pub agency: &'a str,
    /// The roles this request holds.
    pub roles: &'a [&'a str],
    /// The user's clearance.
    pub clearance: &'a Label,
    /// The user's nationality (ISO 3166-1 alpha-3).
    pub nationality: &'a str,
    /// The model's public name.
    pub model: &'a str,
    /// The model's accreditation.
    pub accreditation: &'a Label,
}

/// Everything the monitor needs to know about one request.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    /// Who asks, of which model.
    pub access: Access<'a>,
    /// Markings the client declared (request field and header), not yet parsed.
    pub declared: &'a [&'a str],
    /// Every message's text, any role.
    pub texts: &'a [&'a str],
    /// The agency's PII action.
    pub pii: PiiAction,
}

/// The reference monitor of one enclave.
#[derive(Debug, Clone)]
pub struct Monitor {
    encodings: Arc<Encodings>,
    detector: Arc<Detector>,
    policies: Policies,
    pii: PiiDetector,
}

impl Monitor {
    /// A monitor for `encodings` with `policies`.
    pub fn new(encodings: Arc<Encodings>, policies: Policies) -> Self {
        Self {
            detector: Arc::new(Detector::new(&encodings)),
            encodings,
            policies,
            pii: PiiDetector::new(),
        }
    }

    /// The enclave's label encodings.
    pub fn encodings(&self) -> &Encodings {
        &self.encodings
    }

    /// The marking detector (shared: output scanning uses the same one).
    pub fn detector(&self) -> &Arc<Detector> {
        &self.detector
    }

    /// The request label alone: the join of the declared markings and every detected one.
    /// A declared marking that does not parse is an error (which denies).
    pub fn label(&self, declared: &[&str], texts: &[&str]) -> Result<RequestLabel, Reason> {
        self.label_with(declared, |d| d.label_of(texts.iter().copied()))
    }

    fn label_with(
        &self,
        declared: &[&str],
        detect: impl FnOnce(&Detector) -> Result<Option<Label>, UnknownMarking>,
    ) -> Result<RequestLabel, Reason> {
        let mut declared_label = self.encodings.lowest();
        for d in declared {
            let l = self.encodings.parse(d).map_err(|e| {
                Reason::new(
                    Rule::InvalidDeclaredLabel,
                    format!("the declared label is not valid here: {e}"),
                )
            })?;
            declared_label = declared_label.join(&l);
        }
        let found = detect(&self.detector).map_err(|UnknownMarking { word }| {
            Reason::new(
                Rule::UnknownMarking,
                format!("a marking in the request contains '{word}', which is not a word of this enclave's label encodings, so the request cannot be labelled; correct the marking"),
            )
        })?;
        let label = match &found {
            Some(d) => declared_label.join(d),
            None => declared_label.clone(),
        };
        Ok(RequestLabel {
            label,
            declared: declared_label,
            detected: found.is_some(),
        })
    }

    /// Decides one request: [`Monitor::read`] its texts, then [`Monitor::decide_reading`].
    pub fn decide(&self, input: &Input<'_>) -> Decision {
        let reading = self.read(input.declared, input.texts, input.pii);
        self.decide_reading(input, &reading)
    }

    /// Reads a request's texts once: its label (declared and detected) and the personal data
    /// in them. Detection is the expensive part of a decision, so a request judged against
    /// several models (a route's deployments) is read once.
    pub fn read(&self, declared: &[&str], texts: &[&str], pii: PiiAction) -> Reading {
        if pii == PiiAction::Off {
            return Reading {
                label: self.label(declared, texts),
                pii: Vec::new(),
            };
        }
        // Both detectors read the same folded texts: each text is folded once.
        let folded: Vec<highside_label::Folded> = texts
            .iter()
            .map(|t| highside_label::Folded::new(t))
            .collect();
        let label = self.label_with(declared, |d| d.label_of_folded(&folded));
        let mut kinds: Vec<&'static str> = Vec::new();
        if label.is_ok() {
            for f in &folded {
                for k in self.pii.find_folded(f) {
                    if !kinds.contains(&k) {
                        kinds.push(k);
                    }
                }
            }
        }
        Reading { label, pii: kinds }
    }

    /// Decides one request from its [`Reading`] (the input's `declared` and `texts` are not
    /// read again).
    pub fn decide_reading(&self, input: &Input<'_>, reading: &Reading) -> Decision {
        let RequestLabel {
            mut label,
            declared,
            detected,
        } = match &reading.label {
            Ok(x) => x.clone(),
            Err(reason) => {
                return Decision {
                    allowed: false,
                    label: self.encodings.lowest(),
                    reasons: vec![reason.clone()],
                    detected: false,
                    pii: Vec::new(),
                }
            }
        };
        let mut reasons = Vec::new();
        let pii = reading.pii.clone();
        if !pii.is_empty() {
            match input.pii {
                PiiAction::Block => reasons.push(Reason::new(
                    Rule::PiiBlocked,
                    format!(
                        "your agency does not allow personal data in prompts (found: {})",
                        pii.join(", ")
                    ),
                )),
                PiiAction::Cui => match self.encodings.parse("CUI") {
                    Ok(cui) => label = label.join(&cui),
                    Err(_) => reasons.push(Reason::new(
                        Rule::PiiBlocked,
                        "personal data must be marked CUI, which these label encodings lack",
                    )),
                },
                PiiAction::Flag | PiiAction::Off => {}
            }
        }
        let subject = mac::Subject {
            clearance: input.access.clearance,
            nationality: input.access.nationality,
        };
        reasons.extend(mac::check(&subject, input.access.accreditation, &label));
        if reasons.is_empty() {
            let request = PolicyRequest {
                access: input.access,
                label: &label,
                declared: &declared,
                detected,
                pii: &pii,
            };
            if let Err(reason) = self.policies.evaluate(&self.encodings, &request) {
                reasons.push(reason);
            }
        }
        Decision {
            allowed: reasons.is_empty(),
            label,
            reasons,
            detected,
            pii,
        }
    }
}
