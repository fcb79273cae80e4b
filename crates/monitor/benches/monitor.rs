//! The reference monitor's costs: the native mandatory check, a full decision (label parsing,
//! marking detection, the native check and Cedar), and marking-scan throughput on a 1 MB
//! document. Criterion measures means; a second pass times 100,000 full decisions one by one
//! and prints their median and p99, which criterion does not report.
//!
//! Run: `cargo bench -p highside-monitor --bench monitor`

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use criterion::{Criterion, Throughput};
use highside_label::{Detector, Encodings};
use highside_monitor::{
    mac, Access, Input, Monitor, PiiAction, Policies, PolicyRequest, PERMIT_ALL,
};

const PARAGRAPH: &str = "The committee reviewed the quarterly logistics figures and noted that \
    shipments to the northern depots arrived on schedule, while the southern routes saw delays \
    caused by weather and a shortage of drivers; the report recommends a second contractor.\n";

/// About 1 MB of prose with a portion mark opening every tenth paragraph and a banner every
/// hundredth, the density of a marked report.
fn document() -> String {
    let mut doc = String::with_capacity(1 << 20);
    let mut i = 0;
    while doc.len() < 1 << 20 {
        if i % 100 == 0 {
            doc.push_str("SECRET//REL TO USA, FVEY\n");
        }
        if i % 10 == 0 {
            doc.push_str("(S//REL TO USA, GBR) ");
        }
        doc.push_str(PARAGRAPH);
        i += 1;
    }
    doc
}

fn policies() -> Policies {
    Policies::parse(&format!(
        "{PERMIT_ALL}@id(\"no-orcon-for-users\")\nforbid(principal, action, resource) \
         when {{ context.label.dissemination.contains(\"ORCON\") }} \
         unless {{ principal in Highside::Role::\"agency-admin\" }};\n"
    ))
    .expect("valid policies")
}

fn main() {
    let e = Arc::new(Encodings::builtin());
    let monitor = Monitor::new(e.clone(), policies());
    let clearance = e.parse("TOP SECRET//SI/TK").unwrap();
    let model = e.parse("TOP SECRET//SI/TK//NOFORN").unwrap();
    let request = e.parse("SECRET//SI//NOFORN").unwrap();
    let roles = ["user"];
    let messages = [
        "You are a careful analyst.",
        "(S//NF) Summarise the attached field report in three sentences.",
    ];
    let declared = ["SECRET"];
    let input = Input {
        access: Access {
            user: "user_0123456789abcdef",
            user_name: "analyst",
            agency: "agency_0123456789abcdef",
            roles: &roles,
            clearance: &clearance,
            nationality: "USA",
            model: "smollm2",
            accreditation: &model,
        },
        declared: &declared,
        texts: &messages,
        pii: PiiAction::Off,
    };
    assert!(monitor.decide(&input).allowed);
    let doc = document();
    let detector = Detector::new(&e);
    assert!(!detector.find(&doc).is_empty());

    let mut c = Criterion::default().configure_from_args();
    c.bench_function("native decision (mac::check)", |b| {
        let subject = mac::Subject {
            clearance: &clearance,
            nationality: "USA",
        };
        b.iter(|| mac::check(black_box(&subject), black_box(&model), black_box(&request)))
    });
    c.bench_function("full decision (label, detection, native, Cedar)", |b| {
        b.iter(|| monitor.decide(black_box(&input)))
    });
    c.bench_function("request label only (parse + detection)", |b| {
        b.iter(|| monitor.label(black_box(&declared), black_box(&messages)))
    });
    let lowest = e.lowest();
    let policy_request = PolicyRequest {
        access: input.access,
        label: &request,
        declared: &lowest,
        detected: true,
        pii: &[],
    };
    let cedar = policies();
    c.bench_function("Cedar policies only", |b| {
        b.iter(|| cedar.evaluate(&e, black_box(&policy_request)))
    });
    let mut group = c.benchmark_group("marking scan");
    group.throughput(Throughput::Bytes(doc.len() as u64));
    group.sample_size(20);
    group.bench_function("1 MB document", |b| {
        b.iter(|| detector.find(black_box(&doc)))
    });
    group.finish();
    c.final_summary();

    // Latency distribution of full decisions, one at a time.
    let n = 100_000;
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        black_box(monitor.decide(black_box(&input)));
        times.push(t.elapsed().as_nanos() as u64);
    }
    times.sort_unstable();
    let pct = |p: f64| times[((n as f64 * p) as usize).min(n - 1)] as f64 / 1000.0;
    println!(
        "full decision over {n} runs: p50 {:.1} us, p99 {:.1} us, max {:.1} us",
        pct(0.50),
        pct(0.99),
        pct(1.0)
    );
}
