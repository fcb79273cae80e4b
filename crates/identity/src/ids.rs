//! Typed identifiers. Random (not sequential), so an ID reveals nothing about how many
//! agencies or users exist, and prefixed, so an agency ID can never be passed as a user ID.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub(crate) fn random_hex<const N: usize>() -> String {
    let mut bytes = [0u8; N];
    // Without OS randomness no credential can be made safely; there is nothing to fall back to.
    getrandom::fill(&mut bytes).expect("the operating system's random number generator failed");
    hex::encode(bytes)
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// The prefix every ID of this kind starts with.
            pub const PREFIX: &'static str = $prefix;

            /// A fresh random ID.
            pub fn generate() -> Self {
                Self(format!("{}{}", $prefix, random_hex::<12>()))
            }

            /// Accepts only well-formed IDs of this kind; anything else is `None`.
            pub fn parse(s: &str) -> Option<Self> {
                let rest = s.strip_prefix($prefix)?;
                (rest.len() == 24 && rest.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
                    .then(|| Self(s.to_owned()))
            }

            /// The ID as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).ok_or_else(|| {
                    serde::de::Error::custom(concat!("not a valid ID (expected ", $prefix, " followed by 24 hex digits)"))
                })
            }
        }
    };
}

id_type!(
    /// An agency.
    AgencyId, "agency_"
);
id_type!(
    /// A user.
    UserId, "user_"
);
id_type!(
    /// An API key (not its secret).
    KeyId, "key_"
);
id_type!(
    /// A client-certificate mapping.
    CertMappingId, "cert_"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_typed_and_validated() {
        let a = AgencyId::generate();
        assert_eq!(AgencyId::parse(a.as_str()), Some(a.clone()));
        assert_eq!(
            UserId::parse(a.as_str()),
            None,
            "an agency ID is not a user ID"
        );
        assert_eq!(AgencyId::parse("agency_"), None);
        assert_eq!(AgencyId::parse("agency_' OR 1=1 --"), None);
        assert_ne!(AgencyId::generate(), AgencyId::generate());
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<AgencyId>(&json).unwrap(), a);
        assert!(serde_json::from_str::<UserId>(&json).is_err());
    }
}
