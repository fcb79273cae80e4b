//! Finding markings in free text: banner lines and portion marks in any message, any case,
//! at line starts or inside text, and wrapped across lines the way documents wrap them.
//!
//! One pass of an Aho-Corasick automaton over a whitespace-folded copy of the text finds every
//! place a marking could start (a spelled-out level, an abbreviated level followed by `//`, an
//! opening parenthesis); each candidate is then parsed against the encodings. Detection only
//! ever raises a label: whatever it finds is joined in, never subtracted.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

use crate::{Encodings, Label};

/// Longest portion mark looked at, in bytes.
const MAX_PORTION: usize = 96;
/// Longest banner looked at, in bytes.
const MAX_BANNER: usize = 256;

#[derive(Debug, Clone, Copy)]
enum Start {
    /// A spelled-out level name.
    Level,
    /// An abbreviated level immediately followed by `//`.
    AbbrevBanner,
    /// `(`, a possible portion mark.
    Paren,
}

/// A marking found in text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The label it denotes.
    pub label: Label,
    /// Byte offset in the whitespace-folded text (for reasons and tests, not for slicing input).
    pub at: usize,
}

/// A marking detector for one enclave's encodings.
#[derive(Debug, Clone)]
pub struct Detector {
    encodings: Encodings,
    automaton: AhoCorasick,
    starts: Vec<Start>,
}

fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric()
}

fn is_marking_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b' ' | b'/' | b',' | b'-')
}

/// Folds every whitespace run into one space and remembers which positions began a line.
fn fold(text: &str) -> (String, Vec<bool>) {
    let mut out = String::with_capacity(text.len());
    let mut line_start = Vec::with_capacity(text.len());
    let mut at_line_start = true;
    let mut pending_space = false;
    for ch in text.chars() {
        if ch.is_whitespace() {
            if ch == '\n' || ch == '\r' {
                at_line_start = true;
            }
            pending_space = !out.is_empty();
            continue;
        }
        if pending_space {
            out.push(' ');
            line_start.push(false);
            pending_space = false;
        }
        let start = out.len();
        out.push(ch);
        line_start.resize(out.len(), false);
        line_start[start] = at_line_start;
        at_line_start = false;
    }
    (out, line_start)
}

