//! The tenancy rules against a real SQLite store: authentication failures, the agency wall,
//! role checks and every privilege-amplification path.

use std::sync::Arc;

use highside_identity::{ApiKeySecret, Branch, ParsedKey, Principal, RoleSet, Status, UserId};
use highside_label::Encodings;
use highside_store::{IdentityStore, SqliteStore};
use highside_tenancy::api::*;
use highside_tenancy::{
    bootstrap, Admin, AdminError, AuthError, Authenticator, Bootstrap, PeerCertificate,
};

struct World {
    _dir: tempfile::TempDir,
    store: Arc<SqliteStore>,
    admin: Admin,
    auth: Authenticator,
    operator: Principal,
}

fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

fn login(auth: &Authenticator, key: &ApiKeySecret) -> Result<Principal, AuthError> {
    let parsed = ParsedKey::parse(key.expose()).unwrap();
    auth.authenticate(Some(&parsed), None, now())
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("db")).unwrap());
    let encodings = Arc::new(Encodings::builtin());
    let (_, created) = bootstrap(
        store.as_ref(),
        &encodings,
        &Bootstrap {
            agency_name: "Enclave Operations".into(),
            branch: Branch::Executive,
            operator_name: "operator".into(),
            clearance: "TOP SECRET//SI/TK".into(),
            nationality: "USA".into(),
        },
    )
    .unwrap();
    let dyn_store: Arc<dyn IdentityStore> = store.clone();
    let master = Arc::new(highside_identity::AwsKeyMaster::generate().1);
    let auth =
        Authenticator::new(dyn_store.clone(), encodings.clone()).with_aws_master(master.clone());
    let operator = login(&auth, &created.secret).unwrap();
    World {
        _dir: dir,
        store,
        admin: Admin::new(dyn_store, encodings).with_aws_master(master),
        auth,
        operator,
    }
}

impl World {
    fn agency(&self, name: &str) -> highside_identity::AgencyId {
        self.admin
            .create_agency(
                &self.operator,
                CreateAgency {
                    name: name.into(),
                    branch: Branch::Judicial,
                    pii_action: None,
                    nationality: Some("USA".into()),
                },
            )
            .unwrap()
            .id
    }

    /// Creates a user as the operator and logs in with a fresh key of theirs.
    fn user(
        &self,
        agency: &highside_identity::AgencyId,
        name: &str,
        roles: &str,
        clearance: &str,
    ) -> (Principal, ApiKeySecret) {
        let u = self
            .admin
            .create_user(
                &self.operator,
                CreateUser {
                    agency_id: Some(agency.clone()),
                    name: name.into(),
                    clearance: clearance.into(),
                    nationality: "USA".into(),
                    roles: Some(RoleSet::parse_list(roles).unwrap()),
                },
            )
            .unwrap();
        let key = self
            .admin
            .create_key(
                &self.operator,
                CreateKey {
                    user_id: Some(u.id),
                    name: "k".into(),
                    scopes: None,
                    expires_at: None,
                    kind: None,
                },
            )
            .unwrap();
        (login(&self.auth, &key.secret).unwrap(), key.secret)
    }
}

fn status<T: std::fmt::Debug>(r: Result<T, AdminError>) -> u16 {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e.status(),
    }
}

#[test]
fn bootstrap_happens_once() {
    let w = world();
    assert!(w.operator.is_operator());
    let again = bootstrap(
        w.store.as_ref(),
        &Encodings::builtin(),
        &Bootstrap {
            agency_name: "Other".into(),
            branch: Branch::Executive,
            operator_name: "second".into(),
            clearance: "TS".into(),
            nationality: "USA".into(),
        },
    );
    assert_eq!(status(again), 409);
}

#[test]
fn bad_credentials_fail() {
    let w = world();
    let a = w.agency("A");
    let (_, key) = w.user(&a, "alice", "user", "SECRET");
    // Unknown key of the right shape.
    let (_, stranger) = ApiKeySecret::generate();
    assert!(matches!(
        login(&w.auth, &stranger),
        Err(AuthError::InvalidKey)
    ));
    // Right prefix, wrong secret.
    let forged = format!("{}{}", &key.expose()[..20], "0".repeat(64));
    let forged = ParsedKey::parse(&forged).unwrap();
    assert!(matches!(
        w.auth.authenticate(Some(&forged), None, now()),
        Err(AuthError::InvalidKey)
    ));
    // Nothing at all.
    assert!(matches!(
        w.auth.authenticate(None, None, now()),
        Err(AuthError::Missing)
    ));
    // Revoked: fails on the very next call.
    let p = login(&w.auth, &key).unwrap();
    w.admin
        .revoke_key(&w.operator, p.key.as_ref().unwrap().as_str())
        .unwrap();
    assert!(matches!(login(&w.auth, &key), Err(AuthError::Revoked)));
}

