//! Folding text into the ASCII skeleton markings are detected in.
//!
//! Markings are ASCII words, so anything that merely *looks* like one must read as one: the
//! fold drops every default-ignorable code point (zero-width spaces and joiners, soft hyphens,
//! bidirectional controls, variation selectors, tags), ASCII and C1 control characters and
//! combining marks; it maps compatibility forms (fullwidth letters, mathematical alphanumerics,
//! ligatures) by NFKD and look-alike characters of other scripts (Cyrillic `С`, Greek `Τ`, a
//! braille blank that looks like a space) by the Unicode confusables table (UTS #39
//! skeletons); it reads escapes as what they stand for (`\n`, `\t`, `\u0054`: text copied out
//! of JSON or source code); and it collapses every whitespace run into one space, or one
//! newline when the run held a line break. A character with no ASCII reading becomes
//! [`OPAQUE`], which ends a word. Folding only ever makes more text look like a marking, never
//! less, and it is one pass: linear in the input, a table lookup per character.

use std::collections::HashMap;
use std::sync::OnceLock;

use unicode_normalization::char::{decompose_compatible, is_combining_mark};

/// Stands for a character with no ASCII reading: not part of any word.
pub(crate) const OPAQUE: u8 = 0x1A;

/// Whether `c` is dropped by the fold wherever it appears (for tests and fuzzing).
pub fn is_ignorable(c: char) -> bool {
    if c.is_ascii() {
        return matches!(c, '\0'..='\x08' | '\x0e'..='\x1f' | '\x7f');
    }
    if c.is_whitespace() {
        return false;
    }
    if c.is_control() || is_combining_mark(c) {
        return true;
    }
    let mut buf = [0u8; 4];
    let empty = unicode_security::skeleton(c.encode_utf8(&mut buf))
        .next()
        .is_none();
    empty
}

/// What one character folds to, as bytes: ASCII, [`OPAQUE`], or ` ` and `\n` for whitespace.
fn fold_char(ch: char, out: &mut Vec<u8>) {
    if ch.is_whitespace() {
        let newline = matches!(ch, '\u{85}' | '\u{2028}' | '\u{2029}');
        out.push(if newline { b'\n' } else { b' ' });
        return;
    }
    if ch.is_control() {
        return;
    }
    decompose_compatible(ch, |d| {
        if d.is_ascii() {
            out.push(d as u8);
            return;
        }
        if d.is_whitespace() {
            out.push(b' ');
            return;
        }
        if is_combining_mark(d) || d.is_control() {
            return;
        }
        let mut buf = [0u8; 4];
        let start = out.len();
        let mut any = false;
        let mut readable = true;
        for p in unicode_security::skeleton(d.encode_utf8(&mut buf)) {
            any = true;
            if is_combining_mark(p) {
                continue;
            }
            // A prototype that is a space (U+2800, which renders blank) reads as one.
            if p.is_ascii_graphic() || p == ' ' {
                out.push(p as u8);
            } else {
                readable = false;
            }
        }
        if !any {
            // Default-ignorable: dropped.
            return;
        }
        if !readable || out.len() == start {
            out.truncate(start);
            // A run of unreadable characters reads as one (a ligature that decomposes into
            // eighteen Arabic letters is one opaque byte, not eighteen).
            if out.last() != Some(&OPAQUE) {
                out.push(OPAQUE);
            }
        }
    });
}

/// A packed fold of one character: byte 0 is how many bytes follow (at most 7), or [`LONG`]
/// when the fold is longer (kept in [`Tables::long`]).
const LONG: u8 = 0xFF;

/// The fold of every character of the planes that hold assigned characters (0 to 3, and 14
/// for tags and variation selectors), computed once. Other planes hold only unassigned and
/// private-use code points, which read as nothing ASCII.
struct Tables {
    /// Planes 0 to 3, by code point.
    low: Vec<u64>,
    /// Plane 14, by code point minus 0xE0000.
    tags: Vec<u64>,
    /// Folds longer than 7 bytes.
    long: HashMap<u32, Vec<u8>>,
}

fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(|| {
        let mut long = HashMap::new();
        let mut out = Vec::with_capacity(8);
        let mut pack = |cp: u32| -> u64 {
            let Some(ch) = char::from_u32(cp).filter(|c| !c.is_ascii()) else {
                return 0;
            };
            out.clear();
            fold_char(ch, &mut out);
            if out.len() > 7 {
                long.insert(cp, out.clone());
                return u64::from(LONG);
            }
            let mut packed = out.len() as u64;
            for (i, &b) in out.iter().enumerate() {
                packed |= u64::from(b) << (8 * (i + 1));
            }
            packed
        };
        let low = (0..0x40000u32).map(&mut pack).collect();
        let tags = (0xE0000..0xF0000u32).map(&mut pack).collect();
        Tables { low, tags, long }
    })
}

/// Builds the fold tables now rather than on the first non-ASCII text.
pub(crate) fn warm() {
    tables();
}

/// A text folded as detection reads it (ASCII only): folded once, then read by the marking
/// detector and by other detectors that must see through the same disguises (personal data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folded(Vec<u8>);

impl Folded {
    /// Folds `text`.
    pub fn new(text: &str) -> Self {
        Self(fold(text))
    }

    /// The folded text.
    pub fn as_str(&self) -> &str {
        // The fold writes ASCII bytes only.
        std::str::from_utf8(&self.0).unwrap_or("")
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }
}

/// `text` folded as detection reads it (see [`Folded`]).
pub fn fold_text(text: &str) -> String {
    Folded::new(text).as_str().to_owned()
}

/// The folded text: ASCII bytes only.
pub(crate) fn fold(text: &str) -> Vec<u8> {
    let mut f = Folder {
        out: Vec::with_capacity(text.len()),
        space: None,
        tables: None,
    };
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'\\' {
            i = f.escape(text, i);
            continue;
        }
        if b.is_ascii() {
            f.ascii(b);
            i += 1;
            continue;
        }
        // `text` is valid UTF-8, so a non-ASCII byte starts a character here.
        let ch = text[i..].chars().next().unwrap_or('\u{FFFD}');
        f.other(ch);
        i += ch.len_utf8();
    }
    f.out
}

struct Folder {
    out: Vec<u8>,
    /// A whitespace run not yet written: `b' '`, or `b'\n'` once it held a line break.
    space: Option<u8>,
    tables: Option<&'static Tables>,
}

fn hex4(s: &[u8]) -> Option<u32> {
    let s = s.get(..4)?;
    let s = std::str::from_utf8(s).ok()?;
    u32::from_str_radix(s, 16).ok()
}

impl Folder {
    fn push(&mut self, b: u8) {
        // Runs of unreadable characters read as one: nothing is lost, and a flood of them
        // costs the passes after the fold nothing.
        if b == OPAQUE && self.space.is_none() && self.out.last() == Some(&OPAQUE) {
            return;
        }
        if let Some(s) = self.space.take() {
            // Leading whitespace is dropped; a run before text becomes one byte.
            if !self.out.is_empty() {
                self.out.push(s);
            }
        }
        self.out.push(b);
    }

    fn whitespace(&mut self, newline: bool) {
        self.space = Some(if newline || self.space == Some(b'\n') {
            b'\n'
        } else {
            b' '
        });
    }

    fn ascii(&mut self, b: u8) {
        match b {
            b'\n' | b'\r' | 0x0B | 0x0C => self.whitespace(true),
            b' ' | b'\t' => self.whitespace(false),
            // Other control characters are invisible: they must not split a word.
            0x00..=0x1F | 0x7F => {}
            _ => self.push(b),
        }
    }

