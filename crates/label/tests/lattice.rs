//! The label algebra against a deliberately naive reference (bit masks over the built-in
//! vocabulary) on 10^6 random pairs, plus the lattice laws and parse/format round trips.

use std::collections::BTreeSet;

use highside_label::{Encodings, Label, Releasability};
use proptest::prelude::*;

const COMPARTMENTS: &[&str] = &["SI", "SI-G", "TK", "HCS", "HCS-P"];
const COUNTRIES: &[&str] = &[
    "USA", "AUS", "CAN", "GBR", "NZL", "DEU", "DNK", "ESP", "FRA", "ITA", "JPN", "KOR", "NLD",
    "NOR", "POL",
];
const DISSEM: &[&str] = &["ORCON", "FOUO", "PROPIN", "IMCON"];
const CUI: &[&str] = &["SP-PRVCY", "SP-CTI", "SP-EXPT", "LEI", "PRVCY"];

/// The naive reference: every component a bit mask; releasability `None` = unrestricted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Naive {
    level: u8,
    comps: u32,
    rel: Option<u32>,
    dissem: u32,
    cui: u32,
}

fn naive_dominates(a: Naive, b: Naive) -> bool {
    let rel_ok = match (a.rel, b.rel) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some(x), Some(y)) => x & !y == 0,
    };
    a.level >= b.level
        && a.comps & b.comps == b.comps
        && rel_ok
        && a.dissem & b.dissem == b.dissem
        && a.cui & b.cui == b.cui
}

fn naive_join(a: Naive, b: Naive) -> Naive {
    Naive {
        level: a.level.max(b.level),
        comps: a.comps | b.comps,
        rel: match (a.rel, b.rel) {
            (None, x) | (x, None) => x,
            (Some(x), Some(y)) => Some(x & y),
        },
        dissem: a.dissem | b.dissem,
        cui: a.cui | b.cui,
    }
}

fn naive_meet(a: Naive, b: Naive) -> Naive {
    Naive {
        level: a.level.min(b.level),
        comps: a.comps & b.comps,
        rel: match (a.rel, b.rel) {
            (None, _) | (_, None) => None,
            (Some(x), Some(y)) => Some(x | y),
        },
        dissem: a.dissem & b.dissem,
        cui: a.cui & b.cui,
    }
}

fn mask(set: &BTreeSet<String>, names: &[&str]) -> u32 {
    set.iter()
        .map(|s| 1 << names.iter().position(|n| n == s).unwrap())
        .sum()
}

fn to_naive(l: &Label) -> Naive {
    Naive {
        level: l.level(),
        comps: mask(l.compartments(), COMPARTMENTS),
        rel: match l.releasability() {
            Releasability::Unrestricted => None,
            Releasability::RelTo(set) => Some(mask(set, COUNTRIES)),
        },
        dissem: mask(l.dissemination(), DISSEM),
        cui: mask(l.cui(), CUI),
    }
}

fn names(bits: u32, names: &[&str]) -> Vec<String> {
    (0..names.len())
        .filter(|i| bits & (1 << i) != 0)
        .map(|i| names[i].to_owned())
        .collect()
}

/// Builds a label through the public parser from random bits, so the test also depends on
/// nothing but the encodings' vocabulary.
fn label_from(
    e: &Encodings,
    level: u8,
    comps: u32,
    rel: Option<u32>,
    dissem: u32,
    cui: u32,
) -> Label {
    const LEVELS: &[&str] = &[
        "UNCLASSIFIED",
        "CUI",
        "CONFIDENTIAL",
        "SECRET",
        "TOP SECRET",
    ];
    let mut words = names(comps, COMPARTMENTS);
    words.extend(names(cui, CUI));
    words.extend(names(dissem, DISSEM));
    if let Some(r) = rel {
        let countries = names(r | 1, COUNTRIES); // USA is bit 0 and always present
        words.push(format!("REL TO {}", countries.join(", ")));
    }
    let mut text = LEVELS[usize::from(level)].to_owned();
    if !words.is_empty() {
        text.push_str("//");
        text.push_str(&words.join("/"));
    }
    e.parse(&text).unwrap_or_else(|err| panic!("{text}: {err}"))
}

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 32) as u32
    }
}

#[test]
fn join_meet_and_dominance_agree_with_the_naive_reference_on_a_million_pairs() {
    let e = Encodings::builtin();
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    // A pool of parsed labels; pairs are drawn from it so the million comparisons stay fast.
    let pool: Vec<(Label, Naive)> = (0..2000)
        .map(|_| {
            let rel = (!rng.next().is_multiple_of(3)).then(|| rng.next() & 0x7fff);
            let l = label_from(
                &e,
                (rng.next() % 5) as u8,
                rng.next() & 0x1f,
                rel,
                rng.next() & 0xf,
                rng.next() & 0x1f,
            );
            let n = to_naive(&l);
            (l, n)
        })
        .collect();
    let mut checked = 0u32;
    for _ in 0..1_000_000 {
        let (a, na) = &pool[(rng.next() as usize) % pool.len()];
        let (b, nb) = &pool[(rng.next() as usize) % pool.len()];
        assert_eq!(a.dominates(b), naive_dominates(*na, *nb));
        assert_eq!(to_naive(&a.join(b)), naive_join(*na, *nb));
        assert_eq!(to_naive(&a.meet(b)), naive_meet(*na, *nb));
        checked += 1;
    }
    assert_eq!(checked, 1_000_000);
}

fn enc() -> &'static Encodings {
    static E: std::sync::OnceLock<Encodings> = std::sync::OnceLock::new();
    E.get_or_init(Encodings::builtin)
}

fn arb_label() -> impl Strategy<Value = Label> {
    (
        0u8..5,
        0u32..32,
        proptest::option::weighted(0.7, 0u32..0x8000),
        0u32..16,
        0u32..32,
    )
        .prop_map(|(l, c, r, d, u)| label_from(enc(), l, c, r, d, u))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn dominance_is_a_partial_order(a in arb_label(), b in arb_label(), c in arb_label()) {
        prop_assert!(a.dominates(&a));
        if a.dominates(&b) && b.dominates(&a) { prop_assert_eq!(&a, &b); }
        if a.dominates(&b) && b.dominates(&c) { prop_assert!(a.dominates(&c)); }
    }

    #[test]
    fn join_is_the_least_upper_bound(a in arb_label(), b in arb_label(), c in arb_label()) {
        let j = a.join(&b);
        prop_assert!(j.dominates(&a) && j.dominates(&b));
        if c.dominates(&a) && c.dominates(&b) { prop_assert!(c.dominates(&j)); }
        // Also against the join with c folded in: any upper bound of a and b built from c.
        let u = c.join(&a).join(&b);
        prop_assert!(u.dominates(&j));
    }

    #[test]
    fn meet_is_the_greatest_lower_bound(a in arb_label(), b in arb_label(), c in arb_label()) {
        let m = a.meet(&b);
        prop_assert!(a.dominates(&m) && b.dominates(&m));
        if a.dominates(&c) && b.dominates(&c) { prop_assert!(m.dominates(&c)); }
        let l = c.meet(&a).meet(&b);
        prop_assert!(m.dominates(&l));
    }

    #[test]
    fn parse_of_format_is_identity(a in arb_label()) {
        let e = enc();
        prop_assert_eq!(e.parse(&e.banner(&a)).unwrap(), a.clone());
        prop_assert_eq!(e.parse(&e.portion(&a)).unwrap(), a);
    }

    #[test]
    fn parse_never_panics(s in "\\PC{0,120}") {
        let _ = enc().parse(&s);
    }
}