#[test]
fn expired_keys_and_disabled_accounts_fail() {
    let w = world();
    let a = w.agency("A");
    let (alice, key) = w.user(&a, "alice", "user", "SECRET");
    let soon = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    let expiring = w
        .admin
        .create_key(
            &w.operator,
            CreateKey {
                user_id: Some(alice.user.clone()),
                name: "short".into(),
                scopes: None,
                expires_at: Some(
                    soon.format(&time::format_description::well_known::Rfc3339)
                        .unwrap(),
                ),
                kind: None,
            },
        )
        .unwrap();
    let parsed = ParsedKey::parse(expiring.secret.expose()).unwrap();
    assert!(w.auth.authenticate(Some(&parsed), None, now()).is_ok());
    let later = soon + time::Duration::seconds(1);
    assert!(matches!(
        w.auth.authenticate(Some(&parsed), None, later),
        Err(AuthError::Expired)
    ));
    let past = CreateKey {
        user_id: None,
        name: "x".into(),
        scopes: None,
        expires_at: Some("2001-01-01T00:00:00Z".into()),
        kind: None,
    };
    assert_eq!(status(w.admin.create_key(&alice, past)), 400);

    w.admin
        .update_user(
            &w.operator,
            alice.user.as_str(),
            UpdateUser {
                status: Some(Status::Disabled),
                ..Default::default()
            },
        )
        .unwrap();
    assert!(matches!(login(&w.auth, &key), Err(AuthError::Disabled)));
    w.admin
        .update_user(
            &w.operator,
            alice.user.as_str(),
            UpdateUser {
                status: Some(Status::Active),
                ..Default::default()
            },
        )
        .unwrap();
    assert!(login(&w.auth, &key).is_ok());
    w.admin
        .update_agency(
            &w.operator,
            a.as_str(),
            UpdateAgency {
                status: Some(Status::Disabled),
                ..Default::default()
            },
        )
        .unwrap();
    assert!(matches!(login(&w.auth, &key), Err(AuthError::Disabled)));
}

#[test]
fn role_violations_are_403() {
    let w = world();
    let a = w.agency("A");
    let (user, _) = w.user(&a, "alice", "user", "SECRET");
    let (auditor, _) = w.user(&a, "audrey", "auditor", "SECRET");
    let (admin, _) = w.user(&a, "adam", "agency-admin,user", "SECRET");
    assert!(auditor.may_infer().is_err());
    assert!(user.may_infer().is_ok());
    let new_agency = || CreateAgency {
        name: "B".into(),
        branch: Branch::Legislative,
        pii_action: None,
        nationality: None,
    };
    assert_eq!(status(w.admin.create_agency(&user, new_agency())), 403);
    assert_eq!(status(w.admin.create_agency(&admin, new_agency())), 403);
    let new_user = || CreateUser {
        agency_id: None,
        name: "bob".into(),
        clearance: "S".into(),
        nationality: "USA".into(),
        roles: None,
    };
    assert_eq!(status(w.admin.create_user(&user, new_user())), 403);
    assert_eq!(status(w.admin.create_user(&auditor, new_user())), 403);
    assert!(w.admin.create_user(&admin, new_user()).is_ok());
    assert_eq!(
        status(w.admin.list_users(&user, &ListQuery::default())),
        403
    );
    assert_eq!(status(w.admin.get_user(&user, admin.user.as_str())), 403);
    // Everyone may see themselves and manage their own keys.
    assert!(w.admin.get_user(&user, user.user.as_str()).is_ok());
    let own = w
        .admin
        .create_key(
            &user,
            CreateKey {
                user_id: None,
                name: "mine".into(),
                scopes: None,
                expires_at: None,
                kind: None,
            },
        )
        .unwrap();
    assert_eq!(
        w.admin
            .list_keys(&user, &ListQuery::default())
            .unwrap()
            .data
            .len(),
        2
    );
    assert!(w.admin.revoke_key(&user, own.record.id.as_str()).is_ok());
    assert_eq!(
        status(w.admin.update_agency(
            &admin,
            a.as_str(),
            UpdateAgency {
                name: Some("x".into()),
                ..Default::default()
            }
        )),
        403
    );
}

#[test]
fn other_agencies_do_not_exist() {
    let w = world();
    let (a, b) = (w.agency("A"), w.agency("B"));
    let (admin_a, _) = w.user(&a, "adam", "agency-admin,user", "SECRET");
    let (bob, _) = w.user(&b, "bob", "user", "SECRET");
    let bob_key = w
        .admin
        .list_keys(
            &w.operator,
            &ListQuery {
                user_id: Some(bob.user.clone()),
                ..Default::default()
            },
        )
        .unwrap()
        .data[0]
        .id
        .clone();
    // Reads.
    assert_eq!(status(w.admin.get_agency(&admin_a, b.as_str())), 404);
    assert_eq!(status(w.admin.get_user(&admin_a, bob.user.as_str())), 404);
    assert_eq!(status(w.admin.get_key(&admin_a, bob_key.as_str())), 404);
    assert_eq!(
        status(w.admin.list_users(
            &admin_a,
            &ListQuery {
                agency_id: Some(b.clone()),
                ..Default::default()
            }
        )),
        404
    );
    assert_eq!(
        status(w.admin.list_keys(
            &admin_a,
            &ListQuery {
                agency_id: Some(b.clone()),
                ..Default::default()
            }
        )),
        404
    );
    let listed = w
        .admin
        .list_agencies(&admin_a, &ListQuery::default())
        .unwrap();
    assert_eq!(
        listed.data.iter().map(|x| x.id.clone()).collect::<Vec<_>>(),
        vec![a.clone()]
    );
    let users = w.admin.list_users(&admin_a, &ListQuery::default()).unwrap();
    assert!(users.data.iter().all(|u| u.agency_id == a));
    // Writes.
    assert_eq!(
        status(w.admin.update_user(
            &admin_a,
            bob.user.as_str(),
            UpdateUser {
                status: Some(Status::Disabled),
                ..Default::default()
            }
        )),
        404
    );
    assert_eq!(status(w.admin.revoke_key(&admin_a, bob_key.as_str())), 404);
    assert_eq!(
        status(
            w.admin
                .update_agency(&admin_a, b.as_str(), UpdateAgency::default())
        ),
        404
    );
    // Nonexistent and foreign look the same.
    assert_eq!(
        status(w.admin.get_user(&admin_a, UserId::generate().as_str())),
        404
    );
}

