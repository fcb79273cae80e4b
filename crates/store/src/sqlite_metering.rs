//! [`MeteringStore`] on SQLite. Reservation and settlement are each one IMMEDIATE
//! transaction on the store's single connection, so checks and writes cannot interleave.

use rusqlite::{params, OptionalExtension, Row, Transaction, TransactionBehavior};

use crate::metering::{
    Exceeded, LedgerEntry, LimitScope, Limits, MeteringStore, PlanRecord, PriceRecord,
    ReservationRequest, Subjects, Totals,
};
use crate::{SqliteStore, StoreError};

fn to_i64(v: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Corrupt(format!("{what} {v} does not fit")))
}

fn opt_i64(v: Option<u64>, what: &str) -> Result<Option<i64>, StoreError> {
    v.map(|x| to_i64(x, what)).transpose()
}

fn nonneg(row: &Row<'_>, i: usize) -> rusqlite::Result<u64> {
    let v: i64 = row.get(i)?;
    u64::try_from(v).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Integer, Box::new(e))
    })
}

fn opt_nonneg(row: &Row<'_>, i: usize) -> rusqlite::Result<Option<u64>> {
    let v: Option<i64> = row.get(i)?;
    v.map(|x| {
        u64::try_from(x).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(
                i,
                rusqlite::types::Type::Integer,
                Box::new(e),
            )
        })
    })
    .transpose()
}

const PRICE_COLUMNS: &str = "model, input_per_million, output_per_million, updated_at";

fn price_row(r: &Row<'_>) -> rusqlite::Result<PriceRecord> {
    Ok(PriceRecord {
        model: r.get(0)?,
        input_per_million: r.get(1)?,
        output_per_million: r.get(2)?,
        updated_at: r.get(3)?,
    })
}

const LEDGER_COLUMNS: &str = "request_id, time, day, month, agency_id, user_id, key_id, model, \
     prompt_tokens, completion_tokens, cached_tokens, cost, input_price, output_price";

fn ledger_row(row: &Row<'_>) -> rusqlite::Result<LedgerEntry> {
    Ok(LedgerEntry {
        request_id: row.get(0)?,
        time: row.get(1)?,
        day: row.get(2)?,
        month: row.get(3)?,
        subjects: Subjects {
            agency: row.get(4)?,
            user: row.get(5)?,
            key: row.get(6)?,
        },
        model: row.get(7)?,
        prompt_tokens: nonneg(row, 8)?,
        completion_tokens: nonneg(row, 9)?,
        cached_tokens: nonneg(row, 10)?,
        cost: row.get(11)?,
        input_price: row.get(12)?,
        output_price: row.get(13)?,
    })
}

