//! The metering store on real SQLite: reservations are atomic across the agency → user → key
//! hierarchy under concurrency, settle once, release, expire; the ledger equals the counters.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use highside_store::{
    LedgerEntry, LimitScope, Limits, MeteringStore, PriceRecord, ReservationRequest, SqliteStore,
    Subjects,
};

const DAY: &str = "2026-11-23";
const MONTH: &str = "2026-11";

fn store() -> (tempfile::TempDir, Arc<SqliteStore>) {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("db.sqlite")).unwrap();
    (dir, Arc::new(s))
}

fn subjects(user: &str) -> Subjects {
    Subjects {
        agency: "agency_a".into(),
        user: user.into(),
        key: Some(format!("key_{user}")),
    }
}

fn reservation(id: &str, user: &str, tokens: u64, cost: i64, now_ms: i64) -> ReservationRequest {
    ReservationRequest {
        id: id.into(),
        subjects: subjects(user),
        tokens,
        cost,
        day: DAY.into(),
        month: MONTH.into(),
        now_ms,
        expires_at_ms: now_ms + 60_000,
    }
}

fn entry(id: &str, user: &str, prompt: u64, completion: u64, cost: i64) -> LedgerEntry {
    LedgerEntry {
        request_id: id.into(),
        time: "2026-11-23T12:00:00Z".into(),
        day: DAY.into(),
        month: MONTH.into(),
        subjects: subjects(user),
        model: "smollm2".into(),
        prompt_tokens: prompt,
        completion_tokens: completion,
        cached_tokens: 0,
        cost,
        input_price: 1_000_000,
        output_price: 0,
    }
}

fn budget(micros: i64) -> Limits {
    Limits {
        monthly_budget: Some(micros),
        ..Limits::default()
    }
}

#[test]
fn a_thousand_concurrent_requests_against_a_budget_for_a_hundred() {
    let (_dir, s) = store();
    // Each request reserves and spends 10 µ$: the agency's budget fits exactly 100.
    s.set_limits(LimitScope::Agency, "agency_a", &budget(1_000), "t")
        .unwrap();
    let served = Arc::new(AtomicUsize::new(0));
    let next = Arc::new(AtomicUsize::new(0));
    std::thread::scope(|scope| {
        for _ in 0..16 {
            let (s, served, next) = (Arc::clone(&s), Arc::clone(&served), Arc::clone(&next));
            scope.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= 1_000 {
                    return;
                }
                let id = format!("req-{i}");
                let user = format!("user_{}", i % 7);
                match s.reserve(&reservation(&id, &user, 50, 10, 1_000)).unwrap() {
                    None => {
                        served.fetch_add(1, Ordering::SeqCst);
                        assert!(s.settle(&id, &entry(&id, &user, 20, 30, 10)).unwrap());
                    }
                    Some(e) => {
                        assert_eq!(e.limit, "monthly_budget");
                        assert_eq!(e.scope, LimitScope::Agency);
                        assert!(e.used + e.reserved + e.requested > e.allowed);
                    }
                }
            });
        }
    });
    assert_eq!(served.load(Ordering::SeqCst), 100);
    assert_eq!(s.live_reservations(0).unwrap(), 0);
    let agency = s.totals(LimitScope::Agency, "agency_a", MONTH).unwrap();
    assert_eq!(
        agency.cost, 1_000,
        "spend reaches the budget and never passes it"
    );
    let ledger = s.ledger(MONTH, Some("agency_a")).unwrap();
    assert_eq!(ledger.len(), 100);
    assert_eq!(ledger.iter().map(|e| e.cost).sum::<i64>(), agency.cost);
    let tokens: u64 = ledger
        .iter()
        .map(|e| e.prompt_tokens + e.completion_tokens)
        .sum();
    assert_eq!(tokens, agency.tokens);
    assert_eq!(
        s.totals(LimitScope::Agency, "agency_a", DAY).unwrap(),
        agency
    );
    // Per user and per key, the counters add up to the agency's.
    let per_user: i64 = (0..7)
        .map(|u| {
            s.totals(LimitScope::User, &format!("user_{u}"), MONTH)
                .unwrap()
                .cost
        })
        .sum();
    let per_key: i64 = (0..7)
        .map(|u| {
            s.totals(LimitScope::Key, &format!("key_user_{u}"), MONTH)
                .unwrap()
                .cost
        })
        .sum();
    assert_eq!((per_user, per_key), (1_000, 1_000));
}

