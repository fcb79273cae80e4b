//! `/admin/v1`: agencies, users, keys and certificate mappings. Handlers only decode, call
//! [`highside_tenancy::Admin`] off the async workers and encode; every rule lives there.

mod metering;

use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use highside_identity::Principal;
use highside_openai::{parse_json, ApiError};
use highside_tenancy::api::{
    CreateAgency, CreateCertMapping, CreateKey, CreateUser, ListQuery, UpdateAgency, UpdateUser,
};
use highside_tenancy::{Admin, AdminError};
use serde::Serialize;

use crate::auth::ClientAddr;
use crate::http::{read_body, HttpError};
use crate::AppState;

pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/admin/v1/whoami", get(whoami))
        .route("/admin/v1/agencies", get(list_agencies).post(create_agency))
        .route(
            "/admin/v1/agencies/{id}",
            get(get_agency).patch(update_agency),
        )
        .route("/admin/v1/users", get(list_users).post(create_user))
        .route("/admin/v1/users/{id}", get(get_user).patch(update_user))
        .route("/admin/v1/keys", get(list_keys).post(create_key))
        .route("/admin/v1/keys/{id}", get(get_key).delete(revoke_key))
        .route("/admin/v1/certificates", get(list_certs).post(create_cert))
        .route(
            "/admin/v1/certificates/{id}",
            get(get_cert).delete(delete_cert),
        )
        .route(
            "/admin/v1/models/{name}",
            axum::routing::patch(update_model),
        )
        .route("/admin/v1/audit", get(list_audit))
        .merge(metering::routes())
}

// ---- audit ----

/// `GET /admin/v1/audit` query: the filters of `highside audit query`, and paging by leaf index.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    agency: Option<String>,
    user: Option<String>,
    decision: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    since: Option<String>,
    until: Option<String>,
    request_id: Option<String>,
    /// Only records after this leaf index.
    after: Option<u64>,
    /// Page size, 1 to 1000 (default 100).
    limit: Option<usize>,
}

#[derive(Serialize)]
struct AuditEntry {
    index: u64,
    record: serde_json::Value,
}

#[derive(Serialize)]
struct AuditPage {
    object: &'static str,
    data: Vec<AuditEntry>,
    has_more: bool,
    last_index: Option<u64>,
}

/// Records that `who` read `action` (`audit.query`, `usage.report`, `invoice.get`) with the
/// query `target`, of `agency` (none: every agency), durably, before the answer leaves: who
/// looked at the log or at an agency's usage is itself in the log.
pub(crate) async fn record_read(
    state: &AppState,
    who: (&Principal, ClientAddr),
    action: &str,
    target: Option<String>,
    agency: Option<String>,
) -> Result<(), HttpError> {
    state
        .service
        .auditor()
        .record(highside_audit::Event::Read {
            actor: crate::audit::actor(who.0, who.1 .0),
            action: action.to_owned(),
            target: target.unwrap_or_default(),
            target_agency: agency,
        })
        .await?;
    Ok(())
}

/// Audit records, filtered (auditors; an agency's auditor sees only that agency's records).
async fn list_audit(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<ClientAddr>,
    RawQuery(raw): RawQuery,
) -> Result<Response, HttpError> {
    if !(p.is_operator() || p.roles.contains(highside_identity::Role::Auditor)) {
        return Err(ApiError::forbidden("reading the audit log needs the auditor role").into());
    }
    let q: AuditQuery = serde_urlencoded::from_str(raw.as_deref().unwrap_or("")).map_err(|e| {
        HttpError(ApiError::bad_request(
            format!("Invalid query string: {e}"),
            None,
        ))
    })?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request("'limit' must be 1 to 1000", Some("limit")).into());
    }
    let mut agency = q.agency;
    if !p.is_operator() {
        let own = p.agency.to_string();
        if agency.as_ref().is_some_and(|a| *a != own) {
            return Err(ApiError::forbidden(
                "an agency's auditor reads only that agency's records",
            )
            .into());
        }
        agency = Some(own);
    }
    let matcher = highside_audit::Filter {
        agency: agency.clone(),
        user: q.user,
        decision: q.decision,
        kind: q.kind,
        since: q.since,
        until: q.until,
        request_id: q.request_id,
    }
    .compile()
    .map_err(|e| ApiError::bad_request(e.to_string(), None))?;
    let after = q.after;
    record_read(&s, (&p, c), "audit.query", raw, agency.clone()).await?;
    let st = Arc::clone(&s);
    let page = tokio::task::spawn_blocking(move || {
        let audit = st.service.auditor();
        let mut data = Vec::new();
        let mut has_more = false;
        // The live log may end in a half-written entry: read up to it.
        highside_audit::scan(audit.dir(), audit.public_key(), true, |i, payload| {
            if after.is_some_and(|a| i <= a) || has_more || !matcher.matches(payload) {
                return;
            }
            if data.len() == limit {
                has_more = true;
                return;
            }
            if let Ok(record) = serde_json::from_slice(payload) {
                data.push(AuditEntry { index: i, record });
            }
        })
        .map(|_| AuditPage {
            object: "list",
            last_index: data.last().map(|e| e.index),
            data,
            has_more,
        })
    })
    .await
    .map_err(|_| ApiError::internal("the audit query failed"))?
    .map_err(|e| {
        tracing::error!(error = %e, "audit log does not verify");
        ApiError::internal(format!("the audit log does not verify: {e}"))
    })?;
    Ok(Json(page).into_response())
}

