//! Folding text into the ASCII skeleton markings are detected in.
//!
//! Markings are ASCII words, so anything that merely *looks* like one must read as one: the
//! fold drops every default-ignorable code point (zero-width spaces and joiners, soft hyphens,
//! bidirectional controls, variation selectors, tags), ASCII and C1 control characters and
//! combining marks; it maps compatibility forms (fullwidth letters, mathematical alphanumerics,
//! ligatures) by NFKD and look-alike characters of other scripts (Cyrillic `С`, Greek `Τ`, a
//! braille blank that looks like a space) by the Unicode confusables table (UTS #39
//! skeletons); a character with no ASCII reading (another script, private use, unassigned)
//! reads as a space; and every run of whitespace becomes one space, or one newline when the run
//! held a line break.
//!
//! A text is read twice when it holds escapes or markup: as written ([`Folded`]'s plain
//! reading), and decoded (`\n`, `\t`, `\u0054`; `&#84;`, `&amp;`; `<b>` and `<!-- -->` read as
//! spaces), since either may be what a reader sees. Detection joins what both readings hold,
//! so folding only ever makes more text look like a marking, never less. Each reading is one
//! pass, a table lookup per character: linear in the input.

use std::collections::HashMap;
use std::sync::OnceLock;

use unicode_normalization::char::{decompose_compatible, is_combining_mark};

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

/// What one character folds to, as bytes: ASCII, with ` ` and `\n` for whitespace.
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
            // No ASCII reading: it separates words, and a run of such characters is one space.
            out.truncate(start);
            if out.last() != Some(&b' ') {
                out.push(b' ');
            }
        }
    });
}

/// A packed fold of one character: byte 0 is how many bytes follow (at most 7), or [`LONG`]
/// when the fold is longer (kept in [`Tables::long`]).
const LONG: u8 = 0xFF;

/// The fold of every character of the planes that hold assigned characters (0 to 3, and 14
/// for tags and variation selectors), computed once. Other planes hold only unassigned and
/// private-use code points, which read as a space.
struct Tables {
    /// Planes 0 to 3, by code point.
    low: Vec<u64>,
    /// Plane 14, by code point minus 0xE0000.
    tags: Vec<u64>,
    /// Folds longer than 7 bytes.
    long: HashMap<u32, Vec<u8>>,
}

impl std::fmt::Debug for Tables {
    // The tables are megabytes of numbers; their sizes are what a reader wants.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tables")
            .field("low", &self.low.len())
            .field("tags", &self.tags.len())
            .field("long", &self.long.len())
            .finish()
    }
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

/// Whether a text needs its decoded reading (it holds an escape, a character reference or
/// markup).
fn has_codes(text: &str) -> bool {
    text.bytes().any(|b| matches!(b, b'\\' | b'&' | b'<'))
}

/// A text folded as detection reads it (ASCII only), in both readings: folded once, then read
/// by the marking detector and by other detectors that must see through the same disguises
/// (personal data). More text can be appended (streamed output).
#[derive(Debug, Clone)]
pub struct Folded {
    plain: Folder,
    /// `None` while the text holds nothing to decode (the decoded reading is the plain one).
    decoded: Option<Folder>,
}

impl Folded {
    /// Folds `text`.
    pub fn new(text: &str) -> Self {
        let mut f = Self {
            plain: Folder::new(text.len(), false),
            decoded: None,
        };
        f.push_str(text);
        f.flush();
        f
    }

    /// Nothing folded yet, for text that arrives in pieces ([`Folded::push_str`], then
    /// [`Folded::flush`]).
    pub fn empty() -> Self {
        Self {
            plain: Folder::new(0, false),
            decoded: None,
        }
    }

    /// Appends `text`, folded; pieces fold as their concatenation does.
    pub fn push_str(&mut self, text: &str) {
        if self.decoded.is_none() && has_codes(text) {
            let mut d = self.plain.clone();
            d.decode = true;
            self.decoded = Some(d);
        }
        self.plain.fold(text);
        if let Some(d) = &mut self.decoded {
            d.fold(text);
        }
    }