#[test]
fn no_privilege_amplification() {
    let w = world();
    let (a, b) = (w.agency("A"), w.agency("B"));
    let (admin_a, _) = w.user(&a, "adam", "agency-admin,user", "SECRET");
    let (bob, _) = w.user(&b, "bob", "user", "SECRET");
    let (boss, _) = w.user(&a, "boss", "user", "TOP SECRET");
    let mk = |roles: &str, clearance: &str| CreateUser {
        agency_id: None,
        name: format!("u-{roles}-{clearance}"),
        clearance: clearance.into(),
        nationality: "GBR".into(),
        roles: Some(RoleSet::parse_list(roles).unwrap()),
    };
    assert_eq!(
        status(w.admin.create_user(&admin_a, mk("user", "TOP SECRET"))),
        403,
        "higher clearance"
    );
    assert_eq!(
        status(w.admin.create_user(&admin_a, mk("user", "SECRET//SI"))),
        403,
        "extra compartment"
    );
    assert_eq!(
        status(w.admin.create_user(&admin_a, mk("operator", "SECRET"))),
        403,
        "operator role"
    );
    assert_eq!(
        status(w.admin.create_user(&admin_a, mk("auditor", "SECRET"))),
        403,
        "role not held"
    );
    let in_b = CreateUser {
        agency_id: Some(b.clone()),
        ..mk("user", "SECRET")
    };
    assert_eq!(
        status(w.admin.create_user(&admin_a, in_b)),
        403,
        "user in another agency"
    );
    // Keys for another agency's user, for a more privileged user, with more scopes than held.
    let key_for = |u: &UserId, scopes: Option<&str>| CreateKey {
        user_id: Some(u.clone()),
        name: "k".into(),
        scopes: scopes.map(|s| RoleSet::parse_list(s).unwrap()),
        expires_at: None,
        kind: None,
    };
    assert_eq!(
        status(w.admin.create_key(&admin_a, key_for(&bob.user, None))),
        403
    );
    assert_eq!(
        status(
            w.admin
                .create_key(&admin_a, key_for(&UserId::generate(), None))
        ),
        403,
        "same answer for a missing user"
    );
    assert_eq!(
        status(w.admin.create_key(&admin_a, key_for(&boss.user, None))),
        403
    );
    assert_eq!(
        status(
            w.admin
                .create_key(&admin_a, key_for(&admin_a.user, Some("operator")))
        ),
        403
    );
    // Raising someone through an update is a grant too.
    let (carol, _) = w.user(&a, "carol", "user", "CONFIDENTIAL");
    let raise = UpdateUser {
        clearance: Some("TOP SECRET".into()),
        ..Default::default()
    };
    assert_eq!(
        status(w.admin.update_user(&admin_a, carol.user.as_str(), raise)),
        403
    );
    let promote = UpdateUser {
        roles: Some(RoleSet::parse_list("operator").unwrap()),
        ..Default::default()
    };
    assert_eq!(
        status(
            w.admin
                .update_user(&admin_a, admin_a.user.as_str(), promote)
        ),
        403,
        "self-promotion"
    );
    assert_eq!(
        status(w.admin.update_user(
            &admin_a,
            boss.user.as_str(),
            UpdateUser {
                status: Some(Status::Disabled),
                ..Default::default()
            }
        )),
        403
    );
    // A key scoped down stays down: a user-only key of an admin cannot administer.
    let narrow = w
        .admin
        .create_key(&admin_a, key_for(&admin_a.user, Some("user")))
        .unwrap();
    let narrowed = login(&w.auth, &narrow.secret).unwrap();
    assert_eq!(
        status(w.admin.create_user(&narrowed, mk("user", "SECRET"))),
        403
    );
    assert_eq!(
        status(
            w.admin
                .create_key(&narrowed, key_for(&narrowed.user, Some("agency-admin")))
        ),
        403
    );
    // Certificate mappings are keys by another name.
    let map = CreateCertMapping {
        user_id: boss.user.clone(),
        kind: highside_identity::CertKind::Subject,
        value: "CN=boss".into(),
    };
    assert_eq!(status(w.admin.create_cert_mapping(&admin_a, map)), 403);
}

#[test]
fn lockout_is_refused() {
    let w = world();
    let own = w.operator.agency.clone();
    assert_eq!(
        status(w.admin.update_agency(
            &w.operator,
            own.as_str(),
            UpdateAgency {
                status: Some(Status::Disabled),
                ..Default::default()
            }
        )),
        409
    );
    assert_eq!(
        status(w.admin.update_user(
            &w.operator,
            w.operator.user.as_str(),
            UpdateUser {
                status: Some(Status::Disabled),
                ..Default::default()
            }
        )),
        409
    );
}

