//! A user's clearance: a classification level and the compartments they are read into.
//!
//! This is the identity stage's stand-in for the full label algebra (releasability, dissemination
//! controls, the enclave's label encodings), which the reference-monitor stage brings. It already
//! refuses anything it does not know, because an unknown marking must deny, never allow.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Classification levels, low to high.
const LEVELS: &[(&str, &str)] = &[
    ("UNCLASSIFIED", "U"),
    ("CUI", "CUI"),
    ("CONFIDENTIAL", "C"),
    ("SECRET", "S"),
    ("TOP SECRET", "TS"),
];

/// The longest marking accepted; real banners are far shorter.
const MAX_LEN: usize = 256;

/// Why a clearance marking was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClearanceError {
    /// The marking is empty or longer than the limit.
    #[error("a clearance must be 1 to {MAX_LEN} characters")]
    Length,
    /// The level is not one of the known levels.
    #[error("unknown classification level '{0}' (expected UNCLASSIFIED, CUI, CONFIDENTIAL, SECRET or TOP SECRET, or U, CUI, C, S, TS)")]
    UnknownLevel(String),
    /// A compartment name is empty or has characters other than A-Z, 0-9 and '-'.
    #[error("invalid compartment '{0}' (compartments are like SI, TK, SI-G)")]
    BadCompartment(String),
    /// More than `LEVEL//COMPARTMENTS` was given.
    #[error(
        "a clearance is a level and optional compartments, e.g. TOP SECRET//SI/TK; '{0}' is not"
    )]
    TooManyParts(String),
}

/// A clearance: a level and a set of compartments. Dominance is the product order.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Clearance {
    level: u8,
    compartments: BTreeSet<String>,
}

impl Clearance {
    /// Parses `TOP SECRET//SI/TK`, `TS//SI/TK`, `secret`, `U`; case-insensitive.
    pub fn parse(s: &str) -> Result<Self, ClearanceError> {
        let s = s.trim();
        if s.is_empty() || s.len() > MAX_LEN {
            return Err(ClearanceError::Length);
        }
        let upper = s.to_ascii_uppercase();
        let mut parts = upper.split("//");
        let level_text = parts.next().unwrap_or_default().trim();
        let level_text = level_text.split_whitespace().collect::<Vec<_>>().join(" ");
        let level = LEVELS
            .iter()
            .position(|(long, short)| level_text == *long || level_text == *short)
            .ok_or_else(|| ClearanceError::UnknownLevel(level_text.clone()))?;
        let mut compartments = BTreeSet::new();
        if let Some(list) = parts.next() {
            for c in list.split('/') {
                let c = c.trim();
                let ok = !c.is_empty()
                    && c.len() <= 32
                    && c.bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-');
                if !ok {
                    return Err(ClearanceError::BadCompartment(c.chars().take(32).collect()));
                }
                compartments.insert(c.to_owned());
            }
        }
        if parts.next().is_some() {
            return Err(ClearanceError::TooManyParts(s.chars().take(64).collect()));
        }
        Ok(Self {
            level: level as u8,
            compartments,
        })
    }

    /// The lowest clearance: UNCLASSIFIED, no compartments.
    pub fn lowest() -> Self {
        Self {
            level: 0,
            compartments: BTreeSet::new(),
        }
    }

    /// Whether this clearance is at least `other`: level at least as high, every compartment.
    pub fn dominates(&self, other: &Clearance) -> bool {
        self.level >= other.level && self.compartments.is_superset(&other.compartments)
    }
}

impl FromStr for Clearance {
    type Err = ClearanceError;
    fn from_str(s: &str) -> Result<Self, ClearanceError> {
        Self::parse(s)
    }
}

impl fmt::Display for Clearance {
    /// The canonical banner form: `TOP SECRET//SI/TK`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (long, _) = LEVELS[usize::from(self.level)];
        f.write_str(long)?;
        if !self.compartments.is_empty() {
            f.write_str("//")?;
            let list: Vec<&str> = self.compartments.iter().map(String::as_str).collect();
            f.write_str(&list.join("/"))?;
        }
        Ok(())
    }
}

impl fmt::Debug for Clearance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Clearance({self})")
    }
}

impl Serialize for Clearance {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Clearance {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn c(s: &str) -> Clearance {
        s.parse().unwrap()
    }

    #[test]
    fn parses_long_short_and_lowercase_forms() {
        assert_eq!(c("TS//SI/TK"), c("top secret//tk/si"));
        assert_eq!(c("TS//SI/TK").to_string(), "TOP SECRET//SI/TK");
        assert_eq!(c(" s ").to_string(), "SECRET");
        assert_eq!(c("TOP   SECRET").to_string(), "TOP SECRET");
        assert_eq!(c("CUI").to_string(), "CUI");
        assert_eq!(Clearance::lowest().to_string(), "UNCLASSIFIED");
    }

    #[test]
    fn refuses_what_it_does_not_know() {
        assert!(matches!(
            Clearance::parse("COSMIC"),
            Err(ClearanceError::UnknownLevel(_))
        ));
        assert!(matches!(Clearance::parse(""), Err(ClearanceError::Length)));
        assert!(matches!(
            Clearance::parse("TS//"),
            Err(ClearanceError::BadCompartment(_))
        ));
        assert!(matches!(
            Clearance::parse("TS//SI//NOFORN"),
            Err(ClearanceError::TooManyParts(_))
        ));
        assert!(matches!(
            Clearance::parse("TS//S I"),
            Err(ClearanceError::BadCompartment(_))
        ));
        assert!(Clearance::parse(&"S".repeat(300)).is_err());
    }

    #[test]
    fn dominance_is_level_and_compartments() {
        assert!(c("TS//SI/TK").dominates(&c("S//SI")));
        assert!(!c("TS//SI").dominates(&c("S//TK")));
        assert!(!c("S").dominates(&c("TS")));
        assert!(c("C").dominates(&c("CUI")));
        assert!(c("U").dominates(&c("U")));
    }

    fn arb() -> impl Strategy<Value = Clearance> {
        (
            0u8..5,
            proptest::collection::btree_set("SI|TK|HCS|SI-G", 0..3),
        )
            .prop_map(|(level, compartments)| Clearance {
                level,
                compartments,
            })
    }

    proptest! {
        #[test]
        fn format_then_parse_is_identity(x in arb()) {
            prop_assert_eq!(Clearance::parse(&x.to_string()).unwrap(), x);
        }

        #[test]
        fn dominance_is_a_partial_order(a in arb(), b in arb(), d in arb()) {
            prop_assert!(a.dominates(&a));
            if a.dominates(&b) && b.dominates(&a) { prop_assert_eq!(&a, &b); }
            if a.dominates(&b) && b.dominates(&d) { prop_assert!(a.dominates(&d)); }
        }

        #[test]
        fn parse_never_panics(s in ".{0,80}") {
            let _ = Clearance::parse(&s);
        }
    }
}
