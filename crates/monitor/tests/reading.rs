//! The request label of a reading: detection raises it, an unknown word in a detected marking
//! denies (naming the word and the rule), and a reading judged against several models gives
//! each the decision a fresh `decide` would.

use std::sync::Arc;

use highside_label::Encodings;
use highside_monitor::{Access, Input, Monitor, PiiAction, Policies, Rule, PERMIT_ALL};

fn monitor() -> (Arc<Encodings>, Monitor) {
    let e = Arc::new(Encodings::builtin());
    (
        e.clone(),
        Monitor::new(e, Policies::parse(PERMIT_ALL).unwrap()),
    )
}

fn input<'a>(
    e: &'a Encodings,
    clearance: &'a highside_label::Label,
    model: &'a highside_label::Label,
    texts: &'a [&'a str],
) -> Input<'a> {
    let _ = e;
    Input {
        access: Access {
            user: "user_1",
            user_name: "u",
            agency: "agency_1",
            roles: &["user"],
            clearance,
            nationality: "USA",
            model: "m",
            accreditation: model,
        },
        declared: &[],
        texts,
        pii: PiiAction::Off,
    }
}

#[test]
fn an_unknown_word_in_a_detected_marking_denies_and_is_named() {
    let (e, m) = monitor();
    let ts = e.parse("TOP SECRET//SI/TK//NOFORN").unwrap();
    for text in ["SECRET//RSEN/NOFORN the plan", "(TS//SI//FAKE/NF) x"] {
        let d = m.decide(&input(&e, &ts, &ts, &[text]));
        assert!(!d.allowed, "{text}");
        assert_eq!(d.reasons[0].rule, Rule::UnknownMarking);
        assert_eq!(d.reasons[0].rule.as_str(), "label.unknown_marking");
        let word = if text.starts_with("SECRET") {
            "RSEN"
        } else {
            "FAKE"
        };
        assert!(d.explain().contains(word), "{}", d.explain());
    }
    // What follows an unknown word still counts when it is known: NOFORN is never dropped.
    let r = m.read(&[], &["SECRET//NOFORN"], PiiAction::Off);
    assert_eq!(e.banner(&r.label.unwrap().label), "SECRET//NOFORN");
}

#[test]
fn one_reading_judged_against_many_models_matches_fresh_decisions() {
    let (e, m) = monitor();
    let clearance = e.parse("TOP SECRET//SI").unwrap();
    let texts = ["(S//NF) the report", "see TS//SI"];
    let reading = m.read(&[], &texts, PiiAction::Off);
    for model in [
        "SECRET",
        "TOP SECRET//SI//NOFORN",
        "TOP SECRET//SI",
        "UNCLASSIFIED",
    ] {
        let model = e.parse(model).unwrap();
        let i = input(&e, &clearance, &model, &texts);
        assert_eq!(m.decide_reading(&i, &reading), m.decide(&i), "{model:?}");
    }
}
