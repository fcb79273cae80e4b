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
        if readings.iter().any(|t| has_ssn(t.as_bytes())) {
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

/// Whether `text` holds a social security number that can be issued: `DDD-DD-DDDD` between
/// ASCII word boundaries, area not 000, 666 or 9xx, group not 00, serial not 0000. Written out
/// rather than a regex: the regex engine's prefilter fires on every `-`, which made `-`-dense
/// text (`<!--` repeated) read at a fifth of the detector's rate; this is one pass with a
/// fixed window. Differential-tested against the regex.
fn has_ssn(text: &[u8]) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    text.windows(11).enumerate().any(|(i, w)| {
        w[3] == b'-'
            && w[6] == b'-'
            && digits(&w[..3])
            && digits(&w[4..6])
            && digits(&w[7..])
            && (i == 0 || !word(text[i - 1]))
            && text.get(i + 11).is_none_or(|&b| !word(b))
            && &w[..3] != b"000"
            && &w[..3] != b"666"
            && w[0] != b'9'
            && &w[4..6] != b"00"
            && &w[7..] != b"0000"
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The pattern `has_ssn` replaced, as the reference: a match starting anywhere (an
    /// unissued number does not hide an overlapping issued one).
    fn ssn_by_regex(text: &str) -> bool {
        let re = Regex::new(r"(?-u:\b)([0-9]{3})-([0-9]{2})-([0-9]{4})(?-u:\b)").unwrap();
        (0..=text.len()).any(|i| {
            re.captures_at(text, i).is_some_and(|c| {
                let (area, group, serial) = (&c[1], &c[2], &c[3]);
                area != "000"
                    && area != "666"
                    && !area.starts_with('9')
                    && group != "00"
                    && serial != "0000"
            })
        })
    }

    proptest! {
        #[test]
        fn ssn_scan_agrees_with_the_regex(text in "[0-9a_ -]{0,40}|([0-9]{2,4}[- ]){2,6}") {
            prop_assert_eq!(has_ssn(text.as_bytes()), ssn_by_regex(&text), "{:?}", text);
        }
    }

    #[test]
    fn ssn_scan_agrees_with_the_regex_at_the_edges() {
        for text in [
            "123-45-6789",
            "a123-45-6789",
            "_123-45-6789",
            "-123-45-6789-",
            "123-45-67890",
            "1123-45-6789",
            "123-45-6789a",
            "x 123-45-6789 y",
            "000-45-6789 123-45-6789",
            "123-00-6789",
            "123-45-0000",
            "912-45-6789",
            "666-45-6789",
            "123-45-678",
            "912-45-6789-12-3456",
            "",
        ] {
            assert_eq!(has_ssn(text.as_bytes()), ssn_by_regex(text), "{text:?}");
        }
    }

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
