//! The admin operations. Each takes the caller's principal first and applies, in order:
//! the agency wall (another agency's objects do not exist for a non-operator: 404), the role
//! check (403), then the grant rules (403) before anything is written.

use std::sync::Arc;

use highside_identity::{
    AgencyId, ApiKeySecret, AwsKeyMaster, AwsSecret, Branch, CertKind, CertMappingId, Clearance,
    Denied, KeyHash, KeyId, KeyKind, KeyPrefix, KeySalt, Nationality, Principal, Role, RoleSet,
    Status, UserId,
};
use highside_store::{
    AgencyRecord, ApiKeyRecord, CertMappingRecord, IdentityStore, LimitScope, Page, Scope,
    StoreError, UserRecord,
};

use crate::api::{
    CreateAgency, CreateCertMapping, CreateKey, CreateUser, List, ListQuery, UpdateAgency,
    UpdateUser,
};
use crate::{now_rfc3339, AdminError};
use highside_label::Encodings;
use highside_monitor::PiiAction;

const DEFAULT_PAGE: u32 = 20;
const MAX_PAGE: u32 = 100;
const MAX_NAME: usize = 128;
const MAX_CERT_VALUE: usize = 1024;

/// A created key: its record and the secret, shown once and never again.
#[derive(Debug)]
pub struct Created {
    /// The stored record.
    pub record: ApiKeyRecord,
    /// The key itself.
    pub secret: ApiKeySecret,
}

/// A created AWS access key pair: the access key ID is `record.prefix`; the secret access key
/// is shown once and never again.
#[derive(Debug)]
pub struct CreatedAccessKey {
    /// The stored record.
    pub record: ApiKeyRecord,
    /// The secret access key.
    pub secret: AwsSecret,
}

fn name(param: &'static str, value: &str, max: usize) -> Result<String, AdminError> {
    let v = value.trim();
    if v.is_empty() || v.chars().count() > max {
        return Err(AdminError::invalid(
            param,
            format!("'{param}' must be 1 to {max} characters"),
        ));
    }
    if v.chars().any(char::is_control) {
        return Err(AdminError::invalid(
            param,
            format!("'{param}' may not contain control characters"),
        ));
    }
    Ok(v.to_owned())
}

fn clearance(encodings: &Encodings, value: &str) -> Result<Clearance, AdminError> {
    Clearance::parse(encodings, value).map_err(|e| AdminError::invalid("clearance", e.to_string()))
}

fn pii_action(value: &str) -> Result<String, AdminError> {
    value
        .parse::<PiiAction>()
        .map(|a| a.as_str().to_owned())
        .map_err(|e| AdminError::invalid("pii_action", e.to_string()))
}

fn nationality(value: &str) -> Result<Nationality, AdminError> {
    Nationality::parse(value).map_err(|e| AdminError::invalid("nationality", e.to_string()))
}

fn page(q: &ListQuery) -> Result<Page, AdminError> {
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(AdminError::invalid(
            "limit",
            format!("'limit' must be 1 to {MAX_PAGE}"),
        ));
    }
    if q.after.as_ref().is_some_and(|a| a.len() > 64) {
        return Err(AdminError::invalid("after", "'after' is not an ID"));
    }
    // One extra row tells whether another page follows.
    Ok(Page {
        limit: limit + 1,
        after: q.after.clone(),
    })
}

fn list<T>(mut rows: Vec<T>, page: &Page, id: impl Fn(&T) -> String) -> List<T> {
    let has_more = rows.len() > (page.limit - 1) as usize;
    rows.truncate((page.limit - 1) as usize);
    List {
        object: "list".into(),
        first_id: rows.first().map(&id),
        last_id: rows.last().map(&id),
        has_more,
        data: rows,
    }
}

/// Whether a key carries limits of its own (answered by the metering store).
pub type KeyLimits = Arc<dyn Fn(&KeyId) -> Result<bool, StoreError> + Send + Sync>;

/// The admin operations over one identity store.
#[derive(Clone)]
pub struct Admin {
    store: Arc<dyn IdentityStore>,
    encodings: Arc<Encodings>,
    aws: Option<Arc<AwsKeyMaster>>,
    key_limits: Option<KeyLimits>,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin").finish_non_exhaustive()
    }
}

