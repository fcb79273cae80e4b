//! `/admin/v1`: agencies, users, keys and certificate mappings. Handlers only decode, call
//! [`highside_tenancy::Admin`] off the async workers and encode; every rule lives there.

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
    let (n, b) = (name.clone(), banner.clone());
    let record = tokio::task::spawn_blocking(move || st.catalog.set_model_label(&n, &b))
        .await
        .map_err(|_| ApiError::internal("the catalog update failed"))?
        .map_err(|e| match e {
            highside_store::StoreError::UnknownModel(_) => ApiError::not_found("model"),
            e => {
                tracing::error!(error = %e, "catalog failed");
                ApiError::internal("the catalog failed")
            }
        })?;
    if let Some(m) = s.service.registry().get(&name) {
        let before = m.accreditation().banner;
        m.set_accreditation(crate::Accreditation {
            label,
            banner: banner.clone(),
        });
        tracing::info!(operator = %p.user, model = %name, %before, after = %banner, "model accreditation changed");
    }
    Ok(Json(ModelLabel {
        name: record.name,
        label: record.label,
    })
    .into_response())
}

fn api_error(e: AdminError) -> ApiError {
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
async fn run<T, F>(state: &Arc<AppState>, status: StatusCode, op: F) -> Result<Response, HttpError>
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

fn id(path: Result<Path<String>, PathRejection>) -> Result<String, HttpError> {
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

async fn body<T: serde::de::DeserializeOwned>(
    state: &AppState,
    req: Request,
) -> Result<T, HttpError> {
    let bytes = read_body(req, state.config.max_body_bytes).await?;
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
    req: Request,
) -> Result<Response, HttpError> {
    let b: CreateAgency = body(&s, req).await?;
    run(&s, StatusCode::CREATED, move |a| a.create_agency(&p, b)).await
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
    path: Result<Path<String>, PathRejection>,
    req: Request,
) -> Result<Response, HttpError> {
    let id = id(path)?;
    let b: UpdateAgency = body(&s, req).await?;
    run(&s, StatusCode::OK, move |a| a.update_agency(&p, &id, b)).await
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
    req: Request,
) -> Result<Response, HttpError> {
    let b: CreateUser = body(&s, req).await?;
    run(&s, StatusCode::CREATED, move |a| a.create_user(&p, b)).await
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
    path: Result<Path<String>, PathRejection>,
    req: Request,
) -> Result<Response, HttpError> {
    let id = id(path)?;
    let b: UpdateUser = body(&s, req).await?;
    run(&s, StatusCode::OK, move |a| a.update_user(&p, &id, b)).await
}

// ---- keys ----

/// A new key: its record plus the secret, which is never shown again.
#[derive(Serialize)]
struct CreatedKey {
    #[serde(flatten)]
    record: highside_store::ApiKeyRecord,
    key: String,
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
    req: Request,
) -> Result<Response, HttpError> {
    let b: CreateKey = body(&s, req).await?;
    run(&s, StatusCode::CREATED, move |a| {
        let created = a.create_key(&p, b)?;
        tracing::info!(key = %created.record.id, prefix = %created.record.prefix, owner = %created.record.user_id, by = %p.user, "key created");
        Ok(CreatedKey {
            key: created.secret.expose().to_owned(),
            record: created.record,
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
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, HttpError> {
    let id = id(path)?;
    run(&s, StatusCode::OK, move |a| {
        let key = a.revoke_key(&p, &id)?;
        tracing::info!(key = %key.id, by = %p.user, "key revoked");
        Ok(key)
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
    req: Request,
) -> Result<Response, HttpError> {
    let b: CreateCertMapping = body(&s, req).await?;
    run(&s, StatusCode::CREATED, move |a| {
        a.create_cert_mapping(&p, b)
    })
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
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, HttpError> {
    let id = id(path)?;
    run(&s, StatusCode::OK, move |a| a.delete_cert_mapping(&p, &id)).await
}