#[test]
fn validation_and_paging() {
    let w = world();
    let a = w.agency("A");
    let bad = |clearance: &str, nationality: &str, name: &str| CreateUser {
        agency_id: Some(a.clone()),
        name: name.into(),
        clearance: clearance.into(),
        nationality: nationality.into(),
        roles: None,
    };
    assert_eq!(
        status(w.admin.create_user(&w.operator, bad("COSMIC", "USA", "x"))),
        400
    );
    assert_eq!(
        status(w.admin.create_user(&w.operator, bad("S", "XXX", "x"))),
        400
    );
    assert_eq!(
        status(w.admin.create_user(&w.operator, bad("S", "USA", " "))),
        400
    );
    assert_eq!(
        status(w.admin.create_user(&w.operator, bad("S", "USA", "a\u{0}b"))),
        400
    );
    w.admin
        .create_user(&w.operator, bad("S", "USA", "x"))
        .unwrap();
    assert_eq!(
        status(w.admin.create_user(&w.operator, bad("S", "USA", "x"))),
        409
    );
    assert_eq!(
        status(w.admin.create_agency(
            &w.operator,
            CreateAgency {
                name: "A".into(),
                branch: Branch::Executive,
                pii_action: None,
                nationality: None,
            }
        )),
        409
    );
    for i in 0..5 {
        w.admin
            .create_user(&w.operator, bad("S", "USA", &format!("p{i}")))
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = w
            .admin
            .list_users(
                &w.operator,
                &ListQuery {
                    limit: Some(2),
                    after: after.clone(),
                    agency_id: Some(a.clone()),
                    user_id: None,
                },
            )
            .unwrap();
        assert!(page.data.len() <= 2);
        seen.extend(page.data.iter().map(|u| u.id.clone()));
        if !page.has_more {
            break;
        }
        after = page.last_id;
    }
    assert_eq!(seen.len(), 6);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, seen, "ID order, no repeats");
    assert_eq!(
        status(w.admin.list_users(
            &w.operator,
            &ListQuery {
                limit: Some(0),
                ..Default::default()
            }
        )),
        400
    );
    assert_eq!(
        status(w.admin.list_users(
            &w.operator,
            &ListQuery {
                limit: Some(101),
                ..Default::default()
            }
        )),
        400
    );
}

#[test]
fn certificates_authenticate_their_user_only() {
    let w = world();
    let a = w.agency("A");
    let (alice, alice_key) = w.user(&a, "alice", "user", "SECRET");
    let (bob, _) = w.user(&a, "bob", "user", "SECRET");
    w.admin
        .create_cert_mapping(
            &w.operator,
            CreateCertMapping {
                user_id: alice.user.clone(),
                kind: highside_identity::CertKind::Subject,
                value: "CN=alice, O=A".into(),
            },
        )
        .unwrap();
    w.admin
        .create_cert_mapping(
            &w.operator,
            CreateCertMapping {
                user_id: bob.user.clone(),
                kind: highside_identity::CertKind::San,
                value: "bob@a.example".into(),
            },
        )
        .unwrap();
    let cert = |subject: &str, sans: &[&str]| PeerCertificate {
        subject: subject.into(),
        sans: sans.iter().map(|s| s.to_string()).collect(),
    };
    let by = |c: &PeerCertificate| w.auth.authenticate(None, Some(c), now());
    assert_eq!(by(&cert("CN=alice, O=A", &[])).unwrap().user, alice.user);
    assert_eq!(
        by(&cert("CN=whoever", &["bob@a.example"])).unwrap().user,
        bob.user
    );
    assert!(matches!(
        by(&cert("CN=mallory", &[])),
        Err(AuthError::UnmappedCertificate)
    ));
    // Fields mapped to different users: the oldest mapping decides (alice's was made first),
    // so a later mapping cannot take a certificate over or lock its user out.
    assert_eq!(
        by(&cert("CN=alice, O=A", &["bob@a.example"])).unwrap().user,
        alice.user
    );
    let k = ParsedKey::parse(alice_key.expose()).unwrap();
    assert!(w
        .auth
        .authenticate(Some(&k), Some(&cert("CN=alice, O=A", &[])), now())
        .is_ok());
    // An unmapped certificate with a key: the key decides.
    assert_eq!(
        w.auth
            .authenticate(Some(&k), Some(&cert("CN=gateway", &[])), now())
            .unwrap()
            .user,
        alice.user
    );
    assert!(matches!(
        w.auth
            .authenticate(Some(&k), Some(&cert("CN=x", &["bob@a.example"])), now()),
        Err(AuthError::Mismatch)
    ));
}

/// A request to `/model/m/converse` signed at `date` by `access_key`/`secret`.
fn signed(
    access_key: &str,
    secret: &str,
    body: &'static [u8],
    date: &str,
) -> Vec<(String, String)> {
    let mut headers = vec![
        ("host".to_owned(), "localhost".to_owned()),
        ("x-amz-date".to_owned(), date.to_owned()),
    ];
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let req = highside_sigv4::Request {
        method: "POST",
        path: "/model/m/converse",
        query: "",
        headers: &pairs,
        body,
    };
    let auth =
        highside_sigv4::sign(&req, access_key, secret, "us-east-1", "bedrock", date).unwrap();
    headers.push(("authorization".to_owned(), auth));
    headers
}

