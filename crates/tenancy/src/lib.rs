//! Tenancy: who is calling, and what agencies, users, keys and certificate mappings they may
//! create, see and change.
//!
//! [`Authenticator`] turns presented credentials (an API key, a verified client certificate)
//! into a [`Principal`](highside_identity::Principal) or a 401; [`Admin`] carries out the admin
//! API's operations for a principal, applying the grant rules of `highside-identity` and the
//! agency wall (another agency's objects answer 404). Both work on any
//! [`IdentityStore`](highside_store::IdentityStore) and know nothing of HTTP, so every rule is
//! testable without a server.
#![forbid(unsafe_code)]

mod admin;
pub mod api;
mod auth;
mod error;

pub use admin::{bootstrap, may_read_accounts, Admin, Bootstrap, Created, CreatedAccessKey};
pub use auth::{AuthError, Authenticator, PeerCertificate};
pub use error::AdminError;

/// The current time as RFC 3339 UTC with second precision, the form every record uses.
pub fn now_rfc3339() -> String {
    format_time(time::OffsetDateTime::now_utc())
}

pub(crate) fn format_time(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let t = t.replace_nanosecond(0).unwrap_or(t);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| String::from("1970-01-01T00:00:00Z"))
}

pub(crate) fn parse_time(s: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
}
