//! The admin API's JSON bodies. Unknown fields are refused so a typo never silently does nothing.

use highside_identity::{AgencyId, Branch, CertKind, KeyKind, RoleSet, Status, UserId};
use serde::{Deserialize, Serialize};

/// `POST /admin/v1/agencies`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CreateAgency {
    /// Unique display name.
    pub name: String,
    /// Branch of government.
    pub branch: Branch,
    /// What happens to prompts holding personal data: `off` (default), `flag`, `block`, `cui`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pii_action: Option<String>,
    /// ISO 3166-1 alpha-3: the nationality the agency's administrators may vouch for. Without
    /// one, only operators set its users' nationality.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nationality: Option<String>,
}

/// `PATCH /admin/v1/agencies/{id}`: only the fields given change.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateAgency {
    /// New name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// New branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<Branch>,
    /// `disabled` stops every user of the agency from authenticating.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// What happens to prompts holding personal data: `off`, `flag`, `block` or `cui`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pii_action: Option<String>,
    /// The nationality the agency's administrators may vouch for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nationality: Option<String>,
}

/// `POST /admin/v1/users`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// The agency; defaults to the caller's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agency_id: Option<AgencyId>,
    /// Name, unique within the agency.
    pub name: String,
    /// Clearance marking, e.g. `SECRET` or `TOP SECRET//SI/TK`.
    pub clearance: String,
    /// ISO 3166-1 alpha-3 code.
    pub nationality: String,
    /// Roles; defaults to `["user"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<RoleSet>,
}

/// `PATCH /admin/v1/users/{id}`: only the fields given change.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    /// New name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// New clearance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clearance: Option<String>,
    /// New nationality.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nationality: Option<String>,
    /// New roles (replacing the old).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<RoleSet>,
    /// `disabled` stops the user from authenticating.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
}

/// `POST /admin/v1/keys`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// The user the key acts as; defaults to the caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<UserId>,
    /// A label for humans.
    pub name: String,
    /// Roles the key may exercise; defaults to all of its owner's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<RoleSet>,
    /// RFC 3339 expiry in the future; none means the key lives until revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// `bearer` (default) or `aws`: an access key pair for Signature V4 clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<KeyKind>,
}

/// `POST /admin/v1/certificates`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CreateCertMapping {
    /// The user a matching certificate authenticates as.
    pub user_id: UserId,
    /// Which certificate field to match.
    pub kind: CertKind,
    /// The subject as a distinguished name (`CN=alice, O=Agency`; `\,` for a comma inside a
    /// value), matched RDN by RDN, or the exact subjectAltName value.
    pub value: String,
}

/// Query string of every list route.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Page size, 1 to 100 (default 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Return objects after this ID (the previous page's `last_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Only objects of this agency.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agency_id: Option<AgencyId>,
    /// Only objects of this user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<UserId>,
}

/// A page of a listing, in the shape OpenAI's list endpoints use.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct List<T> {
    /// Always `list`.
    pub object: String,
    /// The objects, in ID order.
    pub data: Vec<T>,
    /// ID of the first object.
    pub first_id: Option<String>,
    /// ID of the last object; pass as `after` for the next page.
    pub last_id: Option<String>,
    /// Whether more objects follow.
    pub has_more: bool,
}
