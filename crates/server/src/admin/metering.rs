//! `/admin/v1` for metering: model prices, limits of agencies, users and keys, contract plans,
//! usage reports and invoices. Every change goes through the audited `change` path. Money
//! crosses the API as decimal dollar strings ("12.50"), never as floating point numbers.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use highside_identity::Principal;
use highside_metering::{ContractPlan, Micros, Price, Usage};
use highside_openai::ApiError;
use highside_store::{LimitScope, Limits, PlanRecord, PriceRecord};
use highside_tenancy::{Admin, AdminError};
use serde::{Deserialize, Serialize};

use crate::admin::{api_error, body, change, id, run, Change};
use crate::auth::ClientAddr;
use crate::http::HttpError;
use crate::AppState;

pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/admin/v1/prices", get(list_prices))
        .route("/admin/v1/prices/{model}", axum::routing::put(set_price))
        .route(
            "/admin/v1/limits/{scope}/{id}",
            get(get_limits).put(set_limits),
        )
        .route("/admin/v1/plans/{agency}", get(get_plan).put(set_plan))
        .route("/admin/v1/usage", get(usage_report))
        .route("/admin/v1/invoices/{agency}", get(get_invoice))
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn dollars(param: &'static str, s: &str) -> Result<Micros, AdminError> {
    let m: Micros = s
        .parse()
        .map_err(|e: highside_metering::MoneyError| AdminError::Invalid {
            message: format!("Invalid '{param}': {e}"),
            param: Some(param),
        })?;
    if m.0 < 0 {
        return Err(AdminError::Invalid {
            message: format!("Invalid '{param}': may not be negative"),
            param: Some(param),
        });
    }
    Ok(m)
}

fn store_failed(e: highside_store::StoreError) -> AdminError {
    AdminError::Store(e)
}

/// `YYYY-MM` with a real month.
fn month(param: &'static str, s: &str) -> Result<(i32, u8), ApiError> {
    let bad = || {
        ApiError::bad_request(
            format!("'{param}' must be a month such as 2026-11"),
            Some(param),
        )
    };
    let (y, m) = s.split_once('-').ok_or_else(bad)?;
    if y.len() != 4 || m.len() != 2 || !y.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let (y, m): (i32, u8) = (y.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if !(1..=12).contains(&m) {
        return Err(bad());
    }
    Ok((y, m))
}

// ---- prices ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetPrice {
    /// Dollars per million prompt tokens.
    input_per_million: String,
    /// Dollars per million generated tokens.
    output_per_million: String,
}

#[derive(Serialize)]
struct PriceView {
    model: String,
    input_per_million: String,
    output_per_million: String,
    updated_at: String,
}

impl From<PriceRecord> for PriceView {
    fn from(p: PriceRecord) -> Self {
        Self {
            model: p.model,
            input_per_million: Micros(p.input_per_million).to_string(),
            output_per_million: Micros(p.output_per_million).to_string(),
            updated_at: p.updated_at,
        }
    }
}

async fn list_prices(State(s): State<Arc<AppState>>) -> Result<Response, HttpError> {
    let st = Arc::clone(&s);
    let prices = tokio::task::spawn_blocking(move || st.service.meter().store().prices())
        .await
        .map_err(|_| ApiError::internal("the price list failed"))?
        .map_err(|e| api_error(store_failed(e)))?;
    let data: Vec<PriceView> = prices.into_iter().map(PriceView::from).collect();
    Ok(Json(serde_json::json!({ "object": "list", "data": data })).into_response())
}

async fn set_price(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<ClientAddr>,
    path: Result<Path<String>, PathRejection>,
    req: Request,
) -> Result<Response, HttpError> {
    let model = id(path)?;
    let b: SetPrice = body(&s, req).await?;
    let (q, st) = (p.clone(), Arc::clone(&s));
    change(
        &s,
        (&p, c),
        StatusCode::OK,
        "price.set",
        move |_: &Admin| {
            if !q.is_operator() {
                return Err(AdminError::Forbidden(highside_identity::Denied(
                    "only an operator may set prices".into(),
                )));
            }
            let record = PriceRecord {
                model: model.clone(),
                input_per_million: dollars("input_per_million", &b.input_per_million)?.0,
                output_per_million: dollars("output_per_million", &b.output_per_million)?.0,
                updated_at: now(),
            };
            let store = st.service.meter().store();
            let before = store
                .price(&model)
                .map_err(store_failed)?
                .map(PriceView::from);
            store.set_price(&record).map_err(store_failed)?;
            Ok(Change::new(
                &model,
                before.as_ref(),
                PriceView::from(record),
            ))
        },
    )
    .await
}

