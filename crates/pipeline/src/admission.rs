//! The one admission path: [`Service::admit`] is the only way a request gets a [`Ticket`],
//! and only a ticket reaches a backend.
//!
//! In order: the role check, the reference monitor over the request's one enumeration of
//! client text (against each place it could run, first choice first), the durable decision
//! record, the work's own preparation (rendering, tokenizing, what it may cost), then
//! metering's reservation and per-minute limits. From the decision on, every outcome ends in
//! exactly one completion record, which the ticket carries with the charge.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Instant;

use highside_identity::Principal;
use highside_label::Label;
use highside_monitor::{Access, Decision, Input, PiiAction, Reading, Rule};
use highside_openai::ApiError;
use highside_providers::Deployment;

use crate::audit::{actor, sha256_hex, CompletionAudit, Unfinished};
use crate::meter::{RateHeaders, Refusal};
use crate::service::Service;

/// Who is asking, and what they declared outside the body.
#[derive(Debug, Clone)]
pub struct Caller<'a> {
    /// The authenticated principal.
    pub principal: &'a Principal,
    /// Labels declared in `X-Highside-Label` headers, not yet parsed.
    pub header_labels: &'a [String],
    /// The request's ID, as its records and `x-request-id` name it.
    pub request_id: &'a str,
    /// The client's address.
    pub client: Option<std::net::SocketAddr>,
    /// Method and path, for the record.
    pub route: &'a str,
    /// The client's `Idempotency-Key`: a retry with the same key is charged once.
    pub idempotency_key: Option<&'a str>,
}

/// Where a request could run, as the monitor judges it.
#[derive(Debug)]
pub enum Target<'a> {
    /// A model (or encoder) this node runs.
    Local {
        /// Its name in the catalog.
        name: &'a str,
        /// Its accreditation now.
        accreditation: crate::Accreditation,
    },
    /// An upstream route: judged against its deployments in weighted order.
    Route(&'a crate::UpstreamRoute),
}

/// What a request may cost, fixed by its work's preparation before anything is reserved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cost {
    /// The audited digest of what the backend receives.
    pub prompt_sha256: String,
    /// Prompt tokens (or an upper bound of them, where the backend's tokenizer is not ours).
    pub prompt_tokens: u64,
    /// The most it may generate.
    pub most: u64,
}

/// An admitted request: the decision that allowed it, its completion record holding the
/// reservation, and what its work's preparation produced. Dropping it before
/// [`Ticket::handed_over`] records `error` (durably, on this thread) and hands the whole
/// reservation back; after, `cancelled`, and what was used is charged.
#[derive(Debug)]
pub struct Ticket<P> {
    /// The request's label: the high-water mark of everything it declared and carried.
    pub label: Label,
    /// That label's canonical banner, as the answer names it.
    pub banner: String,
    /// Kinds of personal data found, when the agency flags them.
    pub pii: Vec<&'static str>,
    /// For a route: the deployments that may take it, first choice first (empty for a local
    /// model).
    pub candidates: Vec<Arc<Deployment>>,
    /// The completion record, with the charge; settled exactly once.
    pub audit: CompletionAudit,
    /// `x-ratelimit-*` for the answer.
    pub rate_headers: RateHeaders,
    /// What the preparation produced for the backend.
    pub work: P,
}

impl<P> Ticket<P> {
    /// The backend has the request: from here a drop means the client left (recorded
    /// without blocking, what was used is charged).
    pub fn handed_over(&mut self) {
        self.audit.unfinished = Unfinished::Cancelled;
    }

    /// The prepared work, apart from the rest of the ticket.
    pub fn split(self) -> (P, Ticket<()>) {
        let Ticket {
            label,
            banner,
            pii,
            candidates,
            audit,
            rate_headers,
            work,
        } = self;
        let rest = Ticket {
            label,
            banner,
            pii,
            candidates,
            audit,
            rate_headers,
            work: (),
        };
        (work, rest)
    }
}

/// One place a request could run: a local model, or one deployment of a route.
struct Place {
    label: Label,
    banner: String,
    deployment: Option<Arc<Deployment>>,
}

/// The agency's PII action; a setting that does not parse blocks rather than guesses.
fn pii_action(p: &Principal) -> PiiAction {
    PiiAction::from_str(&p.pii_action).unwrap_or(PiiAction::Block)
}

