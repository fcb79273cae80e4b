//! Finding markings in free text: banner lines and portion marks in any message, any case,
//! at line starts or inside text, wrapped across lines the way documents wrap them, and
//! disguised the ways text can be disguised (see [`crate::fold`]).
//!
//! Words are compared in a canonical form that ignores case and the ASCII look-alikes the
//! confusables table identifies (`I`, `l` and `1`; `O` and `0`), so `T0P SECRET` and `S1`
//! read as written to look. One pass over the folded text reads it word by word. A word that is a level (spelled out,
//! glued or hyphenated, `TOPSECRET`, `TOP-SECRET`, or abbreviated) followed by `//` starts a
//! marking, read to its end: every control word after it is looked up in the encodings, and
//! one that is not there is reported as [`Unknown`] (which must deny), never skipped with what
//! follows it. A level in parentheses is a bare portion mark, and a spelled-out level alone on
//! its line is a banner. Nothing is read twice, so detection is linear in the input; it only
//! ever raises a label.

use std::collections::HashMap;

use crate::fold::Folded;
use crate::label::{Releasability, HOME};
use crate::{Encodings, Label};

/// Longest word compared with the vocabulary; longer ones are unknown.
const MAX_WORD: usize = 40;
/// Longest marking read; a longer one is reported unknown.
const MAX_MARKING: usize = 1024;
/// Unknown words kept per scan (the first ones; one is enough to deny).
const MAX_UNKNOWN: usize = 8;

/// A marking found in text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The label it denotes.
    pub label: Label,
    /// Byte offset in the folded text (for reasons and tests, not for slicing input).
    pub at: usize,
}

/// A word inside a detected marking that the encodings do not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unknown {
    /// The word, upper case (at most 40 characters).
    pub word: String,
    /// Byte offset in the folded text.
    pub at: usize,
}

/// Everything one text holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    /// The markings, in order.
    pub found: Vec<Found>,
    /// Words of detected markings the encodings do not know (the first few).
    pub unknown: Vec<Unknown>,
}

/// A detected marking holds a word the encodings do not know: the request must be denied,
/// since the word may be a control that would raise its label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a marking in the text contains '{word}', which is not a word of this enclave's label encodings")]
pub struct UnknownMarking {
    /// The word, upper case.
    pub word: String,
}

/// One way to spell a level: a word (the key it is found under), maybe followed by more.
#[derive(Debug, Clone)]
struct Spelling {
    level: u8,
    /// The words of a multi-word name after the first (`SECRET` after `TOP`).
    rest: Vec<Vec<u8>>,
    /// Whether this is the abbreviation.
    abbreviated: bool,
}

/// FNV-1a: the vocabulary maps are looked up once per word of every request, with keys of
/// a few bytes that nobody can choose to collide usefully (a collision only costs a compare).
#[derive(Debug, Clone, Copy)]
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

type FnvMap<V> = HashMap<Vec<u8>, V, std::hash::BuildHasherDefault<Fnv>>;

/// What a control word means. A canonical spelling may mean several things (`SI` and `SL` in
/// an enclave that has both): every meaning applies, which only raises the label.
#[derive(Debug, Clone)]
enum Meaning {
    NoForn,
    /// Indexes into the detector's name lists.
    Compartment(u8),
    Cui(u8),
    Dissemination(u8),
    Country(u8),
    Tetragraph(Bits),
    Rel,
}

/// A set of at most 256 names of one kind (countries, compartments, ...), by index: markings
/// are read and joined without allocating.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Bits([u64; 4]);

impl Bits {
    fn insert(&mut self, i: u8) {
        self.0[usize::from(i / 64)] |= 1 << (i % 64);
    }

    fn union(self, o: Self) -> Self {
        Self(std::array::from_fn(|k| self.0[k] | o.0[k]))
    }

    fn intersection(self, o: Self) -> Self {
        Self(std::array::from_fn(|k| self.0[k] & o.0[k]))
    }

    fn contains(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }

    /// The names of `names` in the set.
    fn names(&self, names: &[String]) -> std::collections::BTreeSet<String> {
        names
            .iter()
            .enumerate()
            .filter(|(i, _)| self.contains(*i))
            .map(|(_, n)| n.clone())
            .collect()
    }
}

/// A marking as read: a label in index form.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Mark {
    level: u8,
    compartments: Bits,
    cui: Bits,
    dissemination: Bits,
    /// `None`: unrestricted; else the countries it may go to.
    rel: Option<Bits>,
}

