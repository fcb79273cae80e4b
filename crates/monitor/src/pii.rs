//! Optional detectors for personal data in prompts: U.S. social security numbers, phone
//! numbers and e-mail addresses. What happens on a hit is each agency's choice.

use std::fmt;
use std::str::FromStr;

use regex::Regex;

/// What an agency wants done when a prompt holds personal data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PiiAction {
    /// Do not look.
    #[default]
    Off,
    /// Allow, and report what was found (response header, logs, later the audit record).
    Flag,
    /// Deny the request.
    Block,
    /// Raise the request label to at least CUI.
    Cui,
}

impl PiiAction {
    /// Every action, as stored and as the admin API spells it.
    pub const ALL: [PiiAction; 4] = [Self::Off, Self::Flag, Self::Block, Self::Cui];

    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Flag => "flag",
            Self::Block => "block",
            Self::Cui => "cui",
        }
    }
}

impl fmt::Display for PiiAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown PII action name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown PII action '{0}' (expected off, flag, block or cui)")]
pub struct UnknownPiiAction(pub String);

impl FromStr for PiiAction {
    type Err = UnknownPiiAction;
    fn from_str(s: &str) -> Result<Self, UnknownPiiAction> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| UnknownPiiAction(s.chars().take(32).collect()))
    }
}

/// The compiled detectors.
#[derive(Debug, Clone)]
pub struct PiiDetector {
    ssn: Regex,
    phone: Regex,
    email: Regex,
}

impl Default for PiiDetector {
    fn default() -> Self {
        Self::new()
    }
}

impl PiiDetector {
    /// Compiles the detectors. They are ASCII patterns (ASCII word boundaries and classes,
    /// which keep the regex engine on its fast DFA) run over the folded text, so fullwidth
    /// digits or zero-width spaces hide no number.
    pub fn new() -> Self {
        let re = |p: &str| Regex::new(p).expect("the PII patterns are valid");
        Self {
            // Area 000, 666 and 9xx, group 00 and serial 0000 are never issued.
            ssn: re(r"(?-u:\b)([0-9]{3})-([0-9]{2})-([0-9]{4})(?-u:\b)"),
            // North American numbers: optional +1, area code in parentheses or not.
            phone: re(
                r"(?:^|[^0-9A-Za-z_+])(?:\+?1[ .-]?)?(?:\([0-9]{3}\) ?|[0-9]{3}[ .-])[0-9]{3}[ .-][0-9]{4}(?-u:\b)",
            ),
            email: re(
                r"(?-u:\b)[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}(?-u:\b)",
            ),
        }
    }

    /// The kinds of personal data in `text`: any of `ssn`, `phone`, `email`, in that order.
    pub fn find(&self, text: &str) -> Vec<&'static str> {
        self.find_folded(&highside_label::Folded::new(text))
    }

    /// [`PiiDetector::find`] on a text already folded: in either of its readings (as
    /// written, and with escapes and markup decoded).
    pub fn find_folded(&self, folded: &highside_label::Folded) -> Vec<&'static str> {
        let readings: Vec<&str> = std::iter::once(folded.as_str())
            .chain(folded.decoded_str())
            .collect();
        let mut kinds = Vec::new();
        let ssn = readings.iter().any(|text| {
            self.ssn.captures_iter(text).any(|c| {
                let (area, group, serial) = (&c[1], &c[2], &c[3]);
                area != "000"
                    && area != "666"
                    && !area.starts_with('9')
                    && group != "00"
                    && serial != "0000"
            })
        });
        if ssn {
            kinds.push("ssn");
        }
        if readings.iter().any(|t| self.phone.is_match(t)) {
            kinds.push("phone");
        }
        if readings.iter().any(|t| self.email.is_match(t)) {
            kinds.push("email");
        }
        kinds
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_each_kind() {
        let d = PiiDetector::new();
        assert_eq!(d.find("SSN 123-45-6789 on file"), ["ssn"]);
        assert_eq!(d.find("call (703) 555-0100 today"), ["phone"]);
        assert_eq!(d.find("call +1 703-555-0100"), ["phone"]);
        assert_eq!(d.find("mail j.doe@agency.gov"), ["email"]);
        assert_eq!(
            d.find("123-45-6789, 703.555.0100, a@b.io"),
            ["ssn", "phone", "email"]
        );
        // Disguised digits are read as the detector of markings reads text.
        assert_eq!(d.find("SSN \u{ff11}\u{ff12}\u{ff13}-45-6789"), ["ssn"]);
        assert_eq!(d.find("SSN 1\u{200b}23-45-6789"), ["ssn"]);
        // And so are escapes and character references.
        assert_eq!(d.find(r"SSN \u0031\u00323-45-6789"), ["ssn"]);
        assert_eq!(d.find("mail j.doe&#64;agency.gov"), ["email"]);
    }

    #[test]
    fn ignores_lookalikes() {
        let d = PiiDetector::new();
        for text in [
            "000-12-3456 is not issued",
            "666-12-3456 neither",
            "900-12-3456 neither",
            "version 1.2.3",
            "order 12345-6789",
            "meet at 10:30",
            "user@localhost",
            "plain text",
        ] {
            assert!(d.find(text).is_empty(), "{text}: {:?}", d.find(text));
        }
    }

    #[test]
    fn actions_round_trip() {
        for a in PiiAction::ALL {
            assert_eq!(a.as_str().parse::<PiiAction>().unwrap(), a);
        }
        assert!("raise".parse::<PiiAction>().is_err());
    }
}