/// A denial as the client sees it: 400 for a declared label that is not one of this enclave's,
/// 403 otherwise, naming the rules and never the protected content.
fn denied(d: &Decision) -> ApiError {
    let first = d.reasons.first().map(|r| r.rule);
    if first == Some(Rule::InvalidDeclaredLabel) {
        return ApiError {
            code: Some("invalid_label"),
            ..ApiError::bad_request(d.explain(), Some("highside.label"))
        };
    }
    ApiError {
        code: Some("access_denied"),
        ..ApiError::forbidden(format!("denied by the reference monitor: {}", d.explain()))
    }
}

/// Whether a denial is only the model's (its accreditation is too low for the request), so
/// a route may try its next deployment.
fn only_model(d: &Decision) -> bool {
    !d.allowed
        && d.reasons.iter().all(|r| {
            matches!(
                r.rule,
                Rule::WriteDownLevel | Rule::WriteDownCompartment | Rule::WriteDownReleasability
            )
        })
}

impl Service {
    /// Admits one request of any kind or refuses it, in this order: the role check, the
    /// monitor's decision over `texts` (every client string the backend will receive, and
    /// the labels declared in `declared` and the caller's headers), made durable either way;
    /// then `prepare` (given the deployments that may take it) fixes what the work is and
    /// may cost; then metering reserves that, under every limit. Blocks on the audit log and
    /// the store: call it from a blocking thread.
    pub fn admit<P>(
        &self,
        caller: &Caller<'_>,
        target: Target<'_>,
        declared: Option<&str>,
        texts: &[&str],
        prepare: impl FnOnce(&[Arc<Deployment>]) -> Result<(Cost, P), Refusal>,
    ) -> Result<Ticket<P>, Refusal> {
        let started = Instant::now();
        let (name, places) = match target {
            Target::Local {
                name,
                accreditation,
            } => (
                name,
                vec![Place {
                    label: accreditation.label,
                    banner: accreditation.banner,
                    deployment: None,
                }],
            ),
            Target::Route(route) => {
                let draw = uuid::Uuid::new_v4().as_u128() as u64;
                let places = highside_providers::order(&route.targets, draw)
                    .into_iter()
                    .map(|d| Place {
                        label: d.settings().label.clone(),
                        banner: d.settings().banner.clone(),
                        deployment: Some(d),
                    })
                    .collect();
                (route.name.as_str(), places)
            }
        };
        self.role_check(caller, name)?;
        // The texts are read once, whichever places the request is judged against.
        let reading = self.read(caller, declared, texts);
        // The first place in order whose accreditation allows the request decides; a denial
        // for any other reason (or by every place) is final.
        let mut decided = None;
        for (i, place) in places.iter().enumerate() {
            let decision = self.assess(caller, name, &place.label, &reading);
            let go_on = only_model(&decision);
            decided = Some((i, decision));
            if !go_on {
                break;
            }
        }
        let (chosen, decision) =
            decided.ok_or_else(|| ApiError::unavailable("this route has no deployments"))?;
        self.log_decision(caller, name, &decision);
        let banner = self.monitor().encodings().banner(&decision.label);
        let who = actor(caller.principal, caller.client);
        self.record_decision(
            caller,
            who.clone(),
            name,
            places[chosen].banner.clone(),
            &banner,
            &decision,
        )?;
        if !decision.allowed {
            return Err(denied(&decision).into());
        }
        // Fallbacks: only places the whole monitor (mandatory check and policies) allows
        // this request on, exactly as it allowed the first.
        let mut candidates: Vec<Arc<Deployment>> =
            places[chosen].deployment.iter().cloned().collect();
        candidates.extend(
            places
                .iter()
                .enumerate()
                .filter(|(i, p)| {
                    *i != chosen && self.assess(caller, name, &p.label, &reading).allowed
                })
                .filter_map(|(_, p)| p.deployment.clone()),
        );
        // From here every outcome, even an error, ends in exactly one completion record.
        let mut audit = CompletionAudit::new(
            Arc::clone(self.auditor()),
            caller.request_id,
            who,
            name,
            started,
        );
        let (cost, work) = prepare(&candidates)?;
        audit.prompt_sha256 = cost.prompt_sha256;
        audit.prompt_tokens = cost.prompt_tokens;
        let rate_headers = self.reserve(caller, &mut audit, name, cost.prompt_tokens, cost.most)?;
        Ok(Ticket {
            label: decision.label,
            banner,
            pii: decision.pii,
            candidates,
            audit,
            rate_headers,
            work,
        })
    }