impl Mark {
    fn join(self, o: Self) -> Self {
        Self {
            level: self.level.max(o.level),
            compartments: self.compartments.union(o.compartments),
            cui: self.cui.union(o.cui),
            dissemination: self.dissemination.union(o.dissemination),
            rel: match (self.rel, o.rel) {
                (None, x) | (x, None) => x,
                (Some(a), Some(b)) => Some(a.intersection(b)),
            },
        }
    }

    fn restrict(&mut self, set: Bits) {
        self.rel = Some(self.rel.map_or(set, |r| r.intersection(set)));
    }
}

/// The request path's sink: markings joined as they are read, the first unknown word kept.
#[derive(Default)]
struct Join {
    mark: Option<Mark>,
    unknown: Option<String>,
}

impl Sink for Join {
    fn mark(&mut self, mark: Mark, _: usize) {
        self.mark = Some(self.mark.map_or(mark, |m| m.join(mark)));
    }
    fn unknown(&mut self, word: &dyn Fn() -> String, _: usize) {
        if self.unknown.is_none() {
            self.unknown = Some(word());
        }
    }
}

/// Where one scan's findings go.
trait Sink {
    fn mark(&mut self, mark: Mark, at: usize);
    fn unknown(&mut self, word: &dyn Fn() -> String, at: usize);
}

/// A marking detector for one enclave's encodings.
#[derive(Debug, Clone)]
pub struct Detector {
    encodings: Encodings,
    /// Every spelling of every level, by the canonical form of its first word.
    levels: FnvMap<Vec<Spelling>>,
    /// Canonical bytes a level's spelling can start with.
    starts: [bool; 256],
    /// Every other word of the vocabulary, by canonical spelling.
    words: FnvMap<Vec<Meaning>>,
    /// The names behind the indexes of compartments, CUI categories, dissemination controls
    /// and countries.
    compartments: Vec<String>,
    cui: Vec<String>,
    dissemination: Vec<String>,
    countries: Vec<String>,
    /// The home country's index.
    home: u8,
}

/// A byte's canonical form: upper case, with the look-alikes UTS #39 lists as confusable
/// (`I`/`l`/`1`, `O`/`0`) made one.
fn canon(b: u8) -> u8 {
    match b.to_ascii_uppercase() {
        b'L' | b'1' => b'I',
        b'0' => b'O',
        c => c,
    }
}

fn canonical(word: &str) -> Vec<u8> {
    word.bytes().map(canon).collect()
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-'
}

fn word_end(t: &[u8], mut i: usize) -> usize {
    while i < t.len() && is_word(t[i]) {
        i += 1;
    }
    i
}

/// Spaces and line breaks (characters with no ASCII reading fold to spaces).
fn is_space(b: u8) -> bool {
    b == b' ' || b == b'\n'
}

fn skip_space(t: &[u8], mut i: usize) -> usize {
    while i < t.len() && is_space(t[i]) {
        i += 1;
    }
    i
}

/// Markup that may sit around a marking's words and separators without being read
/// (`**TOP SECRET**//NOFORN`, backticks, quotes).
fn is_markup(b: u8) -> bool {
    matches!(b, b'*' | b'_' | b'`' | b'~' | b'\'' | b'"')
}

/// What may stand, on one line, between a word and what follows it: spaces, markup and
/// punctuation.
fn is_soft(b: u8) -> bool {
    b == b' '
        || is_markup(b)
        || matches!(
            b,
            b'.' | b'-'
                | b','
                | b';'
                | b':'
                | b'!'
                | b'?'
                | b'|'
                | b'='
                | b'+'
                | b'#'
                | b'>'
                | b'['
                | b']'
                | b'{'
                | b'}'
        )
}

fn skip_soft(t: &[u8], mut i: usize) -> usize {
    while i < t.len() && is_soft(t[i]) {
        i += 1;
    }
    i
}

/// Spaces and markup, on one line.
fn skip_light(t: &[u8], mut i: usize) -> usize {
    while i < t.len() && (t[i] == b' ' || is_markup(t[i])) {
        i += 1;
    }
    i
}

/// The separators after a level or a control word from `i`: spaces and markup, slashes, and,
/// after a slash, line breaks (a wrapped marking) and punctuation. Returns where they end and
/// how many slashes they hold.
fn separators(t: &[u8], mut i: usize, limit: usize) -> (usize, usize) {
    let mut slashes = 0;
    while i < t.len() && i < limit {
        let b = t[i];
        if b == b'/' {
            slashes += 1;
        } else if !(b == b' ' || is_markup(b) || (slashes > 0 && (b == b'\n' || is_soft(b)))) {
            break;
        }
        i += 1;
    }
    (i, slashes)
}

/// The canonical form of a short word, on the stack.
struct Upper {
    buf: [u8; MAX_WORD],
    len: usize,
}

