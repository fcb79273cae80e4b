//! Metering over HTTP against the real binary: a budget under 1,000 concurrent requests,
//! rate limits over a measured window, release on disconnect, idempotency keys, usage
//! reports and invoices; the store checked directly after the server stops.

mod common;

use std::time::{Duration, Instant};

use common::Server;
use highside_store::{LimitScope, MeteringStore};
use serde_json::{json, Value};

struct Tenant {
    agency: String,
    user: String,
    key: String,
    key_id: String,
}

async fn tenant(server: &Server, name: &str) -> Tenant {
    let a = server
        .create(
            &server.key,
            "/admin/v1/agencies",
            json!({"name": name, "branch": "executive"}),
        )
        .await;
    let agency = a["id"].as_str().unwrap().to_owned();
    let u = server
        .create(
            &server.key,
            "/admin/v1/users",
            json!({"agency_id": agency, "name": "u", "roles": ["user"],
                   "clearance": "SECRET", "nationality": "USA"}),
        )
        .await;
    let k = server
        .create(
            &server.key,
            "/admin/v1/keys",
            json!({"user_id": u["id"], "name": "k"}),
        )
        .await;
    Tenant {
        agency,
        user: u["id"].as_str().unwrap().to_owned(),
        key: k["key"].as_str().unwrap().to_owned(),
        key_id: k["id"].as_str().unwrap().to_owned(),
    }
}

async fn put(server: &Server, path: &str, body: Value) -> Value {
    let res = server
        .http()
        .put(server.url(path))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = res.status();
    let v: Value = res.json().await.unwrap();
    assert_eq!(status, 200, "{path}: {v}");
    v
}

fn hi() -> Value {
    json!({"model": "smollm2", "prompt": "Once upon a time", "max_tokens": 1, "temperature": 0})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_requests_against_a_budget_for_a_hundred() {
    let server = Server::start(&[]).await;
    // Prompt tokens at $1 per million (1 µ$ each), output free: a request costs exactly its
    // prompt, whatever it generates.
    put(
        &server,
        "/admin/v1/prices/smollm2",
        json!({"input_per_million": "1", "output_per_million": "0"}),
    )
    .await;
    let probe: Value = server
        .http()
        .post(server.url("/v1/completions"))
        .json(&hi())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let prompt = probe["usage"]["prompt_tokens"].as_u64().unwrap();
    let t = tenant(&server, "Budgeted").await;
    let budget = 100 * prompt;
    put(
        &server,
        &format!("/admin/v1/limits/agency/{}", t.agency),
        json!({"monthly_budget": format!("0.{budget:06}")}),
    )
    .await;
    let client = Server::client_with(&t.key);
    let url = server.url("/v1/completions");
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (client, url, next) = (client.clone(), url.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut limited) = (0, 0);
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < 1_000 {
                let res = client.post(&url).json(&hi()).send().await.unwrap();
                match res.status().as_u16() {
                    200 => ok += 1,
                    429 => {
                        assert!(res.headers().contains_key("retry-after"));
                        let body: Value = res.json().await.unwrap();
                        assert_eq!(body["error"]["code"], "insufficient_quota", "{body}");
                        limited += 1;
                    }
                    s => panic!("unexpected status {s}"),
                }
            }
            (ok, limited)
        }));
    }
    let (mut ok, mut limited) = (0, 0);
    for t in tasks {
        let (o, l) = t.await.unwrap();
        ok += o;
        limited += l;
    }
    assert_eq!(ok + limited, 1_000);
    assert_eq!(ok, 100, "exactly the budget's worth is served");
    let report: Value = Server::client_with(&server.key)
        .get(server.url(&format!(
            "/admin/v1/usage?month={}&agency={}",
            current_month(),
            t.agency
        )))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(report["data"][0]["requests"], 100, "{report}");
    assert_eq!(report["data"][0]["cost_micros"], budget, "{report}");

    // Prometheus metrics: operators and auditors only; what happened is in them.
    let denied = server
        .http()
        .post(server.url("/v1/completions"))
        .header("x-highside-label", "SECRET")
        .json(&hi())
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 403);
    let res = client.get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(res.status(), 403);
    let res = server
        .http()
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    for needle in [
        "highside_http_requests_total{route=\"/v1/completions\",method=\"POST\",status=\"429\"} 900",
        "highside_limit_rejections_total{limit=\"monthly_budget\",scope=\"agency\"} 900",
        "highside_denials_total{rule=\"mac.no_write_down.level\"} 1",
        "highside_time_to_first_token_seconds_bucket{model=\"smollm2\"",
        "highside_generation_duration_seconds_count{model=\"smollm2\"}",
        "highside_audit_commit_seconds_bucket",
        "highside_engine_queue_depth{model=\"smollm2\"} 0",
        "highside_engine_active_sequences{model=\"smollm2\"}",
        "highside_engine_batch_tokens{model=\"smollm2\"}",
        "highside_prompt_tokens_total{model=\"smollm2\"}",
        "highside_completion_tokens_total{model=\"smollm2\"}",
    ] {
        assert!(text.contains(needle), "{needle} not in:\n{text}");
    }
    let (status, dir) = server.stop_keeping_data().await;
    assert!(status.success());
    let store = highside_store::SqliteStore::open(&dir.path().join("highside.db")).unwrap();
    assert_eq!(
        store.live_reservations(0).unwrap(),
        0,
        "every reservation returned"
    );
    let month = current_month();
    let ledger = store.ledger(&month, Some(&t.agency)).unwrap();
    let spent: i64 = ledger.iter().map(|e| e.cost).sum();
    assert!(spent <= budget as i64);
    for (scope, subject) in [
        (LimitScope::Agency, &t.agency),
        (LimitScope::User, &t.user),
        (LimitScope::Key, &t.key_id),
    ] {
        assert_eq!(store.totals(scope, subject, &month).unwrap().cost, spent);
    }
}