/// The rule for reading an agency's accounts (its plan, usage and invoices): an agency whose
/// accounts the caller may not read does not exist for it.
pub fn may_read_accounts(p: &Principal, agency: &AgencyId) -> Result<(), AdminError> {
    if p.can_read_agency_accounts(agency) {
        Ok(())
    } else {
        Err(AdminError::NotFound("agency"))
    }
}

impl Admin {
    /// Operates on `store`, parsing clearances against `encodings`.
    pub fn new(store: Arc<dyn IdentityStore>, encodings: Arc<Encodings>) -> Self {
        Self {
            store,
            encodings,
            aws: None,
            key_limits: None,
        }
    }

    /// Refuses new keys to a caller whose key carries limits of its own (`limits`): a key it
    /// minted would not be bound by them.
    pub fn with_key_limits(mut self, limits: KeyLimits) -> Self {
        self.key_limits = Some(limits);
        self
    }

    /// Issues AWS access key pairs whose secrets derive from `master`.
    pub fn with_aws_master(mut self, master: Arc<AwsKeyMaster>) -> Self {
        self.aws = Some(master);
        self
    }

    /// Whether `p` may act on `user` (see `Principal::may_act_on`): the one rule for changing
    /// anything of someone else's, identity and limits alike.
    fn may_act_on(&self, p: &Principal, user: &UserRecord) -> Result<(), AdminError> {
        let held = self.held(p, user)?;
        Ok(p.may_act_on(&user.id, &user.agency_id, user.roles, &held)?)
    }

    /// A stored user's clearance. One that no longer parses (the encodings changed) counts
    /// as more than anyone but an operator holds, so only an operator can act on, and fix, it.
    fn held(&self, p: &Principal, user: &UserRecord) -> Result<Clearance, AdminError> {
        match Clearance::parse(&self.encodings, &user.clearance) {
            Ok(c) => Ok(c),
            Err(_) if p.is_operator() => Ok(Clearance::lowest(&self.encodings)),
            Err(_) => Err(Denied("cannot act on a user who holds more than you do".into()).into()),
        }
    }

    // ---- agencies ----

    /// Creates an agency (operators only).
    pub fn create_agency(
        &self,
        p: &Principal,
        req: CreateAgency,
    ) -> Result<AgencyRecord, AdminError> {
        p.may_manage_agencies()?;
        let now = now_rfc3339();
        let agency = AgencyRecord {
            id: AgencyId::generate(),
            name: name("name", &req.name, MAX_NAME)?,
            branch: req.branch,
            status: Status::Active,
            created_at: now.clone(),
            updated_at: now,
            pii_action: pii_action(req.pii_action.as_deref().unwrap_or("off"))?,
            nationality: req.nationality.as_deref().map(nationality).transpose()?,
        };
        self.store.insert_agency(&agency)?;
        Ok(agency)
    }

    /// An agency the caller belongs to, or any agency for an operator.
    pub fn get_agency(&self, p: &Principal, id: &str) -> Result<AgencyRecord, AdminError> {
        let id = AgencyId::parse(id).ok_or(AdminError::NotFound("agency"))?;
        if !(p.is_operator() || id == p.agency) {
            return Err(AdminError::NotFound("agency"));
        }
        self.store
            .get_agency(&id)?
            .ok_or(AdminError::NotFound("agency"))
    }

    /// Every agency for an operator; the caller's own for anyone else.
    pub fn list_agencies(
        &self,
        p: &Principal,
        q: &ListQuery,
    ) -> Result<List<AgencyRecord>, AdminError> {
        let page = page(q)?;
        let only = if p.is_operator() {
            q.agency_id.clone()
        } else {
            Some(p.agency.clone())
        };
        let rows = self.store.list_agencies(only.as_ref(), &page)?;
        Ok(list(rows, &page, |a| a.id.to_string()))
    }

