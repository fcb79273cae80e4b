//! The generic cell rate algorithm: one stored number per limited thing (the theoretical
//! arrival time), a rate, and a burst. Time is passed in, so the limiter is exact and testable.

/// A limit of `limit` units per `period`, with up to `burst` units at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    /// Nanoseconds one unit occupies (period / limit).
    interval: u128,
    /// Nanoseconds of credit a full burst holds (burst × interval).
    capacity: u128,
}

/// A request the limiter refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GcraError {
    /// Over the limit now; retry after this many nanoseconds.
    #[error("over the rate limit; retry in {0} ns")]
    RetryAfter(u64),
    /// More units than the burst: never allowed, however long one waits.
    #[error("more units than the limit allows at once")]
    TooLarge,
}

impl Gcra {
    /// `limit` units per `period_nanos`, bursts of up to `burst` units; `None` if any is 0.
    pub fn new(limit: u64, period_nanos: u64, burst: u64) -> Option<Self> {
        if limit == 0 || period_nanos == 0 || burst == 0 {
            return None;
        }
        // Nanoseconds per unit, rounded up so the limit is never exceeded by rounding.
        let interval = u128::from(period_nanos).div_ceil(u128::from(limit));
        Some(Self {
            interval,
            capacity: interval * u128::from(burst),
        })
    }

    /// `limit` per minute with a burst of a whole minute's worth.
    pub fn per_minute(limit: u64) -> Option<Self> {
        Self::new(limit, 60_000_000_000, limit)
    }

    /// Takes `units` at time `now` (nanoseconds on any monotonic clock) against the stored
    /// theoretical arrival time `tat` (0 for a fresh limiter). Returns the new `tat` to
    /// store, or why not (the stored value must then stay as it was).
    pub fn take(&self, tat: u64, now: u64, units: u64) -> Result<u64, GcraError> {
        let cost = self.interval * u128::from(units);
        if cost > self.capacity {
            return Err(GcraError::TooLarge);
        }
        let (tat, now) = (u128::from(tat), u128::from(now));
        let new_tat = tat.max(now) + cost;
        let ahead = new_tat - now;
        if ahead > self.capacity {
            let wait = ahead - self.capacity;
            return Err(GcraError::RetryAfter(
                u64::try_from(wait).unwrap_or(u64::MAX),
            ));
        }
        u64::try_from(new_tat).map_err(|_| GcraError::TooLarge)
    }

    /// How many units could be taken at `now` (for `x-ratelimit-remaining-*` headers).
    pub fn remaining(&self, tat: u64, now: u64) -> u64 {
        let ahead = u128::from(tat).saturating_sub(u128::from(now));
        let free = self.capacity.saturating_sub(ahead);
        u64::try_from(free / self.interval).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn a_burst_then_the_rate() {
        let g = Gcra::per_minute(60).unwrap();
        let mut tat = 0;
        let t0 = 1_000 * SEC;
        for _ in 0..60 {
            tat = g.take(tat, t0, 1).unwrap();
        }
        assert_eq!(g.remaining(tat, t0), 0);
        assert_eq!(g.take(tat, t0, 1), Err(GcraError::RetryAfter(SEC)));
        // One unit comes back each second.
        assert!(g.take(tat, t0 + SEC - 1, 1).is_err());
        let tat2 = g.take(tat, t0 + SEC, 1).unwrap();
        assert_eq!(g.remaining(tat2, t0 + SEC), 0);
        assert_eq!(g.remaining(tat, t0 + 60 * SEC), 60);
        assert_eq!(g.take(0, t0, 61), Err(GcraError::TooLarge));
        assert!(Gcra::per_minute(0).is_none());
    }

    proptest! {
        /// Over any window, what is taken never exceeds the burst plus the rate times the
        /// window: the reference is a direct count over the accepted requests.
        #[test]
        fn never_more_than_burst_plus_rate(
            limit in 1u64..50,
            burst in 1u64..50,
            gaps in proptest::collection::vec((0u64..3 * SEC, 1u64..5), 1..200),
        ) {
            let period = 10 * SEC;
            let g = Gcra::new(limit, period, burst).unwrap();
            let mut tat = 0u64;
            let mut now = SEC;
            let mut taken: Vec<(u64, u64)> = Vec::new();
            for (gap, units) in gaps {
                now += gap;
                if let Ok(t) = g.take(tat, now, units) {
                    tat = t;
                    taken.push((now, units));
                }
            }
            let interval = period.div_ceil(limit);
            for (i, &(start, _)) in taken.iter().enumerate() {
                for &(end, _) in &taken[i..] {
                    let window = end - start;
                    let units: u64 = taken.iter().filter(|(t, _)| *t >= start && *t <= end).map(|(_, u)| u).sum();
                    prop_assert!(units <= burst + window / interval, "{units} units in {window} ns");
                }
            }
        }
    }
}