// ---- models ----

/// `PATCH /admin/v1/models/{name}`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateModel {
    /// The new accreditation, e.g. `SECRET//NOFORN`; never above the system high.
    label: String,
}

#[derive(Serialize)]
struct ModelLabel {
    name: String,
    label: String,
}

/// Changes a model's accreditation (operators only): the catalog first, then the running
/// engine's, so the next request is decided against the new label.
async fn update_model(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<ClientAddr>,
    path: Result<Path<String>, PathRejection>,
    req: Request,
) -> Result<Response, HttpError> {
    let name = id(path)?;
    if !p.is_operator() {
        return Err(
            ApiError::forbidden("only an operator may change a model's accreditation").into(),
        );
    }
    let body: UpdateModel = body(&s, req).await?;
    let label = s
        .encodings()
        .parse_accreditation(&body.label)
        .map_err(|e| ApiError {
            code: Some("invalid_label"),
            ..ApiError::bad_request(format!("Invalid 'label': {e}"), Some("label"))
        })?;
    let banner = s.encodings().banner(&label);
    let st = Arc::clone(&s);
    let actor = crate::audit::actor(&p, c.0);
    let operator = p.user.clone();
    // Catalog, running engine and record on one blocking task, which runs to its end even if
    // the client hangs up: the change is never left unrecorded.
    let record = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        let record = st
            .catalog
            .set_model_label(&name, &banner)
            .map_err(|e| match e {
                highside_store::StoreError::UnknownModel(_) => ApiError::not_found("model"),
                e => {
                    tracing::error!(error = %e, "catalog failed");
                    ApiError::internal("the catalog failed")
                }
            })?;
        let mut before = serde_json::Value::Null;
        if let Some(m) = st.service.registry().get(&name) {
            let old = m.accreditation().banner;
            m.set_accreditation(crate::Accreditation {
                label,
                banner: banner.clone(),
            });
            tracing::info!(operator = %operator, model = %name, before = %old, after = %banner, "model accreditation changed");
            before = serde_json::json!({ "label": old });
        } else if let Some(m) = st.service.registry().embedding(&name) {
            let mut a = m.accreditation.write().unwrap_or_else(|p| p.into_inner());
            before = serde_json::json!({ "label": a.banner });
            *a = crate::Accreditation {
                label,
                banner: banner.clone(),
            };
        }
        st.service
            .auditor()
            .record_blocking(highside_audit::Event::Admin {
                actor,
                action: "model.label".into(),
                target: name.clone(),
                before,
                after: serde_json::json!({ "label": record.label }),
                denied: None,
                target_agency: None,
            })?;
        Ok(record)
    })
    .await
    .map_err(|_| ApiError::internal("the catalog update failed"))??;
    Ok(Json(ModelLabel {
        name: record.name,
        label: record.label,
    })
    .into_response())
}

pub(crate) fn api_error(e: AdminError) -> ApiError {
    match e {
        AdminError::Invalid { message, param } => ApiError::bad_request(message, param),
        AdminError::Forbidden(d) => ApiError::forbidden(d.0),
        AdminError::NotFound(what) => ApiError::not_found(what),
        AdminError::Conflict(m) => ApiError::conflict(m),
        AdminError::Store(e) => {
            tracing::error!(error = %e, "identity store failed");
            ApiError::internal("the identity store failed")
        }
    }
}

