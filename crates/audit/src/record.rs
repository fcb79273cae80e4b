//! What a record says. Every record is one JSON object with `type`, `time` (RFC 3339 UTC) and
//! `node`; the rest depends on the type. Content (prompts, answers, secrets) is never recorded:
//! completions carry SHA-256 digests, admin changes carry records whose secrets the store
//! never serializes.

use serde::{Deserialize, Serialize};
use sha2::Digest;

/// One audit record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// RFC 3339 UTC time the record was made.
    pub time: String,
    /// The node that made it.
    pub node: String,
    /// What happened.
    #[serde(flatten)]
    pub event: Event,
}

/// Who acted: the authenticated principal, or a local command on the data directory.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Actor {
    /// The agency ID, if authenticated.
    pub agency: Option<String>,
    /// The user ID, if authenticated.
    pub user: Option<String>,
    /// The API key ID, when a key (not a certificate) authenticated the request.
    pub key: Option<String>,
    /// The client's address, for requests over the network.
    pub client: Option<String>,
}

/// The kinds of record.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A request that presented no valid credential.
    AuthFailure {
        /// The request's ID.
        request_id: String,
        /// The client's address.
        client: Option<String>,
        /// Method and path.
        route: String,
        /// Why (never the credential itself).
        reason: String,
        /// For a record that sums up failures refused by the per-address throttle (429):
        /// how many; absent for a single failure.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        count: Option<u64>,
    },
    /// A reference-monitor (or role) decision on one inference request.
    Decision {
        /// The request's ID (also in the answer's `x-request-id`).
        request_id: String,
        /// Who asked.
        #[serde(flatten)]
        actor: Actor,
        /// Method and path.
        route: String,
        /// The model asked for.
        model: String,
        /// The user's clearance.
        clearance: String,
        /// The user's nationality.
        nationality: String,
        /// The request's label (declared and detected), as a banner.
        request_label: String,
        /// The model's accreditation, as a banner.
        model_label: String,
        /// `allow` or `deny`.
        decision: String,
        /// The rules that denied, with their explanations; empty when allowed.
        reasons: Vec<String>,
        /// Kinds of personal data detected.
        pii: Vec<String>,
    },
    /// The end of an allowed generation.
    Completion {
        /// The request's ID.
        request_id: String,
        /// Who asked.
        #[serde(flatten)]
        actor: Actor,
        /// The model.
        model: String,
        /// Tokens in the prompt.
        prompt_tokens: u64,
        /// Tokens generated.
        completion_tokens: u64,
        /// `stop`, `length`, `cancelled` (client gone), `error`, `rate_limited` (refused by
        /// a quota, budget or rate limit after the monitor allowed it), or
        /// `output_label_exceeded` (the output scan withheld generated text above the request's
        /// label and ended the generation).
        finish_reason: String,
        /// Milliseconds from the decision to the end.
        latency_ms: u64,
        /// SHA-256 (hex) of the prompt exactly as the engine received it; when the request has
        /// stop strings, of the prompt's bytes, a zero byte, `stop` and their JSON list. For an
        /// external deployment, of the JSON of the messages (and the tools and stop strings,
        /// when there are any) as an OpenAI-protocol deployment receives them.
        prompt_sha256: String,
        /// SHA-256 (hex) of the generated text exactly as sent (without a banner line).
        output_sha256: String,
        /// External deployments the prompt was sent to, in order of attempt (the last one
        /// answered, unless the request failed); empty for embedded models.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        deployments: Vec<String>,
        /// For `output_label_exceeded`: the label of what was withheld, as a banner (empty for
        /// a marking with a word the encodings do not know).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output_label: Option<String>,
    },
    /// A change to agencies, users, keys, certificate mappings or models.
    Admin {
        /// Who changed it.
        #[serde(flatten)]
        actor: Actor,
        /// What was done, e.g. `user.update`, `key.revoke`, `model.import`.
        action: String,
        /// The ID or name of what changed.
        target: String,
        /// The state before (null when created).
        before: serde_json::Value,
        /// The state after (null when removed).
        after: serde_json::Value,
        /// Why the change was refused, for attempts denied by the tenancy rules (nothing
        /// changed then); absent for changes made.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        denied: Option<String>,
        /// The agency the changed object belongs to (absent for enclave-wide objects such as
        /// prices and models, and for refused attempts). Queries scope on it, not on the actor.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target_agency: Option<String>,
    },
    /// A read of the audit log or of usage (reports, invoices): who looked at what.
    Read {
        /// Who read.
        #[serde(flatten)]
        actor: Actor,
        /// What was read: `audit.query`, `usage.report`, `invoice.get`.
        action: String,
        /// The query, as sent (its filters).
        target: String,
        /// The agency whose records or usage were read (absent: every agency, for operators).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target_agency: Option<String>,
    },
}

