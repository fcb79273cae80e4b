//! Agency policies in Cedar, checked against Highside's schema when they are loaded.
//!
//! The monitor asks Cedar only after the mandatory check has allowed a request, and a request
//! runs only if Cedar allows it too: a policy can deny more, never allow more. Cedar skips a
//! policy whose evaluation fails; since a skipped `forbid` would turn into an allow, any
//! evaluation error denies.

use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Decision, Entities, EntityUid, PolicySet, Request, Schema, ValidationMode,
    Validator,
};
use highside_label::{Encodings, Label, Releasability};
use serde_json::{json, Value};

use crate::{Reason, Rule};

/// Highside's Cedar schema: what a policy can see of a request.
pub const SCHEMA: &str = include_str!("../highside.cedarschema");

/// The policy set used when an enclave has written none: Cedar adds no restriction.
pub const PERMIT_ALL: &str = "@id(\"default-permit\")\npermit(principal, action, resource);\n";

const ACTION: &str = r#"Highside::Action::"infer""#;

/// Why a policy file was refused. Highside does not start with a bad one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The text is not Cedar.
    #[error("agency policies do not parse: {0}")]
    Syntax(String),
    /// A policy does not type-check against Highside's schema.
    #[error("agency policies do not validate against the schema: {0}")]
    Invalid(String),
}

/// A validated Cedar policy set with the schema it was validated against.
#[derive(Debug, Clone)]
pub struct Policies {
    set: PolicySet,
    // Only the tests read it after loading: they check request facts against it.
    #[cfg_attr(not(test), allow(dead_code))]
    schema: Schema,
    action: EntityUid,
}

/// The request facts Cedar sees besides the principal and the model.
#[derive(Debug, Clone)]
pub struct PolicyRequest<'a> {
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
    /// The user's nationality.
    pub nationality: &'a str,
    /// The model's public name.
    pub model: &'a str,
    /// The model's accreditation.
    pub accreditation: &'a Label,
    /// The request label (the high-water mark).
    pub label: &'a Label,
    /// What the client declared (the lowest label when it declared nothing).
    pub declared: &'a Label,
    /// Whether any marking was found in the messages.
    pub detected: bool,
    /// Kinds of PII found (`ssn`, `phone`, `email`).
    pub pii: &'a [&'a str],
}

fn schema() -> Schema {
    let (schema, _warnings) =
        Schema::from_cedarschema_str(SCHEMA).expect("Highside's own Cedar schema is valid");
    schema
}

/// A label as the schema's `Label` record.
pub fn label_json(encodings: &Encodings, label: &Label) -> Value {
    let (unrestricted, countries): (bool, Vec<&String>) = match label.releasability() {
        Releasability::Unrestricted => (true, Vec::new()),
        Releasability::RelTo(set) => (false, set.iter().collect()),
    };
    json!({
        "level": i64::from(label.level()),
        "level_name": encodings.level_name(label),
        "compartments": label.compartments(),
        "unrestricted": unrestricted,
        "releasable_to": countries,
        "dissemination": label.dissemination(),
        "cui": label.cui(),
    })
}