    /// Changes an agency (operators only; an operator cannot disable their own agency).
    pub fn update_agency(
        &self,
        p: &Principal,
        id: &str,
        req: UpdateAgency,
    ) -> Result<AgencyRecord, AdminError> {
        let mut agency = self.get_agency(p, id)?;
        p.may_manage_agencies()?;
        if let Some(n) = &req.name {
            agency.name = name("name", n, MAX_NAME)?;
        }
        if let Some(b) = req.branch {
            agency.branch = b;
        }
        if let Some(s) = req.status {
            if s == Status::Disabled && agency.id == p.agency {
                return Err(AdminError::Conflict(
                    "you cannot disable your own agency".into(),
                ));
            }
            agency.status = s;
        }
        if let Some(a) = &req.pii_action {
            agency.pii_action = pii_action(a)?;
        }
        if let Some(n) = &req.nationality {
            agency.nationality = Some(nationality(n)?);
        }
        agency.updated_at = now_rfc3339();
        self.store.update_agency(&agency)?;
        Ok(agency)
    }

    // ---- users ----

    /// Loads a user, hiding other agencies' users from non-operators.
    fn visible_user(&self, p: &Principal, id: &UserId) -> Result<UserRecord, AdminError> {
        let user = self
            .store
            .get_user(id)?
            .ok_or(AdminError::NotFound("user"))?;
        if !(p.is_operator() || user.agency_id == p.agency) {
            return Err(AdminError::NotFound("user"));
        }
        Ok(user)
    }

    /// Loads a user named in a request body. For non-operators, a user of another agency and
    /// a user that does not exist get the same 403, so the answer reveals nothing.
    fn target_user(&self, p: &Principal, id: &UserId) -> Result<UserRecord, AdminError> {
        let found = self.store.get_user(id)?;
        match found {
            Some(u) if p.is_operator() || u.agency_id == p.agency => Ok(u),
            None if p.is_operator() => Err(AdminError::NotFound("user")),
            _ => Err(Denied("you may act only on users of your own agency".into()).into()),
        }
    }

    /// Creates a user with no more than the caller holds.
    pub fn create_user(&self, p: &Principal, req: CreateUser) -> Result<UserRecord, AdminError> {
        let agency_id = req.agency_id.clone().unwrap_or_else(|| p.agency.clone());
        p.may_administer(&agency_id)?;
        let agency = self
            .store
            .get_agency(&agency_id)?
            .ok_or(AdminError::NotFound("agency"))?;
        let roles = req
            .roles
            .unwrap_or_else(|| [Role::User].into_iter().collect());
        let clearance = clearance(&self.encodings, &req.clearance)?;
        p.may_grant(roles, &clearance)?;
        let nationality = nationality(&req.nationality)?;
        p.may_vouch_nationality(agency.nationality, nationality)?;
        let now = now_rfc3339();
        let user = UserRecord {
            id: UserId::generate(),
            agency_id: agency.id,
            name: name("name", &req.name, MAX_NAME)?,
            clearance: clearance.to_string(),
            nationality,
            roles,
            status: Status::Active,
            created_at: now.clone(),
            updated_at: now,
        };
        self.store.insert_user(&user)?;
        Ok(user)
    }

    /// A user: yourself, or one of your agency's as its administrator.
    pub fn get_user(&self, p: &Principal, id: &str) -> Result<UserRecord, AdminError> {
        let id = UserId::parse(id).ok_or(AdminError::NotFound("user"))?;
        let user = self.visible_user(p, &id)?;
        if user.id != p.user {
            p.may_administer(&user.agency_id)?;
        }
        Ok(user)
    }

    /// Users of the caller's agency (or any, for an operator).
    pub fn list_users(&self, p: &Principal, q: &ListQuery) -> Result<List<UserRecord>, AdminError> {
        let page = page(q)?;
        let agency = match (&q.agency_id, p.is_operator()) {
            (a, true) => a.clone(),
            (Some(a), false) if *a != p.agency => return Err(AdminError::NotFound("agency")),
            _ => Some(p.agency.clone()),
        };
        if let Some(a) = &agency {
            p.may_administer(a)?;
        }
        let scope = Scope {
            agency,
            user: q.user_id.clone(),
        };
        let rows = self.store.list_users(&scope, &page)?;
        Ok(list(rows, &page, |u| u.id.to_string()))
    }

