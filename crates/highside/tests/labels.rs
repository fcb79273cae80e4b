//! The reference monitor over HTTP against the real binary: declared and detected labels, no
//! read up, releasability, no write down (with the model's accreditation changed live by an
//! operator), output labels on every answer (streaming included), the banner option, PII
//! actions per agency and agency policies in Cedar.

mod common;

use common::{Options, Server};
use serde_json::{json, Value};

/// POSTs `body` to `path` as `key` with optional `X-Highside-Label` headers.
async fn post(
    server: &Server,
    key: &str,
    path: &str,
    body: &Value,
    labels: &[&str],
) -> reqwest::Response {
    let mut req = Server::client_with(key).post(server.url(path)).json(body);
    for l in labels {
        req = req.header("x-highside-label", *l);
    }
    req.send().await.unwrap()
}

fn chat(content: &str) -> Value {
    json!({"model": "smollm2", "messages": [{"role": "user", "content": content}],
           "max_tokens": 3, "temperature": 0})
}

/// Expects a 200 and returns the output label from the header, checking the body agrees.
async fn allowed(res: reqwest::Response) -> String {
    let status = res.status();
    let header = res
        .headers()
        .get("x-highside-label")
        .map(|v| v.to_str().unwrap().to_owned());
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    let header = header.expect("every answer carries X-Highside-Label");
    assert_eq!(body["highside"]["label"], header, "{body}");
    header
}

/// Expects `status` in OpenAI's error shape and returns the error object.
async fn refused(res: reqwest::Response, status: u16) -> Value {
    assert_eq!(res.status(), status);
    assert!(res.headers().get("x-highside-label").is_none());
    let body: Value = res.json().await.unwrap();
    let err = body["error"].clone();
    assert!(
        err["message"].is_string() && err["type"].is_string(),
        "{body}"
    );
    err
}

/// The denial names `rule`.
fn names_rule(err: &Value, rule: &str) {
    let message = err["message"].as_str().unwrap_or_default();
    assert!(message.contains(rule), "{rule} not in {err}");
}

async fn create(server: &Server, path: &str, body: Value) -> Value {
    server.create(&server.key, path, body).await
}

/// A user of `agency` with `clearance` and `nationality`, and a key for them.
async fn analyst(
    server: &Server,
    agency: &str,
    name: &str,
    clearance: &str,
    nationality: &str,
) -> String {
    let u = create(
        server,
        "/admin/v1/users",
        json!({"agency_id": agency, "name": name, "roles": ["user"],
               "clearance": clearance, "nationality": nationality}),
    )
    .await;
    let k = create(
        server,
        "/admin/v1/keys",
        json!({"user_id": u["id"], "name": "k"}),
    )
    .await;
    k["key"].as_str().unwrap().to_owned()
}

async fn set_model_label(server: &Server, key: &str, label: &str) -> reqwest::Response {
    Server::client_with(key)
        .patch(server.url("/admin/v1/models/smollm2"))
        .json(&json!({ "label": label }))
        .send()
        .await
        .unwrap()
}

