//! Agency policies in Cedar, checked against Highside's schema when they are loaded.
//!
//! The monitor asks Cedar only after the mandatory check has allowed a request, and a request
//! runs only if Cedar allows it too: a policy can deny more, never allow more. Cedar skips a
//! policy whose evaluation fails; since a skipped `forbid` would turn into an allow, any
//! evaluation error denies.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use cedar_policy::{
    Authorizer, Context, Decision, Entities, Entity, EntityId, EntityTypeName, EntityUid,
    PolicySet, Request, RestrictedExpression, Schema, ValidationMode, Validator,
};
use highside_label::{Encodings, Label, Releasability};

use crate::{Access, Reason, Rule};

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
    types: Types,
    cache: Arc<Mutex<EntityCache>>,
}

/// Users and models change rarely, and Cedar evaluates every attribute value when an entity is
/// built (about half a microsecond each), so built entities are kept, keyed by everything
/// they are made of: a changed clearance or accreditation is a different key, never stale.
#[derive(Debug, Default)]
struct EntityCache {
    users: HashMap<UserKey, Entity>,
    models: HashMap<(String, Label), Entity>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct UserKey {
    user: String,
    name: String,
    agency: String,
    roles: Vec<String>,
    clearance: Label,
    nationality: String,
}

/// Entries kept per kind before the cache starts over.
const CACHE_LIMIT: usize = 4096;

/// The request facts Cedar sees besides the principal and the model.
#[derive(Debug, Clone)]
pub struct PolicyRequest<'a> {
    /// Who asks, of which model.
    pub access: Access<'a>,
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

fn strings<'a>(items: impl IntoIterator<Item = &'a str>) -> RestrictedExpression {
    RestrictedExpression::new_set(
        items
            .into_iter()
            .map(|s| RestrictedExpression::new_string(s.to_owned())),
    )
}

/// A label as the schema's `Label` record.
fn label_expr(encodings: &Encodings, label: &Label) -> RestrictedExpression {
    let (unrestricted, countries) = match label.releasability() {
        Releasability::Unrestricted => (true, strings([])),
        Releasability::RelTo(set) => (false, strings(set.iter().map(String::as_str))),
    };
    let fields = [
        (
            "level",
            RestrictedExpression::new_long(i64::from(label.level())),
        ),
        (
            "level_name",
            RestrictedExpression::new_string(encodings.level_name(label).to_owned()),
        ),
        (
            "compartments",
            strings(label.compartments().iter().map(String::as_str)),
        ),
        ("unrestricted", RestrictedExpression::new_bool(unrestricted)),
        ("releasable_to", countries),
        (
            "dissemination",
            strings(label.dissemination().iter().map(String::as_str)),
        ),
        ("cui", strings(label.cui().iter().map(String::as_str))),
    ];
    RestrictedExpression::new_record(fields.into_iter().map(|(k, v)| (k.to_owned(), v)))
        .expect("the record's field names are distinct")
}

/// The schema's entity types, parsed once.
#[derive(Debug, Clone)]
struct Types {
    user: EntityTypeName,
    agency: EntityTypeName,
    role: EntityTypeName,
    model: EntityTypeName,
}

impl Types {
    fn new() -> Self {
        let t = |n: &str| EntityTypeName::from_str(n).expect("the schema's type names are valid");
        Self {
            user: t("Highside::User"),
            agency: t("Highside::Agency"),
            role: t("Highside::Role"),
            model: t("Highside::Model"),
        }
    }
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
            types: Types::new(),
            cache: Arc::new(Mutex::new(EntityCache::default())),
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

