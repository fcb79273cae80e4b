//! The grant rules. Nobody can create or change a user, key or mapping that would hold more
//! than the actor holds: no role the actor lacks, no clearance above the actor's, nothing in
//! another agency unless the actor is an operator.

use crate::{AgencyId, Clearance, KeyId, Nationality, Role, RoleSet, UserId};

/// The authenticated caller of one request.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The user.
    pub user: UserId,
    /// The user's name, for logs and audit.
    pub user_name: String,
    /// The user's agency.
    pub agency: AgencyId,
    /// What this request may do: the user's roles, narrowed by the key's scopes.
    pub roles: RoleSet,
    /// The user's clearance.
    pub clearance: Clearance,
    /// The user's nationality.
    pub nationality: Nationality,
    /// The key used, if the caller authenticated with one (not with a certificate).
    pub key: Option<KeyId>,
    /// The agency's choice for prompts holding personal data (`off`, `flag`, `block`, `cui`).
    pub pii_action: String,
}

/// A refusal, with a reason that names the rule (never protected content). A 403.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Denied(pub String);

fn deny<T>(reason: impl Into<String>) -> Result<T, Denied> {
    Err(Denied(reason.into()))
}

impl Principal {
    /// Whether the caller is an enclave operator.
    pub fn is_operator(&self) -> bool {
        self.roles.contains(Role::Operator)
    }

    /// Whether the caller holds `role` (operators hold every role).
    pub fn has(&self, role: Role) -> bool {
        self.is_operator() || self.roles.contains(role)
    }

    /// The roles the caller may hand out.
    pub fn grantable(&self) -> RoleSet {
        if self.is_operator() {
            RoleSet::all()
        } else {
            self.roles
        }
    }

    /// Whether the caller may see anything of `agency` at all. When not, the answer is 404.
    pub fn can_see_agency(&self, agency: &AgencyId) -> bool {
        self.is_operator() || (self.roles.contains(Role::AgencyAdmin) && *agency == self.agency)
    }

    /// Whether the caller may read `agency`'s plan, invoices and usage: an operator, or the
    /// agency's own administrators and auditors. When not, the answer is 404.
    pub fn can_read_agency_accounts(&self, agency: &AgencyId) -> bool {
        self.is_operator()
            || (*agency == self.agency
                && (self.roles.contains(Role::AgencyAdmin) || self.roles.contains(Role::Auditor)))
    }