    /// The `user` role is needed to run a model; a denial is a decision too, recorded
    /// (durably) before the 403 like the monitor's. Blocks on the audit log.
    pub fn role_check(&self, caller: &Caller<'_>, model: &str) -> Result<(), Refusal> {
        let p = caller.principal;
        let Err(refused) = p.may_infer() else {
            return Ok(());
        };
        self.auditor()
            .record_blocking(highside_audit::Event::Decision {
                request_id: caller.request_id.to_owned(),
                actor: actor(p, caller.client),
                route: caller.route.to_owned(),
                model: model.to_owned(),
                clearance: p.clearance.to_string(),
                nationality: p.nationality.to_string(),
                request_label: String::new(),
                model_label: String::new(),
                decision: "deny".into(),
                reasons: vec![format!("role.inference: {}", refused.0)],
                pii: Vec::new(),
            })
            .map_err(Refusal::from)?;
        Err(ApiError::forbidden(refused.0).into())
    }

    /// The monitor's reading of a request: its label (declared in headers and body, and
    /// detected in every client text) and its personal data. Once per request.
    fn read(&self, caller: &Caller<'_>, declared_label: Option<&str>, texts: &[&str]) -> Reading {
        let mut declared: Vec<&str> = caller.header_labels.iter().map(String::as_str).collect();
        if let Some(l) = declared_label {
            declared.push(l);
        }
        self.monitor()
            .read(&declared, texts, pii_action(caller.principal))
    }

    /// The monitor's decision on a reading for a model of `accreditation`, neither logged nor
    /// counted (candidates not taken are assessed too).
    fn assess(
        &self,
        caller: &Caller<'_>,
        model: &str,
        accreditation: &Label,
        reading: &Reading,
    ) -> Decision {
        let p = caller.principal;
        // Operators hold every role, for policies as for everything else.
        let held = if p.is_operator() {
            highside_identity::RoleSet::all()
        } else {
            p.roles
        };
        let roles: Vec<&str> = held.iter().map(|r| r.as_str()).collect();
        let user = p.user.to_string();
        let agency = p.agency.to_string();
        self.monitor().decide_reading(
            &Input {
                access: Access {
                    user: &user,
                    user_name: &p.user_name,
                    agency: &agency,
                    roles: &roles,
                    clearance: p.clearance.label(),
                    nationality: p.nationality.as_str(),
                    model,
                    accreditation,
                },
                declared: &[],
                texts: &[],
                pii: pii_action(p),
            },
            reading,
        )
    }

    /// Logs and counts the decision a request was answered by.
    fn log_decision(&self, caller: &Caller<'_>, model: &str, decision: &Decision) {
        let p = caller.principal;
        let label = self.monitor().encodings().banner(&decision.label);
        if decision.allowed {
            tracing::info!(
                user = %p.user, agency = %p.agency, %model, %label,
                pii = ?decision.pii, "monitor: allowed"
            );
        } else {
            for r in &decision.reasons {
                metrics::counter!("highside_denials_total", "rule" => r.rule.as_str().to_owned())
                    .increment(1);
            }
            let rules: Vec<&str> = decision.reasons.iter().map(|r| r.rule.as_str()).collect();
            tracing::warn!(
                user = %p.user, agency = %p.agency, %model, %label,
                rules = ?rules, "monitor: denied"
            );
        }
    }

    /// Makes a decision record durable (for `model`, accredited `model_label`), before the
    /// request goes anywhere or its denial is answered.
    fn record_decision(
        &self,
        caller: &Caller<'_>,
        who: highside_audit::Actor,
        model: &str,
        model_label: String,
        label: &str,
        decision: &Decision,
    ) -> Result<(), ApiError> {
        let p = caller.principal;
        self.auditor()
            .record_blocking(highside_audit::Event::Decision {
                request_id: caller.request_id.to_owned(),
                actor: who,
                route: caller.route.to_owned(),
                model: model.to_owned(),
                clearance: p.clearance.to_string(),
                nationality: p.nationality.to_string(),
                request_label: label.to_owned(),
                model_label,
                decision: if decision.allowed { "allow" } else { "deny" }.to_owned(),
                reasons: decision
                    .reasons
                    .iter()
                    .map(|r| format!("{}: {}", r.rule, r.message))
                    .collect(),
                pii: decision.pii.iter().map(|s| (*s).to_owned()).collect(),
            })
            .map(|_| ())
    }