#[test]
fn every_level_is_checked_and_the_first_broken_limit_is_named() {
    let (_dir, s) = store();
    s.set_limits(
        LimitScope::Agency,
        "agency_a",
        &Limits {
            monthly_tokens: Some(1_000),
            ..Limits::default()
        },
        "t",
    )
    .unwrap();
    s.set_limits(
        LimitScope::User,
        "user_1",
        &Limits {
            daily_tokens: Some(300),
            ..Limits::default()
        },
        "t",
    )
    .unwrap();
    s.set_limits(
        LimitScope::Key,
        "key_user_2",
        &Limits {
            monthly_tokens: Some(100),
            ..Limits::default()
        },
        "t",
    )
    .unwrap();
    // The user's daily quota: 200 reserved, then 200 more would make 400 > 300.
    assert!(s
        .reserve(&reservation("r1", "user_1", 200, 0, 0))
        .unwrap()
        .is_none());
    let e = s
        .reserve(&reservation("r2", "user_1", 200, 0, 0))
        .unwrap()
        .unwrap();
    assert_eq!(
        (e.scope, e.limit, e.used, e.reserved, e.requested),
        (LimitScope::User, "daily_tokens", 0, 200, 200)
    );
    // A release gives it back.
    s.release("r1").unwrap();
    assert!(s
        .reserve(&reservation("r2", "user_1", 200, 0, 0))
        .unwrap()
        .is_none());
    // The key's own quota binds another user's key.
    let e = s
        .reserve(&reservation("r3", "user_2", 101, 0, 0))
        .unwrap()
        .unwrap();
    assert_eq!((e.scope, e.limit), (LimitScope::Key, "monthly_tokens"));
    // Settled usage counts like reservations: the agency has 1,000 a month.
    assert!(s.settle("r2", &entry("r2", "user_1", 100, 100, 0)).unwrap());
    assert!(s
        .reserve(&reservation("r4", "user_3", 800, 0, 0))
        .unwrap()
        .is_none());
    let e = s
        .reserve(&reservation("r5", "user_3", 1, 0, 0))
        .unwrap()
        .unwrap();
    assert_eq!(
        (e.scope, e.limit, e.used, e.reserved),
        (LimitScope::Agency, "monthly_tokens", 200, 800)
    );
    // Nothing was recorded for refused reservations.
    assert_eq!(s.live_reservations(0).unwrap(), 1);
}

#[test]
fn reservations_of_a_dead_node_expire_and_a_retried_settlement_counts_once() {
    let (_dir, s) = store();
    s.set_limits(
        LimitScope::User,
        "user_1",
        &Limits {
            daily_tokens: Some(100),
            ..Limits::default()
        },
        "t",
    )
    .unwrap();
    // Reserved at t = 0 for a minute, never settled (the node died).
    assert!(s
        .reserve(&reservation("lost", "user_1", 100, 0, 0))
        .unwrap()
        .is_none());
    assert!(s
        .reserve(&reservation("blocked", "user_1", 1, 0, 59_999))
        .unwrap()
        .is_some());
    assert_eq!(s.live_reservations(59_999).unwrap(), 1);
    assert_eq!(s.live_reservations(60_000).unwrap(), 0);
    assert!(s
        .reserve(&reservation("after", "user_1", 100, 0, 60_000))
        .unwrap()
        .is_none());
    // The same ID while it runs is refused (an idempotency key retried too early).
    assert!(matches!(
        s.reserve(&reservation("after", "user_1", 1, 0, 60_000)),
        Err(highside_store::StoreError::Duplicate(_))
    ));
    // Settling twice (a retry) records it once.
    assert!(s
        .settle("after", &entry("after", "user_1", 40, 10, 7))
        .unwrap());
    assert!(!s
        .settle("after", &entry("after", "user_1", 40, 10, 7))
        .unwrap());
    // And once settled, the ID cannot be reserved again (no unbilled rerun).
    assert!(matches!(
        s.reserve(&reservation("after", "user_1", 1, 0, 60_000)),
        Err(highside_store::StoreError::Duplicate(_))
    ));
    let t = s.totals(LimitScope::User, "user_1", DAY).unwrap();
    assert_eq!((t.tokens, t.cost), (50, 7));
    assert_eq!(s.ledger(MONTH, None).unwrap().len(), 1);
}

#[test]
fn prices_and_limits_round_trip_and_nonsense_is_refused() {
    let (_dir, s) = store();
    let p = PriceRecord {
        model: "smollm2".into(),
        input_per_million: 150_000,
        output_per_million: 600_000,
        updated_at: "2026-11-23T00:00:00Z".into(),
    };
    s.set_price(&p).unwrap();
    s.set_price(&PriceRecord {
        input_per_million: 100_000,
        ..p.clone()
    })
    .unwrap();
    assert_eq!(s.prices().unwrap()[0].input_per_million, 100_000);
    assert_eq!(
        s.price("smollm2").unwrap().unwrap().input_per_million,
        100_000
    );
    assert!(s.price("unpriced").unwrap().is_none());
    assert!(s
        .set_price(&PriceRecord {
            input_per_million: -1,
            ..p
        })
        .is_err());
    let l = Limits {
        requests_per_minute: Some(60),
        tokens_per_minute: Some(10_000),
        daily_tokens: Some(1),
        monthly_tokens: None,
        monthly_budget: Some(5),
    };
    s.set_limits(LimitScope::Key, "key_1", &l, "t").unwrap();
    assert_eq!(s.limits(LimitScope::Key, "key_1").unwrap(), Some(l));
    assert_eq!(s.limits(LimitScope::User, "key_1").unwrap(), None);
    assert!(s
        .set_limits(
            LimitScope::Key,
            "key_1",
            &Limits {
                requests_per_minute: Some(0),
                ..l
            },
            "t"
        )
        .is_err());
    assert!(s
        .set_limits(
            LimitScope::Key,
            "key_1",
            &Limits {
                monthly_budget: Some(-1),
                ..l
            },
            "t"
        )
        .is_err());
}
