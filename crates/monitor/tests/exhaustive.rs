//! Every clearance, nationality, model accreditation and request label over a small lattice
//! (4 levels x 3 compartments x 3 countries) through the mandatory check: no read up, no write
//! down, and no needless denial, compared with a reference written from the definitions.
//! Then every (clearance, request) and (model, request) pair through the whole monitor.

mod common;

use common::{all_labels, clearances, encodings, reference_allows, COUNTRIES};
use highside_monitor::{mac, Access, Input, Monitor, PiiAction, Policies};

#[test]
fn mac_over_the_whole_small_lattice() {
    let e = encodings();
    let labels = all_labels(&e);
    let clears = clearances(&e);
    assert_eq!(labels.len(), 160);
    assert_eq!(clears.len(), 32);
    let (mut allowed, mut reads_up, mut writes_down, mut needless) = (0u64, 0u64, 0u64, 0u64);
    for (clearance, cb) in &clears {
        for (n, nationality) in COUNTRIES.iter().enumerate() {
            let subject = mac::Subject {
                clearance,
                nationality,
            };
            for (model, mb) in &labels {
                for (request, rb) in &labels {
                    let allow = mac::check(&subject, model, request).is_empty();
                    let want = reference_allows(*cb, n, *mb, *rb);
                    if allow {
                        allowed += 1;
                        let read_up = cb.level < rb.level
                            || rb.comps & !cb.comps != 0
                            || rb.rel.is_some_and(|m| m & (1 << n) == 0);
                        reads_up += u64::from(read_up);
                        // This lattice has no other controls, so dominance is exactly the
                        // no-write-down criterion.
                        writes_down += u64::from(!model.dominates(request));
                    }
                    if allow != want {
                        needless += u64::from(!allow);
                        assert_eq!(allow, want, "{cb:?} {nationality} {mb:?} {rb:?}");
                    }
                }
            }
        }
    }
    assert_eq!(reads_up, 0, "reads up");
    assert_eq!(writes_down, 0, "writes down");
    assert_eq!(needless, 0, "needless denials");
    assert!(allowed > 0);
    println!("{allowed} of {} combinations allowed", 32 * 3 * 160 * 160);
}

#[test]
fn the_whole_monitor_agrees_on_every_pair() {
    let e = encodings();
    let labels = all_labels(&e);
    let clears = clearances(&e);
    let monitor = Monitor::new(e.clone(), Policies::permit_all());
    let top = e.system_high().clone();
    let roles = ["user"];
    let decide = |clearance, nationality, model, request: &highside_label::Label| {
        let banner = e.banner(request);
        let declared = [banner.as_str()];
        monitor.decide(&Input {
            access: Access {
                user: "user_1",
                user_name: "analyst",
                agency: "agency_1",
                roles: &roles,
                clearance,
                nationality,
                model: "m",
                accreditation: model,
            },
            declared: &declared,
            texts: &[],
            pii: PiiAction::Off,
        })
    };
    let top_bits = common::Bits {
        level: 3,
        comps: 0b111,
        rel: None,
    };
    for (clearance, cb) in &clears {
        for (request, rb) in &labels {
            let d = decide(clearance, "GBR", &top, request);
            assert_eq!(d.label, *request, "the declared label is the request label");
            assert_eq!(
                d.allowed,
                reference_allows(*cb, 1, top_bits, *rb),
                "{cb:?} {rb:?}: {}",
                d.explain()
            );
            assert_eq!(d.allowed, d.reasons.is_empty());
        }
    }
    for (model, mb) in &labels {
        for (request, rb) in &labels {
            let d = decide(&top, "USA", model, request);
            assert_eq!(
                d.allowed,
                reference_allows(top_bits, 0, *mb, *rb),
                "{mb:?} {rb:?}: {}",
                d.explain()
            );
        }
    }
}
