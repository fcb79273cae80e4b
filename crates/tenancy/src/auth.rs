//! Authentication: credentials in, a principal or a 401 out.
//!
//! Every check reads the store, so a revoked key, a disabled user or a disabled agency fails
//! on the very next request; nothing is cached except when `last_used_at` was last written.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use highside_identity::{
    AwsKeyMaster, Clearance, CredentialError, KeyId, KeyKind, KeyPrefix, ParsedKey, Principal,
    Role, RoleSet, Status,
};
use highside_label::Encodings;
use highside_store::{ApiKeyRecord, CertMappingRecord, IdentityStore, StoreError, UserRecord};

/// `last_used_at` is written at most this often per key, so authentication stays a read.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// A client certificate the TLS layer has already verified against the configured CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCertificate {
    /// The subject distinguished name, e.g. `CN=alice, O=Agency`.
    pub subject: String,
    /// subjectAltName DNS names, email addresses and URIs.
    pub sans: Vec<String>,
}

/// Why a request is not authenticated: a 401, except [`AuthError::Store`] (500).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No key and no client certificate.
    #[error("missing credentials: send 'Authorization: Bearer <key>'")]
    Missing,
    /// The headers do not hold a usable key.
    #[error(transparent)]
    Credential(#[from] CredentialError),
    /// No key with this prefix, or the secret does not match.
    #[error("invalid API key")]
    InvalidKey,
    /// The key was revoked.
    #[error("this API key has been revoked")]
    Revoked,
    /// The key is past its expiry.
    #[error("this API key has expired")]
    Expired,
    /// The key's user, or their agency, is disabled.
    #[error("this account is disabled")]
    Disabled,
    /// The client certificate maps to no user, or to more than one.
    #[error("the client certificate is not mapped to a user")]
    UnmappedCertificate,
    /// The key and the client certificate belong to different users.
    #[error("the API key and the client certificate belong to different users")]
    Mismatch,
    /// The user's stored clearance is not valid under the enclave's label encodings.
    #[error("this account's clearance is not valid under the enclave's label encodings; an operator must correct it")]
    InvalidClearance,
    /// A SigV4 signature that does not verify, names an unknown key, or is out of date.
    #[error(transparent)]
    Signature(#[from] highside_sigv4::SigError),
    /// The store failed.
    #[error("cannot check credentials: {0}")]
    Store(#[from] StoreError),
}

/// The mapping a certificate authenticates by: the oldest of those its fields match. When they
/// name different users, a mapping made later (perhaps by another agency's administrator, of
/// a field that was still unmapped) cannot take the certificate from the user it was mapped
/// to first, nor lock them out; the conflict is logged for an operator to resolve.
fn first_mapping(matches: &[CertMappingRecord]) -> Option<&CertMappingRecord> {
    // The store answers oldest first.
    let first = matches.first()?;
    if matches.iter().any(|m| m.user_id != first.user_id) {
        tracing::warn!(
            mappings = ?matches.iter().map(|m| m.id.to_string()).collect::<Vec<_>>(),
            "a client certificate matches mappings to different users; the oldest decides until an operator resolves it"
        );
    }
    Some(first)
}

/// Ancestors of a key checked at most (a deeper chain is refused).
const MAX_ANCESTORS: usize = 32;

/// Revocation and expiry of one key.
fn live(k: &ApiKeyRecord, now: time::OffsetDateTime) -> Result<(), AuthError> {
    if k.revoked_at.is_some() {
        return Err(AuthError::Revoked);
    }
    if let Some(expiry) = &k.expires_at {
        // An expiry that does not parse is treated as already past: deny on the unknown.
        if crate::parse_time(expiry).is_none_or(|t| t <= now) {
            return Err(AuthError::Expired);
        }
    }
    Ok(())
}

/// Turns credentials into principals.
pub struct Authenticator {
    store: Arc<dyn IdentityStore>,
    encodings: Arc<Encodings>,
    aws: Option<Arc<AwsKeyMaster>>,
    touched: Mutex<HashMap<KeyId, Instant>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator").finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Authenticates against `store`, parsing clearances against `encodings`.
    pub fn new(store: Arc<dyn IdentityStore>, encodings: Arc<Encodings>) -> Self {
        Self {
            store,
            encodings,
            aws: None,
            touched: Mutex::new(HashMap::new()),
        }
    }

    /// Accepts AWS access key pairs whose secrets derive from `master`.
    pub fn with_aws_master(mut self, master: Arc<AwsKeyMaster>) -> Self {
        self.aws = Some(master);
        self
    }

    /// Whether `access_key` is the ID of an access key pair (of any state): checked before a
    /// signed request's body is read, so unknown IDs cost no body.
    pub fn knows_access_key(&self, access_key: &str) -> Result<bool, StoreError> {
        let Some(prefix) = KeyPrefix::parse(access_key) else {
            return Ok(false);
        };
        Ok(self
            .store
            .find_key(&prefix)?
            .is_some_and(|k| k.kind == KeyKind::Aws))
    }

    /// Authenticates a request signed with AWS Signature Version 4 for `service` by a
    /// Highside-issued access key pair, then applies every check a bearer key gets. An
    /// unknown key, a bearer key's prefix and a wrong signature fail alike.
    pub fn authenticate_sigv4(
        &self,
        req: &highside_sigv4::Request<'_>,
        service: &str,
        certificate: Option<&PeerCertificate>,
        now: time::OffsetDateTime,
    ) -> Result<Principal, AuthError> {
        let master = self
            .aws
            .as_ref()
            .ok_or(highside_sigv4::SigError::Mismatch)?;
        let mut found = None;
        let mut failure = None;
        let verified = highside_sigv4::verify(req, service, now.unix_timestamp(), |access_key| {
            let prefix = KeyPrefix::parse(access_key)?;
            let record = match self.store.find_key(&prefix) {
                Ok(r) => r?,
                Err(e) => {
                    failure = Some(e);
                    return None;
                }
            };
            let salt = record
                .salt
                .as_ref()
                .filter(|_| record.kind == KeyKind::Aws)?;
            let secret = master.derive(&prefix, salt);
            if !record.secret_hash.matches(&secret.hash()) {
                // The master file is not the one this key was issued under.
                tracing::error!(key = %record.id, "an access key does not match this data directory's AWS key master");
                return None;
            }
            let exposed = secret.expose().to_owned();
            found = Some(record);
            Some(exposed)
        });
        if let Some(e) = failure {
            return Err(AuthError::Store(e));
        }
        verified?;
        let record = found.ok_or(highside_sigv4::SigError::Mismatch)?;
        self.admit_key(record, certificate, now)
    }

    /// Authenticates one request from its key (already parsed from the headers) and its
    /// verified client certificate. A certificate alone must map to exactly one user. With a
    /// key as well, the key decides who is calling and a certificate mapped to anyone else is
    /// refused; an unmapped certificate then only vouches for the transport (which is how an
    /// operator reaches a mutual-TLS server before any mapping exists).
    pub fn authenticate(
        &self,
        key: Option<&ParsedKey>,
        certificate: Option<&PeerCertificate>,
        now: time::OffsetDateTime,
    ) -> Result<Principal, AuthError> {
        let Some(key) = key else {
            return match certificate {
                Some(c) => self.by_certificate(c),
                None => Err(AuthError::Missing),
            };
        };
        let record = self
            .store
            .find_key(&key.prefix)?
            .ok_or(AuthError::InvalidKey)?;
        // An access key pair's ID is never a bearer key, whatever is sent with it.
        if record.kind != KeyKind::Bearer || !record.secret_hash.matches(&key.secret.hash()) {
            return Err(AuthError::InvalidKey);
        }
        self.admit_key(record, certificate, now)
    }

    /// The checks after a key's secret is proven: revocation, expiry, owner, certificate.
    fn admit_key(
        &self,
        record: ApiKeyRecord,
        certificate: Option<&PeerCertificate>,
        now: time::OffsetDateTime,
    ) -> Result<Principal, AuthError> {
        live(&record, now)?;
        // A key minted for its own user by a key dies with it, even through keys of other
        // users between them: every ancestor of the key's user must be live too (bounded;
        // parents are older than their children, so there is no cycle).
        let mut parent = record.parent.clone();
        let mut depth = 0;
        while let Some(id) = parent {
            depth += 1;
            if depth > MAX_ANCESTORS {
                return Err(AuthError::Revoked);
            }
            let Some(p) = self.store.get_key(&id)? else {
                return Err(AuthError::Revoked);
            };
            if p.user_id == record.user_id {
                live(&p, now)?;
            }
            parent = p.parent;
        }
        let user = self
            .store
            .get_user(&record.user_id)?
            .ok_or(AuthError::InvalidKey)?;
        if let Some(c) = certificate {
            // The key decides who calls. A certificate mapped to someone else of the key's
            // agency (and not to the key's user) is refused. Mappings to other agencies' users
            // are ignored: any agency administrator may map a still unmapped field, so
            // counting theirs would let one lock another agency's key users out (and the
            // certificate grants the key's user nothing the key does not).
            let mapped = self.store.match_certificate(&c.subject, &c.sans)?;
            if !mapped.iter().any(|m| m.user_id == user.id) {
                for m in &mapped {
                    let other = self.store.get_user(&m.user_id)?;
                    if other.is_none_or(|o| o.agency_id == user.agency_id) {
                        return Err(AuthError::Mismatch);
                    }
                }
            }
        }
        let principal = self.principal(user, Some(record.scopes), Some(record.id.clone()))?;
        self.touch(&record.id, now);
        Ok(principal)
    }

    fn by_certificate(&self, cert: &PeerCertificate) -> Result<Principal, AuthError> {
        let matches = self.store.match_certificate(&cert.subject, &cert.sans)?;
        let first = first_mapping(&matches).ok_or(AuthError::UnmappedCertificate)?;
        let user = self
            .store
            .get_user(&first.user_id)?
            .ok_or(AuthError::UnmappedCertificate)?;
        self.principal(user, None, None)
    }

    fn principal(
        &self,
        user: UserRecord,
        scopes: Option<RoleSet>,
        key: Option<KeyId>,
    ) -> Result<Principal, AuthError> {
        let agency = self
            .store
            .get_agency(&user.agency_id)?
            .ok_or(AuthError::Disabled)?;
        if user.status != Status::Active || agency.status != Status::Active {
            return Err(AuthError::Disabled);
        }
        // A key exercises the roles it was scoped to that its owner still holds; an
        // operator's key may be scoped to any role (operators hold them all).
        let held = if user.roles.contains(Role::Operator) {
            RoleSet::all()
        } else {
            user.roles
        };
        let roles = scopes.map_or(user.roles, |s| s.intersection(held));
        // A clearance that no longer parses (the encodings changed) must not become a guess.
        let clearance = Clearance::parse(&self.encodings, &user.clearance)
            .map_err(|_| AuthError::InvalidClearance)?;
        Ok(Principal {
            user: user.id,
            user_name: user.name,
            agency: user.agency_id,
            roles,
            clearance,
            nationality: user.nationality,
            key,
            pii_action: agency.pii_action,
        })
    }

    fn touch(&self, id: &KeyId, now: time::OffsetDateTime) {
        let due = {
            let mut touched = self.touched.lock().unwrap_or_else(|p| p.into_inner());
            let due = touched.get(id).is_none_or(|t| t.elapsed() >= TOUCH_EVERY);
            if due {
                touched.insert(id.clone(), Instant::now());
            }
            due
        };
        if due {
            if let Err(e) = self.store.touch_key(id, &crate::format_time(now)) {
                // Only bookkeeping: the request was authenticated; say so and carry on.
                tracing::warn!(key = %id, error = %e, "cannot record the key's last use");
            }
        }
    }
}
