//! The native check against a Cedar policy set that states the same rule, on 10^5 random
//! requests over the built-in encodings: they must agree on every one. Cedar is an independent
//! implementation of the comparison logic, so a slip in either shows up as a disagreement.

use std::sync::Arc;

use highside_label::{Encodings, Label};
use highside_monitor::{mac, Access, Policies, PolicyRequest};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

const MAC_POLICY: &str = r#"
@id("mac")
permit(principal, action == Highside::Action::"infer", resource)
when {
  principal.clearance.level >= context.label.level &&
  principal.clearance.compartments.containsAll(context.label.compartments) &&
  (context.label.unrestricted || context.label.releasable_to.contains(principal.nationality)) &&
  resource.accreditation.level >= context.label.level &&
  resource.accreditation.compartments.containsAll(context.label.compartments) &&
  (context.label.unrestricted ||
    (!resource.accreditation.unrestricted &&
     context.label.releasable_to.containsAll(resource.accreditation.releasable_to)))
};
"#;

const LEVELS: &[&str] = &["U", "CUI", "C", "S", "TS"];
const COMPARTMENTS: &[&str] = &["SI", "SI-G", "TK", "HCS", "HCS-P"];
const COUNTRIES: &[&str] = &["USA", "AUS", "CAN", "GBR", "NZL", "DEU", "FRA"];
const DISSEM: &[&str] = &["ORCON", "FOUO", "PROPIN"];

fn marking(level: usize, comps: u8, rel: Option<u8>, dissem: u8) -> String {
    let mut m = LEVELS[level].to_owned();
    let pick = |bits: u8, names: &[&'static str]| -> Vec<&'static str> {
        (0..names.len())
            .filter(|i| bits & (1 << i) != 0)
            .map(|i| names[i])
            .collect()
    };
    let cs = pick(comps, COMPARTMENTS);
    if !cs.is_empty() {
        m.push_str("//");
        m.push_str(&cs.join("/"));
    }
    let mut controls: Vec<String> = pick(dissem, DISSEM).iter().map(|s| s.to_string()).collect();
    if let Some(r) = rel {
        // Bit 0 (USA) is always set: REL TO lists always include the home country.
        let list = pick(r | 1, COUNTRIES);
        controls.push(format!("REL TO {}", list.join(", ")));
    }
    if !controls.is_empty() {
        m.push_str("//");
        m.push_str(&controls.join("/"));
    }
    m
}

/// A label as bits: level, compartments, releasability countries (None = unrestricted),
/// dissemination controls.
type Bits = (usize, u8, Option<u8>, u8);

fn arb_bits(with_rel: bool) -> BoxedStrategy<Bits> {
    let rel = if with_rel {
        proptest::option::of(0u8..128).boxed()
    } else {
        Just(None).boxed()
    };
    (0usize..5, 0u8..32, rel, 0u8..8).boxed()
}

/// Requests near the boundary: half are random, half are the meet of the clearance and the
/// model (which the rule allows) with one component pushed up or changed.
fn arb_request(clearance: Bits, model: Bits) -> BoxedStrategy<Bits> {
    let meet: Bits = (clearance.0.min(model.0), clearance.1 & model.1, model.2, 0);
    prop_oneof![
        arb_bits(true),
        (
            0u8..5,
            0usize..5,
            0u8..32,
            proptest::option::of(0u8..128),
            0u8..8
        )
            .prop_map(move |(which, level, comp, rel, dissem)| {
                let mut r = meet;
                match which {
                    0 => r.0 = (r.0 + level % 2).min(4),
                    1 => r.1 |= comp & 0b10001,
                    2 => r.2 = rel,
                    3 => r.3 = dissem,
                    _ => {}
                }
                r
            }),
    ]
    .boxed()
}

fn to_marking(b: Bits) -> String {
    marking(b.0, b.1, b.2, b.3)
}

#[test]
fn native_and_cedar_agree_on_100000_requests() {
    let e = Arc::new(Encodings::builtin());
    let cedar = Policies::parse(MAC_POLICY).expect("the MAC policy validates against the schema");
    let parse = |m: &str| -> Label { e.parse(m).unwrap_or_else(|err| panic!("{m}: {err}")) };
    let strategy = (
        arb_bits(false),
        proptest::sample::select(COUNTRIES),
        arb_bits(true),
    )
        .prop_flat_map(|(c, n, m)| (Just(c), Just(n), Just(m), arb_request(c, m)));
    let mut runner = TestRunner::new(Config {
        cases: 100_000,
        failure_persistence: None,
        ..Config::default()
    });
    let counts = std::cell::Cell::new((0u32, 0u32));
    runner
        .run(&strategy, |(clearance, nationality, model, request)| {
            let (clearance, model, request) = (
                parse(&to_marking(clearance)),
                parse(&to_marking(model)),
                parse(&to_marking(request)),
            );
            let native = mac::check(
                &mac::Subject {
                    clearance: &clearance,
                    nationality,
                },
                &model,
                &request,
            )
            .is_empty();
            let roles = ["user"];
            let lowest = e.lowest();
            let by_cedar = cedar
                .evaluate(
                    &e,
                    &PolicyRequest {
                        access: Access {
                            user: "user_1",
                            user_name: "analyst",
                            agency: "agency_1",
                            roles: &roles,
                            clearance: &clearance,
                            nationality,
                            model: "m",
                            accreditation: &model,
                        },
                        label: &request,
                        declared: &lowest,
                        detected: false,
                        pii: &[],
                    },
                )
                .is_ok();
            let (a, d) = counts.get();
            counts.set(if native { (a + 1, d) } else { (a, d + 1) });
            prop_assert_eq!(native, by_cedar);
            Ok(())
        })
        .unwrap();
    let (allowed, denied) = counts.get();
    assert_eq!(allowed + denied, 100_000);
    // Both outcomes must be well represented, or the comparison proves little.
    assert!(
        allowed > 10_000 && denied > 10_000,
        "{allowed} allowed, {denied} denied"
    );
}