fn sigv4_login(
    auth: &Authenticator,
    headers: &[(String, String)],
    body: &[u8],
    at: time::OffsetDateTime,
) -> Result<Principal, AuthError> {
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    let req = highside_sigv4::Request {
        method: "POST",
        path: "/model/m/converse",
        query: "",
        headers: &pairs,
        body,
    };
    auth.authenticate_sigv4(&req, "bedrock", None, at)
}

#[test]
fn access_key_pairs_sign_requests_and_follow_the_key_rules() {
    let w = world();
    let a = w.agency("Signers");
    let (alice, alice_key) = w.user(&a, "alice", "user", "SECRET");
    let pair = w
        .admin
        .create_access_key(
            &alice,
            CreateKey {
                user_id: None,
                name: "boto3".into(),
                scopes: None,
                expires_at: None,
                kind: Some(highside_identity::KeyKind::Aws),
            },
        )
        .unwrap();
    assert_eq!(pair.record.kind, highside_identity::KeyKind::Aws);
    let id = pair.record.prefix.as_str().to_owned();
    let secret = pair.secret.expose().to_owned();
    let at = time::OffsetDateTime::from_unix_timestamp(1_795_482_123).unwrap();
    let date = "20261124T010203Z";
    let h = signed(&id, &secret, b"{}", date);
    let p = sigv4_login(&w.auth, &h, b"{}", at).unwrap();
    assert_eq!(
        (p.user.clone(), p.key.clone()),
        (alice.user.clone(), Some(pair.record.id.clone()))
    );
    // Another body, another secret, a stale clock, or a bearer key's prefix: refused alike.
    assert!(matches!(
        sigv4_login(&w.auth, &h, b"{ }", at),
        Err(AuthError::Signature(_))
    ));
    let forged = signed(&id, &format!("{secret}x"), b"{}", date);
    assert!(matches!(
        sigv4_login(&w.auth, &forged, b"{}", at),
        Err(AuthError::Signature(_))
    ));
    let late = at + time::Duration::minutes(16);
    assert!(matches!(
        sigv4_login(&w.auth, &h, b"{}", late),
        Err(AuthError::Signature(_))
    ));
    let bearer_prefix = ParsedKey::parse(alice_key.expose()).unwrap().prefix;
    let as_pair = signed(bearer_prefix.as_str(), alice_key.expose(), b"{}", date);
    assert!(matches!(
        sigv4_login(&w.auth, &as_pair, b"{}", at),
        Err(AuthError::Signature(_))
    ));
    // The access key ID is not a bearer key either.
    let fake = format!("{id}_{}", "0".repeat(64));
    assert!(matches!(
        w.auth
            .authenticate(Some(&ParsedKey::parse(&fake).unwrap()), None, now()),
        Err(AuthError::InvalidKey)
    ));
    // A server without the master (or with another one) accepts no pair.
    let dyn_store: Arc<dyn IdentityStore> = w.store.clone();
    let bare = Authenticator::new(dyn_store.clone(), Arc::new(Encodings::builtin()));
    assert!(sigv4_login(&bare, &h, b"{}", at).is_err());
    let other = Authenticator::new(dyn_store, Arc::new(Encodings::builtin()))
        .with_aws_master(Arc::new(highside_identity::AwsKeyMaster::generate().1));
    assert!(sigv4_login(&other, &h, b"{}", at).is_err());
    // Revocation applies to the next request.
    w.admin.revoke_key(&alice, pair.record.id.as_str()).unwrap();
    assert!(matches!(
        sigv4_login(&w.auth, &h, b"{}", at),
        Err(AuthError::Revoked)
    ));
    // Nobody gets a pair with more than they hold.
    let wide = w.admin.create_access_key(
        &alice,
        CreateKey {
            user_id: None,
            name: "wide".into(),
            scopes: Some(RoleSet::parse_list("user,operator").unwrap()),
            expires_at: None,
            kind: Some(highside_identity::KeyKind::Aws),
        },
    );
    assert_eq!(status(wide), 403);
}

fn agency_of(w: &World, name: &str, nationality: Option<&str>) -> highside_identity::AgencyId {
    w.admin
        .create_agency(
            &w.operator,
            CreateAgency {
                name: name.into(),
                branch: Branch::Executive,
                pii_action: None,
                nationality: nationality.map(Into::into),
            },
        )
        .unwrap()
        .id
}

fn new_user(
    agency: Option<&highside_identity::AgencyId>,
    name: &str,
    nationality: &str,
) -> CreateUser {
    CreateUser {
        agency_id: agency.cloned(),
        name: name.into(),
        clearance: "SECRET".into(),
        nationality: nationality.into(),
        roles: None,
    }
}