impl Upper {
    fn of(word: &[u8]) -> Option<Self> {
        if word.len() > MAX_WORD {
            return None;
        }
        let mut buf = [0u8; MAX_WORD];
        for (d, s) in buf.iter_mut().zip(word) {
            *d = canon(*s);
        }
        Some(Self {
            buf,
            len: word.len(),
        })
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    fn without_hyphens(&self) -> Self {
        let mut out = Self {
            buf: [0; MAX_WORD],
            len: 0,
        };
        for &b in self.bytes().iter().filter(|&&b| b != b'-') {
            out.buf[out.len] = b;
            out.len += 1;
        }
        out
    }
}

/// The word at `t[s..e]` as an unknown word (truncated, upper case).
fn unknown_word(t: &[u8], s: usize, e: usize) -> String {
    let end = e.min(s + MAX_WORD);
    String::from_utf8_lossy(&t[s..end]).to_ascii_uppercase()
}

/// A level recognised at a word: its index, where its spelling ends, and whether it was the
/// abbreviation.
struct LevelAt {
    level: u8,
    end: usize,
    abbreviated: bool,
}

impl Detector {
    /// A detector for `encodings`' vocabulary.
    pub fn new(encodings: &Encodings) -> Self {
        // The fold's tables are built now, not on the first request that needs them.
        crate::fold::warm();
        let mut starts = [false; 256];
        let mut levels: FnvMap<Vec<Spelling>> = FnvMap::default();
        for (i, (name, abbrev)) in encodings.levels.iter().enumerate() {
            let level = i as u8;
            let mut words: Vec<Vec<u8>> = name.split(' ').map(canonical).collect();
            let mut spell = |key: Vec<u8>, rest: Vec<Vec<u8>>, abbreviated: bool| {
                if let Some(&b) = key.first() {
                    starts[usize::from(b)] = true;
                }
                levels.entry(key).or_default().push(Spelling {
                    level,
                    rest,
                    abbreviated,
                });
            };
            // Glued (`TOPSECRET`; `TOP-SECRET` is looked up without its hyphens).
            spell(words.concat(), Vec::new(), false);
            if words.len() > 1 {
                let first = words.remove(0);
                spell(first, words, false);
            }
            if abbrev != name {
                spell(canonical(abbrev), Vec::new(), true);
            }
        }
        let mut words: FnvMap<Vec<Meaning>> = FnvMap::default();
        let mut add = |w: &str, m: Meaning| words.entry(canonical(w)).or_default().push(m);
        add("NOFORN", Meaning::NoForn);
        add("NF", Meaning::NoForn);
        add("REL", Meaning::Rel);
        // The encodings allow at most 256 names of each kind.
        let compartments: Vec<String> = encodings.compartments.iter().cloned().collect();
        for (i, c) in compartments.iter().enumerate() {
            add(c, Meaning::Compartment(i as u8));
        }
        let cui: Vec<String> = encodings.cui.iter().cloned().collect();
        for (i, c) in cui.iter().enumerate() {
            add(c, Meaning::Cui(i as u8));
        }
        let dissemination: Vec<String> = encodings.dissemination.keys().cloned().collect();
        for (i, (name, abbrev)) in encodings.dissemination.iter().enumerate() {
            add(name, Meaning::Dissemination(i as u8));
            if abbrev != name {
                add(abbrev, Meaning::Dissemination(i as u8));
            }
        }
        let countries: Vec<String> = encodings.countries.iter().cloned().collect();
        let index = |c: &str| countries.iter().position(|x| x == c).unwrap_or(0) as u8;
        for (i, c) in countries.iter().enumerate() {
            add(c, Meaning::Country(i as u8));
        }
        for (t, members) in &encodings.tetragraphs {
            let mut set = Bits::default();
            for m in members {
                set.insert(index(m));
            }
            add(t, Meaning::Tetragraph(set));
        }
        let home = index(HOME);
        Self {
            encodings: encodings.clone(),
            levels,
            starts,
            words,
            compartments,
            cui,
            dissemination,
            countries,
            home,
        }
    }

    /// Applies a control word's meanings to `mark`; false when it has none there.
    fn control(&self, word: &Upper, mark: &mut Mark) -> bool {
        let mut applied = false;
        for m in self.words.get(word.bytes()).into_iter().flatten() {
            match m {
                Meaning::NoForn => {
                    let mut home = Bits::default();
                    home.insert(self.home);
                    mark.restrict(home);
                }
                Meaning::Compartment(i) => mark.compartments.insert(*i),
                Meaning::Cui(i) => mark.cui.insert(*i),
                Meaning::Dissemination(i) => mark.dissemination.insert(*i),
                // Countries belong in a REL TO list; REL is read by its caller.
                Meaning::Country(_) | Meaning::Tetragraph(_) | Meaning::Rel => continue,
            }
            applied = true;
        }
        applied
    }