// ---- limits ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetLimits {
    requests_per_minute: Option<u64>,
    tokens_per_minute: Option<u64>,
    daily_tokens: Option<u64>,
    monthly_tokens: Option<u64>,
    /// Dollars per month.
    monthly_budget: Option<String>,
}

#[derive(Serialize)]
struct LimitsView {
    scope: LimitScope,
    subject: String,
    requests_per_minute: Option<u64>,
    tokens_per_minute: Option<u64>,
    daily_tokens: Option<u64>,
    monthly_tokens: Option<u64>,
    monthly_budget: Option<String>,
}

fn limits_view(scope: LimitScope, subject: &str, l: &Limits) -> LimitsView {
    LimitsView {
        scope,
        subject: subject.to_owned(),
        requests_per_minute: l.requests_per_minute,
        tokens_per_minute: l.tokens_per_minute,
        daily_tokens: l.daily_tokens,
        monthly_tokens: l.monthly_tokens,
        monthly_budget: l.monthly_budget.map(|m| Micros(m).to_string()),
    }
}

fn scope(s: &str) -> Result<LimitScope, ApiError> {
    match s {
        "agency" => Ok(LimitScope::Agency),
        "user" => Ok(LimitScope::User),
        "key" => Ok(LimitScope::Key),
        _ => Err(ApiError::not_found("limit scope (agency, user or key)")),
    }
}

async fn get_limits(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Response, HttpError> {
    let (sc, subject) = path
        .map(|Path(x)| x)
        .map_err(|e| ApiError::bad_request(format!("Invalid path: {e}"), None))?;
    let sc = scope(&sc)?;
    let st = Arc::clone(&s);
    run(&s, StatusCode::OK, move |a| {
        a.limits_subject(&p, sc, &subject)?;
        let l = st
            .service
            .meter()
            .store()
            .limits(sc, &subject)
            .map_err(store_failed)?
            .unwrap_or_default();
        Ok(limits_view(sc, &subject, &l))
    })
    .await
}

async fn set_limits(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<ClientAddr>,
    path: Result<Path<(String, String)>, PathRejection>,
    req: Request,
) -> Result<Response, HttpError> {
    let (sc, subject) = path
        .map(|Path(x)| x)
        .map_err(|e| ApiError::bad_request(format!("Invalid path: {e}"), None))?;
    let sc = scope(&sc)?;
    let b: SetLimits = body(&s, req).await?;
    let (q, st) = (p.clone(), Arc::clone(&s));
    change(
        &s,
        (&p, c),
        StatusCode::OK,
        "limits.set",
        move |a: &Admin| {
            // The same rule as every change to a user: never on someone who holds more.
            let agency = a.may_set_limits(&q, sc, &subject)?;
            for (name, v) in [
                ("daily_tokens", b.daily_tokens),
                ("monthly_tokens", b.monthly_tokens),
                ("requests_per_minute", b.requests_per_minute),
                ("tokens_per_minute", b.tokens_per_minute),
            ] {
                if v.is_some_and(|v| v > i64::MAX as u64) {
                    return Err(AdminError::Invalid {
                        message: format!("Invalid '{name}': too large"),
                        param: Some(name),
                    });
                }
            }
            for (name, v) in [
                ("requests_per_minute", b.requests_per_minute),
                ("tokens_per_minute", b.tokens_per_minute),
            ] {
                if v == Some(0) {
                    return Err(AdminError::Invalid {
                        message: format!(
                            "Invalid '{name}': must be at least 1 (omit it for no limit)"
                        ),
                        param: Some(name),
                    });
                }
            }
            let limits = Limits {
                requests_per_minute: b.requests_per_minute,
                tokens_per_minute: b.tokens_per_minute,
                daily_tokens: b.daily_tokens,
                monthly_tokens: b.monthly_tokens,
                monthly_budget: b
                    .monthly_budget
                    .as_deref()
                    .map(|d| dollars("monthly_budget", d).map(|m| m.0))
                    .transpose()?,
            };
            let store = st.service.meter().store();
            let before = store
                .limits(sc, &subject)
                .map_err(store_failed)?
                .map(|l| limits_view(sc, &subject, &l));
            store
                .set_limits(sc, &subject, &limits, &now())
                .map_err(store_failed)?;
            Ok(Change::new(
                format!("{}/{subject}", sc.as_str()),
                before.as_ref(),
                limits_view(sc, &subject, &limits),
            )
            .in_agency(&agency))
        },
    )
    .await
}

// ---- contract plans ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetPlan {
    /// Dollars per year.
    annual_fee: String,
    /// Tokens included each month.
    #[serde(default)]
    included_tokens: u64,
    /// Dollars per million tokens beyond the included ones (both or neither; without them
    /// each model's prices apply).
    overage_input_per_million: Option<String>,
    overage_output_per_million: Option<String>,
    /// Most a month's usage charges may come to, dollars.
    monthly_cap: Option<String>,
    /// `YYYY-MM` of the contract's first month.
    starts_on: String,
}