    fn uid(&self, ty: &EntityTypeName, id: &str) -> EntityUid {
        EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(id))
    }

    /// The request as Cedar values, built directly (no JSON to parse on the hot path): the
    /// principal, the resource, the entities and the context.
    fn facts(
        &self,
        encodings: &Encodings,
        r: &PolicyRequest<'_>,
    ) -> Result<(EntityUid, EntityUid, Vec<Entity>, Context), String> {
        let t = &self.types;
        let a = &r.access;
        let user = self.uid(&t.user, a.user);
        let agency = self.uid(&t.agency, a.agency);
        let model = self.uid(&t.model, a.model);
        let mut parents = HashSet::from([agency.clone()]);
        let mut entities = vec![Entity::new_no_attrs(agency, HashSet::new())];
        for role in a.roles {
            let uid = self.uid(&t.role, role);
            parents.insert(uid.clone());
            entities.push(Entity::new_no_attrs(uid, HashSet::new()));
        }
        let key = UserKey {
            user: a.user.to_owned(),
            name: a.user_name.to_owned(),
            agency: a.agency.to_owned(),
            roles: a.roles.iter().map(|s| (*s).to_owned()).collect(),
            clearance: a.clearance.clone(),
            nationality: a.nationality.to_owned(),
        };
        let model_key = (a.model.to_owned(), a.accreditation.clone());
        let (cached_user, cached_model) = {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            (
                cache.users.get(&key).cloned(),
                cache.models.get(&model_key).cloned(),
            )
        };
        let user_entity = match cached_user {
            Some(e) => e,
            None => {
                let attrs = HashMap::from([
                    (
                        "name".to_owned(),
                        RestrictedExpression::new_string(a.user_name.to_owned()),
                    ),
                    ("clearance".to_owned(), label_expr(encodings, a.clearance)),
                    (
                        "nationality".to_owned(),
                        RestrictedExpression::new_string(a.nationality.to_owned()),
                    ),
                ]);
                let e = Entity::new(user.clone(), attrs, parents).map_err(|e| e.to_string())?;
                let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
                if cache.users.len() >= CACHE_LIMIT {
                    cache.users.clear();
                }
                cache.users.insert(key, e.clone());
                e
            }
        };
        let model_entity = match cached_model {
            Some(e) => e,
            None => {
                let attrs = HashMap::from([(
                    "accreditation".to_owned(),
                    label_expr(encodings, a.accreditation),
                )]);
                let e =
                    Entity::new(model.clone(), attrs, HashSet::new()).map_err(|e| e.to_string())?;
                let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
                if cache.models.len() >= CACHE_LIMIT {
                    cache.models.clear();
                }
                cache.models.insert(model_key, e.clone());
                e
            }
        };
        entities.push(user_entity);
        entities.push(model_entity);
        let context = Context::from_pairs([
            ("label".to_owned(), label_expr(encodings, r.label)),
            ("declared".to_owned(), label_expr(encodings, r.declared)),
            (
                "detected".to_owned(),
                RestrictedExpression::new_bool(r.detected),
            ),
            ("pii".to_owned(), strings(r.pii.iter().copied())),
        ])
        .map_err(|e| e.to_string())?;
        Ok((user, model, entities, context))
    }

    /// Evaluates the policies; `Ok` allows. Every failure to build or evaluate denies.
    pub fn evaluate(&self, encodings: &Encodings, r: &PolicyRequest<'_>) -> Result<(), Reason> {
        let fail = |what: String| {
            Reason::new(
                Rule::PolicyError,
                format!("agency policy could not be evaluated ({what}); denied"),
            )
        };
        let (user, model, entities, context) = self.facts(encodings, r).map_err(fail)?;
        // The policies were validated against the schema when they were loaded and these
        // values are built here to its shape (a test checks that), so they are not
        // re-validated on every request: that would multiply the cost of a decision.
        let entities = Entities::from_entities(entities, None).map_err(|e| fail(e.to_string()))?;
        let request = Request::new(user, self.action.clone(), model, context, None)
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
            access: Access {
                user: "user_1",
                user_name: "analyst",
                agency: "agency_1",
                roles: &["user", "auditor"],
                clearance: l,
                nationality: "USA",
                model: "m",
                accreditation: l,
            },
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
            let (user, model, entities, context) = p.facts(&e, &request(&l)).unwrap();
            Entities::from_entities(entities, Some(&p.schema)).expect("entities conform");
            Request::new(user, p.action.clone(), model, context, Some(&p.schema))
                .expect("the request and its context conform");
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