    /// Ends the text: an escape, reference or markup it ended inside of is read as written.
    /// Until then the decoded reading lacks it (the plain reading holds it as written).
    pub fn flush(&mut self) {
        if let Some(d) = &mut self.decoded {
            d.flush();
            // Nothing was decoded (`<!--` that never ends, `C:\Users`): one reading is read.
            if d.out == self.plain.out {
                self.decoded = None;
            }
        }
    }

    /// Whether the end of what was appended is held back unread by the decoded reading (an
    /// escape, reference or markup it may still complete): text must not leave a stream
    /// before both readings have read it.
    pub fn holds_back(&self) -> bool {
        self.decoded.as_ref().is_some_and(|d| !d.carry.is_empty())
    }

    /// Both readings (one when they are the same).
    pub(crate) fn readings(&self) -> impl Iterator<Item = &[u8]> {
        std::iter::once(self.plain.out.as_slice())
            .chain(self.decoded.as_ref().map(|d| d.out.as_slice()))
    }

    /// The plain reading, as text (for detectors of other things than markings).
    pub fn as_str(&self) -> &str {
        // The fold writes ASCII bytes only.
        std::str::from_utf8(&self.plain.out).unwrap_or("")
    }

    /// The decoded reading, when it differs from the plain one.
    pub fn decoded_str(&self) -> Option<&str> {
        self.decoded
            .as_ref()
            .map(|d| std::str::from_utf8(&d.out).unwrap_or(""))
    }

    /// Length of the longer reading, in folded bytes.
    pub fn len(&self) -> usize {
        self.readings().map(<[u8]>::len).max().unwrap_or(0)
    }

    /// Whether nothing was folded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keeps only the end of each reading: at least `keep` folded bytes, starting after a line
    /// break when one leaves at least that much, else mid-line behind a byte that is no part
    /// of any marking (so its first word reads as neither a line start nor a marking's end).
    pub fn keep_end(&mut self, keep: usize) {
        self.plain.keep_end(keep);
        if let Some(d) = &mut self.decoded {
            d.keep_end(keep);
        }
    }
}

/// `text` folded as detection reads it (the plain reading; see [`Folded`]).
pub fn fold_text(text: &str) -> String {
    Folded::new(text).as_str().to_owned()
}

/// Stands at the start of a context cut mid-line: no word, no space, no decoration.
const CUT: u8 = b'\\';

#[derive(Debug, Clone)]
struct Folder {
    out: Vec<u8>,
    /// A whitespace run not yet written: `b' '`, or `b'\n'` once it held a line break.
    space: Option<u8>,
    /// Read escapes, character references and markup as what they stand for.
    decode: bool,
    /// An escape, reference or markup the text so far ended inside of: read once more text
    /// completes it (or, at [`Folder::flush`], as written), so text folded in pieces reads
    /// as the whole does.
    carry: String,
    tables: Option<&'static Tables>,
}

/// The most bytes an unfinished HTML comment is searched for its end.
const COMMENT_WINDOW: usize = 4096;
/// The most bytes an unfinished tag is searched for its `>`.
const TAG_WINDOW: usize = 256;
/// The most bytes of a character reference's name.
const REFERENCE_WINDOW: usize = 12;

/// Where the next occurrence of something (a comment end `-->`, an escape or reference) in a
/// text is, found by one forward scan over the whole text however many comments open before
/// it (so `<!--` repeated without an end is linear).
#[derive(Debug, Default)]
struct Closes {
    /// Searched from here on ...
    from: usize,
    /// ... and the first `-->` there (`None`: there is none).
    at: Option<usize>,
    searched: bool,
}