fn current_month() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!("{:04}-{:02}", now.year(), u8::from(now.month()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_hold_over_the_measured_window() {
    let server = Server::start(&[]).await;
    let t = tenant(&server, "Rated").await;
    // 30 a minute: a burst of 30, then one every 2 s.
    put(
        &server,
        &format!("/admin/v1/limits/key/{}", t.key_id),
        json!({"requests_per_minute": 30}),
    )
    .await;
    let client = Server::client_with(&t.key);
    let started = Instant::now();
    let (mut ok, mut limited) = (0u64, 0u64);
    for _ in 0..45 {
        let res = client
            .post(server.url("/v1/completions"))
            .json(&hi())
            .send()
            .await
            .unwrap();
        let h = res.headers().clone();
        assert_eq!(h["x-ratelimit-limit-requests"], "30");
        assert!(h.contains_key("x-ratelimit-remaining-requests"));
        match res.status().as_u16() {
            200 => ok += 1,
            429 => {
                limited += 1;
                assert!(h["retry-after"].to_str().unwrap().parse::<u64>().unwrap() >= 1);
                let body: Value = res.json().await.unwrap();
                assert_eq!(body["error"]["code"], "rate_limit_exceeded");
            }
            s => panic!("unexpected {s}"),
        }
    }
    let window = started.elapsed();
    // Whatever the machine's speed: no more than the burst plus the rate over the window.
    let allowed = 30 + window.as_secs() / 2 + 1;
    assert!(ok <= allowed, "{ok} served in {window:?}");
    assert!(ok >= 30, "the burst is served: {ok}");
    assert_eq!(ok + limited, 45);
    if window < Duration::from_secs(20) {
        assert!(limited > 0);
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnects_release_and_an_idempotency_key_is_charged_once() {
    let server = Server::start(&[]).await;
    let t = tenant(&server, "Careful").await;
    // Room for one request of up to 600 tokens at a time.
    put(
        &server,
        &format!("/admin/v1/limits/user/{}", t.user),
        json!({"daily_tokens": 1000}),
    )
    .await;
    let client = Server::client_with(&t.key);
    // Greedy: this prompt then runs all 600 tokens, so the first request is still running
    // when the second arrives (sampled, it could end early and hand its reservation back).
    let long = json!({"model": "smollm2", "prompt": "Tell a long story.", "max_tokens": 600,
                      "temperature": 0, "stream": true});
    let mut res = client
        .post(server.url("/v1/completions"))
        .json(&long)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.chunk().await.unwrap().is_some());
    // While it runs, its reservation holds: a second one does not fit.
    let second = client
        .post(server.url("/v1/completions"))
        .json(&long)
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), 429);
    drop(res);
    // The disconnect hands back what was not used: the same request fits again.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let again = client
            .post(server.url("/v1/completions"))
            // The same reservation; it stops at the first line so the test stays short.
            .json(
                &json!({"model": "smollm2", "prompt": "Tell a long story.", "max_tokens": 600,
                          "stop": ["\n", "."]}),
            )
            .send()
            .await
            .unwrap();
        if again.status() == 200 {
            break;
        }
        assert_eq!(again.status(), 429);
        assert!(
            Instant::now() < deadline,
            "the reservation was never released"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The same Idempotency-Key twice: the retry is refused, never run again unbilled, and
    // the first is charged once.
    for want in [200, 409] {
        let res = client
            .post(server.url("/v1/completions"))
            .header("idempotency-key", "order-42")
            .json(&hi())
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), want);
        if want == 409 {
            let body: Value = res.json().await.unwrap();
            assert_eq!(body["error"]["code"], "idempotency_key_reused", "{body}");
        }
    }
    // Nobody loosens their own limits, not even an agency administrator.
    let admin_user = server
        .create(
            &server.key,
            "/admin/v1/users",
            json!({"agency_id": t.agency, "name": "boss", "roles": ["agency-admin", "user"],
                   "clearance": "SECRET", "nationality": "USA"}),
        )
        .await;
    let admin_key = server
        .create(
            &server.key,
            "/admin/v1/keys",
            json!({"user_id": admin_user["id"], "name": "k"}),
        )
        .await;
    let boss = Server::client_with(admin_key["key"].as_str().unwrap());
    let own = boss
        .put(server.url(&format!(
            "/admin/v1/limits/user/{}",
            admin_user["id"].as_str().unwrap()
        )))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), 403);
    let theirs = boss
        .put(server.url(&format!("/admin/v1/limits/user/{}", t.user)))
        .json(&json!({"daily_tokens": 5000}))
        .send()
        .await
        .unwrap();
    assert_eq!(theirs.status(), 200);
    let bad = client
        .post(server.url("/v1/completions"))
        .header("idempotency-key", "")
        .json(&hi())
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let (status, dir) = server.stop_keeping_data().await;
    assert!(status.success());
    let store = highside_store::SqliteStore::open(&dir.path().join("highside.db")).unwrap();
    let ledger = store.ledger(&current_month(), Some(&t.agency)).unwrap();
    let idem: Vec<_> = ledger
        .iter()
        .filter(|e| e.request_id.starts_with("idem-"))
        .collect();
    assert_eq!(idem.len(), 1, "charged once");
    // The disconnected stream was charged for what it used, not for its whole reservation.
    assert_eq!(ledger.len(), 3, "{ledger:?}");
    assert!(ledger[0].completion_tokens < 600);
    assert_eq!(store.live_reservations(0).unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoices_apply_the_contract_plan_and_admin_rules_hold() {
    let server = Server::start(&[]).await;
    let t = tenant(&server, "Invoiced").await;
    put(
        &server,
        "/admin/v1/prices/smollm2",
        json!({"input_per_million": "2", "output_per_million": "8"}),
    )
    .await;
    let month = current_month();
    put(
        &server,
        &format!("/admin/v1/plans/{}", t.agency),
        json!({"annual_fee": "12", "included_tokens": 0, "starts_on": month}),
    )
    .await;
    let client = Server::client_with(&t.key);
    let mut expected = 0i64;
    for _ in 0..3 {
        let v: Value = client
            .post(server.url("/v1/completions"))
            .json(&json!({"model": "smollm2", "prompt": "Once upon a time", "max_tokens": 5, "temperature": 0}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let (p, c) = (
            v["usage"]["prompt_tokens"].as_i64().unwrap(),
            v["usage"]["completion_tokens"].as_i64().unwrap(),
        );
        // $2/M in, $8/M out, rounded up per request: ceil((2p + 8c) / 1).
        expected += 2 * p + 8 * c;
    }
    let inv: Value = server
        .http()
        .get(server.url(&format!("/admin/v1/invoices/{}?month={month}", t.agency)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(inv["contract_month"], 1, "{inv}");
    assert_eq!(inv["flat_fee"], "1.000000", "{inv}");
    assert_eq!(inv["total_micros"], 1_000_000 + expected, "{inv}");
    let csv = server
        .http()
        .get(server.url(&format!(
            "/admin/v1/invoices/{}?month={month}&format=csv",
            t.agency
        )))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(csv.starts_with("line,model,"), "{csv}");
    assert!(
        csv.contains(&format!("total,,,,,{}", inv["total"].as_str().unwrap())),
        "{csv}"
    );
    let html = server
        .http()
        .get(server.url(&format!(
            "/admin/v1/invoices/{}?month={month}&format=html",
            t.agency
        )))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("<table>") && html.contains("Invoiced"),
        "{html}"
    );
    // A user may not set prices, limits or plans, nor read another agency's invoice.
    let user = Server::client_with(&t.key);
    for (path, body) in [
        (
            "/admin/v1/prices/smollm2".to_string(),
            json!({"input_per_million": "0", "output_per_million": "0"}),
        ),
        (
            format!("/admin/v1/limits/agency/{}", t.agency),
            json!({"monthly_budget": "1000"}),
        ),
        (
            format!("/admin/v1/plans/{}", t.agency),
            json!({"annual_fee": "0", "starts_on": month}),
        ),
    ] {
        let res = user
            .put(server.url(&path))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(
            [403, 404].contains(&res.status().as_u16()),
            "{path}: {}",
            res.status()
        );
    }
    let res = user
        .get(server.url(&format!("/admin/v1/usage?month={month}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    for (path, body) in [
        (
            "/admin/v1/prices/smollm2",
            json!({"input_per_million": "-1", "output_per_million": "0"}),
        ),
        (
            "/admin/v1/prices/smollm2",
            json!({"input_per_million": "0.0000001", "output_per_million": "0"}),
        ),
        (
            "/admin/v1/prices/smollm2",
            json!({"input_per_million": 1.5, "output_per_million": "0"}),
        ),
    ] {
        let res = server
            .http()
            .put(server.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{body}");
    }
    let res = server
        .http()
        .get(server.url("/admin/v1/usage?month=2026-13"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);

    // The same through the command line.
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(common::BIN)
            .args(args)
            .env("HIGHSIDE_API_KEY", &server.key)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let base = server.base.as_str();
    cli(&[
        "admin", "--url", base, "prices", "set", "smollm2", "--input", "100", "--output", "100",
    ]);
    let prices = cli(&["admin", "--url", base, "prices", "list"]);
    assert!(prices.contains("\"100.000000\""), "{prices}");
    cli(&[
        "admin",
        "--url",
        base,
        "limits",
        "set",
        "user",
        &t.user,
        "--daily-tokens",
        "100000",
        "--monthly-budget",
        "5",
    ]);
    let limits = cli(&["admin", "--url", base, "limits", "get", "user", &t.user]);
    assert!(limits.contains("\"5.000000\""), "{limits}");
    let report = cli(&[
        "usage",
        "--url",
        base,
        "report",
        "--month",
        &month,
        "--agency",
        &t.agency,
        "--group-by",
        "model",
    ]);
    let line = report.lines().nth(1).unwrap_or_default();
    assert!(
        line.starts_with("smollm2") && line.contains(" 3 "),
        "{report}"
    );
    // A later price change does not re-price the month already used.
    let csv = cli(&[
        "usage", "--url", base, "invoice", &t.agency, "--month", &month, "--format", "csv",
    ]);
    assert!(
        csv.contains(&format!("total,,,,,{}", inv["total"].as_str().unwrap())),
        "{csv}"
    );
    server.stop().await;
}