    /// Changes a user; the caller must outrank the user both before and after the change.
    pub fn update_user(
        &self,
        p: &Principal,
        id: &str,
        req: UpdateUser,
    ) -> Result<UserRecord, AdminError> {
        let id = UserId::parse(id).ok_or(AdminError::NotFound("user"))?;
        let mut user = self.visible_user(p, &id)?;
        p.may_administer(&user.agency_id)?;
        let mut held = self.held(p, &user)?;
        p.may_act_on(&user.id, &user.agency_id, user.roles, &held)?;
        if let Some(n) = &req.name {
            user.name = name("name", n, MAX_NAME)?;
        }
        if let Some(c) = &req.clearance {
            held = clearance(&self.encodings, c)?;
            user.clearance = held.to_string();
        }
        if let Some(n) = &req.nationality {
            let n = nationality(n)?;
            if n != user.nationality {
                // Nobody vouches for themselves: not even an operator changes their own.
                if user.id == p.user {
                    return Err(Denied("nobody may change their own nationality".into()).into());
                }
                let agency = self
                    .store
                    .get_agency(&user.agency_id)?
                    .ok_or(AdminError::NotFound("agency"))?;
                p.may_vouch_nationality(agency.nationality, n)?;
                user.nationality = n;
            }
        }
        if let Some(r) = req.roles {
            user.roles = r;
        }
        if req.roles.is_some() || req.clearance.is_some() {
            p.may_grant(user.roles, &held)?;
        }
        if user.id == p.user {
            if req.status == Some(Status::Disabled) {
                return Err(AdminError::Conflict("you cannot disable yourself".into()));
            }
            if p.is_operator() && !user.roles.contains(Role::Operator) {
                return Err(AdminError::Conflict(
                    "you cannot remove your own operator role".into(),
                ));
            }
        }
        if let Some(s) = req.status {
            user.status = s;
        }
        user.updated_at = now_rfc3339();
        self.store.update_user(&user)?;
        Ok(user)
    }

    // ---- keys ----

    /// Issues a bearer key for yourself or, as an administrator, for a user you outrank.
    pub fn create_key(&self, p: &Principal, req: CreateKey) -> Result<Created, AdminError> {
        if req.kind.is_some_and(|k| k != KeyKind::Bearer) {
            return Err(AdminError::invalid(
                "kind",
                "this operation issues bearer keys",
            ));
        }
        let (prefix, secret) = ApiKeySecret::generate();
        let record = self.key_record(p, &req, prefix, secret.hash(), KeyKind::Bearer, None)?;
        self.store.insert_key(&record)?;
        Ok(Created { record, secret })
    }

    /// Issues an AWS access key pair (Signature V4) under the same rules as a bearer key.
    pub fn create_access_key(
        &self,
        p: &Principal,
        req: CreateKey,
    ) -> Result<CreatedAccessKey, AdminError> {
        let master = self.aws.as_ref().ok_or_else(|| {
            AdminError::Conflict("this server has no AWS key master: access keys are off".into())
        })?;
        // The prefix generator's secret half is discarded: the access key ID is the prefix.
        let (prefix, _) = ApiKeySecret::generate();
        let salt = KeySalt::generate();
        let secret = master.derive(&prefix, &salt);
        let record = self.key_record(p, &req, prefix, secret.hash(), KeyKind::Aws, Some(salt))?;
        self.store.insert_key(&record)?;
        Ok(CreatedAccessKey { record, secret })
    }

    /// The record of a new key of either kind, after every grant rule.
    fn key_record(
        &self,
        p: &Principal,
        req: &CreateKey,
        prefix: KeyPrefix,
        secret_hash: KeyHash,
        kind: KeyKind,
        salt: Option<KeySalt>,
    ) -> Result<ApiKeyRecord, AdminError> {
        let owner_id = req.user_id.clone().unwrap_or_else(|| p.user.clone());
        let owner = self.target_user(p, &owner_id)?;
        if owner.id != p.user {
            self.may_act_on(p, &owner)?;
        }
        if owner.status != Status::Active {
            return Err(AdminError::Conflict("the user is disabled".into()));
        }
        let held = if owner.roles.contains(Role::Operator) {
            RoleSet::all()
        } else {
            owner.roles
        };
        let scopes = req.scopes.unwrap_or(owner.roles.intersection(held));
        if scopes.is_empty() {
            return Err(AdminError::invalid(
                "scopes",
                "a key needs at least one scope",
            ));
        }
        p.may_scope_key(owner.roles, scopes)?;
        let when = match &req.expires_at {
            None => None,
            Some(t) => {
                let when = crate::parse_time(t).ok_or_else(|| {
                    AdminError::invalid("expires_at", "'expires_at' must be an RFC 3339 time")
                })?;
                if when <= time::OffsetDateTime::now_utc() {
                    return Err(AdminError::invalid(
                        "expires_at",
                        "'expires_at' is in the past",
                    ));
                }
                Some(when)
            }
        };
        self.may_mint(p, when)?;
        let expires_at = when.map(crate::format_time);
        Ok(ApiKeyRecord {
            id: KeyId::generate(),
            prefix,
            secret_hash,
            user_id: owner.id,
            name: name("name", &req.name, MAX_NAME)?,
            scopes,
            expires_at,
            created_at: now_rfc3339(),
            created_by: p.user.clone(),
            last_used_at: None,
            revoked_at: None,
            kind,
            salt,
            parent: p.key.clone(),
        })
    }

