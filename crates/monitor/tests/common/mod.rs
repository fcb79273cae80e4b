//! A small lattice (4 levels x 3 compartments x 3 countries) and every label over it.

use std::sync::Arc;

use highside_label::{Encodings, Label};

pub const LEVELS: [&str; 4] = ["UNCLASSIFIED", "CONFIDENTIAL", "SECRET", "TOP SECRET"];
pub const COMPARTMENTS: [&str; 3] = ["SI", "TK", "HCS"];
pub const COUNTRIES: [&str; 3] = ["USA", "GBR", "AUS"];

pub fn encodings() -> Arc<Encodings> {
    Arc::new(
        Encodings::from_toml(
            r#"
levels = [
  { name = "UNCLASSIFIED", abbrev = "U" },
  { name = "CONFIDENTIAL", abbrev = "C" },
  { name = "SECRET", abbrev = "S" },
  { name = "TOP SECRET", abbrev = "TS" },
]
compartments = ["SI", "TK", "HCS"]
countries = ["USA", "GBR", "AUS"]
system_high = "TOP SECRET//SI/TK/HCS"
"#,
        )
        .unwrap(),
    )
}

/// The reference's view of a label: level, compartment bits, and releasability as a country
/// bit mask (`None` = unrestricted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bits {
    pub level: usize,
    pub comps: u8,
    pub rel: Option<u8>,
}

/// Every label of the small lattice with its bits, built by parsing written-out banners so the
/// parser is exercised as well.
pub fn all_labels(e: &Encodings) -> Vec<(Label, Bits)> {
    let rels: [Option<u8>; 5] = [None, Some(0b001), Some(0b011), Some(0b101), Some(0b111)];
    let mut out = Vec::new();
    for (level, name) in LEVELS.iter().enumerate() {
        for comps in 0u8..8 {
            for rel in rels {
                let mut banner = (*name).to_owned();
                let cs: Vec<&str> = (0..3)
                    .filter(|i| comps & (1 << i) != 0)
                    .map(|i| COMPARTMENTS[i])
                    .collect();
                if !cs.is_empty() {
                    banner.push_str("//");
                    banner.push_str(&cs.join("/"));
                }
                match rel {
                    None => {}
                    Some(0b001) => banner.push_str("//NOFORN"),
                    Some(mask) => {
                        let list: Vec<&str> = (0..3)
                            .filter(|i| mask & (1 << i) != 0)
                            .map(|i| COUNTRIES[i])
                            .collect();
                        banner.push_str("//REL TO ");
                        banner.push_str(&list.join(", "));
                    }
                }
                let label = e
                    .parse(&banner)
                    .unwrap_or_else(|err| panic!("{banner}: {err}"));
                out.push((label, Bits { level, comps, rel }));
            }
        }
    }
    out
}

/// Clearances: a level and compartments, no releasability.
pub fn clearances(e: &Encodings) -> Vec<(Label, Bits)> {
    all_labels(e)
        .into_iter()
        .filter(|(_, b)| b.rel.is_none())
        .collect()
}

/// The reference rule, written from the definitions: no read up (level, compartments),
/// releasable to the user's country, no write down (the model dominates the request).
pub fn reference_allows(clearance: Bits, nationality: usize, model: Bits, request: Bits) -> bool {
    let read_ok = clearance.level >= request.level && request.comps & !clearance.comps == 0;
    let rel_ok = request.rel.is_none_or(|m| m & (1 << nationality) != 0);
    let model_rel_ok = match (model.rel, request.rel) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some(m), Some(r)) => m & !r == 0,
    };
    let write_ok =
        model.level >= request.level && request.comps & !model.comps == 0 && model_rel_ok;
    read_ok && rel_ok && write_ok
}