#[test]
fn nationality_is_granted_only_by_who_can_vouch_for_it() {
    let w = world();
    let gbr = agency_of(&w, "UK liaison", Some("GBR"));
    let (admin, _) = {
        let u = w
            .admin
            .create_user(
                &w.operator,
                CreateUser {
                    roles: Some(RoleSet::parse_list("agency-admin,user").unwrap()),
                    ..new_user(Some(&gbr), "uk-admin", "GBR")
                },
            )
            .unwrap();
        let k = w
            .admin
            .create_key(
                &w.operator,
                CreateKey {
                    user_id: Some(u.id),
                    name: "k".into(),
                    scopes: None,
                    expires_at: None,
                    kind: None,
                },
            )
            .unwrap();
        (login(&w.auth, &k.secret).unwrap(), k.secret)
    };
    // A GBR agency's administrator cannot make a USA national, nor become one.
    assert_eq!(
        status(w.admin.create_user(&admin, new_user(None, "fake", "USA"))),
        403
    );
    let mate = w
        .admin
        .create_user(&admin, new_user(None, "mate", "GBR"))
        .unwrap();
    let to_usa = || UpdateUser {
        nationality: Some("USA".into()),
        ..UpdateUser::default()
    };
    assert_eq!(
        status(w.admin.update_user(&admin, mate.id.as_str(), to_usa())),
        403
    );
    assert_eq!(
        status(w.admin.update_user(&admin, admin.user.as_str(), to_usa())),
        403
    );
    // Nobody changes their own, not even an operator; an operator may change anyone else's.
    assert_eq!(
        status(w.admin.update_user(
            &w.operator,
            w.operator.user.as_str(),
            UpdateUser {
                nationality: Some("GBR".into()),
                ..UpdateUser::default()
            }
        )),
        403
    );
    assert_eq!(
        w.admin
            .update_user(&w.operator, mate.id.as_str(), to_usa())
            .unwrap()
            .nationality
            .as_str(),
        "USA"
    );
    // An agency without a nationality: its administrators set none.
    let blank = agency_of(&w, "Blank", None);
    let (blank_admin, _) = {
        let u = w
            .admin
            .create_user(
                &w.operator,
                CreateUser {
                    roles: Some(RoleSet::parse_list("agency-admin,user").unwrap()),
                    ..new_user(Some(&blank), "b-admin", "USA")
                },
            )
            .unwrap();
        let k = w
            .admin
            .create_key(
                &w.operator,
                CreateKey {
                    user_id: Some(u.id),
                    name: "k".into(),
                    scopes: None,
                    expires_at: None,
                    kind: None,
                },
            )
            .unwrap();
        (login(&w.auth, &k.secret).unwrap(), k.secret)
    };
    assert_eq!(
        status(
            w.admin
                .create_user(&blank_admin, new_user(None, "x", "USA"))
        ),
        403
    );
    let set = w
        .admin
        .update_agency(
            &w.operator,
            blank.as_str(),
            UpdateAgency {
                nationality: Some("USA".into()),
                ..UpdateAgency::default()
            },
        )
        .unwrap();
    assert_eq!(set.nationality.map(|n| n.as_str()), Some("USA"));
    assert!(w
        .admin
        .create_user(&blank_admin, new_user(None, "x", "USA"))
        .is_ok());
}

fn key(
    w: &World,
    p: &Principal,
    expires_at: Option<String>,
) -> Result<highside_tenancy::Created, AdminError> {
    w.admin.create_key(
        p,
        CreateKey {
            user_id: None,
            name: "child".into(),
            scopes: None,
            expires_at,
            kind: None,
        },
    )
}

#[test]
fn a_key_never_outlives_or_escapes_the_key_that_made_it() {
    let w = world();
    let a = w.agency("A");
    let (alice, _) = w.user(&a, "alice", "user", "SECRET");
    let soon = now() + time::Duration::hours(1);
    let fmt = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let parent = key(&w, &alice, Some(fmt(soon))).unwrap();
    let child_p = login(&w.auth, &parent.secret).unwrap();
    assert_eq!(
        status(key(&w, &child_p, None)),
        403,
        "no expiry outlives the parent"
    );
    assert_eq!(
        status(key(
            &w,
            &child_p,
            Some(fmt(soon + time::Duration::hours(1)))
        )),
        403
    );
    assert!(key(&w, &child_p, Some(fmt(soon - time::Duration::minutes(10)))).is_ok());
    // A key that carries limits of its own mints none.
    let limited = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
    let l = limited.clone();
    let admin = w
        .admin
        .clone()
        .with_key_limits(Arc::new(move |k| Ok(l.lock().unwrap().contains(k))));
    let free = key(&w, &alice, None).unwrap();
    let free_p = login(&w.auth, &free.secret).unwrap();
    limited.lock().unwrap().insert(free.record.id.clone());
    let e = admin
        .create_key(
            &free_p,
            CreateKey {
                user_id: None,
                name: "c".into(),
                scopes: None,
                expires_at: None,
                kind: None,
            },
        )
        .unwrap_err();
    assert_eq!(e.status(), 403);
    assert!(e.to_string().contains("limits"), "{e}");
}

#[test]
fn limits_follow_the_rule_of_every_user_change() {
    let w = world();
    let a = w.agency("A");
    let (admin, _) = w.user(&a, "adam", "agency-admin,user", "SECRET");
    let (op_in_a, _) = w.user(&a, "opal", "operator", "SECRET");
    let (alice, alice_key) = w.user(&a, "alice", "user", "SECRET");
    let (boss, _) = w.user(&a, "boss", "agency-admin,user", "TOP SECRET");
    use highside_store::LimitScope;
    // Above the administrator: an operator of the agency, an administrator cleared higher.
    assert_eq!(
        status(
            w.admin
                .may_set_limits(&admin, LimitScope::User, op_in_a.user.as_str())
        ),
        403
    );
    assert_eq!(
        status(
            w.admin
                .may_set_limits(&admin, LimitScope::User, boss.user.as_str())
        ),
        403
    );
    let op_key = w
        .admin
        .list_keys(
            &w.operator,
            &ListQuery {
                user_id: Some(op_in_a.user.clone()),
                ..ListQuery::default()
            },
        )
        .unwrap();
    assert_eq!(
        status(
            w.admin
                .may_set_limits(&admin, LimitScope::Key, op_key.data[0].id.as_str())
        ),
        403
    );
    // Below: fine. Their own, or the agency's: not theirs.
    assert_eq!(
        w.admin
            .may_set_limits(&admin, LimitScope::User, alice.user.as_str())
            .unwrap(),
        a
    );
    let _ = alice_key;
    assert_eq!(
        status(
            w.admin
                .may_set_limits(&admin, LimitScope::User, admin.user.as_str())
        ),
        403
    );
    assert_eq!(
        status(
            w.admin
                .may_set_limits(&admin, LimitScope::Agency, a.as_str())
        ),
        403
    );
    assert!(w
        .admin
        .may_set_limits(&w.operator, LimitScope::User, op_in_a.user.as_str())
        .is_ok());
}