    /// A key minted by a request authenticated with a key inherits that key's bounds: it may
    /// not outlive it, and a key that carries limits of its own mints none (its keys would
    /// shed them). Certificate-authenticated callers have no key to inherit from.
    fn may_mint(
        &self,
        p: &Principal,
        expires: Option<time::OffsetDateTime>,
    ) -> Result<(), AdminError> {
        let Some(parent) = &p.key else {
            return Ok(());
        };
        let parent = self.store.get_key(parent)?.ok_or(Denied(
            "the key this request was made with no longer exists".into(),
        ))?;
        if let Some(limit) = &parent.expires_at {
            // An expiry that does not parse is treated as already past: deny on the unknown.
            let bound = crate::parse_time(limit);
            let within = matches!((expires, bound), (Some(e), Some(b)) if e <= b);
            if !within {
                return Err(Denied(format!(
                    "a key may not outlive the key that creates it: give 'expires_at' no later than {limit}"
                ))
                .into());
            }
        }
        if let Some(limits) = &self.key_limits {
            if limits(&parent.id)? {
                return Err(Denied(
                    "a key that carries limits of its own cannot create keys (they would not be bound by its limits); use a key without limits"
                        .into(),
                )
                .into());
            }
        }
        Ok(())
    }

    // ---- limits ----

    /// The agency a limit's subject belongs to, if `p` may see the subject at all.
    pub fn limits_subject(
        &self,
        p: &Principal,
        scope: LimitScope,
        id: &str,
    ) -> Result<AgencyId, AdminError> {
        match scope {
            LimitScope::Agency => Ok(self.get_agency(p, id)?.id),
            LimitScope::User => Ok(self.get_user(p, id)?.agency_id),
            LimitScope::Key => {
                let (_, owner) = self.visible_key(p, id)?;
                Ok(owner.agency_id)
            }
        }
    }

    /// Whether `p` may set the limits of a subject; its agency if so. An agency's own limits
    /// are an operator's to set; a user's or a key's, an administrator's who may act on that
    /// user (the rule every user change follows: never on someone who holds more), and nobody
    /// sets their own (an operator may, as the enclave's top).
    pub fn may_set_limits(
        &self,
        p: &Principal,
        scope: LimitScope,
        id: &str,
    ) -> Result<AgencyId, AdminError> {
        let agency = self.limits_subject(p, scope, id)?;
        let user = match scope {
            LimitScope::Agency => {
                p.may_manage_agencies()
                    .map_err(|_| Denied("only an operator may set an agency's limits".into()))?;
                return Ok(agency);
            }
            LimitScope::User => {
                let uid = UserId::parse(id).ok_or(AdminError::NotFound("user"))?;
                self.visible_user(p, &uid)?
            }
            LimitScope::Key => {
                let (key, owner) = self.visible_key(p, id)?;
                // Keys it minted for its own user would not be bound by its limits.
                if self.store.has_own_children(&key.id)? {
                    return Err(AdminError::Conflict(
                        "this key has minted keys of its own user, which its limits would not bind: revoke them first, or set the limits on the user".into(),
                    ));
                }
                owner
            }
        };
        p.may_administer(&agency)?;
        if user.id == p.user {
            if !p.is_operator() {
                return Err(
                    Denied("your own limits are set by an administrator above you".into()).into(),
                );
            }
            return Ok(agency);
        }
        self.may_act_on(p, &user)?;
        Ok(agency)
    }