impl Record {
    /// A record of `event` made now by `node`.
    pub fn now(node: &str, event: Event) -> Self {
        Self {
            time: crate::log::now_rfc3339(),
            node: node.to_owned(),
            event,
        }
    }

    /// The record as the bytes to append: JSON in which no string is longer than
    /// [`MAX_FIELD`] bytes. A longer one (a 1 MB model name in a request) keeps its start and
    /// is marked `…[truncated: N bytes, sha256 H]`, so every record, a denial too, fits the
    /// log, and the full value can still be matched against its digest.
    pub fn to_bounded_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        let bytes = serde_json::to_vec(self)?;
        // JSON escapes only lengthen strings: a record this short has no long one.
        if bytes.len() <= MAX_FIELD {
            return Ok(bytes);
        }
        let mut value = serde_json::to_value(self)?;
        bound_strings(&mut value);
        serde_json::to_vec(&value)
    }
}

/// The longest string kept whole in a record, in bytes.
pub const MAX_FIELD: usize = 4096;
/// What is kept of a longer one.
const KEPT: usize = 256;

fn bound_strings(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::String(s) if s.len() > MAX_FIELD => {
            let mut end = KEPT;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            let digest = hex::encode(sha2::Sha256::digest(s.as_bytes()));
            *s = format!(
                "{}…[truncated: {} bytes, sha256 {digest}]",
                &s[..end],
                s.len()
            );
        }
        Value::Array(a) => a.iter_mut().for_each(bound_strings),
        Value::Object(o) => o.values_mut().for_each(bound_strings),
        _ => {}
    }
}

/// The fields queries filter on, read from any record (unknown fields ignored).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Fields {
    /// The record type.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// RFC 3339 time.
    pub time: Option<String>,
    /// Agency ID.
    pub agency: Option<String>,
    /// User ID.
    pub user: Option<String>,
    /// `allow` or `deny` (decisions only).
    pub decision: Option<String>,
    /// Request ID.
    pub request_id: Option<String>,
    /// The agency an admin change affected.
    pub target_agency: Option<String>,
}

impl Fields {
    /// The agency a record belongs to: the one a change affected, else the actor's.
    pub fn scope_agency(&self) -> Option<&String> {
        self.target_agency.as_ref().or(self.agency.as_ref())
    }
}

/// A query over records; every given field must match.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// Only this agency's records (for admin changes: the agency changed, not the actor's).
    pub agency: Option<String>,
    /// Only this user's records.
    pub user: Option<String>,
    /// Only decisions that were `allow` or `deny`.
    pub decision: Option<String>,
    /// Only records of this type.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Only records at or after this RFC 3339 time.
    pub since: Option<String>,
    /// Only records before this RFC 3339 time.
    pub until: Option<String>,
    /// Only this request's records.
    pub request_id: Option<String>,
}

/// A filter's time bound that is not RFC 3339.
#[derive(Debug, Clone, thiserror::Error)]
#[error("'{0}' is not an RFC 3339 time such as 2026-11-23T00:00:00Z")]
pub struct BadTime(pub String);

fn parse_time(s: &str) -> Result<time::OffsetDateTime, BadTime> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|_| BadTime(s.chars().take(64).collect()))
}

/// A [`Filter`] with its times parsed, ready to test records.
#[derive(Debug, Clone)]
pub struct Matcher {
    filter: Filter,
    since: Option<time::OffsetDateTime>,
    until: Option<time::OffsetDateTime>,
}

impl Filter {
    /// Checks the time bounds and prepares the filter.
    pub fn compile(self) -> Result<Matcher, BadTime> {
        let since = self.since.as_deref().map(parse_time).transpose()?;
        let until = self.until.as_deref().map(parse_time).transpose()?;
        Ok(Matcher {
            filter: self,
            since,
            until,
        })
    }
}

