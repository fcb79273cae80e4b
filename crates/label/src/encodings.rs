//! An enclave's label encodings: the vocabulary every label is parsed against.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use crate::label::{Label, HOME};

const BUILTIN: &str = include_str!("../default-encodings.toml");

/// Why an encodings file was refused. Highside does not start with a bad one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodingsError {
    /// Not TOML of the expected shape.
    #[error("label encodings are not valid: {0}")]
    Syntax(String),
    /// A rule about the vocabulary is broken.
    #[error("label encodings are not valid: {0}")]
    Invalid(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NameAbbrev {
    name: String,
    abbrev: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    levels: Vec<NameAbbrev>,
    #[serde(default)]
    compartments: Vec<String>,
    countries: Vec<String>,
    #[serde(default)]
    tetragraphs: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    dissemination: Vec<NameAbbrev>,
    #[serde(default)]
    cui_categories: Vec<String>,
    system_high: String,
}

/// A validated vocabulary of levels, compartments, countries, tetragraphs, dissemination
/// controls and CUI categories, with the enclave's system high.
#[derive(Debug, Clone)]
pub struct Encodings {
    pub(crate) levels: Vec<(String, String)>,
    pub(crate) compartments: BTreeSet<String>,
    pub(crate) countries: BTreeSet<String>,
    pub(crate) tetragraphs: BTreeMap<String, BTreeSet<String>>,
    /// Canonical name → abbreviation.
    pub(crate) dissemination: BTreeMap<String, String>,
    pub(crate) cui: BTreeSet<String>,
    system_high: Label,
}

fn invalid(msg: impl Into<String>) -> EncodingsError {
    EncodingsError::Invalid(msg.into())
}

fn word(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-')
}

impl Encodings {
    /// The built-in encodings (`default-encodings.toml`).
    pub fn builtin() -> Self {
        Self::from_toml(BUILTIN).expect("the built-in label encodings are valid")
    }

    /// Reads and validates an encodings file's text.
    pub fn from_toml(text: &str) -> Result<Self, EncodingsError> {
        let f: File =
            toml::from_str(text).map_err(|e| EncodingsError::Syntax(e.message().to_owned()))?;
        let mut seen = BTreeSet::new();
        let mut claim = |name: &str, what: &str| -> Result<(), EncodingsError> {
            if !seen.insert(name.to_owned()) {
                return Err(invalid(format!(
                    "'{name}' ({what}) is used twice; every marking word must mean one thing"
                )));
            }
            Ok(())
        };
        for reserved in ["NOFORN", "NF", "REL"] {
            claim(reserved, "built-in releasability")?;
        }
        if f.levels.is_empty() || f.levels.len() > 16 {
            return Err(invalid("there must be 1 to 16 levels"));
        }
        let mut levels = Vec::new();
        for l in &f.levels {
            let name = l.name.split_whitespace().collect::<Vec<_>>().join(" ");
            if name.is_empty() || !name.split(' ').all(word) || !word(&l.abbrev) {
                return Err(invalid(format!(
                    "level '{}' / '{}' must be upper-case words",
                    l.name, l.abbrev
                )));
            }
            claim(&name, "level")?;
            if l.abbrev != name {
                claim(&l.abbrev, "level abbreviation")?;
            }
            levels.push((name, l.abbrev.clone()));
        }
        let mut compartments = BTreeSet::new();
        for c in &f.compartments {
            if !word(c) {
                return Err(invalid(format!(
                    "compartment '{c}' must be like SI or SI-G"
                )));
            }
            claim(c, "compartment")?;
            compartments.insert(c.clone());
        }
        for c in &compartments {
            if let Some((parent, _)) = c.split_once('-') {
                if !compartments.contains(parent) {
                    return Err(invalid(format!(
                        "sub-compartment '{c}' needs its compartment '{parent}'"
                    )));
                }
            }
        }
        let mut countries = BTreeSet::new();
        for c in &f.countries {
            if c.len() != 3 || !c.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(invalid(format!(
                    "country '{c}' must be an ISO 3166-1 alpha-3 code"
                )));
            }
            claim(c, "country")?;
            countries.insert(c.clone());
        }
        if !countries.contains(HOME) {
            return Err(invalid("the countries must include USA"));
        }
        if countries.len() > 256 {
            return Err(invalid("there may be at most 256 countries"));
        }
        if compartments.len() > 256 {
            return Err(invalid("there may be at most 256 compartments"));
        }
        let mut tetragraphs = BTreeMap::new();
        for (t, members) in &f.tetragraphs {
            if t.len() != 4 || !t.bytes().all(|b| b.is_ascii_uppercase()) {
                return Err(invalid(format!(
                    "tetragraph '{t}' must be four upper-case letters"
                )));
            }
            claim(t, "tetragraph")?;
            let set: BTreeSet<String> = members.iter().cloned().collect();
            if set.is_empty() || !set.is_subset(&countries) {
                return Err(invalid(format!(
                    "tetragraph '{t}' must list known countries"
                )));
            }
            tetragraphs.insert(t.clone(), set);
        }
        let mut dissemination = BTreeMap::new();
        for d in &f.dissemination {
            if !word(&d.name) || !word(&d.abbrev) {
                return Err(invalid(format!(
                    "dissemination control '{}' must be an upper-case word",
                    d.name
                )));
            }
            claim(&d.name, "dissemination control")?;
            if d.abbrev != d.name {
                claim(&d.abbrev, "dissemination abbreviation")?;
            }
            dissemination.insert(d.name.clone(), d.abbrev.clone());
        }
        if dissemination.len() > 256 {
            return Err(invalid("there may be at most 256 dissemination controls"));
        }
        let mut cui = BTreeSet::new();
        for c in &f.cui_categories {
            if !word(c) {
                return Err(invalid(format!("CUI category '{c}' must be like SP-PRVCY")));
            }
            claim(c, "CUI category")?;
            cui.insert(c.clone());
        }
        if cui.len() > 256 {
            return Err(invalid("there may be at most 256 CUI categories"));
        }
        let mut enc = Encodings {
            levels,
            compartments,
            countries,
            tetragraphs,
            dissemination,
            cui,
            system_high: Label {
                level: 0,
                compartments: BTreeSet::new(),
                releasability: crate::Releasability::Unrestricted,
                dissemination: BTreeSet::new(),
                cui: BTreeSet::new(),
            },
        };
        enc.system_high = enc
            .parse(&f.system_high)
            .map_err(|e| invalid(format!("system_high: {e}")))?;
        Ok(enc)
    }

    /// The highest label the enclave is accredited for.
    pub fn system_high(&self) -> &Label {
        &self.system_high
    }

    /// The lowest label: the lowest level and nothing else.
    pub fn lowest(&self) -> Label {
        Label {
            level: 0,
            compartments: BTreeSet::new(),
            releasability: crate::Releasability::Unrestricted,
            dissemination: BTreeSet::new(),
            cui: BTreeSet::new(),
        }
    }

    /// The spelled-out name of a label's level, e.g. `TOP SECRET`.
    pub fn level_name(&self, label: &Label) -> &str {
        self.levels
            .get(usize::from(label.level))
            .map_or("", |(name, _)| name.as_str())
    }

    /// Number of levels.
    pub fn level_count(&self) -> usize {
        self.levels.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_is_valid() {
        let e = Encodings::builtin();
        assert_eq!(e.level_count(), 5);
        assert_eq!(
            e.banner(e.system_high()),
            "TOP SECRET//HCS/SI/TK//LEI/PRVCY/SP-CTI/SP-EXPT/SP-PRVCY//FOUO/IMCON/ORCON/PROPIN/NOFORN"
        );
    }

    #[test]
    fn bad_encodings_are_refused() {
        let base = BUILTIN.to_owned();
        let cases = [
            base.replace(r#""SI-G", "#, r#""XX-G", "#),
            base.replace(r#"countries = ["USA", "#, r#"countries = ["#),
            base.replace(
                r#"ACGU = ["USA", "AUS", "CAN", "GBR"]"#,
                r#"ACGU = ["USA", "ZZZ"]"#,
            ),
            base.replace(
                r#"{ name = "PROPIN", abbrev = "PR" }"#,
                r#"{ name = "PROPIN", abbrev = "SI" }"#,
            ),
            base.replace(
                r#"system_high = "TOP SECRET//SI/TK/HCS//SP-PRVCY/SP-CTI/SP-EXPT/LEI/PRVCY//ORCON/PROPIN/IMCON/FOUO/NOFORN""#,
                r#"system_high = "COSMIC""#,
            ),
            base.replace("levels = [", "levls = ["),
            base.replace(
                r#"{ name = "ORCON", abbrev = "OC" }"#,
                r#"{ name = "NOFORN", abbrev = "NOF" }"#,
            ),
        ];
        for (i, text) in cases.iter().enumerate() {
            assert_ne!(text, &base, "case {i} did not change the file");
            assert!(Encodings::from_toml(text).is_err(), "case {i} was accepted");
        }
    }
}