impl Detector {
    /// Builds the automaton for `encodings`' levels.
    pub fn new(encodings: &Encodings) -> Self {
        let mut patterns = Vec::new();
        let mut starts = Vec::new();
        for (name, abbrev) in &encodings.levels {
            patterns.push(name.clone());
            starts.push(Start::Level);
            if abbrev != name {
                patterns.push(format!("{abbrev}//"));
                starts.push(Start::AbbrevBanner);
            }
        }
        patterns.push("(".to_owned());
        starts.push(Start::Paren);
        let automaton = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostLongest)
            .build(&patterns)
            .expect("level names are short literal patterns");
        Self {
            encodings: encodings.clone(),
            automaton,
            starts,
        }
    }

    /// Every marking in `text`, in order.
    pub fn find(&self, text: &str) -> Vec<Found> {
        let (flat, line_start) = fold(text);
        let bytes = flat.as_bytes();
        let mut found = Vec::new();
        // A portion mark's inside (`(TS//SI)`) would otherwise be found again as a banner.
        let mut skip_until = 0;
        for m in self.automaton.find_iter(&flat) {
            let (s, e) = (m.start(), m.end());
            if s < skip_until || (s > 0 && is_word(bytes[s - 1])) {
                continue;
            }
            let label = match self.starts[m.pattern().as_usize()] {
                Start::Paren => self.portion(&flat, s, line_start[s]).map(|(label, end)| {
                    skip_until = end;
                    label
                }),
                Start::AbbrevBanner => self.banner(&flat, s),
                Start::Level => {
                    if e < bytes.len() && is_word(bytes[e]) {
                        continue;
                    }
                    let rest = flat[e..].trim_start_matches(' ');
                    if rest.starts_with("//") {
                        self.banner(&flat, s)
                    } else if line_start[s] && self.line_is_only(&flat, &line_start, e) {
                        // A line that is nothing but a level name is a banner line.
                        self.encodings.parse(&flat[s..e]).ok()
                    } else {
                        None
                    }
                }
            };
            if let Some(label) = label {
                found.push(Found { label, at: s });
            }
        }
        found
    }

    /// The join of every marking in the texts, or `None` when there is none.
    pub fn label_of<'a>(&self, texts: impl IntoIterator<Item = &'a str>) -> Option<Label> {
        texts
            .into_iter()
            .flat_map(|t| self.find(t))
            .map(|f| f.label)
            .reduce(|a, b| a.join(&b))
    }

    fn line_is_only(&self, flat: &str, line_start: &[bool], end: usize) -> bool {
        // The next character is the end of the text or begins a new line.
        let bytes = flat.as_bytes();
        match bytes.get(end) {
            None => true,
            Some(b' ') => line_start.get(end + 1).copied().unwrap_or(true),
            Some(_) => false,
        }
    }

    /// The longest prefix of the marking-like run at `start` that parses.
    fn banner(&self, flat: &str, start: usize) -> Option<Label> {
        let bytes = flat.as_bytes();
        let mut end = start;
        while end < bytes.len() && end - start < MAX_BANNER && is_marking_char(bytes[end]) {
            end += 1;
        }
        self.longest_prefix(&flat[start..end])
    }

    /// The longest prefix of `text`, cut at a space, slash or comma, that parses.
    fn longest_prefix(&self, text: &str) -> Option<Label> {
        let mut candidate = text.trim_end_matches([' ', '/', ',', '-']);
        loop {
            if let Ok(label) = self.encodings.parse(candidate) {
                return Some(label);
            }
            // Drop the last word (at a space, a slash or a comma) and try again.
            let cut = candidate.rfind([' ', '/', ','])?;
            candidate = candidate[..cut].trim_end_matches([' ', '/', ',', '-']);
            if candidate.is_empty() {
                return None;
            }
        }
    }

    /// The portion mark at `start` and the offset just past its closing parenthesis.
    fn portion(&self, flat: &str, start: usize, at_line_start: bool) -> Option<(Label, usize)> {
        let window = flat.get(start..(start + MAX_PORTION).min(flat.len()))?;
        let close = window.find(')')?;
        let inner = &window[1..close];
        let label = match self.encodings.parse(&window[..=close]) {
            Ok(label) => label,
            // `(TS//SI//FAKE/NF)`: a known level and `//` make it a marking even with a word we
            // do not know; every known word still counts.
            Err(_) if inner.contains("//") => self.encodings.parse_lenient(&window[..=close])?,
            Err(_) => return None,
        };
        // `(c)`, `(s)` and `(u)` are everyday text (copyright, plurals, list items): a mark that
        // is only a one-letter level counts only in capitals at the start of a paragraph.
        let bare_letter = inner.trim().len() == 1;
        if bare_letter && !(at_line_start && inner.trim().bytes().all(|b| b.is_ascii_uppercase())) {
            return None;
        }
        Some((label, start + close + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn banners(text: &str) -> Vec<String> {
        let e = Encodings::builtin();
        Detector::new(&e)
            .find(text)
            .iter()
            .map(|f| e.banner(&f.label))
            .collect()
    }

    #[test]
    fn banners_anywhere_in_any_case() {
        assert_eq!(
            banners("TOP SECRET//SI/TK//NOFORN\nThe plan."),
            ["TOP SECRET//SI/TK//NOFORN"]
        );
        assert_eq!(banners("see the secret//noforn annex"), ["SECRET//NOFORN"]);
        assert_eq!(banners("SECRET//NOFORN is the rule"), ["SECRET//NOFORN"]);
        assert_eq!(banners("header\nSECRET\nbody"), ["SECRET"]);
        assert_eq!(banners("  confidential  \n"), ["CONFIDENTIAL"]);
        assert_eq!(banners("TS//SI text"), ["TOP SECRET//SI"]);
    }

    #[test]
    fn wrapped_banners() {
        assert_eq!(
            banners("TOP SECRET//SI/TK//\nNOFORN"),
            ["TOP SECRET//SI/TK//NOFORN"]
        );
        assert_eq!(banners("TOP\nSECRET//SI"), ["TOP SECRET//SI"]);
        assert_eq!(
            banners("SECRET//REL TO USA,\n  GBR, AUS\nbody"),
            ["SECRET//REL TO USA, AUS, GBR"]
        );
    }

    #[test]
    fn portion_marks() {
        assert_eq!(
            banners("(TS//SI//NF) The source reports."),
            ["TOP SECRET//SI//NOFORN"]
        );
        assert_eq!(banners("para one.\n(S) para two."), ["SECRET"]);
        assert_eq!(
            banners("inline (s//rel to usa, gbr) mark"),
            ["SECRET//REL TO USA, GBR"]
        );
        assert_eq!(banners("(CUI) privacy"), ["CUI"]);
        assert_eq!(banners("(U//FOUO) note"), ["UNCLASSIFIED//FOUO"]);
    }

    #[test]
    fn everyday_text_is_not_a_marking() {
        for text in [
            "the secret to good bread",
            "Copyright (C) 2024",
            "list the file(s) here",
            "options (a), (b) and (c)",
            "https://example.com//path",
            "a secretary",
            "(see above)",
            "top secretive",
        ] {
            assert!(banners(text).is_empty(), "{text} -> {:?}", banners(text));
        }
    }

    #[test]
    fn the_label_of_many_texts_is_their_join() {
        let e = Encodings::builtin();
        let d = Detector::new(&e);
        let l = d
            .label_of(["(S//SI) a", "b\nCONFIDENTIAL//TK//NOFORN", "nothing"])
            .unwrap();
        assert_eq!(e.banner(&l), "SECRET//SI/TK//NOFORN");
        assert!(d.label_of(["plain text"]).is_none());
    }
}
