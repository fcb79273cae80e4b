//! Properties of marking detection: it never panics, and a marking written into any prose,
//! on its own line or as a portion mark opening a paragraph, is always found (the detected
//! label dominates it).

use highside_label::{Detector, Encodings};
use proptest::prelude::*;

const MARKINGS: &[&str] = &[
    "TOP SECRET//SI/TK//NOFORN",
    "SECRET//REL TO USA, FVEY",
    "SECRET//ORCON/REL TO USA, GBR",
    "CONFIDENTIAL",
    "UNCLASSIFIED//FOUO",
    "CUI//SP-PRVCY",
    "TOP SECRET//HCS-P/SI-G//ORCON/NOFORN",
    "SECRET//TK//PROPIN",
];

fn fixtures() -> &'static (Encodings, Detector) {
    static F: std::sync::OnceLock<(Encodings, Detector)> = std::sync::OnceLock::new();
    F.get_or_init(|| {
        let e = Encodings::builtin();
        let d = Detector::new(&e);
        (e, d)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn detection_never_panics(s in "\\PC{0,300}") {
        let (_, d) = fixtures();
        let _ = d.label_of([s.as_str()]);
    }

    #[test]
    fn a_banner_line_in_prose_is_found(
        m in proptest::sample::select(MARKINGS),
        before in "[a-z ,.]{0,60}",
        after in "[a-z ,.]{0,60}",
        lower in any::<bool>(),
        portion in any::<bool>(),
    ) {
        let (e, d) = fixtures();
        let label = e.parse(m).unwrap();
        let mark = if portion { format!("{} ", e.portion(&label)) } else { format!("{}\n", e.banner(&label)) };
        let mark = if lower && !portion { mark.to_lowercase() } else { mark };
        let text = format!("{before}\n{mark}{after}");
        let found = d.label_of([text.as_str()]).unwrap();
        prop_assert!(found.as_ref().is_some_and(|f| f.dominates(&label)), "{text:?} -> {found:?}");
    }
}

/// Every code point the fold drops, in order.
fn ignorables() -> &'static [char] {
    static I: std::sync::OnceLock<Vec<char>> = std::sync::OnceLock::new();
    I.get_or_init(|| {
        (0..=0x10FFFFu32)
            .filter_map(char::from_u32)
            .filter(|&c| highside_label::is_ignorable(c))
            .collect()
    })
}

/// Inserts `c` at char position `at` of `s`.
fn insert(s: &str, at: usize, c: char) -> String {
    let mut out: String = s.chars().take(at).collect();
    out.push(c);
    out.extend(s.chars().skip(at));
    out
}

#[test]
fn every_ignorable_code_point_anywhere_in_a_marking_changes_nothing() {
    let (e, d) = fixtures();
    let ignorable = ignorables();
    // Zero-width spaces and joiners, soft hyphen, bidi controls, tags, variation selectors,
    // combining marks, C0 and C1 controls: thousands of them.
    assert!(ignorable.len() > 3000, "{}", ignorable.len());
    for c in [
        '\u{200b}', '\u{200c}', '\u{200d}', '\u{2060}', '\u{feff}', '\u{ad}', '\u{202e}',
    ] {
        assert!(ignorable.contains(&c), "{c:?}");
    }
    for marking in ["TOP SECRET//SI//NOFORN", "(S//REL TO USA, GBR)", "SECRET"] {
        let want = d.label_of([marking]).unwrap();
        assert!(want.is_some(), "{marking}");
        let n = marking.chars().count();
        for &c in ignorable {
            for at in 0..=n {
                let text = insert(marking, at, c);
                let got = d.label_of([text.as_str()]);
                assert_eq!(
                    got.as_ref(),
                    Ok(&want),
                    "{c:?} at {at}: {text:?} ({})",
                    e.banner(want.as_ref().unwrap())
                );
            }
        }
    }
}