    /// Reserves `prompt` + `most` tokens for the request (keyed by its Idempotency-Key, scoped
    /// to agency and user, when it has one) and hands the charge to its completion record; a
    /// refusal leaves the record saying `rate_limited`.
    fn reserve(
        &self,
        caller: &Caller<'_>,
        audit: &mut CompletionAudit,
        model: &str,
        prompt: u64,
        most: u64,
    ) -> Result<RateHeaders, Refusal> {
        let p = caller.principal;
        let subjects = highside_store::Subjects {
            agency: p.agency.to_string(),
            user: p.user.to_string(),
            key: p.key.as_ref().map(ToString::to_string),
        };
        let charge_id = match caller.idempotency_key {
            // Scoped to the agency and user, so nobody else's key collides with theirs.
            Some(k) => format!(
                "idem-{}",
                sha256_hex(format!("{}\n{}\n{k}", subjects.agency, subjects.user).as_bytes())
            ),
            None => caller.request_id.to_owned(),
        };
        match self.meter().admit(
            &charge_id,
            caller.idempotency_key.is_some(),
            &subjects,
            model,
            prompt,
            most,
        ) {
            Ok(a) => {
                audit.charge = Some(a.charge);
                Ok(a.headers)
            }
            Err(refused) => {
                audit.unfinished = Unfinished::RateLimited;
                Err(refused)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! [`Service::admit`] driven directly, with a fake backend: exactly one decision record per
    //! call, no backend call (nor preparation) on any refusal, and the reservation handed back
    //! or settled on every way out.

    use std::sync::atomic::{AtomicUsize, Ordering};

    use highside_audit::{AuditLog, Disk, Options, Signer};
    use highside_identity::{AgencyId, Clearance, Nationality, Role, UserId};
    use highside_label::Encodings;
    use highside_monitor::{Monitor, Policies, PERMIT_ALL};
    use highside_store::{LimitScope, Limits, MeteringStore, SqliteStore};

    use super::*;
    use crate::{Auditor, Meter, Registry};

    struct Node {
        _dir: tempfile::TempDir,
        audit_dir: std::path::PathBuf,
        key: highside_audit::PublicKey,
        store: Arc<SqliteStore>,
        service: Service,
    }

    fn node() -> Node {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("db.sqlite")).unwrap());
        let audit_dir = dir.path().join("audit");
        let (_, signer) = Signer::generate().unwrap();
        let key = signer.public_key();
        let log = AuditLog::open(&audit_dir, signer, Arc::new(Disk), Options::default()).unwrap();
        let auditor = Arc::new(Auditor::new(log, "node-1", &audit_dir, key.clone()));
        let encodings = Arc::new(Encodings::builtin());
        let monitor = Monitor::new(encodings, Policies::parse(PERMIT_ALL).unwrap());
        let meter = Meter::new(store.clone() as Arc<dyn MeteringStore>);
        let service = Service::new(Registry::default(), monitor, auditor, meter);
        Node {
            _dir: dir,
            audit_dir,
            key,
            store,
            service,
        }
    }

    impl Node {
        /// Every record's event, in order, once the log is closed.
        fn records(&self) -> Vec<serde_json::Value> {
            self.service.auditor().close().unwrap();
            let mut out = Vec::new();
            highside_audit::scan(&self.audit_dir, &self.key, false, |_, payload| {
                out.push(serde_json::from_slice(payload).unwrap());
            })
            .unwrap();
            out
        }

        /// This month's ledger.
        fn ledger(&self) -> Result<Vec<highside_store::LedgerEntry>, highside_store::StoreError> {
            self.service.meter().flush();
            let now = time::OffsetDateTime::now_utc();
            let month = format!("{:04}-{:02}", now.year(), u8::from(now.month()));
            self.store.ledger(&month, None)
        }

        fn live_reservations(&self) -> u64 {
            self.service.meter().flush();
            self.store.live_reservations(0).unwrap()
        }
    }

    fn principal(roles: &[Role], clearance: &str) -> Principal {
        Principal {
            user: UserId::generate(),
            user_name: "analyst".into(),
            agency: AgencyId::generate(),
            roles: roles.iter().copied().collect(),
            clearance: Clearance::parse(&Encodings::builtin(), clearance).unwrap(),
            nationality: Nationality::parse("USA").unwrap(),
            key: None,
            pii_action: "off".into(),
        }
    }

    fn caller(p: &Principal) -> Caller<'_> {
        Caller {
            principal: p,
            header_labels: &[],
            request_id: "req-1",
            client: None,
            route: "TEST",
            idempotency_key: None,
        }
    }

