//! A month's invoice under an agency's contract plan: a twelfth of the annual fee, usage
//! beyond the included tokens at the overage rates (or each model's prices), capped.

use serde::{Deserialize, Serialize};

use crate::money::{Micros, MoneyError, Price};

/// An agency's contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContractPlan {
    /// The flat fee per year, billed in twelve monthly parts that add up to it exactly.
    pub annual_fee: Micros,
    /// Tokens (prompt and generated together) each month includes at no usage charge.
    pub included_tokens: u64,
    /// Prices of the tokens beyond the included ones; `None` bills each model's own prices.
    pub overage: Option<Price>,
    /// The most a month's usage charges may come to (the flat fee is not capped).
    pub monthly_cap: Option<Micros>,
}

/// One completion's tokens, as the ledger holds them (in the order they were used).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// The model.
    pub model: String,
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Generated tokens.
    pub output_tokens: u64,
    /// The model's prices when it was used (a later price change does not rewrite history);
    /// `None` if it had none.
    pub price: Option<Price>,
}

/// One model's usage on an invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceLine {
    /// The model.
    pub model: String,
    /// Prompt tokens used.
    pub input_tokens: u64,
    /// Generated tokens used.
    pub output_tokens: u64,
    /// Of those, tokens covered by the included allowance.
    pub included_tokens: u64,
    /// What the rest cost.
    pub amount: Micros,
}

/// A month's invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invoice {
    /// The month of the contract year, 1 to 12 (which twelfth of the fee is billed).
    pub contract_month: u32,
    /// This month's part of the annual fee.
    pub flat_fee: Micros,
    /// Usage per model, by model name.
    pub lines: Vec<InvoiceLine>,
    /// The sum of the lines.
    pub usage_before_cap: Micros,
    /// Zero, or the (negative) amount the monthly cap takes off.
    pub cap_adjustment: Micros,
    /// Flat fee plus capped usage.
    pub total: Micros,
}

/// Why an invoice cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// Usage of a model with no price, and no overage rate in the plan.
    #[error("model '{0}' has no price and the plan has no overage rate")]
    NoPrice(String),
    /// The month is not 1 to 12.
    #[error("the contract month must be 1 to 12, not {0}")]
    Month(u32),
    /// A negative fee, price or cap.
    #[error("fees, prices and caps may not be negative")]
    Negative,
    /// An amount beyond 64 bits.
    #[error(transparent)]
    Money(#[from] MoneyError),
}

/// The twelfth of `annual` billed in contract month `month`: the remainder of the division
/// goes one micro-dollar at a time to the first months, so the twelve parts sum to `annual`.
fn monthly_part(annual: Micros, month: u32) -> Micros {
    let (base, rest) = (annual.0 / 12, annual.0 % 12);
    Micros(base + i64::from(i64::from(month) <= rest))
}

/// The invoice of contract month `month` for `usage` (in the order it happened), billed at
/// the plan's overage rates or, without them, at each usage's recorded model prices. The
/// included tokens are used up in that order, prompt tokens of a completion before its
/// generated ones.
pub fn invoice(plan: &ContractPlan, month: u32, usage: &[Usage]) -> Result<Invoice, PlanError> {
    if !(1..=12).contains(&month) {
        return Err(PlanError::Month(month));
    }
    let negative = |m: Micros| m.0 < 0;
    if negative(plan.annual_fee)
        || plan.monthly_cap.is_some_and(negative)
        || plan
            .overage
            .is_some_and(|p| negative(p.input_per_million) || negative(p.output_per_million))
    {
        return Err(PlanError::Negative);
    }
    let mut left = plan.included_tokens;
    let mut lines: std::collections::BTreeMap<&str, InvoiceLine> = Default::default();
    for u in usage {
        let covered_in = u.input_tokens.min(left);
        left -= covered_in;
        let covered_out = u.output_tokens.min(left);
        left -= covered_out;
        let rate = match plan.overage {
            Some(p) => p,
            None => u.price.ok_or_else(|| PlanError::NoPrice(u.model.clone()))?,
        };
        let cost = rate.cost(u.input_tokens - covered_in, u.output_tokens - covered_out)?;
        let line = lines.entry(&u.model).or_insert_with(|| InvoiceLine {
            model: u.model.clone(),
            input_tokens: 0,
            output_tokens: 0,
            included_tokens: 0,
            amount: Micros::ZERO,
        });
        line.input_tokens += u.input_tokens;
        line.output_tokens += u.output_tokens;
        line.included_tokens += covered_in + covered_out;
        line.amount = line.amount.checked_add(cost)?;
    }
    let mut usage_before_cap = Micros::ZERO;
    for l in lines.values() {
        usage_before_cap = usage_before_cap.checked_add(l.amount)?;
    }
    let cap_adjustment = match plan.monthly_cap {
        Some(cap) if usage_before_cap > cap => cap.checked_sub(usage_before_cap)?,
        _ => Micros::ZERO,
    };
    let flat_fee = monthly_part(plan.annual_fee, month);
    let total = flat_fee
        .checked_add(usage_before_cap)?
        .checked_add(cap_adjustment)?;
    Ok(Invoice {
        contract_month: month,
        flat_fee,
        lines: lines.into_values().collect(),
        usage_before_cap,
        cap_adjustment,
        total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_twelve_parts_of_any_fee_add_up_to_it() {
        for fee in [0, 1, 11, 12, 13, 1_000_000, 999_999_999_999] {
            let sum: i64 = (1..=12).map(|m| monthly_part(Micros(fee), m).0).sum();
            assert_eq!(sum, fee);
            let parts: Vec<i64> = (1..=12).map(|m| monthly_part(Micros(fee), m).0).collect();
            assert!(parts.iter().max().unwrap() - parts.iter().min().unwrap() <= 1);
        }
    }

    proptest! {
        #[test]
        fn the_cap_is_never_exceeded_and_included_tokens_are_never_billed(
            uses in proptest::collection::vec((0u64..5_000, 0u64..5_000), 0..40),
            included in 0u64..100_000,
            cap in proptest::option::of(0i64..10_000),
        ) {
            let plan = ContractPlan {
                annual_fee: Micros(0),
                included_tokens: included,
                overage: Some(Price { input_per_million: Micros(1_000_000), output_per_million: Micros(2_000_000) }),
                monthly_cap: cap.map(Micros),
            };
            let usage: Vec<Usage> = uses.iter().map(|&(i, o)| Usage { model: "m".into(), input_tokens: i, output_tokens: o, price: None }).collect();
            let inv = invoice(&plan, 1, &usage).unwrap();
            if let Some(c) = cap {
                prop_assert!(inv.total.0 <= c);
            }
            let tokens: u64 = uses.iter().map(|&(i, o)| i + o).sum();
            let covered: u64 = inv.lines.iter().map(|l| l.included_tokens).sum();
            prop_assert_eq!(covered, tokens.min(included));
            // At $1/M in and $2/M out, every billed token costs at least a micro-dollar.
            prop_assert!(inv.usage_before_cap.0 >= (tokens - covered) as i64);
        }
    }
}