impl Policies {
    /// Parses and validates a policy set (strict mode) against Highside's schema.
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        let set = PolicySet::from_str(text).map_err(|e| PolicyError::Syntax(e.to_string()))?;
        let schema = schema();
        let result = Validator::new(schema.clone()).validate(&set, ValidationMode::Strict);
        if !result.validation_passed() {
            let errors: Vec<String> = result.validation_errors().map(|e| e.to_string()).collect();
            return Err(PolicyError::Invalid(errors.join("; ")));
        }
        Ok(Self {
            set,
            schema,
            action: EntityUid::from_str(ACTION).expect("the action name is valid"),
        })
    }

    /// The default: permit everything the mandatory check allows.
    pub fn permit_all() -> Self {
        Self::parse(PERMIT_ALL).expect("the default policy is valid")
    }

    /// Number of policies.
    pub fn len(&self) -> usize {
        self.set.policies().count()
    }

    /// Whether the set holds no policy (which denies everything: Cedar denies by default).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The request as Cedar JSON: principal uid, resource uid, entities, context.
    fn facts(&self, encodings: &Encodings, r: &PolicyRequest<'_>) -> (Value, Value, Value, Value) {
        let user = json!({"type": "Highside::User", "id": r.user});
        let agency = json!({"type": "Highside::Agency", "id": r.agency});
        let model = json!({"type": "Highside::Model", "id": r.model});
        let mut parents = vec![agency.clone()];
        let mut entities = vec![json!({"uid": agency, "attrs": {}, "parents": []})];
        for role in r.roles {
            let uid = json!({"type": "Highside::Role", "id": role});
            parents.push(uid.clone());
            entities.push(json!({"uid": uid, "attrs": {}, "parents": []}));
        }
        entities.push(json!({
            "uid": user,
            "attrs": {
                "name": r.user_name,
                "clearance": label_json(encodings, r.clearance),
                "nationality": r.nationality,
            },
            "parents": parents,
        }));
        entities.push(json!({
            "uid": model,
            "attrs": {"accreditation": label_json(encodings, r.accreditation)},
            "parents": [],
        }));
        let context = json!({
            "label": label_json(encodings, r.label),
            "declared": label_json(encodings, r.declared),
            "detected": r.detected,
            "pii": r.pii,
        });
        (user, model, Value::Array(entities), context)
    }

    /// Evaluates the policies; `Ok` allows. Every failure to build or evaluate denies.
    pub fn evaluate(&self, encodings: &Encodings, r: &PolicyRequest<'_>) -> Result<(), Reason> {
        let fail = |what: String| {
            Reason::new(
                Rule::PolicyError,
                format!("agency policy could not be evaluated ({what}); denied"),
            )
        };
        let (user, model, entities, context) = self.facts(encodings, r);
        // The policies were validated against the schema when they were loaded and these
        // values are built here to its shape (tests check that), so they are not re-validated
        // on every request: that would triple the cost of a decision.
        let entities =
            Entities::from_json_value(entities, None).map_err(|e| fail(e.to_string()))?;
        let context = Context::from_json_value(context, None).map_err(|e| fail(e.to_string()))?;
        let uid = |v: Value| EntityUid::from_json(v).map_err(|e| fail(e.to_string()));
        let request = Request::new(uid(user)?, self.action.clone(), uid(model)?, context, None)
            .map_err(|e| fail(e.to_string()))?;
        let response = Authorizer::new().is_authorized(&request, &self.set, &entities);
        if let Some(e) = response.diagnostics().errors().next() {
            return Err(fail(e.to_string()));
        }
        if response.decision() == Decision::Allow {
            return Ok(());
        }
        let named: Vec<String> = response
            .diagnostics()
            .reason()
            .map(|id| {
                self.set
                    .annotation(id, "id")
                    .map_or_else(|| id.to_string(), str::to_owned)
            })
            .collect();
        Err(if named.is_empty() {
            Reason::new(
                Rule::PolicyNoPermit,
                "agency policy: no policy permits this request",
            )
        } else {
            Reason::new(
                Rule::PolicyForbid,
                format!("agency policy: forbidden by {}", named.join(", ")),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(l: &Label) -> PolicyRequest<'_> {
        PolicyRequest {
            user: "user_1",
            user_name: "analyst",
            agency: "agency_1",
            roles: &["user", "auditor"],
            clearance: l,
            nationality: "USA",
            model: "m",
            accreditation: l,
            label: l,
            declared: l,
            detected: true,
            pii: &["ssn"],
        }
    }

    /// Requests are evaluated without re-validating against the schema (for speed); this
    /// checks that what is built has exactly the schema's shape.
    #[test]
    fn facts_conform_to_the_schema() {
        let e = Encodings::builtin();
        let p = Policies::permit_all();
        for m in [
            "UNCLASSIFIED",
            "TOP SECRET//SI/TK//ORCON/REL TO USA, GBR",
            "CUI//SP-PRVCY//NOFORN",
        ] {
            let l = e.parse(m).unwrap();
            let (_, _, entities, context) = p.facts(&e, &request(&l));
            Entities::from_json_value(entities, Some(&p.schema)).expect("entities conform");
            Context::from_json_value(context, Some((&p.schema, &p.action)))
                .expect("context conforms");
            assert!(p.evaluate(&e, &request(&l)).is_ok());
        }
    }

    #[test]
    fn forbid_names_its_policy_and_errors_deny() {
        let e = Encodings::builtin();
        let l = e.parse("SECRET//ORCON").unwrap();
        let p = Policies::parse(&format!(
            "{PERMIT_ALL}@id(\"no-orcon\")\nforbid(principal, action, resource) when {{ context.label.dissemination.contains(\"ORCON\") }};"
        ))
        .unwrap();
        let err = p.evaluate(&e, &request(&l)).unwrap_err();
        assert_eq!(err.rule, Rule::PolicyForbid);
        assert!(err.message.contains("no-orcon"), "{}", err.message);
        // Nothing permits: Cedar's default deny.
        let none = Policies::parse("").unwrap();
        assert_eq!(
            none.evaluate(&e, &request(&l)).unwrap_err().rule,
            Rule::PolicyNoPermit
        );
        // A forbid whose evaluation fails at run time (1 / 0 style overflow) must deny, not be skipped.
        let overflow = Policies::parse(&format!(
            "{PERMIT_ALL}forbid(principal, action, resource) when {{ context.label.level * 9223372036854775807 > 1 }};"
        ))
        .unwrap();
        let low = e.parse("SECRET").unwrap();
        assert_eq!(
            overflow.evaluate(&e, &request(&low)).unwrap_err().rule,
            Rule::PolicyError
        );
    }

    #[test]
    fn policies_that_do_not_fit_the_schema_are_refused() {
        assert!(matches!(
            Policies::parse("permit(principal, action, resource) when { context.nope };"),
            Err(PolicyError::Invalid(_))
        ));
        assert!(matches!(
            Policies::parse("permit(principal"),
            Err(PolicyError::Syntax(_))
        ));
        assert!(matches!(
            Policies::parse(
                "permit(principal, action, resource) when { principal.clearance.level == \"TS\" };"
            ),
            Err(PolicyError::Invalid(_))
        ));
    }
}