    /// A run of backslashes at `i`: an escape read as what it stands for (any number of
    /// backslashes, so text escaped twice reads the same), or the backslashes themselves.
    /// Returns where to go on.
    fn escape(&mut self, text: &str, i: usize) -> usize {
        let bytes = text.as_bytes();
        let mut j = i;
        while j < bytes.len() && bytes[j] == b'\\' {
            j += 1;
        }
        match bytes.get(j) {
            Some(b'n' | b'r') => self.whitespace(true),
            Some(b't') => self.whitespace(false),
            Some(b'"' | b'\'' | b'/') => self.push(bytes[j]),
            Some(b'u') => match hex4(&bytes[j + 1..]) {
                Some(cp) => {
                    // A surrogate pair, or a lone half (read as nothing ASCII).
                    let low = (0xD800..0xDC00)
                        .contains(&cp)
                        .then(|| {
                            let k = j + 5;
                            (bytes.get(k..k + 2) == Some(b"\\u"))
                                .then(|| hex4(&bytes[k + 2..]))
                                .flatten()
                                .filter(|lo| (0xDC00..0xE000).contains(lo))
                        })
                        .flatten();
                    let (ch, end) = match low {
                        Some(lo) => (
                            char::from_u32(0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00)),
                            j + 11,
                        ),
                        None => (char::from_u32(cp), j + 5),
                    };
                    match ch {
                        Some(c) if c.is_ascii() => self.ascii(c as u8),
                        Some(c) => self.other(c),
                        None => self.push(OPAQUE),
                    }
                    return end;
                }
                None => {
                    for _ in i..j {
                        self.push(b'\\');
                    }
                    return j;
                }
            },
            _ => {
                for _ in i..j {
                    self.push(b'\\');
                }
                return j;
            }
        }
        j + 1
    }

    fn other(&mut self, ch: char) {
        // The tables hold whitespace too (as ` ` or `\n`).
        let t = *self.tables.get_or_insert_with(tables);
        let cp = ch as u32;
        let packed = match cp {
            0..0x40000 => t.low[cp as usize],
            0xE0000..0xF0000 => t.tags[(cp - 0xE0000) as usize],
            // Unassigned and private-use planes.
            _ => (u64::from(OPAQUE) << 8) | 1,
        };
        if packed as u8 == LONG {
            let long = t.long.get(&cp).map_or(&[][..], Vec::as_slice);
            for &b in long {
                self.byte(b);
            }
            return;
        }
        for i in 0..(packed & 0xFF) as usize {
            self.byte((packed >> (8 * (i + 1))) as u8);
        }
    }

    /// One byte of a character's fold.
    fn byte(&mut self, b: u8) {
        match b {
            b' ' => self.whitespace(false),
            b'\n' => self.whitespace(true),
            OPAQUE => self.push(OPAQUE),
            b => self.ascii(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(s: &str) -> String {
        String::from_utf8(fold(s)).unwrap()
    }

    #[test]
    fn whitespace_runs_become_one_byte() {
        assert_eq!(f("  a \t b\n\n  c  "), "a b\nc");
        assert_eq!(f("a\u{2028}b\u{a0}c\u{3000}d\u{2800}e"), "a\nb c d e");
    }

    #[test]
    fn look_alikes_read_as_ascii() {
        assert_eq!(f("ＴＯＰ ＳＥＣＲＥＴ"), "TOP SECRET");
        assert_eq!(f("\u{421}\u{415}\u{421}R\u{415}\u{422}"), "CECRET");
        assert_eq!(f("S\u{200b}E\u{ad}C\u{2060}R\u{feff}E\u{200d}T"), "SECRET");
        assert_eq!(f("S\u{301}ECRET"), "SECRET");
        assert_eq!(f("\u{1d412}\u{1d404}\u{1d402}"), "SEC");
        assert_eq!(f("S\u{2215}\u{2044}NF"), "S//NF");
        assert_eq!(f("S\0E\x1bC"), "SEC");
    }

    #[test]
    fn escapes_read_as_what_they_stand_for() {
        assert_eq!(
            f(r#"{"doc": "TOP SECRET\nThe plan"}"#),
            "{\"doc\": \"TOP SECRET\nThe plan\"}"
        );
        assert_eq!(f(r"\u0054OP \u0053ECRET"), "TOP SECRET");
        assert_eq!(f(r"a\\nb"), "a\nb", "escaped twice");
        assert_eq!(
            f(r"\ud83d\ude00x"),
            "\u{1a}x",
            "a surrogate pair is one character"
        );
        assert_eq!(f(r"C:\Users\q"), r"C:\Users\q");
        assert_eq!(f(r"\u00zz"), r"\u00zz");
    }

    #[test]
    fn other_scripts_and_private_use_are_opaque() {
        assert_eq!(fold("a漢b"), [b'a', OPAQUE, b'b']);
        assert_eq!(
            fold("a\u{e000}b\u{10ffff}c"),
            [b'a', OPAQUE, b'b', OPAQUE, b'c']
        );
    }

    #[test]
    fn ignorables() {
        for c in [
            '\u{200b}',
            '\u{ad}',
            '\u{feff}',
            '\u{e0041}',
            '\u{fe0f}',
            '\u{34f}',
            '\u{7}',
        ] {
            assert!(is_ignorable(c), "{c:?}");
        }
        for c in ['a', ' ', '\n', 'С', '漢'] {
            assert!(!is_ignorable(c), "{c:?}");
        }
    }
}
