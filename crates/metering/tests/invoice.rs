//! Invoice arithmetic against fixtures computed by hand (the working is in the comments).

use highside_metering::{invoice, ContractPlan, Micros, PlanError, Price, Usage};

fn m(s: &str) -> Micros {
    s.parse().unwrap()
}

/// Usage recorded with the model's prices of the time (see `prices`).
fn usage(model: &str, input: u64, output: u64) -> Usage {
    Usage {
        model: model.into(),
        input_tokens: input,
        output_tokens: output,
        price: prices(model),
    }
}

fn prices(model: &str) -> Option<Price> {
    match model {
        "big" => Some(Price {
            input_per_million: m("2"),
            output_per_million: m("8"),
        }),
        "small" => Some(Price {
            input_per_million: m("0.10"),
            output_per_million: m("0.40"),
        }),
        _ => None,
    }
}

fn month_of_usage() -> Vec<Usage> {
    vec![
        usage("small", 600, 300),
        usage("big", 500, 200),
        usage("small", 1_000, 1_000),
        usage("small", 7, 3),
    ]
}

#[test]
fn flat_fee_only() {
    // $1 a year = 1,000,000 µ$ = 12 × 83,333 + 4: months 1-4 bill 83,334, months 5-12 83,333.
    let plan = ContractPlan {
        annual_fee: m("1"),
        included_tokens: 0,
        overage: None,
        monthly_cap: None,
    };
    let jan = invoice(&plan, 1, &[]).unwrap();
    assert_eq!(jan.flat_fee, Micros(83_334));
    assert_eq!(jan.total, Micros(83_334));
    assert!(jan.lines.is_empty());
    assert_eq!(invoice(&plan, 5, &[]).unwrap().total, Micros(83_333));
    let year: i64 = (1..=12)
        .map(|mo| invoice(&plan, mo, &[]).unwrap().total.0)
        .sum();
    assert_eq!(year, 1_000_000);
    assert_eq!(jan.total.to_string(), "0.083334");
}

#[test]
fn included_tokens_then_each_models_prices() {
    // $12 a year: 1,000,000 µ$ a month. 1,000 included tokens, used in order:
    //  small 600 in / 300 out: all covered (100 left).
    //  big 500 in / 200 out: 100 in covered; 400 × $2/M + 200 × $8/M = 800 + 1,600 = 2,400 µ$.
    //  small 1,000 / 1,000: 1,000 × $0.10/M + 1,000 × $0.40/M = 100 + 400 = 500 µ$.
    //  small 7 / 3: 0.7 + 1.2 = 1.9 µ$, rounded up to 2.
    let plan = ContractPlan {
        annual_fee: m("12"),
        included_tokens: 1_000,
        overage: None,
        monthly_cap: None,
    };
    let inv = invoice(&plan, 3, &month_of_usage()).unwrap();
    assert_eq!(inv.flat_fee, Micros(1_000_000));
    assert_eq!(inv.lines.len(), 2);
    let (big, small) = (&inv.lines[0], &inv.lines[1]);
    assert_eq!(
        (
            big.model.as_str(),
            big.input_tokens,
            big.output_tokens,
            big.included_tokens,
            big.amount
        ),
        ("big", 500, 200, 100, Micros(2_400))
    );
    assert_eq!(
        (
            small.model.as_str(),
            small.input_tokens,
            small.output_tokens,
            small.included_tokens,
            small.amount
        ),
        ("small", 1_607, 1_303, 900, Micros(502))
    );
    assert_eq!(inv.usage_before_cap, Micros(2_902));
    assert_eq!(inv.cap_adjustment, Micros(0));
    assert_eq!(inv.total, Micros(1_002_902));
}

#[test]
fn overage_rates_and_the_monthly_cap() {
    // No fee, nothing included, overage $1/M in and $3/M out for every model:
    //  600/300: 600 + 900 = 1,500; 500/200: 500 + 600 = 1,100; 1,000/1,000: 1,000 + 3,000 =
    //  4,000; 7/3: 7 + 9 = 16. Usage 6,616 µ$; the $0.005 cap takes off 1,616.
    let plan = ContractPlan {
        annual_fee: Micros(0),
        included_tokens: 0,
        overage: Some(Price {
            input_per_million: m("1"),
            output_per_million: m("3"),
        }),
        monthly_cap: Some(m("0.005")),
    };
    let inv = invoice(&plan, 7, &month_of_usage()).unwrap();
    assert_eq!(inv.lines[0].amount, Micros(1_100));
    assert_eq!(inv.lines[1].amount, Micros(5_516));
    assert_eq!(inv.usage_before_cap, Micros(6_616));
    assert_eq!(inv.cap_adjustment, Micros(-1_616));
    assert_eq!(inv.total, Micros(5_000));
    // Under the cap nothing is taken off.
    let roomy = ContractPlan {
        monthly_cap: Some(m("1")),
        ..plan
    };
    assert_eq!(
        invoice(&roomy, 7, &month_of_usage()).unwrap().total,
        Micros(6_616)
    );
}

#[test]
fn what_cannot_be_invoiced_is_an_error() {
    let plan = ContractPlan {
        annual_fee: m("1"),
        included_tokens: 0,
        overage: None,
        monthly_cap: None,
    };
    assert_eq!(
        invoice(&plan, 1, &[usage("mystery", 1, 1)]),
        Err(PlanError::NoPrice("mystery".into()))
    );
    assert_eq!(invoice(&plan, 13, &[]), Err(PlanError::Month(13)));
    assert_eq!(invoice(&plan, 0, &[]), Err(PlanError::Month(0)));
    let negative = ContractPlan {
        annual_fee: m("-1"),
        ..plan
    };
    assert_eq!(invoice(&negative, 1, &[]), Err(PlanError::Negative));
}
