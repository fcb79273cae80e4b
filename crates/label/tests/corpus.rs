//! The marking corpus (`tests/fixtures/markings.jsonl`, made by `make_markings.py` beside it):
//! at least 200 marked and unmarked paragraphs, tricky cases first (marks inside code,
//! lowercase, `(S)` as an ordinary letter, REL TO with tetragraphs, wrapped banners, unknown
//! words). The detector must find exactly the expected label, or nothing where none is given,
//! and report exactly the expected unknown word of a marking (which denies), or none.

use highside_label::{Detector, Encodings};
use serde_json::Value;

#[test]
fn every_paragraph_of_the_corpus_gets_its_expected_label() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/markings.jsonl"
    );
    let text = std::fs::read_to_string(path).expect("the marking corpus");
    let e = Encodings::builtin();
    let d = Detector::new(&e);
    let (mut marked, mut unmarked, mut wrong) = (0, 0, Vec::new());
    for (i, line) in text.lines().enumerate() {
        let case: Value =
            serde_json::from_str(line).unwrap_or_else(|err| panic!("line {i}: {err}"));
        let paragraph = case["text"].as_str().expect("text");
        let expected = case["label"].as_str().map(|m| {
            e.parse(m)
                .unwrap_or_else(|err| panic!("line {}: expected label {m}: {err}", i + 1))
        });
        if expected.is_some() {
            marked += 1;
        } else {
            unmarked += 1;
        }
        let scan = d.scan(paragraph);
        let found = scan
            .found
            .into_iter()
            .map(|f| f.label)
            .reduce(|a, b| a.join(&b));
        let unknown = scan.unknown.first().map(|u| u.word.as_str());
        if found != expected || unknown != case["unknown"].as_str() {
            wrong.push(format!(
                "line {} ({}): expected {:?} (unknown {:?}), found {:?} (unknown {unknown:?})",
                i + 1,
                case["note"],
                expected.map(|l| e.banner(&l)),
                case["unknown"].as_str(),
                found.map(|l| e.banner(&l))
            ));
        }
    }
    assert!(
        marked + unmarked >= 200,
        "{marked} marked + {unmarked} unmarked"
    );
    assert!(
        marked >= 80 && unmarked >= 60,
        "{marked} marked, {unmarked} unmarked"
    );
    assert!(
        wrong.is_empty(),
        "{} wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}
