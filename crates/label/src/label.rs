//! The label lattice. Dominance is the product of: level order, compartment inclusion,
//! releasability reversed inclusion (fewer countries = more restrictive), and inclusion of the
//! other dissemination controls and CUI categories. Join and meet are taken componentwise.

use std::collections::BTreeSet;

/// The home country every `REL TO` list contains and `NOFORN` means.
pub(crate) const HOME: &str = "USA";

/// To whom information may be released.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Releasability {
    /// No releasability marking: no restriction beyond the level and compartments.
    Unrestricted,
    /// Only to these countries (ISO 3166-1 alpha-3, always including USA); `{USA}` is NOFORN.
    RelTo(BTreeSet<String>),
}

impl Releasability {
    /// NOFORN: the home country only.
    pub fn noforn() -> Self {
        Self::RelTo([HOME.to_owned()].into_iter().collect())
    }

    /// Whether information with this releasability may go to a national of `country`.
    pub fn allows(&self, country: &str) -> bool {
        match self {
            Self::Unrestricted => true,
            Self::RelTo(set) => set.contains(country),
        }
    }

    /// Whether `self` is at least as restrictive as `other` (a subset of its countries).
    pub fn within(&self, other: &Releasability) -> bool {
        match (self, other) {
            (_, Self::Unrestricted) => true,
            (Self::Unrestricted, Self::RelTo(_)) => false,
            (Self::RelTo(a), Self::RelTo(b)) => a.is_subset(b),
        }
    }

    /// The more restrictive of the two (intersection).
    pub fn restrict(&self, other: &Releasability) -> Releasability {
        match (self, other) {
            (Self::Unrestricted, x) | (x, Self::Unrestricted) => x.clone(),
            (Self::RelTo(a), Self::RelTo(b)) => Self::RelTo(a.intersection(b).cloned().collect()),
        }
    }

    /// The less restrictive of the two (union).
    pub fn widen(&self, other: &Releasability) -> Releasability {
        match (self, other) {
            (Self::Unrestricted, _) | (_, Self::Unrestricted) => Self::Unrestricted,
            (Self::RelTo(a), Self::RelTo(b)) => Self::RelTo(a.union(b).cloned().collect()),
        }
    }
}

/// A classification label. Built only by parsing against [`crate::Encodings`] (or by lattice
/// operations on parsed labels), so every part of it is known to the enclave.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Label {
    /// Index into the encodings' levels, low to high.
    pub(crate) level: u8,
    pub(crate) compartments: BTreeSet<String>,
    pub(crate) releasability: Releasability,
    pub(crate) dissemination: BTreeSet<String>,
    pub(crate) cui: BTreeSet<String>,
}

impl Label {
    /// The level's position, 0 = lowest.
    pub fn level(&self) -> u8 {
        self.level
    }

    /// Compartments (and sub-compartments), e.g. `SI`, `SI-G`, `TK`.
    pub fn compartments(&self) -> &BTreeSet<String> {
        &self.compartments
    }

    /// Releasability.
    pub fn releasability(&self) -> &Releasability {
        &self.releasability
    }

    /// Dissemination controls other than releasability, e.g. `ORCON`, `FOUO`.
    pub fn dissemination(&self) -> &BTreeSet<String> {
        &self.dissemination
    }

    /// CUI categories, e.g. `SP-PRVCY`.
    pub fn cui(&self) -> &BTreeSet<String> {
        &self.cui
    }

    /// Whether `self` dominates `other`: level at least as high, every compartment, releasable
    /// to no one `other` is not, and every other control `other` carries.
    pub fn dominates(&self, other: &Label) -> bool {
        self.level >= other.level
            && self.compartments.is_superset(&other.compartments)
            && self.releasability.within(&other.releasability)
            && self.dissemination.is_superset(&other.dissemination)
            && self.cui.is_superset(&other.cui)
    }

    /// The least upper bound: what a mix of both must be marked.
    pub fn join(&self, other: &Label) -> Label {
        Label {
            level: self.level.max(other.level),
            compartments: self
                .compartments
                .union(&other.compartments)
                .cloned()
                .collect(),
            releasability: self.releasability.restrict(&other.releasability),
            dissemination: self
                .dissemination
                .union(&other.dissemination)
                .cloned()
                .collect(),
            cui: self.cui.union(&other.cui).cloned().collect(),
        }
    }

    /// The greatest lower bound.
    pub fn meet(&self, other: &Label) -> Label {
        Label {
            level: self.level.min(other.level),
            compartments: self
                .compartments
                .intersection(&other.compartments)
                .cloned()
                .collect(),
            releasability: self.releasability.widen(&other.releasability),
            dissemination: self
                .dissemination
                .intersection(&other.dissemination)
                .cloned()
                .collect(),
            cui: self.cui.intersection(&other.cui).cloned().collect(),
        }
    }
}