async fn agency(server: &Server, name: &str) -> String {
    let a = create(
        server,
        "/admin/v1/agencies",
        json!({"name": name, "branch": "executive"}),
    )
    .await;
    a["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mandatory_access_control_end_to_end() {
    let server = Server::start(&[]).await;
    let a = agency(&server, "Department of Examples").await;
    let s_usa = analyst(&server, &a, "s-usa", "SECRET", "USA").await;
    let ts_usa = analyst(&server, &a, "ts-usa", "TOP SECRET//SI", "USA").await;
    let ts_gbr = analyst(&server, &a, "ts-gbr", "TOP SECRET//SI", "GBR").await;

    // The model was imported at UNCLASSIFIED: /v1/models says so.
    let models: Value = server
        .http()
        .get(server.url("/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["data"][0]["highside"]["label"], "UNCLASSIFIED");

    // Only an operator changes an accreditation, never above the system high.
    let err = refused(set_model_label(&server, &ts_usa, "SECRET").await, 403).await;
    assert_eq!(err["code"], "permission_denied");
    let err = refused(
        set_model_label(&server, &server.key, "TOP SECRET//SI-G").await,
        400,
    )
    .await;
    assert_eq!(err["param"], "label");
    refused(set_model_label(&server, &server.key, "COSMIC").await, 400).await;
    let res = Server::client_with(&server.key)
        .patch(server.url("/admin/v1/models/nope"))
        .json(&json!({"label": "SECRET"}))
        .send()
        .await
        .unwrap();
    refused(res, 404).await;

    // An UNCLASSIFIED model takes only UNCLASSIFIED requests: no write down.
    let path = "/v1/chat/completions";
    assert_eq!(
        allowed(post(&server, &s_usa, path, &chat("Hello."), &[]).await).await,
        "UNCLASSIFIED"
    );
    let err = refused(
        post(&server, &s_usa, path, &chat("Hello."), &["SECRET"]).await,
        403,
    )
    .await;
    assert_eq!(err["code"], "access_denied");
    names_rule(&err, "mac.no_write_down.level");

    // The issue's cases: a SECRET user's `(S)` paragraph may not go into the UNCLASSIFIED
    // model; a TS//SI user with TS//SI text to a TS//SI model gets an answer labelled so.
    let s_paragraph = chat("(S) The convoy leaves at dawn.\nSummarise.");
    let err = refused(post(&server, &s_usa, path, &s_paragraph, &[]).await, 403).await;
    names_rule(&err, "mac.no_write_down.level");
    assert_eq!(
        set_model_label(&server, &server.key, "TOP SECRET//SI")
            .await
            .status(),
        200
    );
    assert_eq!(
        allowed(
            post(
                &server,
                &ts_usa,
                path,
                &chat("(TS//SI) The intercept says."),
                &[]
            )
            .await
        )
        .await,
        "TOP SECRET//SI"
    );

    // A model without a releasability marking may be released to anyone, so it may not
    // receive NOFORN data; accredited NOFORN it may.
    let res = set_model_label(&server, &server.key, "top secret//tk/si").await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body["label"], "TOP SECRET//SI/TK",
        "stored in canonical form"
    );
    let err = refused(
        post(&server, &s_usa, path, &chat("Hello."), &["S//NF"]).await,
        403,
    )
    .await;
    names_rule(&err, "mac.no_write_down.releasability");
    assert_eq!(
        set_model_label(&server, &server.key, "TS//SI/TK//NF")
            .await
            .status(),
        200
    );

    // Declared labels: header and body field, joined.
    assert_eq!(
        allowed(post(&server, &s_usa, path, &chat("Hello."), &["SECRET"]).await).await,
        "SECRET"
    );
    let mut body = chat("Hello.");
    body["highside"] = json!({"label": "(C//NF)"});
    assert_eq!(
        allowed(post(&server, &s_usa, path, &body, &["(S//REL TO USA, GBR)"]).await).await,
        "SECRET//NOFORN"
    );
    // A declared label that is not one of the enclave's is a 400 naming the parameter.
    let mut body = chat("Hello.");
    body["highside"] = json!({"label": "COSMIC TOP SECRET"});
    let err = refused(post(&server, &s_usa, path, &body, &[]).await, 400).await;
    assert_eq!(err["param"], "highside.label");
    assert_eq!(err["code"], "invalid_label");
    let mut body = chat("Hello.");
    body["highside"] = json!({"labels": "SECRET"});
    refused(post(&server, &s_usa, path, &body, &[]).await, 400).await;

    // No read up, by declaration and by detection in any message; the denial names the rule,
    // never the content.
    let err = refused(
        post(&server, &s_usa, path, &chat("Hello."), &["TOP SECRET"]).await,
        403,
    )
    .await;
    names_rule(&err, "mac.no_read_up.level");
    let secret_text = "(TS//SI) The asset codenamed KESTREL reports.";
    let err = refused(
        post(&server, &s_usa, path, &chat(secret_text), &[]).await,
        403,
    )
    .await;
    let message = err["message"].as_str().unwrap();
    assert!(message.contains("mac.no_read_up.level"), "{err}");
    assert!(message.contains("mac.no_read_up.compartment"), "{err}");
    assert!(
        !message.contains("KESTREL") && !message.contains("SI"),
        "{err}"
    );
    let in_system = json!({"model": "smollm2", "max_tokens": 2, "messages": [
        {"role": "system", "content": "top secret//si\nBriefing follows."},
        {"role": "user", "content": "Summarise."}]});
    refused(post(&server, &s_usa, path, &in_system, &[]).await, 403).await;
    assert_eq!(
        allowed(post(&server, &ts_usa, path, &chat(secret_text), &[]).await).await,
        "TOP SECRET//SI"
    );
    // Detection only raises: declaring UNCLASSIFIED does not lower a detected mark.
    let err = refused(
        post(&server, &s_usa, path, &chat(secret_text), &["UNCLASSIFIED"]).await,
        403,
    )
    .await;
    names_rule(&err, "no_read_up");
    // Compartments: TS//SI does not read TK.
    let err = refused(
        post(&server, &ts_usa, path, &chat("(TS//TK) x"), &[]).await,
        403,
    )
    .await;
    names_rule(&err, "mac.no_read_up.compartment");

    // Releasability: NOFORN is not for a GBR national; REL TO USA, GBR is.
    let nf = chat("SECRET//NOFORN\nThe plan.");
    assert_eq!(
        allowed(post(&server, &ts_usa, path, &nf, &[]).await).await,
        "SECRET//NOFORN"
    );
    let err = refused(post(&server, &ts_gbr, path, &nf, &[]).await, 403).await;
    names_rule(&err, "mac.releasability");
    let rel = chat("(S//REL TO USA, GBR) The plan.");
    assert_eq!(
        allowed(post(&server, &ts_gbr, path, &rel, &[]).await).await,
        "SECRET//REL TO USA, GBR"
    );

    // A model releasable to GBR may not receive NOFORN data (no write down on releasability),
    // and the change applies to the very next request.
    assert_eq!(
        set_model_label(&server, &server.key, "TOP SECRET//SI//REL TO USA, GBR")
            .await
            .status(),
        200
    );
    let err = refused(post(&server, &ts_usa, path, &nf, &[]).await, 403).await;
    names_rule(&err, "mac.no_write_down.releasability");
    assert_eq!(
        allowed(post(&server, &ts_gbr, path, &rel, &[]).await).await,
        "SECRET//REL TO USA, GBR"
    );

    // Completions are checked the same way.
    let completion = json!({"model": "smollm2", "prompt": "(TS//SI//NF) Notes:", "max_tokens": 2});
    refused(
        post(&server, &s_usa, "/v1/completions", &completion, &[]).await,
        403,
    )
    .await;
    let completion =
        json!({"model": "smollm2", "prompt": "(S//REL TO USA, GBR) Notes:", "max_tokens": 2});
    assert_eq!(
        allowed(post(&server, &s_usa, "/v1/completions", &completion, &[]).await).await,
        "SECRET//REL TO USA, GBR"
    );
    let status = server.stop().await;
    assert!(status.success());
}

/// The SSE events of a streamed answer, as JSON values (without `[DONE]`).
async fn events(res: reqwest::Response) -> (String, Vec<Value>) {
    assert_eq!(res.status(), 200);
    let label = res.headers()["x-highside-label"]
        .to_str()
        .unwrap()
        .to_owned();
    let text = res.text().await.unwrap();
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    let values = text
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    (label, values)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_labels_streaming_banner_and_pii() {
    let server = Server::start(&[]).await;
    assert_eq!(
        set_model_label(&server, &server.key, "SECRET")
            .await
            .status(),
        200
    );
    let a = agency(&server, "Agency of Streams").await;
    let key = analyst(&server, &a, "s", "SECRET", "USA").await;
    let path = "/v1/chat/completions";

    // Every chunk of a stream carries the label, the usage chunk included.
    let mut body = chat("(S) Tell me a story.");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let (label, chunks) = events(post(&server, &key, path, &body, &[]).await).await;
    assert_eq!(label, "SECRET");
    assert!(chunks.len() >= 3);
    for c in &chunks {
        assert_eq!(c["highside"]["label"], "SECRET", "{c}");
    }

    // The banner option: the text starts with the banner line, streamed or not.
    let mut body = chat("(C) Hello.");
    body["highside"] = json!({"banner": true});
    let res = post(&server, &key, path, &body, &[]).await;
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.unwrap();
    let content = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(content.starts_with("CONFIDENTIAL\n"), "{content}");
    body["stream"] = json!(true);
    let (_, chunks) = events(post(&server, &key, path, &body, &[]).await).await;
    let streamed: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert!(streamed.starts_with("CONFIDENTIAL\n"), "{streamed}");
    let completion = json!({"model": "smollm2", "prompt": "Notes:", "max_tokens": 2,
                            "stream": true, "highside": {"banner": true}});
    let (label, chunks) =
        events(post(&server, &key, "/v1/completions", &completion, &[]).await).await;
    assert_eq!(label, "UNCLASSIFIED");
    assert_eq!(chunks[0]["choices"][0]["text"], "UNCLASSIFIED\n");

    // PII: off by default; then flag, cui and block, each per agency and applied at once.
    let pii = chat("Contact 123-45-6789 or jane.doe@example.gov.");
    let res = post(&server, &key, path, &pii, &[]).await;
    assert!(res.headers().get("x-highside-pii").is_none());
    assert_eq!(allowed(res).await, "UNCLASSIFIED");
    let set_pii = |action: &'static str| {
        let (client, url) = (
            server.http(),
            server.url(&format!("/admin/v1/agencies/{a}")),
        );
        async move {
            let res = client
                .patch(url)
                .json(&json!({"pii_action": action}))
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200, "{action}");
        }
    };
    set_pii("flag").await;
    let res = post(&server, &key, path, &pii, &[]).await;
    assert_eq!(res.headers()["x-highside-pii"], "ssn,email");
    let v: Value = res.json().await.unwrap();
    assert_eq!(v["highside"]["pii"], json!(["ssn", "email"]));
    set_pii("cui").await;
    assert_eq!(
        allowed(post(&server, &key, path, &pii, &[]).await).await,
        "CUI"
    );
    assert_eq!(
        allowed(post(&server, &key, path, &chat("Hello."), &[]).await).await,
        "UNCLASSIFIED"
    );
    set_pii("block").await;
    let err = refused(post(&server, &key, path, &pii, &[]).await, 403).await;
    names_rule(&err, "pii.blocked");
    assert!(
        !err["message"].as_str().unwrap().contains("123-45"),
        "{err}"
    );
    let res = server
        .http()
        .patch(server.url(&format!("/admin/v1/agencies/{a}")))
        .json(&json!({"pii_action": "raise"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused(res, 400).await["param"], "pii_action");
    assert!(server.stop().await.success());
}

const POLICIES: &str = r#"
@id("default-permit")
permit(principal, action, resource);

@id("no-orcon-for-users")
forbid(principal, action, resource)
  when { context.label.dissemination.contains("ORCON") }
  unless { principal in Highside::Role::"agency-admin" };
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cedar_policies_deny_more_never_allow_more() {
    let server = Server::start_with(Options {
        policies: Some(POLICIES),
        ..Options::default()
    })
    .await;
    assert_eq!(
        set_model_label(&server, &server.key, "SECRET//ORCON")
            .await
            .status(),
        200
    );
    let a = agency(&server, "Agency of Policies").await;
    let key = analyst(&server, &a, "s", "SECRET", "USA").await;
    let path = "/v1/chat/completions";
    assert_eq!(
        allowed(post(&server, &key, path, &chat("(S) plain"), &[]).await).await,
        "SECRET"
    );
    let err = refused(
        post(&server, &key, path, &chat("(S//OC) sourced"), &[]).await,
        403,
    )
    .await;
    let message = err["message"].as_str().unwrap();
    assert!(
        message.contains("policy.forbid") && message.contains("no-orcon-for-users"),
        "{err}"
    );
    // The operator (who holds every role, agency-admin included) passes the policy, but no
    // policy can lift the mandatory check: the operator still cannot write down.
    assert_eq!(
        allowed(post(&server, &server.key, path, &chat("(S//OC) sourced"), &[]).await).await,
        "SECRET//ORCON"
    );
    let err = refused(
        post(&server, &server.key, path, &chat("(TS) x"), &[]).await,
        403,
    )
    .await;
    names_rule(&err, "mac.no_write_down.level");
    assert!(server.stop().await.success());
}
