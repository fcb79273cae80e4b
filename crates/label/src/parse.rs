//! Banner lines (`TOP SECRET//SI/TK//NOFORN`) and portion marks (`(TS//SI//NF)`), in and out.
//!
//! Parsing is case-insensitive and order-tolerant within the `//`-separated segments: each
//! `/`-separated word is looked up in the encodings, where every word means exactly one thing.
//! Formatting is canonical: level, compartments, CUI categories, then dissemination controls
//! with releasability last (`NOFORN`, or `REL TO USA, ...` with USA first).

use std::collections::BTreeSet;

use crate::encodings::Encodings;
use crate::label::{Label, Releasability, HOME};

/// The longest marking read; real ones are far shorter.
const MAX_LEN: usize = 512;

/// Why a marking is not a label of this enclave. Every one denies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    /// Empty, or longer than the limit.
    #[error("a marking must be 1 to {MAX_LEN} characters")]
    Length,
    /// A portion mark without its closing parenthesis, or the like.
    #[error("malformed portion mark (expected e.g. (S//NF))")]
    Malformed,
    /// The level is not one of the enclave's.
    #[error("unknown classification level '{0}'")]
    UnknownLevel(String),
    /// A word is not in the enclave's encodings.
    #[error("unknown marking '{0}'")]
    UnknownMarking(String),
    /// A REL TO list names a country or tetragraph the encodings do not list.
    #[error("unknown country or tetragraph '{0}' in REL TO")]
    UnknownCountry(String),
    /// A REL TO list without the home country, or empty.
    #[error("REL TO must list USA first and at least one country")]
    BadRelTo,
    /// An accreditation above what the enclave itself is accredited for.
    #[error("the label is above the enclave's system high")]
    AboveSystemHigh,
}

fn short(s: &str) -> String {
    s.chars().take(40).collect()
}

impl Encodings {
    /// The level of a banner or portion mark, as a label with nothing else, and its other
    /// words (upper case, whitespace-normalised), in order.
    fn level_and_words(&self, marking: &str) -> Result<(Label, Vec<String>), LabelError> {
        let s = marking.trim();
        if s.is_empty() || s.len() > MAX_LEN {
            return Err(LabelError::Length);
        }
        let upper = s.to_ascii_uppercase();
        let body = match upper.strip_prefix('(') {
            Some(rest) => rest.strip_suffix(')').ok_or(LabelError::Malformed)?.trim(),
            None => upper.as_str(),
        };
        let normal = |w: &str| w.split_whitespace().collect::<Vec<_>>().join(" ");
        let mut segments = body.split("//");
        let level_text = normal(segments.next().unwrap_or_default());
        let level = self
            .levels
            .iter()
            .position(|(name, abbrev)| *name == level_text || *abbrev == level_text)
            .ok_or_else(|| LabelError::UnknownLevel(short(&level_text)))?;
        let mut label = self.lowest();
        label.level = level as u8;
        let words = segments
            .flat_map(|segment| segment.split('/'))
            .map(normal)
            .collect();
        Ok((label, words))
    }

    /// Parses a banner line or a portion mark (one in parentheses).
    pub fn parse(&self, marking: &str) -> Result<Label, LabelError> {
        let (mut label, words) = self.level_and_words(marking)?;
        for word in &words {
            self.apply(&mut label, word)?;
        }
        Ok(label)
    }

    /// Parses a model's accreditation: any label the enclave's system high dominates.
    pub fn parse_accreditation(&self, marking: &str) -> Result<Label, LabelError> {
        let label = self.parse(marking)?;
        if !self.system_high().dominates(&label) {
            return Err(LabelError::AboveSystemHigh);
        }
        Ok(label)
    }

    fn apply(&self, label: &mut Label, word: &str) -> Result<(), LabelError> {
        if word == "NOFORN" || word == "NF" {
            label.releasability = label.releasability.restrict(&Releasability::noforn());
        } else if let Some(list) = word.strip_prefix("REL TO ") {
            let rel = self.rel_to(list)?;
            label.releasability = label.releasability.restrict(&rel);
        } else if self.compartments.contains(word) {
            label.compartments.insert(word.to_owned());
        } else if self.cui.contains(word) {
            label.cui.insert(word.to_owned());
        } else if let Some((name, _)) = self
            .dissemination
            .iter()
            .find(|(name, abbrev)| name.as_str() == word || abbrev.as_str() == word)
        {
            label.dissemination.insert(name.clone());
        } else {
            return Err(LabelError::UnknownMarking(short(word)));
        }
        Ok(())
    }

    fn rel_to(&self, list: &str) -> Result<Releasability, LabelError> {
        let mut countries = BTreeSet::new();
        for item in list.split(',').map(str::trim) {
            if let Some(members) = self.tetragraphs.get(item) {
                countries.extend(members.iter().cloned());
            } else if self.countries.contains(item) {
                countries.insert(item.to_owned());
            } else {
                return Err(LabelError::UnknownCountry(short(item)));
            }
        }
        if !countries.contains(HOME) {
            return Err(LabelError::BadRelTo);
        }
        Ok(Releasability::RelTo(countries))
    }