    /// The agency (ID as written) a usage report may cover: for an operator, the one asked
    /// for (`None`: all); for an agency's administrators and auditors, their own; for anyone
    /// else, none.
    pub fn usage_report_scope<'a>(
        &'a self,
        asked: Option<&'a str>,
    ) -> Result<Option<&'a str>, Denied> {
        if self.is_operator() {
            return Ok(asked);
        }
        if !(self.roles.contains(Role::AgencyAdmin) || self.roles.contains(Role::Auditor)) {
            return deny("usage reports need the agency-admin or auditor role");
        }
        if asked.is_some_and(|a| a != self.agency.as_str()) {
            return deny("another agency's usage is not yours to see");
        }
        Ok(Some(self.agency.as_str()))
    }

    /// Inference (chat, completions).
    pub fn may_infer(&self) -> Result<(), Denied> {
        if self.has(Role::User) {
            Ok(())
        } else {
            deny("the 'user' role is required for inference")
        }
    }

    /// Creating, changing or disabling agencies: the enclave's business.
    pub fn may_manage_agencies(&self) -> Result<(), Denied> {
        if self.is_operator() {
            Ok(())
        } else {
            deny("only an operator may create or change agencies")
        }
    }

    /// Reading and managing users, keys and certificate mappings of `agency`.
    pub fn may_administer(&self, agency: &AgencyId) -> Result<(), Denied> {
        if self.is_operator() {
            return Ok(());
        }
        if !self.roles.contains(Role::AgencyAdmin) {
            return deny("the 'agency-admin' or 'operator' role is required");
        }
        if *agency != self.agency {
            return deny("agency administrators may act only within their own agency");
        }
        Ok(())
    }

    /// Whether the caller may give someone `roles` and `clearance`.
    pub fn may_grant(&self, roles: RoleSet, clearance: &Clearance) -> Result<(), Denied> {
        if let Some(role) = roles.iter().find(|r| !self.grantable().contains(*r)) {
            return deny(format!(
                "cannot grant the '{role}' role, which you do not hold"
            ));
        }
        if !self.clearance.dominates(clearance) {
            return deny("cannot grant a clearance your own clearance does not dominate");
        }
        Ok(())
    }

    /// Whether the caller may give a user of an agency whose nationality is `agency` the
    /// nationality `n`. Nationality decides releasability, so it is granted like clearance:
    /// only by someone who can vouch for it, an operator or an administrator of an agency of
    /// that nationality.
    pub fn may_vouch_nationality(
        &self,
        agency: Option<Nationality>,
        n: Nationality,
    ) -> Result<(), Denied> {
        if self.is_operator() || agency == Some(n) {
            return Ok(());
        }
        match agency {
            Some(a) => deny(format!(
                "cannot vouch for nationality {n}: an agency administrator sets only their agency's nationality ({a}); an operator sets any other"
            )),
            None => deny(format!(
                "cannot vouch for nationality {n}: the agency has no nationality yet, so only an operator sets its users' nationality"
            )),
        }
    }

    /// Whether the caller may act on an existing user (change, disable, issue keys, map
    /// certificates): the target must hold nothing the caller could not grant, so an
    /// administrator can never take over someone more privileged than themselves.
    pub fn may_act_on(
        &self,
        target: &UserId,
        agency: &AgencyId,
        roles: RoleSet,
        clearance: &Clearance,
    ) -> Result<(), Denied> {
        if *target == self.user {
            return Ok(());
        }
        self.may_administer(agency)?;
        self.may_grant(roles, clearance)
            .map_err(|_| Denied("cannot act on a user who holds more than you do".into()))
    }

    /// Whether a key for a user holding `owner_roles` may carry `scopes`: never more than the
    /// owner holds nor more than the caller could grant.
    pub fn may_scope_key(&self, owner_roles: RoleSet, scopes: RoleSet) -> Result<(), Denied> {
        let owner = if owner_roles.contains(Role::Operator) {
            RoleSet::all()
        } else {
            owner_roles
        };
        if let Some(role) = scopes.iter().find(|r| !owner.contains(*r)) {
            return deny(format!("the key's owner does not hold the '{role}' role"));
        }
        if let Some(role) = scopes.iter().find(|r| !self.grantable().contains(*r)) {
            return deny(format!(
                "cannot issue a key with the '{role}' role, which you do not hold"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cl(s: &str) -> Clearance {
        Clearance::parse(&highside_label::Encodings::builtin(), s).unwrap()
    }

    fn principal(roles: &[Role], clearance: &str) -> Principal {
        Principal {
            user: UserId::generate(),
            user_name: "p".into(),
            agency: AgencyId::generate(),
            roles: roles.iter().copied().collect(),
            clearance: cl(clearance),
            nationality: Nationality::parse("USA").unwrap(),
            key: None,
            pii_action: "off".into(),
        }
    }

    #[test]
    fn only_those_who_can_vouch_grant_nationality() {
        let usa = Nationality::parse("USA").unwrap();
        let gbr = Nationality::parse("GBR").unwrap();
        let admin = principal(&[Role::AgencyAdmin, Role::User], "S");
        assert!(admin.may_vouch_nationality(Some(gbr), gbr).is_ok());
        assert!(admin.may_vouch_nationality(Some(gbr), usa).is_err());
        assert!(admin.may_vouch_nationality(None, usa).is_err());
        let op = principal(&[Role::Operator], "TS");
        assert!(op.may_vouch_nationality(None, gbr).is_ok());
        assert!(op.may_vouch_nationality(Some(usa), gbr).is_ok());
    }

    #[test]
    fn roles_gate_actions() {
        let auditor = principal(&[Role::Auditor], "TS");
        assert!(auditor.may_infer().is_err());
        assert!(auditor.may_administer(&auditor.agency).is_err());
        let op = principal(&[Role::Operator], "TS");
        assert!(op.may_infer().is_ok());
        assert!(op.may_manage_agencies().is_ok());
        assert!(op.may_administer(&AgencyId::generate()).is_ok());
        let admin = principal(&[Role::AgencyAdmin, Role::User], "S");
        assert!(admin.may_manage_agencies().is_err());
        assert!(admin.may_administer(&admin.agency).is_ok());
        assert!(admin.may_administer(&AgencyId::generate()).is_err());
        assert!(!admin.can_see_agency(&AgencyId::generate()));
        assert!(!principal(&[Role::User], "S").can_see_agency(&admin.agency));
    }

    #[test]
    fn agency_accounts_are_read_by_operators_and_the_agencys_admins_and_auditors() {
        let op = principal(&[Role::Operator], "TS");
        let admin = principal(&[Role::AgencyAdmin, Role::User], "S");
        let mut auditor = principal(&[Role::Auditor], "S");
        auditor.agency = admin.agency.clone();
        let mut user = principal(&[Role::User], "S");
        user.agency = admin.agency.clone();
        let other = AgencyId::generate();
        assert!(op.can_read_agency_accounts(&other));
        assert!(admin.can_read_agency_accounts(&admin.agency));
        assert!(auditor.can_read_agency_accounts(&admin.agency));
        assert!(!admin.can_read_agency_accounts(&other));
        assert!(!auditor.can_read_agency_accounts(&other));
        assert!(!user.can_read_agency_accounts(&admin.agency));
        // Usage reports: operators as asked, the others confined to their own agency.
        assert_eq!(op.usage_report_scope(None).unwrap(), None);
        assert_eq!(op.usage_report_scope(Some("x")).unwrap(), Some("x"));
        let own = admin.agency.as_str();
        assert_eq!(admin.usage_report_scope(None).unwrap(), Some(own));
        assert_eq!(auditor.usage_report_scope(Some(own)).unwrap(), Some(own));
        assert!(admin.usage_report_scope(Some(other.as_str())).is_err());
        assert!(user.usage_report_scope(None).is_err());
    }

    #[test]
    fn no_amplification() {
        let admin = principal(&[Role::AgencyAdmin, Role::User], "S//SI");
        let s = cl("S");
        let user = RoleSet::parse_list("user").unwrap();
        assert!(admin.may_grant(user, &s).is_ok());
        assert!(admin
            .may_grant(RoleSet::parse_list("operator").unwrap(), &s)
            .is_err());
        assert!(admin
            .may_grant(RoleSet::parse_list("auditor").unwrap(), &s)
            .is_err());
        assert!(admin.may_grant(user, &cl("TS")).is_err());
        assert!(admin.may_grant(user, &cl("S//TK")).is_err());
        // Keys: never more than the owner holds, never more than the issuer could grant.
        assert!(admin.may_scope_key(user, user).is_ok());
        assert!(admin
            .may_scope_key(user, RoleSet::parse_list("user,agency-admin").unwrap())
            .is_err());
        let op = principal(&[Role::Operator], "TS");
        assert!(op
            .may_scope_key(RoleSet::parse_list("operator").unwrap(), user)
            .is_ok());
        // Acting on someone above you is refused, even in your own agency.
        let target = UserId::generate();
        let ts = cl("TS");
        assert!(admin.may_act_on(&target, &admin.agency, user, &ts).is_err());
        assert!(admin
            .may_act_on(
                &target,
                &admin.agency,
                RoleSet::parse_list("operator").unwrap(),
                &s
            )
            .is_err());
        assert!(admin.may_act_on(&target, &admin.agency, user, &s).is_ok());
        assert!(admin
            .may_act_on(&admin.user, &admin.agency, RoleSet::all(), &ts)
            .is_ok());
    }

    fn arb_roles() -> impl Strategy<Value = RoleSet> {
        proptest::collection::vec(proptest::sample::select(Role::ALL), 0..4)
            .prop_map(|v| v.into_iter().collect())
    }

    fn arb_clearance() -> impl Strategy<Value = Clearance> {
        (
            "U|CUI|C|S|TS",
            proptest::collection::btree_set("SI|TK", 0..3),
        )
            .prop_map(|(l, cs)| {
                let mut s = l;
                if !cs.is_empty() {
                    s.push_str("//");
                    s.push_str(&cs.into_iter().collect::<Vec<_>>().join("/"));
                }
                cl(&s)
            })
    }

    proptest! {
        // Whatever is granted is held: the granted roles are within the granter's, unless the
        // granter is an operator, and the clearance is dominated by the granter's.
        #[test]
        fn grants_never_exceed_the_granter(actor in arb_roles(), ac in arb_clearance(), roles in arb_roles(), c in arb_clearance()) {
            let mut p = principal(&[], "U");
            p.roles = actor;
            p.clearance = ac.clone();
            if p.may_grant(roles, &c).is_ok() {
                prop_assert!(actor.contains(Role::Operator) || roles.is_subset(actor));
                prop_assert!(ac.dominates(&c));
            }
        }

        #[test]
        fn keys_never_exceed_owner_or_issuer(actor in arb_roles(), owner in arb_roles(), scopes in arb_roles()) {
            let mut p = principal(&[], "U");
            p.roles = actor;
            if p.may_scope_key(owner, scopes).is_ok() {
                prop_assert!(owner.contains(Role::Operator) || scopes.is_subset(owner));
                prop_assert!(actor.contains(Role::Operator) || scopes.is_subset(actor));
            }
        }
    }
}