/// Runs an admin operation on a blocking thread (SQLite calls block) and encodes its result.
pub(crate) async fn run<T, F>(
    state: &Arc<AppState>,
    status: StatusCode,
    op: F,
) -> Result<Response, HttpError>
where
    T: Serialize + Send + 'static,
    F: FnOnce(&Admin) -> Result<T, AdminError> + Send + 'static,
{
    let st = Arc::clone(state);
    let out = tokio::task::spawn_blocking(move || op(&st.admin))
        .await
        .map_err(|_| ApiError::internal("the admin operation failed"))?
        .map_err(api_error)?;
    Ok((status, Json(out)).into_response())
}

/// A change as the audit log records it: what was done to which target, before and after.
pub(crate) struct Change<T> {
    /// The answer.
    pub(crate) out: T,
    pub(crate) target: String,
    pub(crate) before: serde_json::Value,
    pub(crate) after: serde_json::Value,
    /// The agency the changed object belongs to.
    pub(crate) target_agency: Option<String>,
}

impl<T: Serialize> Change<T> {
    /// A change whose answer is the state after it.
    pub(crate) fn new(target: impl ToString, before: Option<&impl Serialize>, out: T) -> Self {
        let after = serde_json::to_value(&out).unwrap_or(serde_json::Value::Null);
        Self {
            target: target.to_string(),
            before: before
                .and_then(|b| serde_json::to_value(b).ok())
                .unwrap_or(serde_json::Value::Null),
            after,
            out,
            target_agency: None,
        }
    }

    /// The change affects an object of `agency`.
    pub(crate) fn in_agency(mut self, agency: impl ToString) -> Self {
        self.target_agency = Some(agency.to_string());
        self
    }
}

/// Runs a change on a blocking thread, then makes its audit record durable before answering.
/// If the record cannot be written the change stands but the node stops serving (503).
pub(crate) async fn change<T, F>(
    state: &Arc<AppState>,
    who: (&Principal, ClientAddr),
    status: StatusCode,
    action: &'static str,
    op: F,
) -> Result<Response, HttpError>
where
    T: Serialize + Send + 'static,
    F: FnOnce(&Admin) -> Result<Change<T>, AdminError> + Send + 'static,
{
    let st = Arc::clone(state);
    let actor = crate::audit::actor(who.0, who.1 .0);
    // The change and its record run on one blocking task, which runs to its end even if the
    // client hangs up: a committed change is always recorded.
    let out = tokio::task::spawn_blocking(move || -> Result<T, ApiError> {
        let audit = st.service.auditor();
        match op(&st.admin) {
            Ok(c) => {
                audit.record_blocking(highside_audit::Event::Admin {
                    actor,
                    action: action.to_owned(),
                    target: c.target,
                    before: c.before,
                    after: c.after,
                    denied: None,
                    target_agency: c.target_agency,
                })?;
                Ok(c.out)
            }
            Err(AdminError::Forbidden(d)) => {
                // An attempt the rules refused (granting more than one holds, crossing the
                // agency wall) is recorded too: nothing changed, but someone tried.
                audit.record_blocking(highside_audit::Event::Admin {
                    actor,
                    action: action.to_owned(),
                    target: String::new(),
                    before: serde_json::Value::Null,
                    after: serde_json::Value::Null,
                    denied: Some(d.0.clone()),
                    target_agency: None,
                })?;
                Err(api_error(AdminError::Forbidden(d)))
            }
            Err(e) => Err(api_error(e)),
        }
    })
    .await
    .map_err(|_| ApiError::internal("the admin operation failed"))??;
    Ok((status, Json(out)).into_response())
}

pub(crate) fn id(path: Result<Path<String>, PathRejection>) -> Result<String, HttpError> {
    path.map(|Path(id)| id)
        .map_err(|e| HttpError(ApiError::bad_request(format!("Invalid path: {e}"), None)))
}

fn query(raw: Option<String>) -> Result<ListQuery, HttpError> {
    serde_urlencoded::from_str(raw.as_deref().unwrap_or("")).map_err(|e| {
        HttpError(ApiError::bad_request(
            format!("Invalid query string: {e}"),
            None,
        ))
    })
}

