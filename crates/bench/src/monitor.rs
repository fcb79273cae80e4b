//! `highside bench monitor`: how fast the reference monitor reads a request's text, on prose
//! and on input built to be slow (runs of `S//`, of `(`, of level words, disguised and
//! non-Latin text, escapes and markup). Detection must be linear with a small constant: at least 50 MB/s on every
//! input. Each input is read `repeat` times and the median is reported, with the slowest
//! input's rate against the target.

use std::fmt::Write as _;
use std::time::Instant;

use highside_label::{Detector, Encodings};
use highside_monitor::{Monitor, PiiAction, Policies, PERMIT_ALL};

/// The target rate of the hardening issue, in MB/s (10^6 bytes).
const TARGET_MB_S: f64 = 50.0;

const PARAGRAPH: &str = "The committee reviewed the quarterly logistics figures and noted that \
    shipments to the northern depots arrived on schedule, while the southern routes saw delays \
    caused by weather and a shortage of drivers; the report recommends a second contractor.\n";

/// `unit` repeated to at least `size` bytes.
fn repeated(unit: &str, size: usize) -> String {
    unit.repeat(size / unit.len() + 1)
}

/// The inputs: (name, text).
fn inputs(size: usize) -> Vec<(&'static str, String)> {
    let mut report = String::with_capacity(size);
    let mut i = 0;
    while report.len() < size {
        if i % 100 == 0 {
            report.push_str("SECRET//REL TO USA, FVEY\n");
        }
        if i % 10 == 0 {
            report.push_str("(S//REL TO USA, GBR) ");
        }
        report.push_str(PARAGRAPH);
        i += 1;
    }
    vec![
        ("prose with a mark every 10th paragraph", report),
        ("`S//` repeated", repeated("S//", size)),
        ("`(` repeated", repeated("(", size)),
        ("`(S` repeated", repeated("(S", size)),
        ("level words: `SECRET ` repeated", repeated("SECRET ", size)),
        ("level words: `TOP ` repeated", repeated("TOP ", size)),
        ("one unterminated banner: `TS//SI/` repeated", {
            let mut s = String::from("TOP SECRET//");
            s.push_str(&repeated("SI/", size));
            s
        }),
        ("`REL TO USA, ` repeated", repeated("S//REL TO USA, ", size)),
        (
            "zero-width spaces between letters",
            repeated(
                "S\u{200b}E\u{200b}C\u{200b}R\u{200b}E\u{200b}T\u{200b} ",
                size,
            ),
        ),
        ("fullwidth letters", repeated("ＳＥＣＲＥＴ／／ＮＦ ", size)),
        (
            "Cyrillic look-alikes",
            repeated(
                "\u{405}\u{415}\u{421}R\u{415}\u{422} \u{422}\u{41e}\u{420} ",
                size,
            ),
        ),
        ("CJK text", repeated("機密文書の取り扱いについて。", size)),
        (
            "emoji and mathematical letters",
            repeated("\u{1f600}\u{1d412}\u{1d404}\u{1f512} ", size),
        ),
        (
            "characters with long folds (U+FDFA)",
            repeated("\u{fdfa}", size),
        ),
        (
            "private use and braille blanks in a banner",
            repeated("SECRET//\u{e000}NF\u{2800}", size),
        ),
        (
            "JSON escapes",
            repeated(r#"{"doc": "TOP SECRET\n\u0028S\u0029 the plan"} "#, size),
        ),
        (
            "decorated banner lines",
            repeated("**SECRET**\n# TOP SECRET\n", size),
        ),
        (
            "HTML references and tags",
            repeated("<p>&#84;OP SECRET&#47;&#47;<b>SI</b></p>&amp; ", size),
        ),
        ("unclosed comments: `<!--` repeated", repeated("<!--", size)),
        ("unclosed tags: `<a ` repeated", repeated("<a ", size)),
        (
            "comments holding escapes",
            repeated(r"<!-- \u0053ECRET &#47; --> ", size),
        ),
        (
            "comment openings before one far escape",
            repeated("<!--", size) + "\\u0041 -->",
        ),
        ("backslashes: `\\` repeated", repeated("\\", size)),
    ]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs the benchmark: `size` bytes per input, `repeat` timings each. Returns the report
/// (Markdown) and whether every input met the target.
pub fn run(size: usize, repeat: u32, command: &str) -> (String, bool) {
    let e = std::sync::Arc::new(Encodings::builtin());
    let detector = Detector::new(&e);
    let monitor = Monitor::new(
        e.clone(),
        Policies::parse(PERMIT_ALL).expect("the default policy parses"),
    );
    let mut rows = String::new();
    let mut slowest = f64::INFINITY;
    let inputs = inputs(size);
    let bar = indicatif::ProgressBar::new(inputs.len() as u64 * u64::from(repeat) * 2);
    for (name, text) in &inputs {
        let mb = text.len() as f64 / 1e6;
        let mut scan = Vec::new();
        let mut read = Vec::new();
        for _ in 0..repeat.max(1) {
            let t = Instant::now();
            let _ = std::hint::black_box(detector.label_of([std::hint::black_box(text.as_str())]));
            scan.push(mb / t.elapsed().as_secs_f64());
            bar.inc(1);
            // The whole reading of a request: declared label, detection and PII (flagged).
            let t = Instant::now();
            std::hint::black_box(monitor.read(&["SECRET"], &[text.as_str()], PiiAction::Flag));
            read.push(mb / t.elapsed().as_secs_f64());
            bar.inc(1);
        }
        let (scan, read) = (median(scan), median(read));
        slowest = slowest.min(scan).min(read);
        let _ = writeln!(
            rows,
            "| {name} | {:.1} | {scan:.0} | {read:.0} | {} |",
            mb,
            if scan.min(read) >= TARGET_MB_S {
                "met"
            } else {
                "NOT met"
            }
        );
    }
    bar.finish_and_clear();
    let met = slowest >= TARGET_MB_S;
    let when = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let report = format!(
        "## Marking detection throughput, {when}\n\n\
         Command: `{command}`\n\n\
         Machine: {} cores. Each input is scanned {repeat} times; medians in MB/s (10^6 bytes \
         per second). \"detect\" is `Detector::label_of`, what a request's texts go through \
         (fold, one pass, markings joined as they are read); \"read\" is `Monitor::read` (a \
         declared label, detection, and the PII detectors, which read the folded text too, as \
         an agency that flags personal data runs them). Target: at least {TARGET_MB_S} MB/s on every \
         input, prose and adversarial, for both.\n\n\
         | input | MB | detect MB/s | read MB/s | target |\n|---|---:|---:|---:|---|\n{rows}\n\
         - Slowest input: {slowest:.0} MB/s against {TARGET_MB_S} MB/s ({}).\n",
        std::thread::available_parallelism().map_or(1, usize::from),
        if met { "met" } else { "NOT met" }
    );
    (report, met)
}
