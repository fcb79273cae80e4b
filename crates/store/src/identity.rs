//! Identity records and the operations every backend provides for them.

use highside_identity::{
    AgencyId, Branch, CertKind, CertMappingId, KeyHash, KeyId, KeyKind, KeyPrefix, KeySalt,
    Nationality, RoleSet, Status, UserId,
};
use serde::Serialize;

use crate::StoreError;

/// An agency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgencyRecord {
    /// Its ID.
    pub id: AgencyId,
    /// Unique display name.
    pub name: String,
    /// Branch of government.
    pub branch: Branch,
    /// Active or disabled; a disabled agency's users cannot authenticate.
    pub status: Status,
    /// What happens to prompts holding personal data: `off`, `flag`, `block` or `cui`.
    pub pii_action: String,
    /// The nationality its administrators may vouch for (set by an operator); `None` until
    /// one is set, and then only operators set its users' nationality.
    pub nationality: Option<Nationality>,
    /// RFC 3339 creation time.
    pub created_at: String,
    /// RFC 3339 time of the last change.
    pub updated_at: String,
}

/// A user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserRecord {
    /// Its ID.
    pub id: UserId,
    /// The agency the user belongs to; never changes.
    pub agency_id: AgencyId,
    /// Name, unique within the agency.
    pub name: String,
    /// Clearance, as the canonical marking; parsed against the enclave's label encodings by
    /// whoever uses it (the store does not know the encodings).
    pub clearance: String,
    /// ISO 3166-1 alpha-3 nationality.
    pub nationality: Nationality,
    /// Roles.
    pub roles: RoleSet,
    /// Active or disabled.
    pub status: Status,
    /// RFC 3339 creation time.
    pub created_at: String,
    /// RFC 3339 time of the last change.
    pub updated_at: String,
}

/// An API key. The secret itself is never stored, only its hash.
#[derive(Debug, Clone, Serialize)]
pub struct ApiKeyRecord {
    /// Its ID.
    pub id: KeyId,
    /// The public prefix of the key.
    pub prefix: KeyPrefix,
    /// SHA-256 of the whole key.
    #[serde(skip)]
    pub secret_hash: KeyHash,
    /// The user the key acts as.
    pub user_id: UserId,
    /// A label for humans.
    pub name: String,
    /// Roles the key may exercise (a subset of its owner's).
    pub scopes: RoleSet,
    /// RFC 3339 expiry, if any.
    pub expires_at: Option<String>,
    /// RFC 3339 creation time.
    pub created_at: String,
    /// Who created it.
    pub created_by: UserId,
    /// RFC 3339 time it last authenticated a request (to the minute).
    pub last_used_at: Option<String>,
    /// RFC 3339 revocation time; a revoked key never authenticates again.
    pub revoked_at: Option<String>,
    /// Bearer key or AWS access key pair.
    pub kind: KeyKind,
    /// An AWS pair's salt (its secret is derived from it); `None` for bearer keys.
    #[serde(skip)]
    pub salt: Option<KeySalt>,
    /// The key the request that created it authenticated with, if any.
    #[serde(rename = "parent_key_id")]
    pub parent: Option<KeyId>,
}

/// A client-certificate mapping.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertMappingRecord {
    /// Its ID.
    pub id: CertMappingId,
    /// The user a matching certificate authenticates as.
    pub user_id: UserId,
    /// Which certificate field is matched.
    pub kind: CertKind,
    /// The exact value matched.
    pub value: String,
    /// RFC 3339 creation time.
    pub created_at: String,
}

/// A keyset page: at most `limit` rows with IDs greater than `after`, in ID order.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// Largest number of rows returned.
    pub limit: u32,
    /// Return rows after this ID.
    pub after: Option<String>,
}

/// Narrows a listing of users, keys or mappings.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// Only rows belonging to this agency.
    pub agency: Option<AgencyId>,
    /// Only rows belonging to this user.
    pub user: Option<UserId>,
}

/// The identity operations every backend provides.
pub trait IdentityStore: Send + Sync {
    /// Creates the first agency, operator and key in one transaction; fails with
    /// [`StoreError::AlreadyBootstrapped`] if any user exists.
    fn bootstrap(
        &self,
        agency: &AgencyRecord,
        user: &UserRecord,
        key: &ApiKeyRecord,
    ) -> Result<(), StoreError>;

    /// Adds an agency.
    fn insert_agency(&self, agency: &AgencyRecord) -> Result<(), StoreError>;
    /// Looks an agency up.
    fn get_agency(&self, id: &AgencyId) -> Result<Option<AgencyRecord>, StoreError>;
    /// Lists agencies (only `only` when given).
    fn list_agencies(
        &self,
        only: Option<&AgencyId>,
        page: &Page,
    ) -> Result<Vec<AgencyRecord>, StoreError>;
    /// Replaces an agency's mutable fields.
    fn update_agency(&self, agency: &AgencyRecord) -> Result<(), StoreError>;

    /// Adds a user.
    fn insert_user(&self, user: &UserRecord) -> Result<(), StoreError>;
    /// Looks a user up.
    fn get_user(&self, id: &UserId) -> Result<Option<UserRecord>, StoreError>;
    /// Lists users.
    fn list_users(&self, scope: &Scope, page: &Page) -> Result<Vec<UserRecord>, StoreError>;
    /// Replaces a user's mutable fields.
    fn update_user(&self, user: &UserRecord) -> Result<(), StoreError>;

    /// Adds a key.
    fn insert_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError>;
    /// Looks a key up by ID.
    fn get_key(&self, id: &KeyId) -> Result<Option<ApiKeyRecord>, StoreError>;
    /// Looks a key up by its public prefix (authentication).
    fn find_key(&self, prefix: &KeyPrefix) -> Result<Option<ApiKeyRecord>, StoreError>;
    /// Lists keys.
    fn list_keys(&self, scope: &Scope, page: &Page) -> Result<Vec<ApiKeyRecord>, StoreError>;
    /// Marks a key revoked at `at` (idempotent: the first revocation time stays).
    fn revoke_key(&self, id: &KeyId, at: &str) -> Result<(), StoreError>;
    /// Records that a key authenticated a request at `at`.
    fn touch_key(&self, id: &KeyId, at: &str) -> Result<(), StoreError>;

    /// Adds a certificate mapping.
    fn insert_cert_mapping(&self, mapping: &CertMappingRecord) -> Result<(), StoreError>;
    /// Looks a mapping up.
    fn get_cert_mapping(&self, id: &CertMappingId)
        -> Result<Option<CertMappingRecord>, StoreError>;
    /// Lists mappings.
    fn list_cert_mappings(
        &self,
        scope: &Scope,
        page: &Page,
    ) -> Result<Vec<CertMappingRecord>, StoreError>;
    /// Deletes a mapping.
    fn delete_cert_mapping(&self, id: &CertMappingId) -> Result<(), StoreError>;
    /// Whether a key has live (unrevoked) keys of its own user descended from it (minted with
    /// it, or with a key minted with it, at any depth up to 33).
    fn has_own_children(&self, key: &KeyId) -> Result<bool, StoreError>;
    /// Every mapping matching a certificate's subject or any of its subjectAltNames, in the
    /// order they were made (oldest first).
    fn match_certificate(
        &self,
        subject: &str,
        sans: &[String],
    ) -> Result<Vec<CertMappingRecord>, StoreError>;
}