pub(crate) async fn body<T: serde::de::DeserializeOwned>(
    state: &AppState,
    req: Request,
) -> Result<T, HttpError> {
    let bytes = read_body(req, &state.config).await?;
    Ok(parse_json(&bytes)?)
}

#[derive(Serialize)]
struct WhoAmI {
    user_id: String,
    user_name: String,
    agency_id: String,
    roles: highside_identity::RoleSet,
    clearance: String,
    nationality: String,
    key_id: Option<String>,
}

async fn whoami(Extension(p): Extension<Principal>) -> Response {
    Json(WhoAmI {
        user_id: p.user.to_string(),
        user_name: p.user_name.clone(),
        agency_id: p.agency.to_string(),
        roles: p.roles,
        clearance: p.clearance.to_string(),
        nationality: p.nationality.to_string(),
        key_id: p.key.as_ref().map(ToString::to_string),
    })
    .into_response()
}

// ---- agencies ----

async fn list_agencies(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    RawQuery(q): RawQuery,
) -> Result<Response, HttpError> {
    let q = query(q)?;
    run(&s, StatusCode::OK, move |a| a.list_agencies(&p, &q)).await
}

async fn create_agency(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<ClientAddr>,
    req: Request,
) -> Result<Response, HttpError> {
    let b: CreateAgency = body(&s, req).await?;
    let q = p.clone();
    change(
        &s,
        (&p, c),
        StatusCode::CREATED,
        "agency.create",
        move |a| {
            let r = a.create_agency(&q, b)?;
            let agency = r.id.to_string();
            Ok(Change::new(r.id.clone(), None::<&()>, r).in_agency(agency))
        },
    )
    .await
}