#[test]
fn certificate_mappings_cannot_cross_agencies_or_reveal_them() {
    let w = world();
    let a = w.agency("A");
    let b = w.agency("B");
    let (a_admin, _) = w.user(&a, "a-admin", "agency-admin,user", "SECRET");
    let (a_user, _) = w.user(&a, "a-user", "user", "SECRET");
    let (b_user, _) = w.user(&b, "victim", "user", "SECRET");
    let map = |p: &Principal, user: &UserId, kind: highside_identity::CertKind, value: &str| {
        w.admin.create_cert_mapping(
            p,
            CreateCertMapping {
                user_id: user.clone(),
                kind,
                value: value.into(),
            },
        )
    };
    use highside_identity::CertKind::{San, Subject};
    map(&w.operator, &b_user.user, Subject, "CN=victim, O=B").unwrap();
    // Another agency's value in use, and another agency's user: the same refusal.
    let in_use = map(&a_admin, &a_user.user, Subject, "CN=victim,O=B").unwrap_err();
    let cross = map(&a_admin, &b_user.user, San, "x@b.example").unwrap_err();
    assert_eq!(
        (in_use.status(), in_use.to_string()),
        (cross.status(), cross.to_string())
    );
    assert_eq!(in_use.status(), 403);
    assert_eq!(
        status(map(&w.operator, &a_user.user, Subject, "CN=victim, O=B")),
        409
    );
    // A still unmapped field of the victim's certificate mapped to A's user: the victim still
    // authenticates as themselves.
    map(&a_admin, &a_user.user, San, "victim@b.example").unwrap();
    let victim_cert = PeerCertificate {
        subject: "CN=victim, O=B".into(),
        sans: vec!["victim@b.example".into()],
    };
    assert_eq!(
        w.auth
            .authenticate(None, Some(&victim_cert), now())
            .unwrap()
            .user,
        b_user.user
    );
    // Subjects match RDN by RDN: a comma inside a CN is not a second RDN.
    let forged = PeerCertificate {
        subject: highside_identity::canonical_dn([[("CN", "victim, O=B")]]),
        sans: vec![],
    };
    assert!(matches!(
        w.auth.authenticate(None, Some(&forged), now()),
        Err(AuthError::UnmappedCertificate)
    ));
    assert_eq!(
        status(map(&a_admin, &a_user.user, Subject, "not a name")),
        400
    );
}

#[test]
fn a_key_minted_for_its_own_user_dies_with_its_parent() {
    let w = world();
    let a = w.agency("A");
    let (alice, alice_secret) = w.user(&a, "alice", "user", "SECRET");
    let child = key(&w, &alice, None).unwrap();
    let grandchild = key(&w, &login(&w.auth, &child.secret).unwrap(), None).unwrap();
    assert!(login(&w.auth, &grandchild.secret).is_ok());
    // Revoking the key alice logged in with revokes every key made from it, for her.
    w.admin
        .revoke_key(&alice, alice.key.as_ref().unwrap().as_str())
        .unwrap();
    assert!(matches!(
        login(&w.auth, &alice_secret),
        Err(AuthError::Revoked)
    ));
    assert!(matches!(
        login(&w.auth, &child.secret),
        Err(AuthError::Revoked)
    ));
    assert!(matches!(
        login(&w.auth, &grandchild.secret),
        Err(AuthError::Revoked)
    ));
    // A key an administrator issued for another user is a grant of theirs, not a key
    // derived from their own: it outlives the administrator's key.
    let (adm, _) = w.user(&a, "adm", "agency-admin,user", "SECRET");
    let (bob, _) = w.user(&a, "bob", "user", "SECRET");
    let for_bob = w
        .admin
        .create_key(
            &adm,
            CreateKey {
                user_id: Some(bob.user.clone()),
                name: "from adm".into(),
                scopes: None,
                expires_at: None,
                kind: None,
            },
        )
        .unwrap();
    w.admin
        .revoke_key(&adm, adm.key.as_ref().unwrap().as_str())
        .unwrap();
    assert_eq!(login(&w.auth, &for_bob.secret).unwrap().user, bob.user);
}

