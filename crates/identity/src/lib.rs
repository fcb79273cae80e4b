//! Who is asking, and what they may do: the identity vocabulary of Highside without any I/O.
//!
//! Roles, clearances, nationalities, typed IDs, the API key format with a secret type that
//! redacts itself, the parser for credentials in HTTP headers, and the grant rules ("nobody can
//! grant more than they hold"). Storage lives in `highside-store`, the operations that combine
//! the two in `highside-tenancy`; this crate only takes values and returns decisions.
#![forbid(unsafe_code)]

mod aws;
mod clearance;
mod credential;
mod dn;
mod ids;
mod key;
mod nationality;
mod policy;
mod role;

pub use aws::{AwsKeyMaster, AwsSecret, KeySalt};
pub use clearance::{Clearance, ClearanceError};
pub use credential::{parse_credentials, CredentialError};
pub use dn::{canonical_dn, parse_dn, DnError};
pub use ids::{AgencyId, CertMappingId, KeyId, UserId};
pub use key::{ApiKeySecret, KeyFormatError, KeyHash, KeyKind, KeyPrefix, ParsedKey};
pub use nationality::{Nationality, NationalityError};
pub use policy::{Denied, Principal};
pub use role::{Branch, CertKind, Role, RoleSet, Status, UnknownName};