impl Closes {
    /// The first match of `find` at or after `from` (asked with `from` never decreasing,
    /// each search starts past the last one found: the scans never overlap).
    fn next(
        &mut self,
        bytes: &[u8],
        from: usize,
        find: fn(&[u8]) -> Option<usize>,
    ) -> Option<usize> {
        let known = self.searched && self.from <= from && self.at.is_none_or(|c| c >= from);
        if !known {
            self.from = from;
            self.at = bytes.get(from..).and_then(find).map(|p| from + p);
            self.searched = true;
        }
        self.at
    }
}

fn comment_end(rest: &[u8]) -> Option<usize> {
    rest.windows(3).position(|w| w == b"-->")
}

fn code_start(rest: &[u8]) -> Option<usize> {
    rest.iter().position(|&b| b == b'\\' || b == b'&')
}

/// Whether the escape, reference or markup starting at `i` runs to the end of `bytes`
/// unfinished, so more text could still make it one.
fn unfinished(bytes: &[u8], i: usize) -> bool {
    let rest = &bytes[i..];
    match rest[0] {
        b'\\' => {
            // A run this long is not waited for: text must not be held back without bound.
            let run = rest.iter().take_while(|&&b| b == b'\\').count();
            let after = &rest[run..];
            match after.first() {
                None => true,
                Some(b'u') => {
                    let hex = &after[1..];
                    if hex.len() < 4 {
                        return hex.iter().all(u8::is_ascii_hexdigit);
                    }
                    // A high surrogate waits for its low half.
                    let high = hex4(hex).is_some_and(|cp| (0xD800..0xDC00).contains(&cp));
                    let low = &hex[4..];
                    high && low.len() < 6
                        && low.iter().zip(b"\\u").all(|(a, b)| a == b)
                        && low.iter().skip(2).all(u8::is_ascii_hexdigit)
                }
                Some(_) => false,
            }
        }
        b'&' => {
            let name = &rest[1..];
            name.len() < REFERENCE_WINDOW
                && name.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'#')
        }
        b'<' => {
            if b"<!--".starts_with(&rest[..rest.len().min(4)]) && rest.len() < 4 {
                return true;
            }
            if rest.starts_with(b"<!--") {
                return rest.len() < 4 + COMMENT_WINDOW + 2
                    && !rest[4..].windows(3).any(|w| w == b"-->");
            }
            match rest.get(1) {
                None => true,
                Some(&f) if f.is_ascii_alphabetic() || f == b'/' || f == b'!' => {
                    rest.len() < 1 + TAG_WINDOW
                        && !rest[1..].iter().any(|&b| matches!(b, b'>' | b'\n' | b'<'))
                }
                Some(_) => false,
            }
        }
        _ => false,
    }
}

fn hex4(s: &[u8]) -> Option<u32> {
    // Four hex digits exactly (`from_str_radix` alone would take a sign: `\u+814`).
    let s = s.get(..4).filter(|s| s.iter().all(u8::is_ascii_hexdigit))?;
    let s = std::str::from_utf8(s).ok()?;
    u32::from_str_radix(s, 16).ok()
}

impl Folder {
    fn new(capacity: usize, decode: bool) -> Self {
        Self {
            out: Vec::with_capacity(capacity),
            space: None,
            decode,
            carry: String::new(),
            tables: None,
        }
    }

    /// Folds `text`, holding back an escape, reference or markup it ends inside of.
    fn fold(&mut self, text: &str) {
        if self.carry.is_empty() {
            self.fold_from(text, false);
        } else {
            let mut joined = std::mem::take(&mut self.carry);
            joined.push_str(text);
            self.fold_from(&joined, false);
        }
    }

    /// Reads what was held back as written: the text has ended.
    fn flush(&mut self) {
        let carry = std::mem::take(&mut self.carry);
        self.fold_from(&carry, true);
    }

