use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A name that is not one of the allowed values of a vocabulary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} '{got}' (expected one of: {expected})")]
pub struct UnknownName {
    /// Which vocabulary, e.g. "role".
    pub what: &'static str,
    /// What was given (already known not to be secret).
    pub got: String,
    /// The allowed values, comma-separated.
    pub expected: &'static str,
}

macro_rules! name_enum {
    ($(#[$doc:meta])* $name:ident, $what:literal, { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The wire and database name.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl FromStr for $name {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<Self, UnknownName> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownName {
                        what: $what,
                        got: s.chars().take(64).collect(),
                        expected: concat!($($text, " "),+).trim_ascii_end(),
                    }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

name_enum!(
    /// What a user may do. Privileges do not nest: an operator holds every role, everyone else
    /// holds exactly the roles they were given.
    Role, "role", {
        /// The whole enclave: agencies, every user, every key.
        Operator = "operator",
        /// One agency's users, keys and certificate mappings.
        AgencyAdmin = "agency-admin",
        /// Inference.
        User = "user",
        /// Reads audit records and usage; cannot run inference.
        Auditor = "auditor",
    }
);

name_enum!(
    /// The branch of government an agency belongs to.
    Branch, "branch", {
        /// Executive branch.
        Executive = "executive",
        /// Legislative branch.
        Legislative = "legislative",
        /// Judicial branch.
        Judicial = "judicial",
    }
);

name_enum!(
    /// Whether an agency or user may act. Disabled principals fail authentication.
    Status, "status", {
        /// May act.
        Active = "active",
        /// May not act; kept for the record.
        Disabled = "disabled",
    }
);

name_enum!(
    /// Which part of a client certificate a mapping matches.
    CertKind, "certificate field", {
        /// The subject distinguished name, as `CN=alice, O=Agency` (RFC 4514 order as encoded).
        Subject = "subject",
        /// Any subjectAltName: DNS name, email address or URI.
        San = "san",
    }
);

/// A set of roles, stored as a bit set so subset checks cannot be got wrong.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RoleSet(u8);

impl RoleSet {
    /// The empty set.
    pub const EMPTY: RoleSet = RoleSet(0);

    fn bit(role: Role) -> u8 {
        1 << (role as u8)
    }

    /// Every role.
    pub fn all() -> Self {
        Role::ALL.iter().copied().collect()
    }

    /// Whether `role` is in the set.
    pub fn contains(self, role: Role) -> bool {
        self.0 & Self::bit(role) != 0
    }

    /// Adds a role.
    pub fn insert(&mut self, role: Role) {
        self.0 |= Self::bit(role);
    }

    /// Roles in both sets.
    pub fn intersection(self, other: RoleSet) -> RoleSet {
        RoleSet(self.0 & other.0)
    }

    /// Whether every role of `self` is in `other`.
    pub fn is_subset(self, other: RoleSet) -> bool {
        self.0 & !other.0 == 0
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The roles, in declaration order.
    pub fn iter(self) -> impl Iterator<Item = Role> {
        Role::ALL
            .iter()
            .copied()
            .filter(move |r| self.contains(r.to_owned()))
    }

    /// Parses a comma-separated list (the database form); empty means no roles.
    pub fn parse_list(s: &str) -> Result<Self, UnknownName> {
        s.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(Role::from_str)
            .collect()
    }

    /// The comma-separated database form.
    pub fn to_list(self) -> String {
        self.iter().map(Role::as_str).collect::<Vec<_>>().join(",")
    }
}

impl FromIterator<Role> for RoleSet {
    fn from_iter<I: IntoIterator<Item = Role>>(iter: I) -> Self {
        let mut set = RoleSet::EMPTY;
        for r in iter {
            set.insert(r);
        }
        set
    }
}

impl fmt::Debug for RoleSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl Serialize for RoleSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for RoleSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let roles = Vec::<Role>::deserialize(d)?;
        Ok(roles.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_fail() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), *r);
        }
        let err = "root".parse::<Role>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown role 'root' (expected one of: operator agency-admin user auditor)"
        );
        assert!("Executive".parse::<Branch>().is_err(), "names are exact");
    }

    #[test]
    fn role_sets_are_sets() {
        let a: RoleSet = [Role::User, Role::Auditor].into_iter().collect();
        let b = RoleSet::parse_list("user").unwrap();
        assert!(b.is_subset(a));
        assert!(!a.is_subset(b));
        assert_eq!(a.to_list(), "user,auditor");
        assert_eq!(RoleSet::parse_list(&a.to_list()).unwrap(), a);
        assert_eq!(RoleSet::parse_list("").unwrap(), RoleSet::EMPTY);
        assert!(RoleSet::parse_list("user,god").is_err());
        assert_eq!(serde_json::to_string(&a).unwrap(), r#"["user","auditor"]"#);
        let back: RoleSet = serde_json::from_str(r#"["auditor","user","user"]"#).unwrap();
        assert_eq!(back, a);
        assert!(serde_json::from_str::<RoleSet>(r#"["superuser"]"#).is_err());
    }
}