    fn format(&self, label: &Label, portion: bool) -> String {
        let (name, abbrev) = &self.levels[usize::from(label.level)];
        let mut out = if portion {
            abbrev.clone()
        } else {
            name.clone()
        };
        let mut push_segment = |words: Vec<String>| {
            if !words.is_empty() {
                out.push_str("//");
                out.push_str(&words.join("/"));
            }
        };
        push_segment(label.compartments.iter().cloned().collect());
        push_segment(label.cui.iter().cloned().collect());
        let mut controls: Vec<String> = label
            .dissemination
            .iter()
            .map(|d| {
                if portion {
                    self.dissemination
                        .get(d)
                        .cloned()
                        .unwrap_or_else(|| d.clone())
                } else {
                    d.clone()
                }
            })
            .collect();
        match &label.releasability {
            Releasability::Unrestricted => {}
            Releasability::RelTo(set) if set.len() == 1 => {
                controls.push(if portion { "NF" } else { "NOFORN" }.to_owned());
            }
            Releasability::RelTo(set) => {
                let rest = set.iter().filter(|c| c.as_str() != HOME).cloned();
                let list: Vec<String> = std::iter::once(HOME.to_owned()).chain(rest).collect();
                controls.push(format!("REL TO {}", list.join(", ")));
            }
        }
        push_segment(controls);
        out
    }

    /// The canonical banner line, e.g. `TOP SECRET//SI/TK//NOFORN`.
    pub fn banner(&self, label: &Label) -> String {
        self.format(label, false)
    }

    /// The canonical portion mark, e.g. `(TS//SI/TK//NF)`.
    pub fn portion(&self, label: &Label) -> String {
        format!("({})", self.format(label, true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e() -> Encodings {
        Encodings::builtin()
    }

    #[test]
    fn banners_and_portions_in_every_form() {
        let e = e();
        let ts = e.parse("TOP SECRET//SI/TK//NOFORN").unwrap();
        assert_eq!(e.parse("(TS//SI/TK//NF)").unwrap(), ts);
        assert_eq!(e.parse("top secret//tk/si//noforn").unwrap(), ts);
        assert_eq!(
            e.parse("( TS//TK/SI//REL TO USA )").unwrap(),
            ts,
            "REL TO USA is NOFORN"
        );
        assert_eq!(e.banner(&ts), "TOP SECRET//SI/TK//NOFORN");
        assert_eq!(e.portion(&ts), "(TS//SI/TK//NF)");
        let rel = e.parse("(S//REL TO USA, GBR)").unwrap();
        assert_eq!(e.banner(&rel), "SECRET//REL TO USA, GBR");
        let fvey = e.parse("SECRET//REL TO USA, FVEY").unwrap();
        assert_eq!(e.banner(&fvey), "SECRET//REL TO USA, AUS, CAN, GBR, NZL");
        assert!(
            rel.dominates(&fvey) && !fvey.dominates(&rel),
            "fewer countries is more restrictive"
        );
        assert_eq!(e.banner(&e.parse("(U)").unwrap()), "UNCLASSIFIED");
        assert_eq!(e.banner(&e.parse("(CUI)").unwrap()), "CUI");
        assert_eq!(
            e.banner(&e.parse("CUI//SP-PRVCY").unwrap()),
            "CUI//SP-PRVCY"
        );
        assert_eq!(
            e.portion(&e.parse("UNCLASSIFIED//FOUO").unwrap()),
            "(U//FOUO)"
        );
        assert_eq!(
            e.banner(&e.parse("(S//OC/NF)").unwrap()),
            "SECRET//ORCON/NOFORN"
        );
        assert_eq!(
            e.portion(&e.parse("SECRET//ORCON/REL TO USA, GBR").unwrap()),
            "(S//OC/REL TO USA, GBR)"
        );
    }

    #[test]
    fn unknown_words_are_errors() {
        let e = e();
        for (m, want) in [
            (
                "COSMIC TOP SECRET",
                LabelError::UnknownLevel("COSMIC TOP SECRET".into()),
            ),
            ("TS//XYZ", LabelError::UnknownMarking("XYZ".into())),
            (
                "S//REL TO USA, ATL",
                LabelError::UnknownCountry("ATL".into()),
            ),
            ("S//REL TO GBR", LabelError::BadRelTo),
            ("(S//NF", LabelError::Malformed),
            ("", LabelError::Length),
        ] {
            assert_eq!(e.parse(m).unwrap_err(), want, "{m}");
        }
        assert!(e.parse(&"S".repeat(600)).is_err());
        assert!(e.parse("TS//").is_err(), "an empty word is not a marking");
    }

    #[test]
    fn join_and_meet() {
        let e = e();
        let a = e.parse("SECRET//SI//REL TO USA, GBR, AUS").unwrap();
        let b = e.parse("CONFIDENTIAL//TK//REL TO USA, GBR, CAN").unwrap();
        assert_eq!(e.banner(&a.join(&b)), "SECRET//SI/TK//REL TO USA, GBR");
        assert_eq!(
            e.banner(&a.meet(&b)),
            "CONFIDENTIAL//REL TO USA, AUS, CAN, GBR"
        );
        let nf = e.parse("(U//NF)").unwrap();
        assert_eq!(e.banner(&a.join(&nf)), "SECRET//SI//NOFORN");
    }
}