    /// The label a mark denotes.
    fn label(&self, m: Mark) -> Label {
        let mut label = self.encodings.lowest();
        label.level = m.level;
        label.compartments = m.compartments.names(&self.compartments);
        label.cui = m.cui.names(&self.cui);
        label.dissemination = m.dissemination.names(&self.dissemination);
        if let Some(rel) = m.rel {
            label.releasability = Releasability::RelTo(rel.names(&self.countries));
        }
        label
    }

    /// The encodings it reads markings of.
    pub fn encodings(&self) -> &Encodings {
        &self.encodings
    }

    /// Every marking in `text`, in order (unknown words aside; see [`Detector::scan`]).
    pub fn find(&self, text: &str) -> Vec<Found> {
        self.scan(text).found
    }

    /// The markings of `text` and the unknown words in them.
    pub fn scan(&self, text: &str) -> Scan {
        struct Collect<'d>(&'d Detector, Scan);
        impl Sink for Collect<'_> {
            fn mark(&mut self, mark: Mark, at: usize) {
                let label = self.0.label(mark);
                self.1.found.push(Found { label, at });
            }
            fn unknown(&mut self, word: &dyn Fn() -> String, at: usize) {
                if self.1.unknown.len() < MAX_UNKNOWN {
                    self.1.unknown.push(Unknown { word: word(), at });
                }
            }
        }
        let mut c = Collect(self, Scan::default());
        for reading in Folded::new(text).readings() {
            self.scan_folded(reading, &mut c);
        }
        c.1
    }

    /// The join of every marking in the texts (`None` when there is none), or the first
    /// unknown word of a detected marking. Markings are joined as they are read.
    pub fn label_of<'a>(
        &self,
        texts: impl IntoIterator<Item = &'a str>,
    ) -> Result<Option<Label>, UnknownMarking> {
        let mut j = Join::default();
        for text in texts {
            for reading in Folded::new(text).readings() {
                self.scan_folded(reading, &mut j);
            }
            if let Some(word) = j.unknown {
                return Err(UnknownMarking { word });
            }
        }
        Ok(j.mark.map(|m| self.label(m)))
    }

    /// [`Detector::label_of`] over texts already folded (both readings of each).
    pub fn label_of_folded<'a>(
        &self,
        texts: impl IntoIterator<Item = &'a crate::Folded>,
    ) -> Result<Option<Label>, UnknownMarking> {
        let mut j = Join::default();
        for text in texts {
            for reading in text.readings() {
                self.scan_folded(reading, &mut j);
            }
            if let Some(word) = j.unknown {
                return Err(UnknownMarking { word });
            }
        }
        Ok(j.mark.map(|m| self.label(m)))
    }

    fn scan_folded(&self, t: &[u8], sink: &mut dyn Sink) {
        let mut i = 0;
        while i < t.len() {
            let b = t[i];
            if !is_word(b) {
                i += 1;
                continue;
            }
            // `i` starts a word: the loop only ever stops at non-word bytes or word ends.
            let end = word_end(t, i);
            if self.starts[usize::from(canon(b))] {
                if let Some(next) = self.candidate(t, i, end, sink) {
                    // Resume where the marking ended (a word right after a portion mark's `)` is
                    // read too), past the rest of a word a marking cut at the length limit.
                    i = next.max(end);
                    if i > 0 && i < t.len() && is_word(t[i - 1]) && is_word(t[i]) {
                        i = word_end(t, i);
                    }
                    continue;
                }
            }
            i = end;
        }
    }

    /// The level spelled at the word `t[s..e]`, preferring the longest spelling.
    fn level_at(&self, t: &[u8], s: usize, e: usize) -> Option<LevelAt> {
        let word = Upper::of(&t[s..e])?;
        let mut best: Option<LevelAt> = None;
        let mut look = |key: &[u8]| {
            for sp in self.levels.get(key).into_iter().flatten() {
                // `TOP SECRET`, `TOP\nSECRET`: the rest of the name, one word at a time.
                let mut p = e;
                let whole = sp.rest.iter().all(|w| {
                    // Joining bytes (spaces, a line break, punctuation), then the next word of
                    // the name, hyphens aside (`TOP SE-CRET`).
                    let mut k = p;
                    while k < t.len() && (is_soft(t[k]) || t[k] == b'\n') {
                        k += 1;
                    }
                    if k > p && k < t.len() && is_word(t[k]) {
                        let q = word_end(t, k);
                        let next = Upper::of(&t[k..q]).map(|u| u.without_hyphens());
                        if next.is_some_and(|u| u.bytes() == w.as_slice()) {
                            p = q;
                            return true;
                        }
                    }
                    false
                });
                if whole && best.as_ref().is_none_or(|b| p > b.end) {
                    best = Some(LevelAt {
                        level: sp.level,
                        end: p,
                        abbreviated: sp.abbreviated,
                    });
                }
            }
        };
        look(word.bytes());
        if word.bytes().contains(&b'-') {
            look(word.without_hyphens().bytes());
        }
        best
    }

    /// Whether a marking starts at the level at `t[s..e]`: `//` follows (spaced, wrapped or
    /// dressed in markup), or one `/` and a known control word, or one `/` and a word that
    /// another `/` follows (so `C/C++` and `S/MIME` stay prose).
    fn opens_marking(&self, t: &[u8], at: &LevelAt) -> bool {
        let (r, slashes) = separators(t, at.end, at.end + MAX_MARKING);
        if slashes >= 2 {
            return true;
        }
        if slashes == 0 || r >= t.len() || !is_word(t[r]) {
            return false;
        }
        let q = word_end(t, r);
        let mark = Mark {
            level: at.level,
            ..Mark::default()
        };
        Upper::of(&t[r..q]).is_some_and(|u| self.control(&u, &mut { mark }) || self.is_rel(&u))
            || t.get(skip_light(t, q)) == Some(&b'/')
    }

    /// A marking starting at the word `t[s..e]`, if there is one: records it and returns
    /// where it ends.
    fn candidate(&self, t: &[u8], s: usize, e: usize, sink: &mut dyn Sink) -> Option<usize> {
        // Bytes no rule lets follow a level: most words are turned away before any lookup.
        if e < t.len() && matches!(t[e], b'(' | b'@' | b'&' | b'%' | b'$' | b'^') {
            return None;
        }
        let at = self.level_at(t, s, e)?;
        let mut mark = Mark {
            level: at.level,
            ..Mark::default()
        };
        if self.opens_marking(t, &at) {
            let end = self.controls(t, at.end, s, &mut mark, sink);
            sink.mark(mark, s);
            return Some(end);
        }
        let j = skip_light(t, at.end);
        // `(S)`, `(TS)`, `(CUI)`: a bare portion mark.
        let mut p = s;
        while p > 0 && (t[p - 1] == b' ' || is_markup(t[p - 1])) {
            p -= 1;
        }
        let opened = p > 0 && t[p - 1] == b'(' && (p < 2 || !is_word(t[p - 2]));
        if opened && t.get(j) == Some(&b')') {
            // `(c)`, `(s)` and `(u)` are everyday text (copyright, plurals, list items): a mark
            // that is only a one-letter level counts only in capitals opening a paragraph, a
            // list item or what follows a colon.
            let one_letter = at.abbreviated && at.end - s == 1;
            if one_letter && !(t[s].is_ascii_uppercase() && opens_paragraph(t, p - 1)) {
                return None;
            }
            sink.mark(mark, s);
            return Some(j + 1);
        }
        // A line that is nothing but a spelled-out level (decorated or not: `**SECRET**`,
        // `# TOP SECRET`, `Classification: SECRET`) is a banner line.
        if !at.abbreviated && banner_line(t, s, at.end) {
            sink.mark(mark, s);
            return Some(at.end);
        }
        None
    }

    /// Reads the control words of a marking from `p` (at the separators after its level)
    /// into `mark`; returns the end of the last one read. A word the encodings do not know,
    /// or a character a marking cannot hold after a separator, is reported unknown.
    fn controls(
        &self,
        t: &[u8],
        mut p: usize,
        start: usize,
        mark: &mut Mark,
        sink: &mut dyn Sink,
    ) -> usize {
        let mut end = p;
        loop {
            if p - start > MAX_MARKING {
                sink.unknown(
                    &|| format!("<a marking longer than {MAX_MARKING} characters>"),
                    start,
                );
                return p;
            }
            let (r, slashes) = separators(t, p, start + MAX_MARKING + 1);
            p = r;
            if p >= t.len() {
                return end;
            }
            if !is_word(t[p]) {
                if slashes > 0 {
                    // `SECRET//)`: after a separator, not a marking's end but a hidden word.
                    sink.unknown(&|| "<a character a marking cannot hold>".to_owned(), p);
                }
                return end;
            }
            let q = word_end(t, p);
            let word = Upper::of(&t[p..q]);
            end = q;
            if word.as_ref().is_some_and(|w| self.is_rel(w)) {
                let r = skip_space(t, q);
                let s = word_end(t, r);
                if Upper::of(&t[r..s]).is_some_and(|u| u.bytes() == b"TO") {
                    let (e, set) = self.rel_to(t, s, sink);
                    end = e;
                    mark.restrict(set);
                } else {
                    sink.unknown(&|| unknown_word(t, p, q), p);
                }
            } else if !word.is_some_and(|w| self.control(&w, mark)) {
                sink.unknown(&|| unknown_word(t, p, q), p);
            }
            // Another control follows, on the same line: after a slash (behind punctuation,
            // `SI./NOFORN`), or after a space when it is a known control word or a slash
            // follows it (`TOP SECRET//SI TK//NOFORN`, `SI ZZ/NOFORN`). A marking wraps to the
            // next line only after a separator.
            let r = skip_soft(t, end);
            if t.get(r) == Some(&b'/') {
                p = r;
                continue;
            }
            if r > end && r < t.len() && is_word(t[r]) {
                let q = word_end(t, r);
                // A level that opens a marking starts the next one (`S//REL TO USA, S//NF`).
                if self
                    .level_at(t, r, q)
                    .is_some_and(|at| self.opens_marking(t, &at))
                {
                    return end;
                }
                let known = Upper::of(&t[r..q])
                    .is_some_and(|u| self.is_rel(&u) || self.control(&u, &mut { *mark }));
                if known || t.get(skip_light(t, q)) == Some(&b'/') {
                    p = r;
                    continue;
                }
            }
            return end;
        }
    }

    fn is_rel(&self, w: &Upper) -> bool {
        self.words
            .get(w.bytes())
            .is_some_and(|ms| ms.iter().any(|m| matches!(m, Meaning::Rel)))
    }

    /// A `REL TO` list from `p` (just past `TO`): countries and tetragraphs separated by
    /// commas. USA is always in it. A word that is neither is unknown (reported), except a
    /// level, which starts the next marking and is left to it. Returns the list's end and
    /// its countries.
    fn rel_to(&self, t: &[u8], mut p: usize, sink: &mut dyn Sink) -> (usize, Bits) {
        let mut countries = Bits::default();
        countries.insert(self.home);
        let mut end = p;
        loop {
            let r = skip_space(t, p);
            if r >= t.len() || !is_word(t[r]) {
                break;
            }
            let q = word_end(t, r);
            if self
                .level_at(t, r, q)
                .is_some_and(|at| self.opens_marking(t, &at))
            {
                break;
            }
            let mut known = false;
            if let Some(u) = Upper::of(&t[r..q]) {
                for m in self.words.get(u.bytes()).into_iter().flatten() {
                    match m {
                        Meaning::Tetragraph(members) => {
                            countries = countries.union(*members);
                            known = true;
                        }
                        Meaning::Country(c) => {
                            countries.insert(*c);
                            known = true;
                        }
                        _ => {}
                    }
                }
            }
            if !known {
                sink.unknown(&|| unknown_word(t, r, q), r);
            }
            end = q;
            // The list wraps to the next line only after a comma.
            let c = skip_light(t, q);
            if t.get(c) == Some(&b',') {
                p = c + 1;
            } else {
                break;
            }
        }
        (end, countries)
    }
}