#[derive(Serialize)]
struct PlanView {
    agency_id: String,
    annual_fee: String,
    included_tokens: u64,
    overage_input_per_million: Option<String>,
    overage_output_per_million: Option<String>,
    monthly_cap: Option<String>,
    starts_on: String,
    updated_at: String,
}

impl From<&PlanRecord> for PlanView {
    fn from(p: &PlanRecord) -> Self {
        Self {
            agency_id: p.agency_id.clone(),
            annual_fee: Micros(p.annual_fee).to_string(),
            included_tokens: p.included_tokens,
            overage_input_per_million: p.overage.map(|o| Micros(o.0).to_string()),
            overage_output_per_million: p.overage.map(|o| Micros(o.1).to_string()),
            monthly_cap: p.monthly_cap.map(|m| Micros(m).to_string()),
            starts_on: p.starts_on.clone(),
            updated_at: p.updated_at.clone(),
        }
    }
}

/// Operators, and the agency's own administrators and auditors, see its plan and invoices
/// (the rule is `identity`'s, shared with identity administration).
async fn get_plan(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, HttpError> {
    let agency = id(path)?;
    let st = Arc::clone(&s);
    run(&s, StatusCode::OK, move |a| {
        let agency = a.get_agency(&p, &agency)?.id;
        highside_tenancy::may_read_accounts(&p, &agency)?;
        let plan = st
            .service
            .meter()
            .store()
            .plan(agency.as_str())
            .map_err(store_failed)?
            .ok_or(AdminError::NotFound("contract plan"))?;
        Ok(PlanView::from(&plan))
    })
    .await
}

async fn set_plan(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<ClientAddr>,
    path: Result<Path<String>, PathRejection>,
    req: Request,
) -> Result<Response, HttpError> {
    let agency = id(path)?;
    let b: SetPlan = body(&s, req).await?;
    month("starts_on", &b.starts_on)?;
    let (q, st) = (p.clone(), Arc::clone(&s));
    change(&s, (&p, c), StatusCode::OK, "plan.set", move |a: &Admin| {
        if !q.is_operator() {
            return Err(AdminError::Forbidden(highside_identity::Denied(
                "only an operator may set a contract plan".into(),
            )));
        }
        let agency = a.get_agency(&q, &agency)?.id;
        let overage = match (&b.overage_input_per_million, &b.overage_output_per_million) {
            (Some(i), Some(o)) => Some((
                dollars("overage_input_per_million", i)?.0,
                dollars("overage_output_per_million", o)?.0,
            )),
            (None, None) => None,
            _ => {
                return Err(AdminError::Invalid {
                    message: "give both overage rates or neither".into(),
                    param: Some("overage_output_per_million"),
                })
            }
        };
        if b.included_tokens > i64::MAX as u64 {
            return Err(AdminError::Invalid {
                message: "Invalid 'included_tokens': too large".into(),
                param: Some("included_tokens"),
            });
        }
        let record = PlanRecord {
            agency_id: agency.to_string(),
            annual_fee: dollars("annual_fee", &b.annual_fee)?.0,
            included_tokens: b.included_tokens,
            overage,
            monthly_cap: b
                .monthly_cap
                .as_deref()
                .map(|d| dollars("monthly_cap", d).map(|m| m.0))
                .transpose()?,
            starts_on: b.starts_on.clone(),
            updated_at: now(),
        };
        let store = st.service.meter().store();
        let before = store
            .plan(agency.as_str())
            .map_err(store_failed)?
            .map(|p| PlanView::from(&p));
        store.set_plan(&record).map_err(store_failed)?;
        Ok(Change::new(&agency, before.as_ref(), PlanView::from(&record)).in_agency(&agency))
    })
    .await
}

// ---- usage and invoices ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsageQuery {
    month: String,
    agency: Option<String>,
    /// agency (default), user, model or day.
    group_by: Option<String>,
}