/// Settled tokens and cost of a subject in a period.
fn totals(
    tx: &Transaction<'_>,
    scope: LimitScope,
    subject: &str,
    period: &str,
) -> rusqlite::Result<(i64, i64)> {
    Ok(tx
        .prepare_cached("SELECT tokens, cost FROM usage_counters WHERE scope = ?1 AND subject_id = ?2 AND period = ?3")?.query_row(
            params![scope.as_str(), subject, period],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?
        .unwrap_or((0, 0)))
}

impl MeteringStore for SqliteStore {
    fn set_price(&self, p: &PriceRecord) -> Result<(), StoreError> {
        self.conn().prepare_cached("INSERT INTO model_prices (model, input_per_million, output_per_million, updated_at)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (model) DO UPDATE SET input_per_million = excluded.input_per_million,
                 output_per_million = excluded.output_per_million, updated_at = excluded.updated_at")?.execute(
            params![p.model, p.input_per_million, p.output_per_million, p.updated_at],
        )?;
        Ok(())
    }

    fn prices(&self) -> Result<Vec<PriceRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {PRICE_COLUMNS} FROM model_prices ORDER BY model"
        ))?;
        let rows = stmt.query_map([], price_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn price(&self, model: &str) -> Result<Option<PriceRecord>, StoreError> {
        Ok(self
            .read()
            .prepare_cached(&format!(
                "SELECT {PRICE_COLUMNS} FROM model_prices WHERE model = ?1"
            ))?
            .query_row(params![model], price_row)
            .optional()?)
    }

    fn set_plan(&self, p: &PlanRecord) -> Result<(), StoreError> {
        let (oi, oo) = match p.overage {
            Some((i, o)) => (Some(i), Some(o)),
            None => (None, None),
        };
        self.conn()
            .prepare_cached(
                "INSERT INTO contract_plans (agency_id, annual_fee, included_tokens, overage_input,
                 overage_output, monthly_cap, starts_on, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (agency_id) DO UPDATE SET annual_fee = excluded.annual_fee,
                 included_tokens = excluded.included_tokens, overage_input = excluded.overage_input,
                 overage_output = excluded.overage_output, monthly_cap = excluded.monthly_cap,
                 starts_on = excluded.starts_on, updated_at = excluded.updated_at",
            )?
            .execute(params![
                p.agency_id,
                p.annual_fee,
                to_i64(p.included_tokens, "included tokens")?,
                oi,
                oo,
                p.monthly_cap,
                p.starts_on,
                p.updated_at
            ])?;
        Ok(())
    }

    fn plan(&self, agency: &str) -> Result<Option<PlanRecord>, StoreError> {
        Ok(self
            .conn()
            .prepare_cached(
                "SELECT agency_id, annual_fee, included_tokens, overage_input, overage_output,
                        monthly_cap, starts_on, updated_at
                 FROM contract_plans WHERE agency_id = ?1",
            )?
            .query_row(params![agency], |r| {
                let oi: Option<i64> = r.get(3)?;
                let oo: Option<i64> = r.get(4)?;
                Ok(PlanRecord {
                    agency_id: r.get(0)?,
                    annual_fee: r.get(1)?,
                    included_tokens: nonneg(r, 2)?,
                    overage: oi.zip(oo),
                    monthly_cap: r.get(5)?,
                    starts_on: r.get(6)?,
                    updated_at: r.get(7)?,
                })
            })
            .optional()?)
    }

    fn set_limits(
        &self,
        scope: LimitScope,
        subject: &str,
        l: &Limits,
        updated_at: &str,
    ) -> Result<(), StoreError> {
        self.conn()
            .prepare_cached(
                "INSERT INTO limits (scope, subject_id, requests_per_minute, tokens_per_minute,
                 daily_tokens, monthly_tokens, monthly_budget, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (scope, subject_id) DO UPDATE SET
                 requests_per_minute = excluded.requests_per_minute,
                 tokens_per_minute = excluded.tokens_per_minute,
                 daily_tokens = excluded.daily_tokens, monthly_tokens = excluded.monthly_tokens,
                 monthly_budget = excluded.monthly_budget, updated_at = excluded.updated_at",
            )?
            .execute(params![
                scope.as_str(),
                subject,
                opt_i64(l.requests_per_minute, "requests per minute")?,
                opt_i64(l.tokens_per_minute, "tokens per minute")?,
                opt_i64(l.daily_tokens, "daily tokens")?,
                opt_i64(l.monthly_tokens, "monthly tokens")?,
                l.monthly_budget,
                updated_at
            ])?;
        Ok(())
    }

    fn limits(&self, scope: LimitScope, subject: &str) -> Result<Option<Limits>, StoreError> {
        Ok(self
            .read()
            .prepare_cached(
                "SELECT requests_per_minute, tokens_per_minute, daily_tokens, monthly_tokens,
                        monthly_budget
                 FROM limits WHERE scope = ?1 AND subject_id = ?2",
            )?
            .query_row(params![scope.as_str(), subject], |r| {
                Ok(Limits {
                    requests_per_minute: opt_nonneg(r, 0)?,
                    tokens_per_minute: opt_nonneg(r, 1)?,
                    daily_tokens: opt_nonneg(r, 2)?,
                    monthly_tokens: opt_nonneg(r, 3)?,
                    monthly_budget: r.get(4)?,
                })
            })
            .optional()?)
    }

    fn reserve(&self, r: &ReservationRequest) -> Result<Option<Exceeded>, StoreError> {
        let tokens = to_i64(r.tokens, "reserved tokens")?;
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.prepare_cached("DELETE FROM reservations WHERE expires_at <= ?1")?
            .execute(params![r.now_ms])?;
        let taken: bool = tx
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM reservations WHERE id = ?1)
                 OR EXISTS (SELECT 1 FROM usage_ledger WHERE request_id = ?1)",
            )?
            .query_row(params![r.id], |row| row.get(0))?;
        if taken {
            // The same ID is running or was settled (a retried request with the same
            // idempotency key): running it again would be unbilled work.
            return Err(StoreError::Duplicate(format!("reservation {}", r.id)));
        }
        for (scope, subject) in r.subjects.levels() {
            let limits: Option<(Option<i64>, Option<i64>, Option<i64>)> = tx
                .prepare_cached(
                    "SELECT daily_tokens, monthly_tokens, monthly_budget FROM limits
                     WHERE scope = ?1 AND subject_id = ?2",
                )?
                .query_row(params![scope.as_str(), subject], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                })
                .optional()?;
            let Some((daily, monthly, budget)) = limits else {
                continue;
            };
            // The column name is one of three constants, never input.
            let (held_tokens, held_cost): (i64, i64) = tx
                .prepare_cached(&format!(
                    "SELECT COALESCE(SUM(tokens), 0), COALESCE(SUM(cost), 0) FROM reservations
                     WHERE {} = ?1",
                    scope.column()
                ))?
                .query_row(params![subject], |row| Ok((row.get(0)?, row.get(1)?)))?;
            let (day_tokens, _) = totals(&tx, scope, subject, &r.day)?;
            let (month_tokens, month_cost) = totals(&tx, scope, subject, &r.month)?;
            let checks = [
                ("daily_tokens", daily, day_tokens, held_tokens, tokens),
                ("monthly_tokens", monthly, month_tokens, held_tokens, tokens),
                ("monthly_budget", budget, month_cost, held_cost, r.cost),
            ];
            for (limit, allowed, used, reserved, requested) in checks {
                let Some(allowed) = allowed else { continue };
                let total = used
                    .checked_add(reserved)
                    .and_then(|t| t.checked_add(requested));
                if total.is_none_or(|t| t > allowed) {
                    return Ok(Some(Exceeded {
                        scope,
                        subject: subject.to_owned(),
                        limit,
                        allowed,
                        used,
                        reserved,
                        requested,
                    }));
                }
            }
        }
        tx.prepare_cached(
            "INSERT INTO reservations (id, agency_id, user_id, key_id, tokens, cost, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            r.id,
            r.subjects.agency,
            r.subjects.user,
            r.subjects.key,
            tokens,
            r.cost,
            r.expires_at_ms
        ])?;
        tx.commit()?;
        Ok(None)
    }

    fn settle(&self, reservation_id: &str, e: &LedgerEntry) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let settled = settle_in(&tx, reservation_id, e)?;
        tx.commit()?;
        Ok(settled)
    }

    fn settle_many(&self, items: &[(String, LedgerEntry)]) -> Result<Vec<bool>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let settled = items
            .iter()
            .map(|(id, e)| settle_in(&tx, id, e))
            .collect::<Result<Vec<_>, _>>()?;
        tx.commit()?;
        Ok(settled)
    }

    fn release(&self, reservation_id: &str) -> Result<(), StoreError> {
        self.conn()
            .prepare_cached("DELETE FROM reservations WHERE id = ?1")?
            .execute(params![reservation_id])?;
        Ok(())
    }

    fn live_reservations(&self, now_ms: i64) -> Result<u64, StoreError> {
        let n: i64 = self
            .conn()
            .prepare_cached("SELECT COUNT(*) FROM reservations WHERE expires_at > ?1")?
            .query_row(params![now_ms], |r| r.get(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    fn totals(&self, scope: LimitScope, subject: &str, period: &str) -> Result<Totals, StoreError> {
        let row: Option<(u64, i64)> = self
            .conn()
            .prepare_cached(
                "SELECT tokens, cost FROM usage_counters
                 WHERE scope = ?1 AND subject_id = ?2 AND period = ?3",
            )?
            .query_row(params![scope.as_str(), subject, period], |r| {
                Ok((nonneg(r, 0)?, r.get(1)?))
            })
            .optional()?;
        Ok(row.map_or(Totals::default(), |(tokens, cost)| Totals { tokens, cost }))
    }

    fn ledger(&self, month: &str, agency: Option<&str>) -> Result<Vec<LedgerEntry>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {LEDGER_COLUMNS} FROM usage_ledger
             WHERE month = ?1 AND (?2 IS NULL OR agency_id = ?2) ORDER BY id"
        ))?;
        let rows = stmt.query_map(params![month, agency], ledger_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// One settlement inside a caller's transaction.
fn settle_in(
    tx: &rusqlite::Transaction<'_>,
    reservation_id: &str,
    e: &LedgerEntry,
) -> Result<bool, StoreError> {
    tx.prepare_cached("DELETE FROM reservations WHERE id = ?1")?
        .execute(params![reservation_id])?;
    let inserted = tx
        .prepare_cached(&format!(
            "INSERT INTO usage_ledger ({LEDGER_COLUMNS})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
             ON CONFLICT (request_id) DO NOTHING"
        ))?
        .execute(params![
            e.request_id,
            e.time,
            e.day,
            e.month,
            e.subjects.agency,
            e.subjects.user,
            e.subjects.key,
            e.model,
            to_i64(e.prompt_tokens, "prompt tokens")?,
            to_i64(e.completion_tokens, "completion tokens")?,
            to_i64(e.cached_tokens, "cached tokens")?,
            e.cost,
            e.input_price,
            e.output_price
        ])?;
    if inserted == 0 {
        // Already settled (a retry): the reservation is gone, nothing is counted twice.
        return Ok(false);
    }
    let tokens = to_i64(e.prompt_tokens + e.completion_tokens, "tokens")?;
    for (scope, subject) in e.subjects.levels() {
        for period in [&e.day, &e.month] {
            tx.prepare_cached(
                "INSERT INTO usage_counters (scope, subject_id, period, tokens, cost)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (scope, subject_id, period) DO UPDATE SET
                     tokens = tokens + excluded.tokens, cost = cost + excluded.cost",
            )?
            .execute(params![scope.as_str(), subject, period, tokens, e.cost])?;
        }
    }
    Ok(true)
}
