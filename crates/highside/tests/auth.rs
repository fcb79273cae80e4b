//! Identity over HTTP against the real binary: credentials (401), roles (403), the agency wall
//! (404), privilege amplification (403), the canary-key scan, and mutual TLS.

mod common;

use common::{Options, Server};
use serde_json::{json, Value};

async fn error_of(res: reqwest::Response, status: u16) -> Value {
    assert_eq!(res.status(), status, "wanted {status}");
    let body: Value = res.json().await.unwrap();
    let err = &body["error"];
    assert!(
        err["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(
        err["type"].is_string() && err.get("param").is_some() && err.get("code").is_some(),
        "{body}"
    );
    err.clone()
}

fn chat() -> Value {
    json!({"model": "smollm2", "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 2, "temperature": 0})
}

/// POSTs JSON as `key` and returns the response.
async fn post(server: &Server, key: &str, path: &str, body: &Value) -> reqwest::Response {
    Server::client_with(key)
        .post(server.url(path))
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn create(server: &Server, key: &str, path: &str, body: Value) -> Value {
    server.create(key, path, body).await
}

struct Tenant {
    id: String,
    key: String,
    key_id: String,
}

async fn user(
    server: &Server,
    agency: &str,
    name: &str,
    roles: &[&str],
    clearance: &str,
) -> Tenant {
    let u = create(server, &server.key, "/admin/v1/users",
        json!({"agency_id": agency, "name": name, "roles": roles, "clearance": clearance, "nationality": "USA"})).await;
    let id = u["id"].as_str().unwrap().to_owned();
    let k = create(
        server,
        &server.key,
        "/admin/v1/keys",
        json!({"user_id": id, "name": "k"}),
    )
    .await;
    Tenant {
        id,
        key: k["key"].as_str().unwrap().to_owned(),
        key_id: k["id"].as_str().unwrap().to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_surface_is_behind_authentication() {
    let server = Server::start(&[]).await;
    let anon = reqwest::Client::new();
    // The Bedrock routes have their own authentication layer (and Bedrock's error shape):
    // wrong methods and near misses are refused before routing can say anything.
    for (method, path) in [
        ("POST", "/model/m/converse"),
        ("GET", "/model/m/converse"),
        ("HEAD", "/model/m/invoke"),
        ("OPTIONS", "/model/m/converse-stream"),
        ("PUT", "/model/m/invoke-with-response-stream"),
        ("POST", "/model/m/unknown"),
        ("POST", "/model/m/converse/"),
        ("GET", "/health/live/"),
        ("GET", "/health/ready/details"),
    ] {
        let res = anon
            .request(method.parse().unwrap(), server.url(path))
            .send()
            .await
            .unwrap();
        let bedrock = res.headers().contains_key("x-amzn-errortype");
        assert!(
            matches!(res.status().as_u16(), 401 | 403),
            "{method} {path}: {}",
            res.status()
        );
        // Only what the router matched as Bedrock's answers in Bedrock's shape.
        let matched = path.ends_with("converse")
            || path.ends_with("invoke")
            || path.ends_with("converse-stream")
            || path.ends_with("invoke-with-response-stream");
        assert_eq!(bedrock, matched, "{method} {path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_roles_and_agency_walls() {
    let server = Server::start(&[]).await;
    let anon = reqwest::Client::new();
    // Health checks are the only routes without a credential.
    assert_eq!(
        anon.get(server.url("/health/live"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    for (method, path) in [
        ("GET", "/v1/models"),
        ("POST", "/v1/chat/completions"),
        ("GET", "/admin/v1/users"),
        ("GET", "/no/such/route"),
    ] {
        let res = anon
            .request(method.parse().unwrap(), server.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(res.headers()["www-authenticate"], "Bearer");
        error_of(res, 401).await;
    }
    let (_, stranger) = highside_identity::ApiKeySecret::generate();
    let stranger = stranger.expose().to_owned();
    for header in [
        "Bearer nope",
        "Basic dXNlcjpwYXNz",
        "Bearer",
        &format!("Bearer {stranger}"),
    ] {
        let res = anon
            .get(server.url("/v1/models"))
            .header("authorization", header)
            .send()
            .await
            .unwrap();
        assert_eq!(error_of(res, 401).await["code"], "invalid_api_key");
    }

    let a = create(
        &server,
        &server.key,
        "/admin/v1/agencies",
        json!({"name": "A", "branch": "executive"}),
    )
    .await;
    let b = create(
        &server,
        &server.key,
        "/admin/v1/agencies",
        json!({"name": "B", "branch": "judicial"}),
    )
    .await;
    let (a, b) = (a["id"].as_str().unwrap(), b["id"].as_str().unwrap());
    let admin_a = user(&server, a, "adam", &["agency-admin", "user"], "SECRET").await;
    let user_a = user(&server, a, "alice", &["user"], "SECRET").await;
    let auditor_a = user(&server, a, "audrey", &["auditor"], "SECRET").await;
    let user_b = user(&server, b, "bob", &["user"], "SECRET").await;

    // The key works in either header.
    let res = anon
        .get(server.url("/v1/models"))
        .header("x-api-key", &user_a.key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        post(&server, &user_a.key, "/v1/chat/completions", &chat())
            .await
            .status(),
        200
    );

    // Role violations: 403 in OpenAI's shape.
    let err = error_of(
        post(&server, &auditor_a.key, "/v1/chat/completions", &chat()).await,
        403,
    )
    .await;
    assert_eq!(err["type"], "permission_error");
    let new_user = json!({"name": "eve", "clearance": "SECRET", "nationality": "USA"});
    error_of(
        post(&server, &user_a.key, "/admin/v1/users", &new_user).await,
        403,
    )
    .await;
    error_of(
        post(
            &server,
            &admin_a.key,
            "/admin/v1/agencies",
            &json!({"name": "C", "branch": "executive"}),
        )
        .await,
        403,
    )
    .await;
    let get = |key: &str, path: String| Server::client_with(key).get(server.url(&path)).send();
    error_of(
        get(&user_a.key, format!("/admin/v1/users/{}", admin_a.id))
            .await
            .unwrap(),
        403,
    )
    .await;

    // The agency wall: another agency's objects do not exist (404), for reads and writes.
    error_of(
        get(&admin_a.key, format!("/admin/v1/users/{}", user_b.id))
            .await
            .unwrap(),
        404,
    )
    .await;
    error_of(
        get(&admin_a.key, format!("/admin/v1/agencies/{b}"))
            .await
            .unwrap(),
        404,
    )
    .await;
    error_of(
        get(&admin_a.key, format!("/admin/v1/keys/{}", user_b.key_id))
            .await
            .unwrap(),
        404,
    )
    .await;
    error_of(
        get(&admin_a.key, format!("/admin/v1/users?agency_id={b}"))
            .await
            .unwrap(),
        404,
    )
    .await;
    let c = Server::client_with(&admin_a.key);
    let res = c
        .patch(server.url(&format!("/admin/v1/users/{}", user_b.id)))
        .json(&json!({"status": "disabled"}))
        .send()
        .await
        .unwrap();
    error_of(res, 404).await;
    let res = c
        .delete(server.url(&format!("/admin/v1/keys/{}", user_b.key_id)))
        .send()
        .await
        .unwrap();
    error_of(res, 404).await;
    let listed: Value = get(&admin_a.key, "/admin/v1/users".into())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u["agency_id"] == a),
        "{listed}"
    );
    // ... and bob still works: nothing was changed.
    assert_eq!(
        post(&server, &user_b.key, "/v1/chat/completions", &chat())
            .await
            .status(),
        200
    );

    // Privilege amplification: 403.
    for body in [
        json!({"name": "x1", "clearance": "TOP SECRET", "nationality": "USA"}),
        json!({"name": "x2", "clearance": "SECRET", "nationality": "USA", "roles": ["operator"]}),
        json!({"name": "x3", "clearance": "SECRET", "nationality": "USA", "roles": ["auditor"]}),
        json!({"name": "x4", "clearance": "SECRET", "nationality": "USA", "agency_id": b}),
    ] {
        error_of(
            post(&server, &admin_a.key, "/admin/v1/users", &body).await,
            403,
        )
        .await;
    }
    error_of(
        post(
            &server,
            &admin_a.key,
            "/admin/v1/keys",
            &json!({"user_id": user_b.id, "name": "steal"}),
        )
        .await,
        403,
    )
    .await;
    error_of(
        post(
            &server,
            &admin_a.key,
            "/admin/v1/keys",
            &json!({"name": "up", "scopes": ["operator"]}),
        )
        .await,
        403,
    )
    .await;
    let res = c
        .patch(server.url(&format!("/admin/v1/users/{}", admin_a.id)))
        .json(&json!({"roles": ["operator"]}))
        .send()
        .await
        .unwrap();
    error_of(res, 403).await;

    // Bad JSON and bad fields: 400 naming the problem.
    let res = Server::client_with(&server.key)
        .post(server.url("/admin/v1/users"))
        .body("{")
        .send()
        .await
        .unwrap();
    error_of(res, 400).await;
    error_of(
        post(
            &server,
            &server.key,
            "/admin/v1/users",
            &json!({"agency_id": a, "name": "z", "clearance": "COSMIC", "nationality": "USA"}),
        )
        .await,
        400,
    )
    .await;
    error_of(
        post(
            &server,
            &server.key,
            "/admin/v1/agencies",
            &json!({"name": "Z", "branch": "executive", "extra": 1}),
        )
        .await,
        400,
    )
    .await;
    error_of(
        post(
            &server,
            &server.key,
            "/admin/v1/agencies",
            &json!({"name": "A", "branch": "executive"}),
        )
        .await,
        409,
    )
    .await;

    // Revocation takes effect on the next request.
    let res = Server::client_with(&server.key)
        .delete(server.url(&format!("/admin/v1/keys/{}", user_a.key_id)))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let err = error_of(
        post(&server, &user_a.key, "/v1/chat/completions", &chat()).await,
        401,
    )
    .await;
    assert!(err["message"].as_str().unwrap().contains("revoked"));

    // Expiry: a key that expires in a few seconds works, then fails (polled, bounded).
    let soon = (time::OffsetDateTime::now_utc() + time::Duration::seconds(8))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let k = create(
        &server,
        &server.key,
        "/admin/v1/keys",
        json!({"user_id": user_b.id, "name": "brief", "expires_at": soon}),
    )
    .await;
    let brief = k["key"].as_str().unwrap();
    assert_eq!(get(brief, "/v1/models".into()).await.unwrap().status(), 200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let res = get(brief, "/v1/models".into()).await.unwrap();
        if res.status() == 401 {
            assert!(error_of(res, 401).await["message"]
                .as_str()
                .unwrap()
                .contains("expired"));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the key never expired"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }

    // Disabling a user stops their keys at once.
    let res = c
        .patch(server.url(&format!("/admin/v1/users/{}", user_b.id)))
        .json(&json!({"status": "disabled"}))
        .send()
        .await;
    error_of(res.unwrap(), 404).await;
    let res = Server::client_with(&server.key)
        .patch(server.url(&format!("/admin/v1/users/{}", user_b.id)))
        .json(&json!({"status": "disabled"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    error_of(
        post(&server, &user_b.key, "/v1/chat/completions", &chat()).await,
        401,
    )
    .await;
    assert_eq!(server.stop().await.code(), Some(0));
}

/// The admin CLI against a running server, as the quick start uses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_cli_creates_a_user_who_can_chat() {
    let server = Server::start(&[]).await;
    let cli = |key: &str, args: &[&str]| {
        let mut cmd = tokio::process::Command::new(common::BIN);
        cmd.args(["admin", "--url", &server.base])
            .args(args)
            .env("HIGHSIDE_API_KEY", key);
        cmd.output()
    };
    let out = cli(
        &server.key,
        &[
            "agencies",
            "create",
            "--name",
            "Demo",
            "--branch",
            "legislative",
        ],
    )
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let agency: Value = serde_json::from_slice(&out.stdout).unwrap();
    let out = cli(
        &server.key,
        &[
            "users",
            "create",
            "--agency",
            agency["id"].as_str().unwrap(),
            "--name",
            "analyst",
            "--clearance",
            "SECRET",
            "--nationality",
            "usa",
        ],
    )
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let user: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(user["nationality"], "USA");
    assert_eq!(user["roles"], json!(["user"]));
    let out = cli(
        &server.key,
        &[
            "keys",
            "create",
            "--user",
            user["id"].as_str().unwrap(),
            "--name",
            "demo",
            "--expires-in-days",
            "1",
        ],
    )
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = common::printed_key(&out.stdout);
    let out = cli(&key, &["whoami"]).await.unwrap();
    let me: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(me["user_id"], user["id"]);
    let out = tokio::process::Command::new(common::BIN)
        .args([
            "chat",
            "--url",
            &server.base,
            "--max-tokens",
            "4",
            "smollm2",
            "Hi",
        ])
        .env("HIGHSIDE_API_KEY", &key)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The user may not create agencies: the CLI reports the 403 and fails.
    let out = cli(
        &key,
        &[
            "agencies",
            "create",
            "--name",
            "Nope",
            "--branch",
            "executive",
        ],
    )
    .await
    .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("403"));
    let out = cli(&key, &["keys", "list"]).await.unwrap();
    let keys: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(keys["data"].as_array().unwrap().len(), 1);
    assert!(keys["data"][0].get("key").is_none() && keys["data"][0].get("secret_hash").is_none());
    assert_eq!(server.stop().await.code(), Some(0));
}

/// A planted key must never appear in a log line, a response (other than the one that
/// created it), CLI output or the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_canary_key_never_leaks() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("server.log");
    let server = Server::start_with(Options {
        log: Some(log.clone()),
        log_filter: Some("trace,llama_cpp_2=off,llama-cpp-2=off"),
        ..Options::default()
    })
    .await;
    let canary = user(
        &server,
        &agency_of_operator(&server).await,
        "canary",
        &["user"],
        "SECRET",
    )
    .await;
    let secret = canary.key[canary.key.len() - 64..].to_owned();
    let mut seen = String::new();
    let record = |res: reqwest::Response| async {
        let mut text = format!("{:?}\n", res.headers());
        text.push_str(&res.text().await.unwrap_or_default());
        text
    };
    let anon = reqwest::Client::new();
    let k = &canary.key;
    let variants = [
        format!("Bearer {k}"),
        format!("Basic {k}"),
        format!("Bearer {k}x"),
        format!("Bearer {}", &k[..k.len() - 1]),
        format!("Bearer  {}", k.to_uppercase()),
        format!("Token {k}"),
    ];
    for h in &variants {
        for path in [
            "/v1/models",
            "/v1/chat/completions",
            "/admin/v1/whoami",
            "/admin/v1/users",
            "/nope",
        ] {
            let res = anon
                .post(server.url(path))
                .header("authorization", h)
                .body("{bad json")
                .send()
                .await
                .unwrap();
            seen.push_str(&record(res).await);
            let res = anon
                .get(server.url(path))
                .header("authorization", h)
                .send()
                .await
                .unwrap();
            seen.push_str(&record(res).await);
        }
    }
    let res = anon
        .get(server.url("/v1/models"))
        .header("x-api-key", k)
        .header("authorization", format!("Bearer {}", server.key))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401, "conflicting keys");
    seen.push_str(&record(res).await);
    seen.push_str(&record(post(&server, k, "/v1/chat/completions", &chat()).await).await);
    let mut stream_req = chat();
    stream_req["stream"] = json!(true);
    seen.push_str(&record(post(&server, k, "/v1/chat/completions", &stream_req).await).await);
    seen.push_str(
        &record(post(&server, k, "/admin/v1/keys", &json!({"name": "child"})).await).await,
    );
    let out = tokio::process::Command::new(common::BIN)
        .args([
            "admin",
            "--url",
            &server.base,
            "--api-key",
            k,
            "agencies",
            "create",
            "--name",
            "x",
            "--branch",
            "executive",
        ])
        .env("HIGHSIDE_LOG", "trace")
        .output()
        .await
        .unwrap();
    seen.push_str(&String::from_utf8_lossy(&out.stdout));
    seen.push_str(&String::from_utf8_lossy(&out.stderr));
    let res = Server::client_with(&server.key)
        .delete(server.url(&format!("/admin/v1/keys/{}", canary.key_id)))
        .send()
        .await
        .unwrap();
    seen.push_str(&record(res).await);
    let res = post(&server, k, "/v1/chat/completions", &chat()).await;
    assert_eq!(res.status(), 401);
    seen.push_str(&record(res).await);
    let scan_data_dir = |dir: &std::path::Path| {
        // The audit log's segments too (not the model store: nothing secret goes there).
        let files = std::fs::read_dir(dir)
            .unwrap()
            .chain(std::fs::read_dir(dir.join("audit")).unwrap());
        for entry in files {
            let path = entry.unwrap().path();
            if path.is_file() {
                let bytes = std::fs::read(&path).unwrap();
                assert!(
                    !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                    "{} contains the canary key",
                    path.display()
                );
            }
        }
    };
    // While running (the write-ahead log holds the newest rows) and after a clean stop.
    scan_data_dir(server.dir.path());
    let mut server = server;
    let data = std::mem::replace(&mut server.dir, tempfile::tempdir().unwrap());
    assert_eq!(server.stop().await.code(), Some(0));
    scan_data_dir(data.path());

    assert!(
        !seen.contains(&secret),
        "a response or CLI output contains the canary key"
    );
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.lines().count() > 20,
        "the server logged almost nothing; the scan would prove little"
    );
    for (i, line) in logged.lines().enumerate() {
        assert!(
            !line.contains(&secret),
            "log line {i} contains the canary key: {line}"
        );
    }
}

async fn agency_of_operator(server: &Server) -> String {
    let me: Value = server
        .http()
        .get(server.url("/admin/v1/whoami"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    me["agency_id"].as_str().unwrap().to_owned()
}

/// Test PKI made with rcgen: a CA, a server certificate for localhost, client certificates.
mod pki {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        SanType,
    };

    pub struct Ca {
        pub cert: rcgen::Certificate,
        key: KeyPair,
    }

    pub struct Leaf {
        pub cert_pem: String,
        pub key_pem: String,
    }

    impl Ca {
        pub fn new(name: &str) -> Self {
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.distinguished_name.push(DnType::CommonName, name);
            let key = KeyPair::generate().unwrap();
            let cert = p.self_signed(&key).unwrap();
            Self { cert, key }
        }

        pub fn server(&self) -> Leaf {
            let mut p = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            self.sign(p)
        }

        pub fn client(&self, cn: &str, email: Option<&str>, expired: bool) -> Leaf {
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.distinguished_name.push(DnType::CommonName, cn);
            if let Some(e) = email {
                p.subject_alt_names = vec![SanType::Rfc822Name(e.try_into().unwrap())];
            }
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            if expired {
                let now = time::OffsetDateTime::now_utc();
                p.not_before = now - time::Duration::days(30);
                p.not_after = now - time::Duration::days(1);
            }
            self.sign(p)
        }

        fn sign(&self, p: CertificateParams) -> Leaf {
            let key = KeyPair::generate().unwrap();
            let cert = p.signed_by(&key, &self.cert, &self.key).unwrap();
            Leaf {
                cert_pem: cert.pem(),
                key_pem: key.serialize_pem(),
            }
        }
    }
}

fn tls_client(ca: &pki::Ca, leaf: Option<&pki::Leaf>, key: Option<&str>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca.cert.pem().as_bytes()).unwrap());
    if let Some(l) = leaf {
        b = b.identity(
            reqwest::Identity::from_pem(format!("{}{}", l.cert_pem, l.key_pem).as_bytes()).unwrap(),
        );
    }
    if let Some(k) = key {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("authorization", format!("Bearer {k}").parse().unwrap());
        b = b.default_headers(h);
    }
    b.build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_maps_certificates_to_users() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = pki::Ca::new("Enclave Client CA");
    let other_ca = pki::Ca::new("Someone Else");
    let server_leaf = ca.server();
    let write = |name: &str, text: &str| {
        let p = tmp.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let (cert, key, client_ca) = (
        write("server.pem", &server_leaf.cert_pem),
        write("server.key", &server_leaf.key_pem),
        write("ca.pem", &ca.cert.pem()),
    );
    let gateway = ca.client("gateway", None, false);
    let server = Server::start_with(Options {
        args: &[
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--tls-client-ca",
            &client_ca,
        ],
        probe: Some(tls_client(&ca, Some(&gateway), None)),
        tls: true,
        ..Options::default()
    })
    .await;

    // The operator reaches the server with a key over a valid (unmapped) certificate.
    let op = tls_client(&ca, Some(&gateway), Some(&server.key));
    let agency = agency_of(&op, &server).await;
    let res = op.post(server.url("/admin/v1/users")).json(&json!({"agency_id": agency, "name": "alice", "clearance": "SECRET", "nationality": "GBR"})).send().await.unwrap();
    assert_eq!(res.status(), 201);
    let alice: Value = res.json().await.unwrap();
    let res = op
        .post(server.url("/admin/v1/certificates"))
        .json(&json!({"user_id": alice["id"], "kind": "subject", "value": "CN=alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    let res = op
        .post(server.url("/admin/v1/certificates"))
        .json(&json!({"user_id": alice["id"], "kind": "san", "value": "alice@agency.example"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);

    // A valid certificate mapped to alice authenticates as alice, with no key at all.
    let alice_cert = ca.client("alice", None, false);
    let as_alice = tls_client(&ca, Some(&alice_cert), None);
    let me: Value = as_alice
        .get(server.url("/admin/v1/whoami"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["user_id"], alice["id"]);
    let res = as_alice
        .post(server.url("/v1/chat/completions"))
        .json(&chat())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // So does one matched by its subjectAltName.
    let by_san = tls_client(
        &ca,
        Some(&ca.client("alice-laptop", Some("alice@agency.example"), false)),
        None,
    );
    assert_eq!(
        by_san
            .get(server.url("/v1/models"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // A valid but unmapped certificate alone: 401.
    let res = tls_client(&ca, Some(&gateway), None)
        .get(server.url("/v1/models"))
        .send()
        .await
        .unwrap();
    error_of(res, 401).await;
    // alice's certificate with the operator's key: two different users, 401.
    let res = tls_client(&ca, Some(&alice_cert), Some(&server.key))
        .get(server.url("/v1/models"))
        .send()
        .await
        .unwrap();
    error_of(res, 401).await;

    // Refused during the handshake: a certificate from an unknown CA, an expired certificate
    // (even though mapped), and no certificate.
    let unknown = tls_client(&ca, Some(&other_ca.client("alice", None, false)), None);
    assert!(
        unknown.get(server.url("/v1/models")).send().await.is_err(),
        "unknown CA accepted"
    );
    let expired = tls_client(&ca, Some(&ca.client("alice", None, true)), None);
    assert!(
        expired.get(server.url("/v1/models")).send().await.is_err(),
        "expired certificate accepted"
    );
    let none = tls_client(&ca, None, Some(&server.key));
    assert!(
        none.get(server.url("/v1/models")).send().await.is_err(),
        "no certificate accepted"
    );

    // Removing the mapping removes the access; the server kept serving throughout.
    let maps: Value = op
        .get(server.url("/admin/v1/certificates"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for m in maps["data"].as_array().unwrap() {
        let res = op
            .delete(server.url(&format!(
                "/admin/v1/certificates/{}",
                m["id"].as_str().unwrap()
            )))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    error_of(
        as_alice.get(server.url("/v1/models")).send().await.unwrap(),
        401,
    )
    .await;
    assert_eq!(server.stop().await.code(), Some(0));
}

async fn agency_of(client: &reqwest::Client, server: &Server) -> String {
    let me: Value = client
        .get(server.url("/admin/v1/whoami"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    me["agency_id"].as_str().unwrap().to_owned()
}