impl Matcher {
    /// Whether the record `payload` (a JSON object) matches. A record that does not parse
    /// matches no filter with a field set, and an empty filter.
    pub fn matches(&self, payload: &[u8]) -> bool {
        let f = &self.filter;
        let Ok(r) = serde_json::from_slice::<Fields>(payload) else {
            return false;
        };
        let eq = |want: &Option<String>, got: &Option<String>| {
            want.as_ref().is_none_or(|w| got.as_ref() == Some(w))
        };
        let scope = r.scope_agency().cloned();
        if !(eq(&f.agency, &scope)
            && eq(&f.user, &r.user)
            && eq(&f.decision, &r.decision)
            && eq(&f.kind, &r.kind)
            && eq(&f.request_id, &r.request_id))
        {
            return false;
        }
        if self.since.is_none() && self.until.is_none() {
            return true;
        }
        let Some(t) = r.time.as_deref().and_then(|t| parse_time(t).ok()) else {
            return false;
        };
        self.since.is_none_or(|s| t >= s) && self.until.is_none_or(|u| t < u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(agency: &str, decision: &str, time: &str) -> Vec<u8> {
        serde_json::to_vec(&Record {
            time: time.into(),
            node: "n".into(),
            event: Event::Decision {
                request_id: "r1".into(),
                actor: Actor {
                    agency: Some(agency.into()),
                    user: Some("u1".into()),
                    key: None,
                    client: None,
                },
                route: "POST /v1/chat/completions".into(),
                model: "m".into(),
                clearance: "SECRET".into(),
                nationality: "USA".into(),
                request_label: "UNCLASSIFIED".into(),
                model_label: "SECRET".into(),
                decision: decision.into(),
                reasons: vec![],
                pii: vec![],
            },
        })
        .unwrap()
    }

    #[test]
    fn records_serialize_flat_and_filters_match_their_fields() {
        let r = decision("a1", "deny", "2026-11-23T10:00:00Z");
        let v: serde_json::Value = serde_json::from_slice(&r).unwrap();
        assert_eq!(v["type"], "decision");
        assert_eq!(v["agency"], "a1");
        assert_eq!(v["decision"], "deny");
        let m = |f: Filter| f.compile().unwrap().matches(&r);
        assert!(m(Filter::default()));
        assert!(m(Filter {
            agency: Some("a1".into()),
            decision: Some("deny".into()),
            kind: Some("decision".into()),
            ..Filter::default()
        }));
        assert!(!m(Filter {
            agency: Some("a2".into()),
            ..Filter::default()
        }));
        assert!(!m(Filter {
            decision: Some("allow".into()),
            ..Filter::default()
        }));
        assert!(m(Filter {
            since: Some("2026-11-23T10:00:00Z".into()),
            until: Some("2026-11-23T10:00:01Z".into()),
            ..Filter::default()
        }));
        assert!(!m(Filter {
            until: Some("2026-11-23T10:00:00Z".into()),
            ..Filter::default()
        }));
        assert!(!m(Filter {
            since: Some("2026-11-23T11:00:00+01:00".into()),
            until: Some("2026-11-23T10:00:00Z".into()),
            ..Filter::default()
        }));
        assert!(Filter {
            since: Some("yesterday".into()),
            ..Filter::default()
        }
        .compile()
        .is_err());
    }
}

#[cfg(test)]
mod bounded_tests {
    use super::*;

    #[test]
    fn long_strings_are_truncated_with_their_digest() {
        let long = "m".repeat(1 << 20);
        let r = Record::now(
            "n",
            Event::Decision {
                request_id: "r".into(),
                actor: Actor::default(),
                route: "POST /v1/chat/completions".into(),
                model: long.clone(),
                clearance: "SECRET".into(),
                nationality: "USA".into(),
                request_label: String::new(),
                model_label: String::new(),
                decision: "deny".into(),
                reasons: vec!["role.inference: no".into()],
                pii: Vec::new(),
            },
        );
        let bytes = r.to_bounded_json().unwrap();
        assert!(bytes.len() < 2 * MAX_FIELD, "{}", bytes.len());
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let model = v["model"].as_str().unwrap();
        let digest = hex::encode(sha2::Sha256::digest(long.as_bytes()));
        assert!(
            model.starts_with("mmm")
                && model.ends_with(&format!("1048576 bytes, sha256 {digest}]")),
            "{model}"
        );
        assert_eq!(v["decision"], "deny");
        // Short records are untouched.
        let short = Record::now(
            "n",
            Event::AuthFailure {
                request_id: "a".into(),
                client: None,
                route: "GET /".into(),
                reason: "no".into(),
                count: None,
            },
        );
        assert_eq!(
            short.to_bounded_json().unwrap(),
            serde_json::to_vec(&short).unwrap()
        );
    }
}