    /// Loads a key the caller may see: their own, or one of their agency's as its administrator.
    fn visible_key(
        &self,
        p: &Principal,
        id: &str,
    ) -> Result<(ApiKeyRecord, UserRecord), AdminError> {
        let id = KeyId::parse(id).ok_or(AdminError::NotFound("key"))?;
        let key = self
            .store
            .get_key(&id)?
            .ok_or(AdminError::NotFound("key"))?;
        let owner = self
            .visible_user(p, &key.user_id)
            .map_err(|_| AdminError::NotFound("key"))?;
        if owner.id != p.user {
            p.may_administer(&owner.agency_id)?;
        }
        Ok((key, owner))
    }

    /// A key's record (never its secret).
    pub fn get_key(&self, p: &Principal, id: &str) -> Result<ApiKeyRecord, AdminError> {
        Ok(self.visible_key(p, id)?.0)
    }

    /// Keys: your own; your agency's as its administrator; any as an operator.
    pub fn list_keys(
        &self,
        p: &Principal,
        q: &ListQuery,
    ) -> Result<List<ApiKeyRecord>, AdminError> {
        let page = page(q)?;
        let scope = if p.is_operator() {
            Scope {
                agency: q.agency_id.clone(),
                user: q.user_id.clone(),
            }
        } else if p.roles.contains(Role::AgencyAdmin) {
            if q.agency_id.as_ref().is_some_and(|a| *a != p.agency) {
                return Err(AdminError::NotFound("agency"));
            }
            Scope {
                agency: Some(p.agency.clone()),
                user: q.user_id.clone(),
            }
        } else {
            if q.user_id.as_ref().is_some_and(|u| *u != p.user) || q.agency_id.is_some() {
                return Err(Denied("you may list only your own keys".into()).into());
            }
            Scope {
                agency: None,
                user: Some(p.user.clone()),
            }
        };
        let rows = self.store.list_keys(&scope, &page)?;
        Ok(list(rows, &page, |k| k.id.to_string()))
    }

    /// Revokes a key at once: yours, or one of a user you outrank.
    pub fn revoke_key(&self, p: &Principal, id: &str) -> Result<ApiKeyRecord, AdminError> {
        let (key, owner) = self.visible_key(p, id)?;
        self.may_act_on(p, &owner)?;
        self.store.revoke_key(&key.id, &now_rfc3339())?;
        self.store
            .get_key(&key.id)?
            .ok_or(AdminError::NotFound("key"))
    }

    // ---- certificate mappings ----

    /// Maps a certificate subject or SAN to a user you outrank (administrators only). A
    /// subject is stored as its canonical distinguished name and matched RDN by RDN. For an
    /// administrator, a mapping refused for any reason (a user of another agency or none, a
    /// user above them, a value another mapping already uses) gets the same 403, so the answer
    /// reveals nothing about other agencies' certificates; an operator resolves conflicts.
    pub fn create_cert_mapping(
        &self,
        p: &Principal,
        req: CreateCertMapping,
    ) -> Result<CertMappingRecord, AdminError> {
        let value = match req.kind {
            CertKind::Subject => {
                highside_identity::parse_dn(name("value", &req.value, MAX_CERT_VALUE)?.as_str())
                    .map_err(|e| AdminError::invalid("value", e.to_string()))?
            }
            CertKind::San => name("value", &req.value, MAX_CERT_VALUE)?,
        };
        p.may_administer(&p.agency)?;
        // A mapping is a credential that never expires and carries no key's limits: a key
        // that has either makes none.
        self.may_mint(p, None).map_err(|e| match e {
            AdminError::Forbidden(_) => AdminError::Forbidden(Denied(
                "a key that expires or carries limits maps no certificate (the mapping would outlive or escape them)".into(),
            )),
            e => e,
        })?;
        let refused = || -> AdminError {
            Denied(
                "this certificate mapping cannot be made: an administrator maps certificate values no other mapping uses, to users of their own agency who hold no more than they do; an operator resolves conflicts"
                    .into(),
            )
            .into()
        };
        let made = (|| {
            let user = self.target_user(p, &req.user_id)?;
            p.may_administer(&user.agency_id)?;
            self.may_act_on(p, &user)?;
            let mapping = CertMappingRecord {
                id: CertMappingId::generate(),
                user_id: user.id,
                kind: req.kind,
                value,
                created_at: now_rfc3339(),
            };
            self.store.insert_cert_mapping(&mapping)?;
            Ok(mapping)
        })();
        match made {
            Err(AdminError::Forbidden(_) | AdminError::Conflict(_)) if !p.is_operator() => {
                Err(refused())
            }
            other => other,
        }
    }

