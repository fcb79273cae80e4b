//! Folding text into the ASCII skeleton markings are detected in.
//!
//! Markings are ASCII words, so anything that merely *looks* like one must read as one: the
//! fold drops every default-ignorable code point (zero-width spaces and joiners, soft hyphens,
//! bidirectional controls, variation selectors, tags), ASCII and C1 control characters and
//! combining marks; it maps compatibility forms (fullwidth letters, mathematical alphanumerics,
//! ligatures) by NFKD and look-alike letters of other scripts (Cyrillic `С`, Greek `Τ`) by the
//! Unicode confusables table (UTS #39 skeletons); and it collapses every whitespace run into
//! one space, or one newline when the run held a line break. A character with no ASCII
//! reading becomes [`OPAQUE`], which ends a word. Folding only ever makes more text look like a
//! marking, never less, and it is one pass: linear in the input.

use unicode_normalization::char::{decompose_compatible, is_combining_mark};

/// Stands for a character with no ASCII reading: not part of any word or marking.
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
            if p.is_ascii_graphic() {
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
            out.push(OPAQUE);
        }
    });
}

/// A packed fold of one BMP character: byte 0 is how many bytes follow (at most 7), or
/// [`SLOW`] when the fold is longer and must be computed.
const SLOW: u8 = 0xFF;

/// The fold of every non-ASCII character of the Basic Multilingual Plane, computed once:
/// folding is a table lookup per character for nearly all text.
fn bmp() -> &'static [u64] {
    static TABLE: std::sync::OnceLock<Vec<u64>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut out = Vec::with_capacity(8);
        (0..=0xFFFFu32)
            .map(|cp| {
                let Some(ch) = char::from_u32(cp).filter(|c| !c.is_ascii()) else {
                    return 0;
                };
                out.clear();
                fold_char(ch, &mut out);
                if out.len() > 7 {
                    return u64::from(SLOW);
                }
                let mut packed = out.len() as u64;
                for (i, &b) in out.iter().enumerate() {
                    packed |= u64::from(b) << (8 * (i + 1));
                }
                packed
            })
            .collect()
    })
}

/// The folded text: ASCII bytes only.
/// `text` folded as detection reads it (ASCII only), for other detectors that must see through
/// the same disguises (personal data).
pub fn fold_text(text: &str) -> String {
    // The fold writes ASCII bytes only.
    String::from_utf8(fold(text)).unwrap_or_default()
}

/// The folded text: ASCII bytes only.
pub(crate) fn fold(text: &str) -> Vec<u8> {
    let mut f = Folder {
        out: Vec::with_capacity(text.len()),
        space: None,
    };
    let bytes = text.as_bytes();
    let table = if bytes.is_ascii() { &[][..] } else { bmp() };
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b.is_ascii() {
            f.ascii(b);
            i += 1;
            continue;
        }
        // `text` is valid UTF-8, so a non-ASCII byte starts a character here.
        let ch = text[i..].chars().next().unwrap_or('\u{FFFD}');
        f.other(ch, table);
        i += ch.len_utf8();
    }
    f.out
}

struct Folder {
    out: Vec<u8>,
    /// A whitespace run not yet written: `b' '`, or `b'\n'` once it held a line break.
    space: Option<u8>,
}

impl Folder {
    fn push(&mut self, b: u8) {
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

    fn other(&mut self, ch: char, table: &[u64]) {
        let packed = table.get(ch as usize).copied().unwrap_or(u64::from(SLOW));
        if packed as u8 != SLOW {
            for i in 0..(packed & 0xFF) as usize {
                self.byte((packed >> (8 * (i + 1))) as u8);
            }
            return;
        }
        let mut out = Vec::new();
        fold_char(ch, &mut out);
        for b in out {
            self.byte(b);
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
        assert_eq!(f("a\u{2028}b\u{a0}c\u{3000}d"), "a\nb c d");
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
    fn other_scripts_are_opaque() {
        assert_eq!(fold("a漢b"), [b'a', OPAQUE, b'b']);
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
