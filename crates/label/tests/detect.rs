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
        let found = d.label_of([text.as_str()]);
        prop_assert!(found.as_ref().is_some_and(|f| f.dominates(&label)), "{text:?} -> {found:?}");
    }
}