    fn visible_mapping(
        &self,
        p: &Principal,
        id: &str,
    ) -> Result<(CertMappingRecord, UserRecord), AdminError> {
        let id = CertMappingId::parse(id).ok_or(AdminError::NotFound("certificate mapping"))?;
        let m = self
            .store
            .get_cert_mapping(&id)?
            .ok_or(AdminError::NotFound("certificate mapping"))?;
        let user = self
            .visible_user(p, &m.user_id)
            .map_err(|_| AdminError::NotFound("certificate mapping"))?;
        p.may_administer(&user.agency_id)?;
        Ok((m, user))
    }

    /// A certificate mapping.
    pub fn get_cert_mapping(
        &self,
        p: &Principal,
        id: &str,
    ) -> Result<CertMappingRecord, AdminError> {
        Ok(self.visible_mapping(p, id)?.0)
    }

    /// Certificate mappings of your agency (any, for an operator).
    pub fn list_cert_mappings(
        &self,
        p: &Principal,
        q: &ListQuery,
    ) -> Result<List<CertMappingRecord>, AdminError> {
        let page = page(q)?;
        let agency = if p.is_operator() {
            q.agency_id.clone()
        } else {
            if q.agency_id.as_ref().is_some_and(|a| *a != p.agency) {
                return Err(AdminError::NotFound("agency"));
            }
            p.may_administer(&p.agency)?;
            Some(p.agency.clone())
        };
        let rows = self.store.list_cert_mappings(
            &Scope {
                agency,
                user: q.user_id.clone(),
            },
            &page,
        )?;
        Ok(list(rows, &page, |m| m.id.to_string()))
    }

    /// Removes a certificate mapping.
    pub fn delete_cert_mapping(
        &self,
        p: &Principal,
        id: &str,
    ) -> Result<CertMappingRecord, AdminError> {
        let (m, user) = self.visible_mapping(p, id)?;
        self.may_act_on(p, &user)?;
        self.store.delete_cert_mapping(&m.id)?;
        Ok(m)
    }
}

/// What `highside init` creates: the first agency, its operator, and the operator's key.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    /// The operator's agency.
    pub agency_name: String,
    /// Its branch.
    pub branch: Branch,
    /// The operator's name.
    pub operator_name: String,
    /// The operator's clearance (the enclave's system high).
    pub clearance: String,
    /// The operator's nationality.
    pub nationality: String,
}

/// Creates the first operator and returns their one-time key; fails if any user exists.
pub fn bootstrap(
    store: &dyn IdentityStore,
    encodings: &Encodings,
    b: &Bootstrap,
) -> Result<(UserRecord, Created), AdminError> {
    let now = now_rfc3339();
    let agency = AgencyRecord {
        id: AgencyId::generate(),
        name: name("agency", &b.agency_name, MAX_NAME)?,
        branch: b.branch,
        status: Status::Active,
        created_at: now.clone(),
        updated_at: now.clone(),
        pii_action: "off".into(),
        nationality: Some(nationality(&b.nationality)?),
    };
    let user = UserRecord {
        id: UserId::generate(),
        agency_id: agency.id.clone(),
        name: name("name", &b.operator_name, MAX_NAME)?,
        clearance: clearance(encodings, &b.clearance)?.to_string(),
        nationality: nationality(&b.nationality)?,
        roles: [Role::Operator].into_iter().collect(),
        status: Status::Active,
        created_at: now.clone(),
        updated_at: now.clone(),
    };
    let (prefix, secret) = ApiKeySecret::generate();
    let record = ApiKeyRecord {
        id: KeyId::generate(),
        prefix,
        secret_hash: secret.hash(),
        user_id: user.id.clone(),
        name: "bootstrap".into(),
        scopes: user.roles,
        expires_at: None,
        created_at: now,
        created_by: user.id.clone(),
        last_used_at: None,
        revoked_at: None,
        kind: KeyKind::Bearer,
        salt: None,
        parent: None,
    };
    store.bootstrap(&agency, &user, &record)?;
    Ok((user, Created { record, secret }))
}