    fn secret_model() -> Target<'static> {
        let e = Encodings::builtin();
        Target::Local {
            name: "m",
            accreditation: crate::Accreditation {
                label: e.parse("SECRET").unwrap(),
                banner: "SECRET".into(),
            },
        }
    }

    fn cost() -> Cost {
        Cost {
            prompt_sha256: sha256_hex(b"prompt"),
            prompt_tokens: 10,
            most: 20,
        }
    }

    /// A backend that counts the work it is handed and either finishes it or fails.
    #[derive(Default)]
    struct FakeBackend {
        calls: AtomicUsize,
    }

    impl FakeBackend {
        fn run(&self, mut ticket: Ticket<&'static str>, fail: bool) -> Option<Ticket<()>> {
            assert_eq!(ticket.work, "work");
            self.calls.fetch_add(1, Ordering::SeqCst);
            if fail {
                // Refused before it had the request (say, overloaded): dropped as an error.
                return None;
            }
            ticket.handed_over();
            Some(ticket.split().1)
        }
    }

    fn decisions(records: &[serde_json::Value]) -> Vec<&serde_json::Value> {
        records.iter().filter(|r| r["type"] == "decision").collect()
    }

    fn completions(records: &[serde_json::Value]) -> Vec<&str> {
        records
            .iter()
            .filter(|r| r["type"] == "completion")
            .map(|r| r["finish_reason"].as_str().unwrap())
            .collect()
    }

    /// Limits at the user's agency, so every admission takes a reservation.
    fn limit(node: &Node, p: &Principal, daily: u64) {
        let limits = Limits {
            daily_tokens: Some(daily),
            ..Limits::default()
        };
        node.store
            .set_limits(LimitScope::Agency, &p.agency.to_string(), &limits, "test")
            .unwrap();
    }

    #[test]
    fn an_allowed_request_has_one_decision_its_backend_call_and_a_settled_charge() {
        let node = node();
        let p = principal(&[Role::User], "S");
        limit(&node, &p, 1_000);
        let backend = FakeBackend::default();
        let prepared = AtomicUsize::new(0);
        let ticket = node
            .service
            .admit(&caller(&p), secret_model(), None, &["hello"], |c| {
                assert!(c.is_empty(), "a local model has no deployments");
                prepared.fetch_add(1, Ordering::SeqCst);
                Ok((cost(), "work"))
            })
            .unwrap();
        assert_eq!(ticket.banner, "UNCLASSIFIED");
        assert_eq!(
            node.live_reservations(),
            1,
            "reserved before the backend runs"
        );
        let rest = backend.run(ticket, false).unwrap();
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(rest.audit.finish("stop", 3))
            .unwrap();
        assert_eq!(backend.calls.load(Ordering::SeqCst), 1);
        assert_eq!(prepared.load(Ordering::SeqCst), 1);
        assert_eq!(node.live_reservations(), 0);
        let ledger = node.ledger().unwrap();
        assert_eq!(ledger.len(), 1);
        assert_eq!(
            (ledger[0].prompt_tokens, ledger[0].completion_tokens),
            (10, 3)
        );
        let records = node.records();
        let d = decisions(&records);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0]["decision"], "allow");
        assert_eq!(d[0]["model_label"], "SECRET");
        assert_eq!(completions(&records), ["stop"]);
        let c = records.iter().find(|r| r["type"] == "completion").unwrap();
        assert_eq!(c["prompt_sha256"], sha256_hex(b"prompt"));
        assert_eq!(c["prompt_tokens"], 10);
    }

    #[test]
    fn a_monitor_denial_is_recorded_once_and_nothing_is_prepared_reserved_or_run() {
        let node = node();
        let p = principal(&[Role::User], "S");
        limit(&node, &p, 1_000);
        let prepared = AtomicUsize::new(0);
        // Above the reader's clearance, in the text itself.
        let texts = ["TOP SECRET\nthe plan"];
        let refused = node
            .service
            .admit(&caller(&p), secret_model(), None, &texts, |_| {
                prepared.fetch_add(1, Ordering::SeqCst);
                Ok((cost(), "work"))
            })
            .unwrap_err();
        assert_eq!(refused.error.status, 403);
        assert_eq!(refused.error.code, Some("access_denied"));
        assert_eq!(prepared.load(Ordering::SeqCst), 0);
        assert_eq!(node.live_reservations(), 0);
        let records = node.records();
        let d = decisions(&records);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0]["decision"], "deny");
        assert_eq!(d[0]["request_label"], "TOP SECRET");
        assert!(completions(&records).is_empty(), "{records:?}");
    }

    #[test]
    fn a_caller_without_the_user_role_is_refused_and_recorded_before_the_monitor() {
        let node = node();
        let p = principal(&[Role::Auditor], "TS");
        let refused = node
            .service
            .admit(&caller(&p), secret_model(), None, &["hi"], |_| {
                panic!("prepared for a caller without the role")
            })
            .map(|t: Ticket<()>| t.banner)
            .unwrap_err();
        assert_eq!(refused.error.status, 403);
        let records = node.records();
        let d = decisions(&records);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0]["decision"], "deny");
        assert!(d[0]["reasons"][0]
            .as_str()
            .unwrap()
            .starts_with("role.inference"));
        assert!(completions(&records).is_empty());
    }

    #[test]
    fn a_preparation_error_after_the_decision_is_one_error_record_and_reserves_nothing() {
        let node = node();
        let p = principal(&[Role::User], "S");
        limit(&node, &p, 1_000);
        let refused = node
            .service
            .admit(&caller(&p), secret_model(), None, &["hi"], |_| {
                Err::<(Cost, ()), _>(ApiError::bad_request("bad template", Some("messages")).into())
            })
            .unwrap_err();
        assert_eq!(refused.error.status, 400);
        assert_eq!(node.live_reservations(), 0);
        let records = node.records();
        assert_eq!(decisions(&records).len(), 1);
        assert_eq!(completions(&records), ["error"]);
    }

    #[test]
    fn a_limit_refusal_is_rate_limited_and_the_backend_never_runs() {
        let node = node();
        let p = principal(&[Role::User], "S");
        limit(&node, &p, 5);
        let backend = FakeBackend::default();
        let refused = node
            .service
            .admit(&caller(&p), secret_model(), None, &["hi"], |_| {
                Ok((cost(), "work"))
            })
            .map(|t| backend.run(t, false))
            .unwrap_err();
        assert_eq!(refused.error.status, 429);
        assert_eq!(backend.calls.load(Ordering::SeqCst), 0);
        assert_eq!(node.live_reservations(), 0);
        let records = node.records();
        assert_eq!(decisions(&records).len(), 1);
        assert_eq!(decisions(&records)[0]["decision"], "allow");
        assert_eq!(completions(&records), ["rate_limited"]);
    }

    #[test]
    fn a_backend_refusal_hands_the_reservation_back_and_records_an_error() {
        let node = node();
        let p = principal(&[Role::User], "S");
        limit(&node, &p, 1_000);
        let backend = FakeBackend::default();
        let ticket = node
            .service
            .admit(&caller(&p), secret_model(), None, &["hi"], |_| {
                Ok((cost(), "work"))
            })
            .unwrap();
        assert_eq!(node.live_reservations(), 1);
        assert!(backend.run(ticket, true).is_none());
        assert_eq!(node.live_reservations(), 0);
        assert!(node.ledger().unwrap().is_empty());
        let records = node.records();
        assert_eq!(decisions(&records).len(), 1);
        assert_eq!(completions(&records), ["error"]);
    }

    #[test]
    fn a_ticket_dropped_after_the_backend_had_it_is_cancelled_and_charged_for_the_prompt() {
        let node = node();
        let p = principal(&[Role::User], "S");
        limit(&node, &p, 1_000);
        let backend = FakeBackend::default();
        let ticket = node
            .service
            .admit(&caller(&p), secret_model(), None, &["hi"], |_| {
                Ok((cost(), "work"))
            })
            .unwrap();
        let rest = backend.run(ticket, false).unwrap();
        drop(rest);
        assert_eq!(node.live_reservations(), 0);
        let ledger = node.ledger().unwrap();
        assert_eq!(ledger.len(), 1);
        assert_eq!(
            (ledger[0].prompt_tokens, ledger[0].completion_tokens),
            (10, 0)
        );
        let records = node.records();
        assert_eq!(decisions(&records).len(), 1);
        assert_eq!(completions(&records), ["cancelled"]);
    }
}
