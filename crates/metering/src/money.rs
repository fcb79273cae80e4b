//! Money and prices.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An amount of US dollars in millionths (micro-dollars). Signed so that credits and
/// adjustments are expressible; every sum is checked.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Micros(pub i64);

/// Money that does not parse or does not fit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// Not a decimal dollar amount with at most six places.
    #[error("'{0}' is not a dollar amount such as 12.50 or 0.000150 (at most 6 decimal places)")]
    Parse(String),
    /// Beyond what 64 bits of micro-dollars hold.
    #[error("the amount does not fit")]
    Overflow,
}

impl Micros {
    /// Zero dollars.
    pub const ZERO: Micros = Micros(0);

    /// Whole dollars.
    pub fn dollars(d: i64) -> Result<Self, MoneyError> {
        d.checked_mul(1_000_000)
            .map(Micros)
            .ok_or(MoneyError::Overflow)
    }

    /// The sum, or an error rather than a wrapped amount.
    pub fn checked_add(self, other: Micros) -> Result<Micros, MoneyError> {
        self.0
            .checked_add(other.0)
            .map(Micros)
            .ok_or(MoneyError::Overflow)
    }

    /// The difference, or an error rather than a wrapped amount.
    pub fn checked_sub(self, other: Micros) -> Result<Micros, MoneyError> {
        self.0
            .checked_sub(other.0)
            .map(Micros)
            .ok_or(MoneyError::Overflow)
    }
}

impl fmt::Display for Micros {
    /// `12.500000`: dollars with all six places, so a printed amount is exact.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:06}", abs / 1_000_000, abs % 1_000_000)
    }
}

impl FromStr for Micros {
    type Err = MoneyError;

    /// Parses `12`, `12.5`, `0.000150`, `-3.25`; never through floating point.
    fn from_str(s: &str) -> Result<Self, MoneyError> {
        let bad = || MoneyError::Parse(s.chars().take(40).collect());
        let (negative, digits) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
        let all_digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !all_digits(whole) || !all_digits(frac) || frac.len() > 6 {
            return Err(bad());
        }
        if digits.ends_with('.') {
            return Err(bad());
        }
        let whole: i64 = whole.parse().map_err(|_| MoneyError::Overflow)?;
        let frac: i64 = format!("{frac:0<6}").parse().map_err(|_| bad())?;
        let v = whole
            .checked_mul(1_000_000)
            .and_then(|w| w.checked_add(frac))
            .ok_or(MoneyError::Overflow)?;
        Ok(Micros(if negative { -v } else { v }))
    }
}

/// What a model's tokens cost, per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// Per million prompt tokens.
    pub input_per_million: Micros,
    /// Per million generated tokens.
    pub output_per_million: Micros,
}

impl Price {
    /// Free.
    pub const FREE: Price = Price {
        input_per_million: Micros::ZERO,
        output_per_million: Micros::ZERO,
    };

    /// What `input` prompt and `output` generated tokens cost, rounded up to the next
    /// micro-dollar (usage is never free because it was small).
    pub fn cost(&self, input: u64, output: u64) -> Result<Micros, MoneyError> {
        let part = |tokens: u64, per_million: Micros| -> Result<i128, MoneyError> {
            if per_million.0 < 0 {
                return Err(MoneyError::Overflow);
            }
            Ok(i128::from(tokens) * i128::from(per_million.0))
        };
        let total = part(input, self.input_per_million)?
            .checked_add(part(output, self.output_per_million)?)
            .and_then(|t| t.checked_add(999_999))
            .ok_or(MoneyError::Overflow)?;
        // Ceiling division of the exact product: the whole request rounds once.
        let micros = total / 1_000_000;
        i64::try_from(micros)
            .map(Micros)
            .map_err(|_| MoneyError::Overflow)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parse_and_display_are_exact() {
        for (text, micros) in [
            ("0", 0),
            ("1", 1_000_000),
            ("12.5", 12_500_000),
            ("0.000150", 150),
            ("0.000001", 1),
            ("-3.25", -3_250_000),
        ] {
            assert_eq!(text.parse::<Micros>().unwrap(), Micros(micros), "{text}");
        }
        assert_eq!(Micros(12_500_000).to_string(), "12.500000");
        assert_eq!(Micros(-1).to_string(), "-0.000001");
        for bad in [
            "",
            ".5",
            "1.",
            "1.0000001",
            "1e6",
            "$1",
            "1,000",
            "--1",
            "0x10",
            " 1",
        ] {
            assert!(bad.parse::<Micros>().is_err(), "{bad}");
        }
        assert_eq!(
            "9223372036854.775808".parse::<Micros>(),
            Err(MoneyError::Overflow)
        );
    }

    #[test]
    fn costs_round_up_once_per_request() {
        let p = Price {
            input_per_million: "0.15".parse().unwrap(),
            output_per_million: "0.60".parse().unwrap(),
        };
        // 100 in at $0.15/M = 15 µ$; 10 out at $0.60/M = 6 µ$.
        assert_eq!(p.cost(100, 10).unwrap(), Micros(21));
        // 1 token at $0.15/M is 0.15 µ$: rounds up to 1.
        assert_eq!(p.cost(1, 0).unwrap(), Micros(1));
        // Fractions add before rounding: 3 × 0.15 + 1 × 0.60 = 1.05 → 2.
        assert_eq!(p.cost(3, 1).unwrap(), Micros(2));
        assert_eq!(p.cost(0, 0).unwrap(), Micros(0));
        assert_eq!(Price::FREE.cost(u64::MAX, u64::MAX).unwrap(), Micros(0));
        assert_eq!(
            Price {
                input_per_million: Micros(i64::MAX),
                output_per_million: Micros(0),
            }
            .cost(u64::MAX, 0),
            Err(MoneyError::Overflow)
        );
    }

    proptest! {
        #[test]
        fn parse_display_round_trip(v in any::<i64>().prop_filter("not MIN", |v| *v != i64::MIN)) {
            prop_assert_eq!(Micros(v).to_string().parse::<Micros>().unwrap(), Micros(v));
        }

        /// Against a reference in exact rational arithmetic: cost is the least integer
        /// number of micro-dollars not below the exact price.
        #[test]
        fn cost_is_the_exact_ceiling(input in 0u64..1<<40, output in 0u64..1<<40,
                                     pi in 0i64..1<<30, po in 0i64..1<<30) {
            let p = Price { input_per_million: Micros(pi), output_per_million: Micros(po) };
            let c = i128::from(p.cost(input, output).unwrap().0);
            let exact_times_million = i128::from(input) * i128::from(pi) + i128::from(output) * i128::from(po);
            prop_assert!(c * 1_000_000 >= exact_times_million);
            prop_assert!((c - 1) * 1_000_000 < exact_times_million || c == 0);
        }
    }
}