async fn get_agency(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, HttpError> {
    let id = id(path)?;
    run(&s, StatusCode::OK, move |a| a.get_agency(&p, &id)).await
}

async fn update_agency(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<ClientAddr>,
    path: Result<Path<String>, PathRejection>,
    req: Request,
) -> Result<Response, HttpError> {
    let id = id(path)?;
    let b: UpdateAgency = body(&s, req).await?;
    let q = p.clone();
    change(&s, (&p, c), StatusCode::OK, "agency.update", move |a| {
        let before = a.get_agency(&q, &id)?;
        let r = a.update_agency(&q, &id, b)?;
        Ok(Change::new(&id, Some(&before), r).in_agency(&id))
    })
    .await
}

// ---- users ----

async fn list_users(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    RawQuery(q): RawQuery,
) -> Result<Response, HttpError> {
    let q = query(q)?;
    run(&s, StatusCode::OK, move |a| a.list_users(&p, &q)).await
}

async fn create_user(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<ClientAddr>,
    req: Request,
) -> Result<Response, HttpError> {
    let b: CreateUser = body(&s, req).await?;
    let q = p.clone();
    change(&s, (&p, c), StatusCode::CREATED, "user.create", move |a| {
        let r = a.create_user(&q, b)?;
        let agency = r.agency_id.to_string();
        Ok(Change::new(r.id.clone(), None::<&()>, r).in_agency(agency))
    })
    .await
}

async fn get_user(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, HttpError> {
    let id = id(path)?;
    run(&s, StatusCode::OK, move |a| a.get_user(&p, &id)).await
}

async fn update_user(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<ClientAddr>,
    path: Result<Path<String>, PathRejection>,
    req: Request,
) -> Result<Response, HttpError> {
    let id = id(path)?;
    let b: UpdateUser = body(&s, req).await?;
    let q = p.clone();
    change(&s, (&p, c), StatusCode::OK, "user.update", move |a| {
        let before = a.get_user(&q, &id)?;
        let r = a.update_user(&q, &id, b)?;
        let agency = before.agency_id.to_string();
        Ok(Change::new(id, Some(&before), r).in_agency(agency))
    })
    .await
}

// ---- keys ----

/// A new key: its record plus the secret, which is never shown again.
#[derive(Serialize)]
struct CreatedKey {
    #[serde(flatten)]
    record: highside_store::ApiKeyRecord,
    /// A bearer key.
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    /// An access key pair: the ID (the key's prefix) and the secret access key.
    #[serde(skip_serializing_if = "Option::is_none")]
    access_key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret_access_key: Option<String>,
}

async fn list_keys(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    RawQuery(q): RawQuery,
) -> Result<Response, HttpError> {
    let q = query(q)?;
    run(&s, StatusCode::OK, move |a| a.list_keys(&p, &q)).await
}

async fn create_key(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<ClientAddr>,
    req: Request,
) -> Result<Response, HttpError> {
    let b: CreateKey = body(&s, req).await?;
    let q = p.clone();
    change(&s, (&p, c), StatusCode::CREATED, "key.create", move |a| {
        let out = if b.kind == Some(highside_identity::KeyKind::Aws) {
            let created = a.create_access_key(&q, b)?;
            CreatedKey {
                key: None,
                access_key_id: Some(created.record.prefix.to_string()),
                secret_access_key: Some(created.secret.expose().to_owned()),
                record: created.record,
            }
        } else {
            let created = a.create_key(&q, b)?;
            CreatedKey {
                key: Some(created.secret.expose().to_owned()),
                access_key_id: None,
                secret_access_key: None,
                record: created.record,
            }
        };
        let record = &out.record;
        tracing::info!(key = %record.id, prefix = %record.prefix, kind = record.kind.as_str(), owner = %record.user_id, by = %q.user, "key created");
        // The record never holds the secret: the store does not serialize its hash or salt.
        let mut c = Change::new(record.id.clone(), None::<&()>, ());
        c.after = serde_json::to_value(record).unwrap_or_default();
        let agency = a
            .get_user(&q, record.user_id.as_str())
            .ok()
            .map(|u| u.agency_id.to_string());
        Ok(Change {
            out,
            target: c.target,
            before: c.before,
            after: c.after,
            target_agency: agency,
        })
    })
    .await
}

async fn get_key(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, HttpError> {
    let id = id(path)?;
    run(&s, StatusCode::OK, move |a| a.get_key(&p, &id)).await
}

async fn revoke_key(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<ClientAddr>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, HttpError> {
    let id = id(path)?;
    let q = p.clone();
    change(&s, (&p, c), StatusCode::OK, "key.revoke", move |a| {
        let before = a.get_key(&q, &id)?;
        let key = a.revoke_key(&q, &id)?;
        tracing::info!(key = %key.id, by = %q.user, "key revoked");
        let mut c = Change::new(id, Some(&before), key);
        c.target_agency = a
            .get_user(&q, before.user_id.as_str())
            .ok()
            .map(|u| u.agency_id.to_string());
        Ok(c)
    })
    .await
}

// ---- certificate mappings ----

async fn list_certs(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    RawQuery(q): RawQuery,
) -> Result<Response, HttpError> {
    let q = query(q)?;
    run(&s, StatusCode::OK, move |a| a.list_cert_mappings(&p, &q)).await
}

async fn create_cert(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<ClientAddr>,
    req: Request,
) -> Result<Response, HttpError> {
    let b: CreateCertMapping = body(&s, req).await?;
    let q = p.clone();
    change(
        &s,
        (&p, c),
        StatusCode::CREATED,
        "certificate.create",
        move |a| {
            let r = a.create_cert_mapping(&q, b)?;
            let agency = a
                .get_user(&q, r.user_id.as_str())
                .ok()
                .map(|u| u.agency_id.to_string());
            let mut c = Change::new(r.id.clone(), None::<&()>, r);
            c.target_agency = agency;
            Ok(c)
        },
    )
    .await
}

async fn get_cert(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, HttpError> {
    let id = id(path)?;
    run(&s, StatusCode::OK, move |a| a.get_cert_mapping(&p, &id)).await
}

async fn delete_cert(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<ClientAddr>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, HttpError> {
    let id = id(path)?;
    let q = p.clone();
    change(
        &s,
        (&p, c),
        StatusCode::OK,
        "certificate.delete",
        move |a| {
            let before = a.get_cert_mapping(&q, &id)?;
            let r = a.delete_cert_mapping(&q, &id)?;
            let agency = a
                .get_user(&q, before.user_id.as_str())
                .ok()
                .map(|u| u.agency_id.to_string());
            let mut c = Change::new(id, Some(&before), r);
            c.after = serde_json::Value::Null;
            c.target_agency = agency;
            Ok(c)
        },
    )
    .await
}