    fn fold_from(&mut self, text: &str, last: bool) {
        let bytes = text.as_bytes();
        let mut closes = [Closes::default(), Closes::default()];
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if self.decode {
                if !last && matches!(b, b'\\' | b'&' | b'<') && unfinished(bytes, i) {
                    // `b` is ASCII, so `i` is a character boundary. A run of backslashes
                    // reads as one, so one is kept: what is held back stays a few bytes.
                    let rest = &text[i..];
                    let run = rest.bytes().take_while(|&b| b == b'\\').count();
                    self.carry = match run {
                        0 => rest.to_owned(),
                        _ => format!("\\{}", &rest[run..]),
                    };
                    return;
                }
                let next = match b {
                    b'\\' => self.escape(bytes, i),
                    b'&' => self.reference(bytes, i),
                    b'<' => self.markup(bytes, i, &mut closes),
                    _ => None,
                };
                if let Some(next) = next {
                    i = next;
                    continue;
                }
            }
            if b.is_ascii() {
                self.ascii(b);
                i += 1;
                continue;
            }
            // `text` is valid UTF-8, so a non-ASCII byte starts a character here.
            let ch = text[i..].chars().next().unwrap_or('\u{FFFD}');
            self.other(ch);
            i += ch.len_utf8();
        }
    }

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

    /// A character decoded from an escape or a reference.
    fn char(&mut self, c: char) {
        if c.is_ascii() {
            self.ascii(c as u8);
        } else {
            self.other(c);
        }
    }

    /// An escape at `i` (a run of backslashes, so text escaped twice reads the same), read
    /// as what it stands for; a run that escapes nothing reads as one backslash.
    fn escape(&mut self, bytes: &[u8], i: usize) -> Option<usize> {
        let mut j = i;
        while j < bytes.len() && bytes[j] == b'\\' {
            j += 1;
        }
        let Some(end) = self.escaped(bytes, j) else {
            // Not an escape: the run reads as one backslash (as an escaped backslash does),
            // read once, so a long run stays linear and needs no more than one held back.
            self.ascii(b'\\');
            return Some(j);
        };
        Some(end)
    }

    /// What the escape letter at `j` (after its backslashes) stands for, and where it ends.
    fn escaped(&mut self, bytes: &[u8], j: usize) -> Option<usize> {
        match bytes.get(j)? {
            b'n' | b'r' => self.whitespace(true),
            b't' => self.whitespace(false),
            b'"' | b'\'' | b'/' => self.push(bytes[j]),
            b'u' => {
                let cp = hex4(bytes.get(j + 1..)?)?;
                // A surrogate pair, or a lone half (read as a space).
                let k = j + 5;
                let low = (0xD800..0xDC00)
                    .contains(&cp)
                    .then(|| {
                        (bytes.get(k..k + 2) == Some(b"\\u"))
                            .then(|| bytes.get(k + 2..).and_then(hex4))
                            .flatten()
                            .filter(|lo| (0xDC00..0xE000).contains(lo))
                    })
                    .flatten();
                let (ch, end) = match low {
                    Some(lo) => (
                        char::from_u32(0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00)),
                        k + 6,
                    ),
                    None => (char::from_u32(cp), k),
                };
                match ch {
                    Some(c) => self.char(c),
                    None => self.whitespace(false),
                }
                return Some(end);
            }
            _ => return None,
        }
        Some(j + 1)
    }

    /// A character reference at `i` (`&#84;`, `&#x54;`, `&amp;` and the other XML ones,
    /// `&nbsp;`); `None` when it is none.
    fn reference(&mut self, bytes: &[u8], i: usize) -> Option<usize> {
        let end = i
            + 1
            + bytes
                .get(i + 1..)?
                .iter()
                .take(REFERENCE_WINDOW)
                .position(|&b| b == b';')?;
        let name = std::str::from_utf8(&bytes[i + 1..end]).ok()?;
        let c = if let Some(num) = name.strip_prefix('#') {
            // Digits only: the parsers alone would take a sign (`&#+84;`).
            let cp = match num.strip_prefix(['x', 'X']) {
                Some(hex) if hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
                    u32::from_str_radix(hex, 16).ok()?
                }
                None if num.bytes().all(|b| b.is_ascii_digit()) => num.parse().ok()?,
                _ => return None,
            };
            char::from_u32(cp).unwrap_or(' ')
        } else {
            match name {
                "amp" => '&',
                "lt" => '<',
                "gt" => '>',
                "quot" => '"',
                "apos" => '\'',
                "sol" => '/',
                "nbsp" => ' ',
                // Invisible: read as nothing, as the characters they stand for are.
                "shy" => '\u{ad}',
                "zwj" => '\u{200d}',
                "zwnj" => '\u{200c}',
                "NoBreak" => '\u{2060}',
                "lpar" => '(',
                "rpar" => ')',
                _ => return None,
            }
        };
        self.char(c);
        Some(end + 1)
    }

    /// Markup at `i`: an HTML comment or a tag (up to a line's end), read as a space. Markup
    /// holding an escape or a reference is read as text instead, so what is written inside
    /// it escaped is read decoded (a comment is no place to hide `\u0053ECRET//NOFORN`).
    fn markup(&mut self, bytes: &[u8], i: usize, closes: &mut [Closes; 2]) -> Option<usize> {
        let [ends, codes] = closes;
        if bytes.get(i..i + 4) == Some(b"<!--") {
            let close = ends.next(bytes, i + 4, comment_end)?;
            if close - (i + 4) >= COMMENT_WINDOW {
                return None;
            }
            if codes
                .next(bytes, i + 4, code_start)
                .is_some_and(|c| c < close)
            {
                return None;
            }
            self.whitespace(false);
            return Some(close + 3);
        }
        let first = *bytes.get(i + 1)?;
        if !(first.is_ascii_alphabetic() || first == b'/' || first == b'!') {
            return None;
        }
        let rest = &bytes[i + 1..];
        let close = rest
            .iter()
            .take(TAG_WINDOW)
            .take_while(|&&b| b != b'\n' && b != b'<')
            .position(|&b| b == b'>')?;
        if rest[..close].iter().any(|&b| b == b'\\' || b == b'&') {
            return None;
        }
        self.whitespace(false);
        Some(i + 1 + close + 1)
    }

    fn other(&mut self, ch: char) {
        // The tables hold whitespace too (as ` ` or `\n`).
        let t = *self.tables.get_or_insert_with(tables);
        let cp = ch as u32;
        let packed = match cp {
            0..0x40000 => t.low[cp as usize],
            0xE0000..0xF0000 => t.tags[(cp - 0xE0000) as usize],
            // Unassigned and private-use planes: a space.
            _ => (u64::from(b' ') << 8) | 1,
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
            b => self.ascii(b),
        }
    }

    fn keep_end(&mut self, keep: usize) {
        if self.out.len() <= 2 * keep {
            return;
        }
        let from = self.out.len() - 2 * keep;
        // After the first line break that leaves at least `keep` bytes, else mid-line.
        let cut = self.out[from..self.out.len() - keep]
            .iter()
            .position(|&b| b == b'\n')
            .map(|nl| from + nl + 1);
        match cut {
            Some(c) => {
                self.out.drain(..c);
            }
            None => {
                self.out.drain(..from);
                self.out.insert(0, CUT);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(s: &str) -> String {
        Folded::new(s).as_str().to_owned()
    }

    fn d(s: &str) -> String {
        let folded = Folded::new(s);
        folded.decoded_str().unwrap_or(folded.as_str()).to_owned()
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
    fn escapes_and_markup_are_a_second_reading() {
        let json = r#"{"doc": "TOP SECRET\nThe plan"}"#;
        assert_eq!(f(json), json, "the plain reading keeps them");
        assert_eq!(d(json), "{\"doc\": \"TOP SECRET\nThe plan\"}");
        assert_eq!(d(r"\u0054OP \u0053ECRET"), "TOP SECRET");
        assert_eq!(d(r"a\\nb"), "a\nb", "escaped twice");
        assert_eq!(
            d(r"\ud83d\ude00x"),
            "x",
            "a surrogate pair is one character"
        );
        assert_eq!(d(r"C:\Users\q"), r"C:\Users\q");
        assert_eq!(d(r"\u00zz"), r"\u00zz");
        assert_eq!(
            d("&#84;OP SECRET&#47;&#47;SI &amp; x"),
            "TOP SECRET//SI & x"
        );
        assert_eq!(d("<h1>SECRET</h1><!-- x -->//NF"), "SECRET //NF");
        assert_eq!(d("a < b and c > d"), "a < b and c > d");
        // A comment ends within its window, or is text.
        let near = format!("a<!--{}-->b", "x".repeat(COMMENT_WINDOW - 1));
        assert_eq!(d(&near), "a b");
        let far = format!("a<!--{}-->b", "x".repeat(COMMENT_WINDOW));
        assert_eq!(d(&far), far);
        assert_eq!(d("<!--<!--<!-- x -->y"), "y");
        assert_eq!(d("<!-- a --> b <!-- c -->d"), "b d");
        let unclosed = "<!--".repeat(3000);
        assert_eq!(d(&unclosed), unclosed);
        // Markup holding escapes or references is text: what they stand for is read.
        assert_eq!(
            d(r"a <!-- \u0053ECRET//NOFORN --> b"),
            "a <!-- SECRET//NOFORN --> b"
        );
        assert_eq!(d("<i title=\"&#83;\">x</i>"), "<i title=\"S\">x");
        assert_eq!(d("SE&shy;C&zwj;R&zwnj;E&NoBreak;T"), "SECRET");
    }

    #[test]
    fn other_scripts_and_private_use_read_as_spaces() {
        assert_eq!(f("a漢字b"), "a b");
        assert_eq!(f("a\u{e000}b\u{10ffff}c"), "a b c");
    }

    #[test]
    fn appended_text_folds_as_if_it_were_one() {
        let whole = Folded::new("TOP  \n SECRET\\nx");
        let mut parts = Folded::new("TOP  ");
        parts.push_str("\n SECRET");
        parts.push_str("\\nx");
        parts.flush();
        assert_eq!(parts.as_str(), whole.as_str());
        assert_eq!(parts.decoded_str(), whole.decoded_str());
    }

    #[test]
    fn escapes_references_and_markup_cut_between_pieces_read_whole() {
        let long_runs = format!("{}n{}x TOP", "\\".repeat(100), "\\".repeat(70));
        let texts = [
            r"TOP\u0020SECRET x",
            r"a\\nb",
            r"\ud83d\ude00 x",
            r"TOPOP\u+814OHCS-PE\u+014OICE*",
            r"a <!-- \u0053ECRET//NF --> b <!-- c --> d",
            "<i title=\"&#83;\">x</i> SE&shy;CRET",
            "&#+84;OP &#x+54;OP",
            long_runs.as_str(),
            "&#84;OP SECRET &amp; b",
            "TOP<!-- a. b -->SECRET",
            "<a href=\"x.y\">SECRET</a> z",
            r"ends with \u00",
            "ends with &#8",
            "ends with <b",
            "ends with \\",
        ];
        for text in texts {
            let whole = Folded::new(text);
            for cut in (0..=text.len()).filter(|&c| text.is_char_boundary(c)) {
                let mut parts = Folded::empty();
                parts.push_str(&text[..cut]);
                parts.push_str(&text[cut..]);
                parts.flush();
                assert_eq!(parts.as_str(), whole.as_str(), "{text:?} at {cut}");
                assert_eq!(
                    parts.decoded_str(),
                    whole.decoded_str(),
                    "{text:?} at {cut}"
                );
            }
        }
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
