//! A user's clearance: a classification level and the compartments they are read into,
//! parsed against the enclave's label encodings like every other marking.
//!
//! A clearance carries no releasability (the holder's nationality decides that) and no other
//! dissemination controls or CUI categories (those ride along on data; agency policies decide
//! on them). It may not exceed the enclave's system high. Anything the encodings do not know
//! is refused, because an unknown marking must deny, never allow.

use std::fmt;

use highside_label::{Encodings, Label, LabelError, Releasability};
use serde::{Serialize, Serializer};

/// Why a clearance marking was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClearanceError {
    /// The marking is not a label of this enclave.
    #[error(transparent)]
    Label(#[from] LabelError),
    /// The marking carries releasability, dissemination controls or CUI categories.
    #[error("a clearance is a level and compartments only, e.g. TOP SECRET//SI/TK (nationality decides releasability)")]
    NotAClearance,
    /// The marking is above the enclave's system high.
    #[error("a clearance may not exceed the enclave's system high")]
    AboveSystemHigh,
}

/// A clearance: a level and a set of compartments. Dominance is the product order.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Clearance {
    label: Label,
    marking: String,
}

impl Clearance {
    /// Parses `TOP SECRET//SI/TK`, `TS//SI/TK`, `secret`, `U` against `encodings`.
    pub fn parse(encodings: &Encodings, s: &str) -> Result<Self, ClearanceError> {
        let label = encodings.parse(s)?;
        if *label.releasability() != Releasability::Unrestricted
            || !label.dissemination().is_empty()
            || !label.cui().is_empty()
        {
            return Err(ClearanceError::NotAClearance);
        }
        let high = encodings.system_high();
        if label.level() > high.level() || !high.compartments().is_superset(label.compartments()) {
            return Err(ClearanceError::AboveSystemHigh);
        }
        Ok(Self {
            marking: encodings.banner(&label),
            label,
        })
    }

    /// The lowest clearance of `encodings`: its lowest level, no compartments.
    pub fn lowest(encodings: &Encodings) -> Self {
        let label = encodings.lowest();
        Self {
            marking: encodings.banner(&label),
            label,
        }
    }

    /// The highest clearance `encodings` allows: the system high's level and compartments.
    pub fn highest(encodings: &Encodings) -> Self {
        let high = encodings.system_high();
        let level = encodings.level_name(high).to_owned();
        let comps: Vec<&str> = high.compartments().iter().map(String::as_str).collect();
        let marking = if comps.is_empty() {
            level
        } else {
            format!("{level}//{}", comps.join("/"))
        };
        Self::parse(encodings, &marking).expect("the system high's level and compartments parse")
    }

    /// Whether this clearance is at least `other`: level at least as high, every compartment.
    pub fn dominates(&self, other: &Clearance) -> bool {
        self.label.dominates(&other.label)
    }

    /// The clearance as a label (unrestricted releasability, no other controls).
    pub fn label(&self) -> &Label {
        &self.label
    }

    /// The canonical banner form, e.g. `TOP SECRET//SI/TK`.
    pub fn as_str(&self) -> &str {
        &self.marking
    }
}

impl fmt::Display for Clearance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.marking)
    }
}

impl fmt::Debug for Clearance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Clearance({})", self.marking)
    }
}

impl Serialize for Clearance {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.marking)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn enc() -> Encodings {
        Encodings::builtin()
    }

    fn c(s: &str) -> Clearance {
        Clearance::parse(&enc(), s).unwrap()
    }

    #[test]
    fn parses_long_short_and_lowercase_forms() {
        assert_eq!(c("TS//SI/TK"), c("top secret//tk/si"));
        assert_eq!(c("TS//SI/TK").to_string(), "TOP SECRET//SI/TK");
        assert_eq!(c(" s ").to_string(), "SECRET");
        assert_eq!(c("TOP   SECRET").to_string(), "TOP SECRET");
        assert_eq!(c("CUI").to_string(), "CUI");
        assert_eq!(Clearance::lowest(&enc()).to_string(), "UNCLASSIFIED");
        assert_eq!(
            Clearance::highest(&enc()).to_string(),
            "TOP SECRET//HCS/SI/TK"
        );
    }

    #[test]
    fn refuses_what_it_does_not_know() {
        let e = enc();
        let err = |s: &str| Clearance::parse(&e, s).unwrap_err();
        assert!(matches!(
            err("COSMIC"),
            ClearanceError::Label(LabelError::UnknownLevel(_))
        ));
        assert!(matches!(err(""), ClearanceError::Label(LabelError::Length)));
        assert!(matches!(err("TS//"), ClearanceError::Label(_)));
        assert!(matches!(err("TS//XX"), ClearanceError::Label(_)));
        assert_eq!(err("TS//SI//NOFORN"), ClearanceError::NotAClearance);
        assert_eq!(err("S//ORCON"), ClearanceError::NotAClearance);
        assert_eq!(err("CUI//SP-PRVCY"), ClearanceError::NotAClearance);
        // SI-G is a known compartment, but not within the built-in system high.
        assert_eq!(err("TS//SI-G"), ClearanceError::AboveSystemHigh);
        assert!(Clearance::parse(&e, &"S".repeat(600)).is_err());
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
            "U|CUI|C|S|TS",
            proptest::collection::btree_set("SI|TK|HCS", 0..3),
        )
            .prop_map(|(l, cs)| {
                let mut s = l;
                if !cs.is_empty() {
                    s.push_str("//");
                    s.push_str(&cs.into_iter().collect::<Vec<_>>().join("/"));
                }
                c(&s)
            })
    }

    proptest! {
        #[test]
        fn format_then_parse_is_identity(x in arb()) {
            prop_assert_eq!(Clearance::parse(&enc(), x.as_str()).unwrap(), x);
        }

        #[test]
        fn dominance_is_a_partial_order(a in arb(), b in arb(), d in arb()) {
            prop_assert!(a.dominates(&a));
            if a.dominates(&b) && b.dominates(&a) { prop_assert_eq!(&a, &b); }
            if a.dominates(&b) && b.dominates(&d) { prop_assert!(a.dominates(&d)); }
        }

        #[test]
        fn parse_never_panics(s in ".{0,80}") {
            let _ = Clearance::parse(&enc(), &s);
        }
    }
}