/// A marking's letters replaced by look-alikes (fullwidth forms, mathematical bold, the
/// Cyrillic and Greek capitals that look Latin).
fn disguise(s: &str, how: &[u8]) -> String {
    s.chars()
        .zip(how.iter().cycle())
        .map(|(c, &h)| {
            if !c.is_ascii_alphabetic() {
                return c;
            }
            let u = c.to_ascii_uppercase();
            match h % 4 {
                0 => char::from_u32(c as u32 - 0x21 + 0xFF01).unwrap_or(c),
                1 => char::from_u32(u as u32 - 'A' as u32 + 0x1D400).unwrap_or(c),
                2 => match u {
                    'A' => '\u{410}',
                    'C' => '\u{421}',
                    'E' => '\u{415}',
                    'O' => '\u{41e}',
                    'P' => '\u{420}',
                    'T' => '\u{422}',
                    'S' => '\u{405}',
                    'I' => '\u{406}',
                    'K' => '\u{41a}',
                    'N' => '\u{39d}',
                    'R' => c,
                    _ => c,
                },
                _ => c,
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    // Any number of ignorable code points anywhere, and letters swapped for look-alikes,
    // leave a marking's label as it was.
    #[test]
    fn disguised_markings_keep_their_label(
        m in proptest::sample::select(MARKINGS),
        inserts in proptest::collection::vec((any::<proptest::sample::Index>(), any::<proptest::sample::Index>()), 0..6),
        how in proptest::collection::vec(any::<u8>(), 1..8),
        portion in any::<bool>(),
    ) {
        let (e, d) = fixtures();
        let label = e.parse(m).unwrap();
        let mut text = if portion { e.portion(&label) } else { e.banner(&label) };
        text = disguise(&text, &how);
        for (pos, which) in inserts {
            let n = text.chars().count();
            text = insert(&text, pos.index(n + 1), *which.get(ignorables()));
        }
        let found = d.label_of([text.as_str()]);
        prop_assert_eq!(found, Ok(Some(label)), "{:?}", text);
    }

    // A word the encodings do not know, anywhere among a marking's controls, is reported,
    // and the controls after it still count.
    #[test]
    fn unknown_words_are_never_dropped(
        m in proptest::sample::select(MARKINGS),
        word in "[QXZ][A-Z]{1,6}",
        at in any::<proptest::sample::Index>(),
    ) {
        let (e, d) = fixtures();
        let label = e.parse(m).unwrap();
        let banner = e.banner(&label);
        // After the level's `//`: at the start of any control word.
        let first = banner.find("//").map_or(usize::MAX, |i| i + 2);
        let slashes: Vec<usize> = banner
            .match_indices('/')
            .map(|(i, _)| i + 1)
            .filter(|&i| i >= first)
            .collect();
        prop_assume!(!slashes.is_empty());
        let i = slashes[at.index(slashes.len())];
        let text = format!("{}{word}/{}", &banner[..i], &banner[i..]);
        let scan = d.scan(&text);
        prop_assert!(!scan.unknown.is_empty(), "{:?}", text);
        let joined = scan.found.into_iter().map(|f| f.label).reduce(|a, b| a.join(&b));
        prop_assert!(joined.is_some_and(|j| j.dominates(&label)), "{:?}", text);
    }
}

/// Text made of marking fragments and prose, to exercise every path of the reader.
fn fragments() -> impl Strategy<Value = String> {
    let piece = proptest::sample::select(vec![
        "TOP",
        "SECRET",
        "TS",
        "S",
        "C",
        "U",
        "CUI",
        "//",
        "/",
        "(",
        ")",
        " ",
        "\n",
        ",",
        "SI",
        "TK",
        "NF",
        "NOFORN",
        "REL",
        "TO",
        "USA",
        "GBR",
        "FVEY",
        "ORCON",
        "OC",
        "SP-PRVCY",
        "XYZ",
        "the",
        "plan",
        "-",
        "TOPSECRET",
        "\u{200b}",
        "Ｓ",
    ]);
    proptest::collection::vec(piece, 0..40).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    // Differential: `label_of` joins markings in index form as it reads; `scan` builds every
    // label and the test joins them with the lattice's own join. They must agree, unknown
    // words included.
    #[test]
    fn label_of_is_the_join_of_every_scanned_label(text in fragments()) {
        let (_, d) = fixtures();
        let scan = d.scan(&text);
        let joined = scan.found.iter().map(|f| f.label.clone()).reduce(|a, b| a.join(&b));
        match d.label_of([text.as_str()]) {
            Ok(l) => {
                prop_assert!(scan.unknown.is_empty(), "{:?}", text);
                prop_assert_eq!(l, joined, "{:?}", text);
            }
            Err(u) => prop_assert_eq!(Some(u.word), scan.unknown.first().map(|u| u.word.clone())),
        }
    }
}