/// A key of `owner` minted with `parent`, written to the store as minting would.
fn descendant(
    w: &World,
    owner: &Principal,
    parent: &highside_store::ApiKeyRecord,
) -> (highside_store::ApiKeyRecord, ApiKeySecret) {
    let (prefix, secret) = ApiKeySecret::generate();
    let record = highside_store::ApiKeyRecord {
        id: highside_identity::KeyId::generate(),
        prefix,
        secret_hash: secret.hash(),
        user_id: owner.user.clone(),
        name: "descendant".into(),
        scopes: parent.scopes,
        expires_at: None,
        created_at: parent.created_at.clone(),
        created_by: parent.user_id.clone(),
        last_used_at: None,
        revoked_at: None,
        kind: highside_identity::KeyKind::Bearer,
        salt: None,
        parent: Some(parent.id.clone()),
    };
    w.store.insert_key(&record).unwrap();
    (record, secret)
}

#[test]
fn a_key_dies_with_its_users_ancestors_even_through_other_users_keys() {
    let w = world();
    let a = w.agency("A");
    let (alice, _) = w.user(&a, "alice", "user", "SECRET");
    let (bob, _) = w.user(&a, "bob", "user", "SECRET");
    let root = key(&w, &alice, None).unwrap();
    // alice's key, then bob's made with it, then alice's made with bob's.
    let (bobs, _) = descendant(&w, &bob, &root.record);
    let (_, alices_secret) = descendant(&w, &alice, &bobs);
    assert_eq!(login(&w.auth, &alices_secret).unwrap().user, alice.user);
    use highside_store::LimitScope;
    assert_eq!(
        status(
            w.admin
                .may_set_limits(&w.operator, LimitScope::Key, root.record.id.as_str())
        ),
        409,
        "alice's key deep below binds no limits set on its ancestor"
    );
    w.admin.revoke_key(&alice, root.record.id.as_str()).unwrap();
    assert!(matches!(
        login(&w.auth, &alices_secret),
        Err(AuthError::Revoked)
    ));
}

#[test]
fn a_key_with_children_takes_no_limits_and_a_bounded_key_maps_no_certificate() {
    let w = world();
    let a = w.agency("A");
    let (alice, _) = w.user(&a, "alice", "user", "SECRET");
    let parent = key(&w, &alice, None).unwrap();
    let _child = key(&w, &login(&w.auth, &parent.secret).unwrap(), None).unwrap();
    use highside_store::LimitScope;
    assert_eq!(
        status(
            w.admin
                .may_set_limits(&w.operator, LimitScope::Key, parent.record.id.as_str())
        ),
        409
    );
    // An administrator using an expiring key maps no certificate.
    let (adm, _) = w.user(&a, "adm", "agency-admin,user", "SECRET");
    let soon = now() + time::Duration::hours(1);
    let expiring = key(
        &w,
        &adm,
        Some(
            soon.format(&time::format_description::well_known::Rfc3339)
                .unwrap(),
        ),
    )
    .unwrap();
    let adm_expiring = login(&w.auth, &expiring.secret).unwrap();
    let m = w.admin.create_cert_mapping(
        &adm_expiring,
        CreateCertMapping {
            user_id: alice.user.clone(),
            kind: highside_identity::CertKind::San,
            value: "alice@a.example".into(),
        },
    );
    assert_eq!(status(m), 403);
}

#[test]
fn a_certificate_sent_with_a_key_must_not_be_another_user_of_its_agency() {
    let w = world();
    let a = w.agency("A");
    let b = w.agency("B");
    let (alice, alice_secret) = w.user(&a, "alice", "user", "SECRET");
    let (mallory, _) = w.user(&b, "mallory", "user", "SECRET");
    let (bob, _) = w.user(&a, "bob", "user", "SECRET");
    let map = |user: &UserId, kind, value: &str| {
        w.admin
            .create_cert_mapping(
                &w.operator,
                CreateCertMapping {
                    user_id: user.clone(),
                    kind,
                    value: value.into(),
                },
            )
            .unwrap();
    };
    map(
        &mallory.user,
        highside_identity::CertKind::San,
        "mallory@b.example",
    );
    let k = ParsedKey::parse(alice_secret.expose()).unwrap();
    let auth = |subject: &str, sans: &[&str]| {
        let cert = PeerCertificate {
            subject: subject.into(),
            sans: sans.iter().map(|s| (*s).to_owned()).collect(),
        };
        w.auth.authenticate(Some(&k), Some(&cert), now())
    };
    map(&bob.user, highside_identity::CertKind::San, "bob@a.example");
    // A certificate of another user of alice's agency, with alice's key: refused.
    assert!(matches!(
        auth("CN=bob, O=A", &["bob@a.example"]),
        Err(AuthError::Mismatch)
    ));
    // Another agency's mappings are ignored: B's administrator mapping a still unmapped
    // field of alice's certificate to mallory does not lock alice out (the key decides).
    map(
        &mallory.user,
        highside_identity::CertKind::San,
        "alice@a.example",
    );
    assert_eq!(
        auth("CN=alice, O=A", &["alice@a.example"]).unwrap().user,
        alice.user
    );
    assert_eq!(
        auth("CN=mallory, O=B", &["mallory@b.example"])
            .unwrap()
            .user,
        alice.user
    );
    map(
        &alice.user,
        highside_identity::CertKind::Subject,
        "CN=alice, O=A",
    );
    assert_eq!(
        auth("CN=alice, O=A", &["alice@a.example"]).unwrap().user,
        alice.user
    );
    // A certificate nobody mapped: the key decides.
    assert!(auth("CN=gateway", &[]).is_ok());
}