/// Whether the `(` at `i` opens a paragraph, a list item (`1. (S)`, `- (S)`, `> (S)`) or what
/// follows a colon (`Summary: (S)`).
fn opens_paragraph(t: &[u8], i: usize) -> bool {
    let mut k = i;
    while k > 0 && i - k < 8 && (t[k - 1] == b' ' || is_markup(t[k - 1])) {
        k -= 1;
    }
    if k == 0 || t[k - 1] == b'\n' || t[k - 1] == b':' {
        return true;
    }
    // A list marker at the start of the line: digits or one letter, then `.` or `)`; or
    // bullets and quotes.
    let mut m = k;
    while m > 0
        && k - m < 6
        && (t[m - 1].is_ascii_digit()
            || matches!(
                t[m - 1],
                b'.' | b')' | b'-' | b'*' | b'#' | b'>' | b'"' | b'\'' | b'+'
            ))
    {
        m -= 1;
    }
    if m > 0 && t[m - 1].is_ascii_alphabetic() && m < k && matches!(t[m], b'.' | b')') {
        m -= 1;
    }
    m < k && (m == 0 || t[m - 1] == b'\n')
}

/// Whether the level at `t[s..e]` is all its line holds, but for decoration and an optional
/// `CLASSIFICATION:` before it. A double quote counts as a line's edge: a string literal (a
/// JSON value) that is nothing but a level is a banner too.
fn banner_line(t: &[u8], s: usize, e: usize) -> bool {
    let mut a = s;
    while a > 0 && is_soft(t[a - 1]) {
        a -= 1;
    }
    // Only in capitals: `"SECRET"` in a JSON document, not `the "secret" sauce`.
    let capitals = t[s..e].iter().all(|b| !b.is_ascii_lowercase());
    let quoted = |r: &[u8]| capitals && r.contains(&b'"');
    let before_ok = a == 0 || t[a - 1] == b'\n' || quoted(&t[a..s]) || {
        // `Classification: TOP SECRET`, `CLASSIFIED BY ...` excepted.
        let w = {
            let mut w = a;
            while w > 0 && is_word(t[w - 1]) {
                w -= 1;
            }
            w
        };
        let prefix = Upper::of(&t[w..a.min(w + MAX_WORD)]);
        t[a..s].contains(&b':')
            && prefix.is_some_and(|u| u.bytes().starts_with(b"CIASSIFICATION"))
            && (w == 0 || t[w - 1] == b'\n')
    };
    let z = skip_soft(t, e);
    before_ok && (z == t.len() || t[z] == b'\n' || quoted(&t[e..z]))
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

    fn unknown(text: &str) -> Vec<String> {
        let e = Encodings::builtin();
        Detector::new(&e)
            .scan(text)
            .unknown
            .into_iter()
            .map(|u| u.word)
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
        assert_eq!(banners("SECRET // NOFORN"), ["SECRET//NOFORN"]);
        assert_eq!(banners("TS//"), ["TOP SECRET"]);
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
    fn glued_hyphenated_and_single_slash_forms() {
        assert_eq!(banners("TOPSECRET//SI"), ["TOP SECRET//SI"]);
        assert_eq!(banners("TOP-SECRET//SI"), ["TOP SECRET//SI"]);
        assert_eq!(banners("topsecret\nbody"), ["TOP SECRET"]);
        assert_eq!(banners("S/NF"), ["SECRET//NOFORN"]);
        assert_eq!(banners("TS/SI/TK"), ["TOP SECRET//SI/TK"]);
        for prose in ["C/C++ and S/MIME", "U/S for policy", "c/o the office"] {
            assert!(banners(prose).is_empty(), "{prose}");
            assert!(unknown(prose).is_empty(), "{prose}");
        }
    }

    #[test]
    fn releasability_is_never_widened() {
        assert_eq!(banners("SECRET//REL TO GBR"), ["SECRET//REL TO USA, GBR"]);
        assert_eq!(banners("(S//REL TO USA, ATL)"), ["SECRET//NOFORN"]);
        assert_eq!(banners("S//REL TO"), ["SECRET//NOFORN"]);
    }

    #[test]
    fn unknown_words_are_reported_not_skipped() {
        assert_eq!(banners("SECRET//RSEN/NOFORN"), ["SECRET//NOFORN"]);
        assert_eq!(unknown("SECRET//RSEN/NOFORN"), ["RSEN"]);
        assert_eq!(unknown("(TS//SI//FAKE/NF) x"), ["FAKE"]);
        assert_eq!(unknown("S//REL USA"), ["REL"]);
        let e = Encodings::builtin();
        let d = Detector::new(&e);
        assert_eq!(d.label_of(["fine", "TS//BOGUS"]).unwrap_err().word, "BOGUS");
        let long = format!("S//{}", "SI/".repeat(600));
        assert!(unknown(&long)[0].contains("longer than"));
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
        assert_eq!(banners("x (TS) y"), ["TOP SECRET"]);
    }

    #[test]
    fn disguised_markings() {
        assert_eq!(
            banners("T\u{200b}OP SE\u{ad}CRET//S\u{2060}I"),
            ["TOP SECRET//SI"]
        );
        assert_eq!(banners("ＴＯＰ ＳＥＣＲＥＴ／／ＳＩ"), ["TOP SECRET//SI"]);
        assert_eq!(banners("\u{405}\u{415}CR\u{415}T//NF"), ["SECRET//NOFORN"]);
    }

    #[test]
    fn nothing_between_or_after_the_words_of_a_marking_hides_them() {
        for (text, want) in [
            // Characters that render blank, or not at all.
            (
                "TOP SECRET//\u{2800}SI/TK//NOFORN",
                "TOP SECRET//SI/TK//NOFORN",
            ),
            ("SECRET\u{2800}//NOFORN", "SECRET//NOFORN"),
            (
                "TOP SECRET//SI/\u{2800}TK//NOFORN",
                "TOP SECRET//SI/TK//NOFORN",
            ),
            (
                "TOP SECRET//\u{e000}SI//\u{fffd}NOFORN",
                "TOP SECRET//SI//NOFORN",
            ),
            // A space where a slash belongs, spaced slashes.
            ("TOP SECRET//SI TK//NOFORN", "TOP SECRET//SI/TK//NOFORN"),
            ("SECRET/ /NOFORN", "SECRET//NOFORN"),
            // Other joiners between level words.
            ("TOP_SECRET//SI", "TOP SECRET//SI"),
            ("TOP.SECRET//SI", "TOP SECRET//SI"),
            ("TOP\u{2014}SECRET//SI", "TOP SECRET//SI"),
            // Escapes, as text copied out of JSON or code holds them.
            (r#"Result: {"doc":"TOP SECRET\nThe plan"}"#, "TOP SECRET"),
            (r"\u0054OP \u0053ECRET//\u0053I", "TOP SECRET//SI"),
            // Character references and markup, as HTML holds them.
            ("&#84;OP SECRET&#47;&#47;SI", "TOP SECRET//SI"),
            ("S&#x2F;&#x2F;NF", "SECRET//NOFORN"),
            ("<p><b>TOP SECRET</b>//SI</p>", "TOP SECRET//SI"),
            ("TOP<!-- x -->SECRET//NOFORN", "TOP SECRET//NOFORN"),
            ("<span>S</span>//<span>NF</span>", "SECRET//NOFORN"),
            // Escapes hidden in markup are read all the same.
            (
                r"<!-- \u0053\u0045\u0043\u0052\u0045\u0054//NOFORN -->",
                "SECRET//NOFORN",
            ),
            ("<i title=\"&#83;//NF\">x</i>", "SECRET//NOFORN"),
            ("SE&shy;CRET//NF", "SECRET//NOFORN"),
            // Decorated banner lines.
            ("**TOP SECRET**\nbody", "TOP SECRET"),
            ("# SECRET\nbody", "SECRET"),
            ("> SECRET", "SECRET"),
            ("Classification: TOP SECRET\nbody", "TOP SECRET"),
            ("body\nSECRET.", "SECRET"),
            // One-letter portion marks opening list items or after a colon.
            ("Summary: (S) the plan", "SECRET"),
            ("1. (S) first item", "SECRET"),
            ("- (S) a point", "SECRET"),
        ] {
            let e = Encodings::builtin();
            let d = Detector::new(&e);
            let got = d.label_of([text]).map(|l| l.map(|l| e.banner(&l)));
            assert_eq!(got, Ok(Some(want.to_owned())), "{text:?}");
        }
        // A REL TO list does not swallow the next marking's level.
        let e = Encodings::builtin();
        let d = Detector::new(&e);
        let l = d
            .label_of(["SECRET//REL TO USA, TOP SECRET//SI//NOFORN"])
            .unwrap()
            .unwrap();
        assert_eq!(e.banner(&l), "TOP SECRET//SI//NOFORN");
        for n in [1, 2, 3, 100, 70_000] {
            let many = "S//REL TO USA, ".repeat(n);
            assert_eq!(unknown(&many), Vec::<String>::new(), "{n}");
        }
        // After a separator, a character a marking cannot hold denies.
        assert!(!unknown("SECRET//) x").is_empty());
        assert_eq!(unknown("S//REL TO USA, GBR, TK"), ["TK"]);
        // A marking continues on the next line only after a separator.
        assert!(unknown("SECRET//NOFORN\n/usr/bin/env").is_empty());
        assert_eq!(banners("SECRET//NOFORN\n/usr/bin/env"), ["SECRET//NOFORN"]);
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
            "a top-secret-style font",
            "U.S. policy (U.S.)",
            "Items (S) and (M) are sizes.",
            "Keep it secret.",
            "# Secret Santa",
            r"C:\Users\secret\notes",
            "He said \"Secret\" and left.",
            "the \"secret\" sauce",
        ] {
            assert!(banners(text).is_empty(), "{text} -> {:?}", banners(text));
            assert!(unknown(text).is_empty(), "{text}");
        }
    }

    #[test]
    fn the_label_of_many_texts_is_their_join() {
        let e = Encodings::builtin();
        let d = Detector::new(&e);
        let l = d
            .label_of(["(S//SI) a", "b\nCONFIDENTIAL//TK//NOFORN", "nothing"])
            .unwrap()
            .unwrap();
        assert_eq!(e.banner(&l), "SECRET//SI/TK//NOFORN");
        assert!(d.label_of(["plain text"]).unwrap().is_none());
    }
}
