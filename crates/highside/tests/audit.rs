//! The audit log against the real binary: what is recorded for inference, authentication
//! failures and admin changes; the auditor API; `highside audit verify/query/export/prove`
//! online and offline; tampering named by verify; and exactly one decision record per request.

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::{highside, Server};
use serde_json::{json, Value};
use sha2::Digest;

fn chat(content: &str, stream: bool) -> Value {
    json!({"model": "smollm2", "messages": [{"role": "user", "content": content}],
           "max_tokens": 4, "temperature": 0, "stream": stream})
}

fn request_id(res: &reqwest::Response) -> String {
    res.headers()
        .get("x-request-id")
        .expect("every inference answer names its request")
        .to_str()
        .unwrap()
        .to_owned()
}

fn sha256(s: &str) -> String {
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

/// Every record of the log in `data`, by the CLI's export.
fn export(data: &Path) -> Vec<Value> {
    let out = highside(data, &["audit", "export", "--jsonl"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_failures_and_changes_are_recorded_and_the_log_proves_itself() {
    let server = Server::start(&[]).await;
    let http = server.http();

    // An allowed answer: its completion record holds digests, not content.
    let res = http
        .post(server.url("/v1/chat/completions"))
        .json(&chat("Say hi.", false))
        .send()
        .await
        .unwrap();
    let allowed_id = request_id(&res);
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    let content = body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned();

    // A streamed answer: the same, and [DONE] only after the record.
    let res = http
        .post(server.url("/v1/chat/completions"))
        .json(&chat("Count to three.", true))
        .send()
        .await
        .unwrap();
    let stream_id = request_id(&res);
    let text = res.text().await.unwrap();
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    let mut streamed = String::new();
    for line in text.lines().filter_map(|l| l.strip_prefix("data: ")) {
        if let Ok(v) = serde_json::from_str::<Value>(line) {
            if let Some(t) = v["choices"][0]["delta"]["content"].as_str() {
                streamed.push_str(t);
            }
        }
    }

    // A stream the client walks away from: its completion record says so.
    let mut res = http
        .post(server.url("/v1/chat/completions"))
        .json(&json!({"model": "smollm2", "messages": [{"role": "user", "content": "Tell a long story."}],
                      "max_tokens": 400, "stream": true}))
        .send()
        .await
        .unwrap();
    let left_id = request_id(&res);
    assert!(res.chunk().await.unwrap().is_some());
    drop(res);

    // A denial: above the model's accreditation (UNCLASSIFIED).
    let res = http
        .post(server.url("/v1/chat/completions"))
        .header("x-highside-label", "SECRET")
        .json(&chat("Say hi.", false))
        .send()
        .await
        .unwrap();
    let denied_id = request_id(&res);
    assert_eq!(res.status(), 403);

    // An authentication failure.
    let res = Server::client_with("hs-bogus")
        .get(server.url("/v1/models"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);

    // Admin changes: an agency, its auditor, a user with a key who asks once, a revocation.
    let agency = server
        .create(
            &server.key,
            "/admin/v1/agencies",
            json!({"name": "Audited Agency", "branch": "executive"}),
        )
        .await;
    let agency_id = agency["id"].as_str().unwrap().to_owned();
    let mut keys = HashMap::new();
    for (name, role) in [("auditor", "auditor"), ("analyst", "user")] {
        let u = server
            .create(
                &server.key,
                "/admin/v1/users",
                json!({"agency_id": agency_id, "name": name, "roles": [role],
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
        keys.insert(
            name,
            (k["key"].as_str().unwrap().to_owned(), k["id"].clone()),
        );
    }
    let analyst = Server::client_with(&keys["analyst"].0);
    let res = analyst
        .post(server.url("/v1/chat/completions"))
        .json(&chat("Say hi.", false))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let analyst_id = request_id(&res);
    // Auditors cannot infer: that denial is a recorded decision too.
    let auditor = Server::client_with(&keys["auditor"].0);
    let res = auditor
        .post(server.url("/v1/chat/completions"))
        .json(&chat("Say hi.", false))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let role_denied_id = request_id(&res);
    // A value too large to keep whole in a record is truncated there (with its digest): the
    // denial is still recorded, and the node still serves.
    let huge =
        json!({"model": "m".repeat(1_500_000), "messages": [{"role": "user", "content": "x"}]});
    let res = auditor
        .post(server.url("/v1/chat/completions"))
        .json(&huge)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let huge_id = request_id(&res);
    // Token ids outside the vocabulary are a 400 before anything reads them.
    let res = http
        .post(server.url("/v1/completions"))
        .json(&json!({"model": "smollm2", "prompt": [999_999_999], "max_tokens": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let res = http
        .post(server.url("/v1/completions"))
        .json(&json!({"model": "smollm2", "prompt": [-1], "max_tokens": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let live = server
        .http()
        .get(server.url("/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), 200, "still serving");

    // An attempt to grant more than one holds is refused, and recorded as an attempt.
    let res = auditor
        .post(server.url("/admin/v1/users"))
        .json(&json!({"name": "sneaky", "roles": ["operator"], "clearance": "SECRET", "nationality": "USA"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let revoked = http
        .delete(server.url(&format!(
            "/admin/v1/keys/{}",
            keys["analyst"].1.as_str().unwrap()
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);

    // The auditor API: operators see everything, an agency's auditor only its agency, and
    // nobody else anything.
    let page: Value = http
        .get(server.url("/admin/v1/audit?type=decision&limit=1000"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["record"]["request_id"].as_str().unwrap())
        .collect();
    for id in [
        &allowed_id,
        &stream_id,
        &denied_id,
        &analyst_id,
        &role_denied_id,
    ] {
        assert_eq!(ids.iter().filter(|i| *i == id).count(), 1, "{id} in {page}");
    }
    let page: Value = auditor
        .get(server.url("/admin/v1/audit"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let data = page["data"].as_array().unwrap();
    assert!(!data.is_empty(), "{page}");
    // Its own agency's records only: for changes, the agency changed, not the actor's (the
    // operator who created its users is in another agency).
    assert!(
        data.iter().all(|e| {
            let r = &e["record"];
            let scope = if r["target_agency"].is_string() {
                &r["target_agency"]
            } else {
                &r["agency"]
            };
            scope == agency_id.as_str()
        }),
        "{page}"
    );
    assert!(
        data.iter().any(|e| e["record"]["action"] == "user.create"
            && e["record"]["target_agency"] == agency_id.as_str()),
        "{page}"
    );
    let denied_page: Value = http
        .get(server.url("/admin/v1/audit?decision=deny"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(denied_page["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["record"]["decision"] == "deny"));
    let whoami: Value = http
        .get(server.url("/admin/v1/whoami"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let res = auditor
        .get(server.url(&format!(
            "/admin/v1/audit?agency={}",
            whoami["agency_id"].as_str().unwrap()
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    for bad in ["since=yesterday", "limit=0", "color=red"] {
        let res = http
            .get(server.url(&format!("/admin/v1/audit?{bad}")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 400, "{bad}");
    }

    // A clean stop closes the log with a signed checkpoint.
    let (status, dir) = server.stop_keeping_data().await;
    assert!(status.success());
    let data = dir.path();
    let verified = ok(&highside(data, &["audit", "verify"]));
    assert!(verified.starts_with("ok: "), "{verified}");

    let records = export(data);
    let find = |kind: &str, id: &str| -> Vec<&Value> {
        records
            .iter()
            .filter(|r| r["type"] == kind && r["request_id"] == id)
            .collect()
    };
    let d = find("decision", &allowed_id);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0]["decision"], "allow");
    assert_eq!(d[0]["model"], "smollm2");
    assert_eq!(d[0]["model_label"], "UNCLASSIFIED");
    assert_eq!(d[0]["route"], "POST /v1/chat/completions");
    assert!(d[0]["clearance"]
        .as_str()
        .unwrap()
        .starts_with("TOP SECRET"));
    assert!(d[0]["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(d[0]["key"].is_string() && d[0]["user"].is_string() && d[0]["agency"].is_string());
    let c = find("completion", &allowed_id);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0]["output_sha256"], sha256(&content));
    assert!(c[0]["prompt_tokens"].as_u64().unwrap() > 0);
    assert!(c[0]["latency_ms"].is_u64());
    assert_eq!(c[0]["prompt_sha256"].as_str().unwrap().len(), 64);
    let c = find("completion", &stream_id);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0]["output_sha256"], sha256(&streamed));
    let c = find("completion", &left_id);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0]["finish_reason"], "cancelled", "{}", c[0]);
    assert!(c[0]["completion_tokens"].as_u64().unwrap() < 400);
    let d = find("decision", &denied_id);
    assert_eq!(d[0]["decision"], "deny");
    assert!(
        d[0]["reasons"][0].as_str().unwrap().starts_with("mac."),
        "{}",
        d[0]
    );
    assert_eq!(d[0]["request_label"], "SECRET");
    assert!(find("completion", &denied_id).is_empty());
    let d = find("decision", &role_denied_id);
    assert!(
        d[0]["reasons"][0].as_str().unwrap().starts_with("role."),
        "{}",
        d[0]
    );
    let d = find("decision", &huge_id);
    assert_eq!(d.len(), 1);
    assert!(
        d[0]["model"]
            .as_str()
            .unwrap()
            .contains("[truncated: 1500000 bytes, sha256 "),
        "{}",
        &d[0]["model"].as_str().unwrap()[..300]
    );
    assert_eq!(
        find("decision", &analyst_id)[0]["agency"],
        agency_id.as_str()
    );
    let failures: Vec<_> = records
        .iter()
        .filter(|r| r["type"] == "auth_failure")
        .collect();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0]["route"], "GET /v1/models");
    assert!(!failures[0].to_string().contains("hs-bogus"));
    let actions: Vec<&str> = records
        .iter()
        .filter(|r| r["type"] == "admin")
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    for a in [
        "enclave.init",
        "model.import",
        "agency.create",
        "user.create",
        "key.create",
        "key.revoke",
    ] {
        assert!(actions.contains(&a), "{a} not in {actions:?}");
    }
    let attempt = records
        .iter()
        .find(|r| r["action"] == "user.create" && r["denied"].is_string())
        .expect("the refused attempt is recorded");
    assert!(attempt["after"].is_null());
    assert_eq!(
        records.iter().filter(|r| r["denied"].is_string()).count(),
        1,
        "only refused attempts carry `denied`"
    );
    let revoke = records
        .iter()
        .find(|r| r["action"] == "key.revoke")
        .unwrap();
    assert!(revoke["before"]["revoked_at"].is_null(), "{revoke}");
    assert!(revoke["after"]["revoked_at"].is_string(), "{revoke}");
    // No secret reaches the log.
    for (key, _) in keys.values() {
        assert!(!records.iter().any(|r| r.to_string().contains(key.as_str())));
    }
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r["index"], i as u64);
        assert!(r["time"].as_str().unwrap().ends_with('Z'));
    }

    // Query by the CLI's filters.
    let out = ok(&highside(data, &["audit", "query", "--decision", "deny"]));
    let denied: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(denied.len(), 3, "{out}");
    let out = ok(&highside(
        data,
        &[
            "audit", "query", "--agency", &agency_id, "--type", "decision",
        ],
    ));
    assert_eq!(
        out.lines().count(),
        3,
        "the analyst's answer and the auditor's two denials: {out}"
    );
    let out = ok(&highside(
        data,
        &["audit", "query", "--until", "2000-01-01T00:00:00Z"],
    ));
    assert!(out.is_empty());

    // Proofs, checked with only the public key.
    let public = std::fs::read_to_string(data.join("audit-signing.pub")).unwrap();
    let public = public.trim();
    let proof = ok(&highside(data, &["audit", "prove", "--record", "1"]));
    let proof_file = data.join("proof.json");
    std::fs::write(&proof_file, &proof).unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let checked = ok(&highside(
        elsewhere.path(),
        &[
            "audit",
            "check-proof",
            proof_file.to_str().unwrap(),
            "--public-key",
            public,
        ],
    ));
    assert!(checked.starts_with("ok: record 1 "), "{checked}");
    let mut forged: Value = serde_json::from_str(&proof).unwrap();
    forged["record"] = json!(forged["record"].as_str().unwrap().replace("admin", "admix"));
    std::fs::write(&proof_file, forged.to_string()).unwrap();
    let out = highside(
        elsewhere.path(),
        &[
            "audit",
            "check-proof",
            proof_file.to_str().unwrap(),
            "--public-key",
            public,
        ],
    );
    assert!(!out.status.success());
    let checkpoint = ok(&highside(data, &["audit", "checkpoint"]));
    let cp: Value = serde_json::from_str(checkpoint.trim()).unwrap();
    let size = cp["tree_size"].as_u64().unwrap();
    let first: Value = {
        let out = ok(&highside(data, &["audit", "prove", "--record", "0"]));
        serde_json::from_str(&out).unwrap()
    };
    let old = first["checkpoint"]["tree_size"].as_u64().unwrap();
    let consistency = ok(&highside(
        data,
        &[
            "audit",
            "prove",
            "--from",
            &old.to_string(),
            "--to",
            &size.to_string(),
        ],
    ));
    std::fs::write(&proof_file, &consistency).unwrap();
    ok(&highside(
        elsewhere.path(),
        &[
            "audit",
            "check-proof",
            proof_file.to_str().unwrap(),
            "--public-key",
            public,
        ],
    ));

    // Offline verification of a copy, with a trusted checkpoint; then one flipped byte.
    let copy = elsewhere.path().join("audit");
    std::fs::create_dir(&copy).unwrap();
    for entry in std::fs::read_dir(data.join("audit")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
    }
    let trusted = elsewhere.path().join("trusted.json");
    std::fs::write(&trusted, &checkpoint).unwrap();
    let args = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "audit",
            "verify",
            "--dir",
            copy.to_str().unwrap(),
            "--public-key",
            public,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let run = |extra: &[&str]| {
        let a = args(extra);
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        highside(elsewhere.path(), &refs)
    };
    ok(&run(&["--trusted", trusted.to_str().unwrap()]));
    let segment = copy.join("segment-00000001.log");
    let mut bytes = std::fs::read(&segment).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x20;
    std::fs::write(&segment, &bytes).unwrap();
    let out = run(&[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("does NOT verify") && err.contains("entry "),
        "{err}"
    );
    // A different key does not verify the genuine log either.
    let (_, other) = highside_audit::Signer::generate().unwrap();
    let out = highside(
        data,
        &[
            "audit",
            "verify",
            "--public-key",
            &other.public_key().to_hex(),
        ],
    );
    assert!(!out.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_one_decision_record_per_request() {
    const REQUESTS: usize = 10_000;
    const CONCURRENCY: usize = 16;
    let server = Server::start(&[]).await;
    // A user who may not infer (a role denial) next to the operator (allowed or denied by label).
    let agency: Value = server
        .http()
        .get(server.url("/admin/v1/whoami"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let u = server
        .create(
            &server.key,
            "/admin/v1/users",
            json!({"agency_id": agency["agency_id"], "name": "aud", "roles": ["auditor"],
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
    let clients = [
        server.http(),
        Server::client_with(k["key"].as_str().unwrap()),
    ];
    let url = server.url("/v1/completions");
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let (clients, url, next) = (clients.clone(), url.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= REQUESTS {
                    return seen;
                }
                // Mixed: allowed, denied by label, denied by role.
                let (client, label, want) = match i % 5 {
                    0 | 1 => (&clients[0], None, 200),
                    2 | 3 => (&clients[0], Some("SECRET"), 403),
                    _ => (&clients[1], None, 403),
                };
                let mut req = client.post(&url).json(
                    &json!({"model": "smollm2", "prompt": "Hi", "max_tokens": 1, "temperature": 0}),
                );
                if let Some(l) = label {
                    req = req.header("x-highside-label", l);
                }
                let res = req.send().await.unwrap();
                assert_eq!(res.status(), want);
                let id = request_id(&res);
                res.bytes().await.unwrap();
                seen.push((id, want == 200));
            }
        }));
    }
    let mut seen = Vec::new();
    for t in tasks {
        seen.extend(t.await.unwrap());
    }
    assert_eq!(seen.len(), REQUESTS);
    let (status, dir) = server.stop_keeping_data().await;
    assert!(status.success());
    let mut decisions: HashMap<String, Vec<String>> = HashMap::new();
    let mut completions: HashMap<String, usize> = HashMap::new();
    for r in export(dir.path()) {
        let id = r["request_id"].as_str().unwrap_or_default().to_owned();
        match r["type"].as_str() {
            Some("decision") => decisions
                .entry(id)
                .or_default()
                .push(r["decision"].as_str().unwrap().to_owned()),
            Some("completion") => *completions.entry(id).or_default() += 1,
            _ => {}
        }
    }
    assert_eq!(
        decisions.len(),
        REQUESTS,
        "one decision record per request, no more"
    );
    for (id, allowed) in &seen {
        let d = &decisions[id];
        assert_eq!(d.len(), 1, "{id}: {d:?}");
        assert_eq!(d[0] == "allow", *allowed, "{id}");
        assert_eq!(
            completions.get(id).copied().unwrap_or(0),
            usize::from(*allowed),
            "{id}"
        );
    }
    ok(&highside(dir.path(), &["audit", "verify"]));
}