#[derive(Serialize, Default)]
struct UsageRow {
    group: String,
    requests: u64,
    prompt_tokens: u64,
    completion_tokens: u64,
    cost: String,
    cost_micros: i64,
}

async fn usage_report(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<ClientAddr>,
    RawQuery(raw): RawQuery,
) -> Result<Response, HttpError> {
    let q: UsageQuery = serde_urlencoded::from_str(raw.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::bad_request(format!("Invalid query string: {e}"), None))?;
    month("month", &q.month)?;
    let agency = p
        .usage_report_scope(q.agency.as_deref())
        .map_err(|d| ApiError::forbidden(d.0))?
        .map(str::to_owned);
    let group_by = q.group_by.unwrap_or_else(|| "agency".into());
    if !["agency", "user", "model", "day"].contains(&group_by.as_str()) {
        return Err(ApiError::bad_request(
            "'group_by' must be agency, user, model or day",
            Some("group_by"),
        )
        .into());
    }
    crate::admin::record_read(&s, (&p, c), "usage.report", raw, agency.clone()).await?;
    let st = Arc::clone(&s);
    let month_s = q.month.clone();
    let ledger = tokio::task::spawn_blocking(move || {
        st.service
            .meter()
            .store()
            .ledger(&month_s, agency.as_deref())
    })
    .await
    .map_err(|_| ApiError::internal("the usage report failed"))?
    .map_err(|e| api_error(store_failed(e)))?;
    let mut groups: BTreeMap<String, UsageRow> = BTreeMap::new();
    for e in &ledger {
        let key = match group_by.as_str() {
            "user" => e.subjects.user.clone(),
            "model" => e.model.clone(),
            "day" => e.day.clone(),
            _ => e.subjects.agency.clone(),
        };
        let row = groups.entry(key.clone()).or_insert_with(|| UsageRow {
            group: key,
            ..UsageRow::default()
        });
        row.requests += 1;
        row.prompt_tokens += e.prompt_tokens;
        row.completion_tokens += e.completion_tokens;
        row.cost_micros = row.cost_micros.saturating_add(e.cost);
    }
    let data: Vec<UsageRow> = groups
        .into_values()
        .map(|mut r| {
            r.cost = Micros(r.cost_micros).to_string();
            r
        })
        .collect();
    Ok(Json(serde_json::json!({
        "object": "list", "month": q.month, "group_by": group_by, "data": data
    }))
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InvoiceQuery {
    month: String,
    /// json (default), csv or html.
    format: Option<String>,
}

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// CSV fields are model names and numbers; a name is quoted if it needs to be.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) || s.starts_with(['=', '+', '-', '@']) {
        // Quoted, and a leading formula character defused for spreadsheets.
        format!("\"'{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

async fn get_invoice(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    Extension(c): Extension<ClientAddr>,
    path: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
) -> Result<Response, HttpError> {
    let agency = id(path)?;
    let q: InvoiceQuery = serde_urlencoded::from_str(raw.as_deref().unwrap_or(""))
        .map_err(|e| ApiError::bad_request(format!("Invalid query string: {e}"), None))?;
    let (year, mon) = month("month", &q.month)?;
    let format = q.format.unwrap_or_else(|| "json".into());
    if !["json", "csv", "html"].contains(&format.as_str()) {
        return Err(
            ApiError::bad_request("'format' must be json, csv or html", Some("format")).into(),
        );
    }
    let st = Arc::clone(&s);
    let month_s = q.month.clone();
    let reader = p.clone();
    let made = tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
        let agency = st.admin.get_agency(&p, &agency).map_err(api_error)?;
        highside_tenancy::may_read_accounts(&p, &agency.id).map_err(api_error)?;
        let store = st.service.meter().store();
        let plan = store
            .plan(agency.id.as_str())
            .map_err(|e| api_error(store_failed(e)))?
            .ok_or_else(|| ApiError::not_found("contract plan"))?;
        let (sy, sm) = month("starts_on", &plan.starts_on)?;
        let elapsed = (year * 12 + i32::from(mon)) - (sy * 12 + i32::from(sm));
        if elapsed < 0 {
            return Err(ApiError::bad_request(
                "the contract starts after that month",
                Some("month"),
            ));
        }
        let contract_month = (elapsed % 12) as u32 + 1;
        let ledger = store
            .ledger(&month_s, Some(agency.id.as_str()))
            .map_err(|e| api_error(store_failed(e)))?;
        let usage: Vec<Usage> = ledger
            .iter()
            .map(|e| Usage {
                model: e.model.clone(),
                input_tokens: e.prompt_tokens,
                output_tokens: e.completion_tokens,
                // The prices of the time, so a later price change never rewrites a month.
                price: Some(Price {
                    input_per_million: Micros(e.input_price),
                    output_per_million: Micros(e.output_price),
                }),
            })
            .collect();
        let contract = ContractPlan {
            annual_fee: Micros(plan.annual_fee),
            included_tokens: plan.included_tokens,
            overage: plan.overage.map(|(i, o)| Price {
                input_per_million: Micros(i),
                output_per_million: Micros(o),
            }),
            monthly_cap: plan.monthly_cap.map(Micros),
        };
        let invoice = highside_metering::invoice(&contract, contract_month, &usage)
            .map_err(|e| ApiError::internal(format!("cannot make the invoice: {e}")))?;
        Ok((agency, invoice))
    })
    .await
    .map_err(|_| ApiError::internal("the invoice failed"))??;
    let (agency, inv) = made;
    crate::admin::record_read(
        &s,
        (&reader, c),
        "invoice.get",
        raw,
        Some(agency.id.to_string()),
    )
    .await?;
    let money = |m: Micros| m.to_string();
    match format.as_str() {
        "csv" => {
            let mut out =
                String::from("line,model,input_tokens,output_tokens,included_tokens,amount\n");
            out.push_str(&format!("flat_fee,,,,,{}\n", money(inv.flat_fee)));
            for l in &inv.lines {
                out.push_str(&format!(
                    "usage,{},{},{},{},{}\n",
                    csv_field(&l.model),
                    l.input_tokens,
                    l.output_tokens,
                    l.included_tokens,
                    money(l.amount)
                ));
            }
            out.push_str(&format!(
                "cap_adjustment,,,,,{}\n",
                money(inv.cap_adjustment)
            ));
            out.push_str(&format!("total,,,,,{}\n", money(inv.total)));
            Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], out).into_response())
        }
        "html" => {
            let mut rows = String::new();
            for l in &inv.lines {
                rows.push_str(&format!(
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=n>${}</td></tr>\n",
                    escape_html(&l.model),
                    l.input_tokens,
                    l.output_tokens,
                    l.included_tokens,
                    money(l.amount)
                ));
            }
            let page = format!(
                "<!doctype html>\n<html><head><meta charset=utf-8><title>Invoice {month} {name}</title>\
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #999;padding:4px 8px}}.n{{text-align:right}}</style></head>\
<body><h1>Invoice</h1><p>Agency: {name} ({id})<br>Month: {month} (contract month {cm})</p>\
<table><tr><th>Model</th><th>Input tokens</th><th>Output tokens</th><th>Included</th><th>Amount</th></tr>\n{rows}\
<tr><td colspan=4>Flat fee (1/12 of the annual fee)</td><td class=n>${fee}</td></tr>\
<tr><td colspan=4>Monthly cap adjustment</td><td class=n>${cap}</td></tr>\
<tr><th colspan=4>Total</th><th class=n>${total}</th></tr></table></body></html>\n",
                month = escape_html(&q.month),
                name = escape_html(&agency.name),
                id = escape_html(agency.id.as_str()),
                cm = inv.contract_month,
                fee = money(inv.flat_fee),
                cap = money(inv.cap_adjustment),
                total = money(inv.total),
            );
            Ok(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response())
        }
        _ => Ok(Json(serde_json::json!({
            "object": "invoice",
            "agency_id": agency.id,
            "agency_name": agency.name,
            "month": q.month,
            "contract_month": inv.contract_month,
            "flat_fee": money(inv.flat_fee),
            "lines": inv.lines.iter().map(|l| serde_json::json!({
                "model": l.model, "input_tokens": l.input_tokens, "output_tokens": l.output_tokens,
                "included_tokens": l.included_tokens, "amount": money(l.amount),
            })).collect::<Vec<_>>(),
            "usage_before_cap": money(inv.usage_before_cap),
            "cap_adjustment": money(inv.cap_adjustment),
            "total": money(inv.total),
            "total_micros": inv.total.0,
        }))
        .into_response()),
    }
}
