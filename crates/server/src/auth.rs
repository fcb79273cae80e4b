//! The one place a request becomes attributed: every route but the health checks passes
//! through [`require_principal`] before its handler runs.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use axum::extract::{ConnectInfo, Request};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use highside_identity::{parse_credentials, Principal};
use highside_openai::ApiError;
use highside_tenancy::AuthError;

use crate::http::{HttpError, Surface};
use crate::listener::ClientInfo;
use crate::AppState;

/// Bodies of signed requests read before their signature is verified, at most, at once.
static UNVERIFIED_BODIES: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(64);
/// Of those, at most this many from one client address (an IPv6 /64 is one), so slow clients
/// from a few addresses cannot hold them all. They are not also counted per access key: a
/// key ID is no secret, and whoever learned one could then hold its owner's share from
/// elsewhere and lock the owner out.
const UNVERIFIED_PER_CLIENT: u32 = 4;
/// The most time an unverified body may take to arrive (less when `body_timeout` is less):
/// shorter than a verified one's, since whoever sends it may be no one.
const UNVERIFIED_BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The address a client is counted under: an IPv4 address, or an IPv6 /64 (one host's
/// allocation; its 2^64 addresses are one client).
pub(crate) fn client_key(ip: Option<IpAddr>) -> Option<IpAddr> {
    ip.map(|ip| match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(
                u128::from(v6) & !((1u128 << 64) - 1),
            )),
        },
    })
}

/// Unverified bodies being read, per client address.
fn unverified_by_client() -> &'static Mutex<HashMap<Option<IpAddr>, u32>> {
    static M: OnceLock<Mutex<HashMap<Option<IpAddr>, u32>>> = OnceLock::new();
    M.get_or_init(Mutex::default)
}

/// One client's share of the unverified-body permits; given back on drop.
struct ClientPermit(Option<IpAddr>);

impl ClientPermit {
    fn take(holder: Option<IpAddr>) -> Option<Self> {
        let mut m = unverified_by_client()
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let n = m.entry(holder).or_insert(0);
        if *n >= UNVERIFIED_PER_CLIENT {
            return None;
        }
        *n += 1;
        Some(Self(holder))
    }
}

impl Drop for ClientPermit {
    fn drop(&mut self) {
        let mut m = unverified_by_client()
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.0) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.0);
            }
        }
    }
}

/// The throttle of failed authentications: every failure costs one of a burst of
/// `per_minute` for its client address, refilled at `per_minute` a minute, and one of the
/// node's allowance (fifty addresses' worth), so many addresses cannot make many records
/// either. A failure within both is recorded on its own and answered 401; beyond, the answer is
/// 429 and the failures are counted, then recorded as one record per address per report
/// interval, so nobody who can reach the port can fill the audit log's disk. Valid credentials
/// are never throttled.
#[derive(Debug)]
pub(crate) struct AuthThrottle {
    per_minute: f64,
    state: Mutex<Throttled>,
}

#[derive(Debug, Default)]
struct Throttled {
    buckets: HashMap<Option<IpAddr>, Bucket>,
    /// Addresses beyond the [`MAX_TRACKED`] that are tracked one by one share this one
    /// address's allowance (and report), until a clean-up makes room.
    others: Option<Bucket>,
    /// The node's allowance.
    global: Option<Bucket>,
    /// When the tracked addresses were last cleaned up.
    cleaned: Option<Instant>,
}

/// Whose allowance a failure is taken from, in [`AuthThrottle::take_refused`]'s report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Counted {
    /// One client address (an IPv6 /64), or an unknown one.
    Address(Option<IpAddr>),
    /// Every address beyond the ones tracked one by one.
    Others,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
    /// Failures refused (429) since the last report.
    refused: u64,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Self {
        Self {
            tokens: burst,
            at: now,
            refused: 0,
        }
    }

    /// Refills, then takes one if there is one.
    fn take(&mut self, burst: f64, now: Instant) -> bool {
        let refill = now.duration_since(self.at).as_secs_f64() * burst / 60.0;
        self.tokens = (self.tokens + refill).min(burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn is_full(&self, burst: f64) -> bool {
        self.tokens + self.at.elapsed().as_secs_f64() * burst / 60.0 >= burst
    }
}

/// Addresses tracked one by one at most; beyond it, addresses with nothing to report are
/// forgotten, and new ones share one allowance until there is room.
const MAX_TRACKED: usize = 65_536;
/// How often the tracked addresses may be cleaned up when there are too many.
const CLEAN_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
/// The node's allowance of failures recorded one by one, in addresses' allowances.
const GLOBAL_ADDRESSES: f64 = 50.0;

impl AuthThrottle {
    pub(crate) fn new(per_minute: u32) -> Self {
        Self {
            per_minute: f64::from(per_minute.max(1)),
            state: Mutex::default(),
        }
    }

    /// Whether one more failure from `ip` may be recorded on its own; otherwise the seconds
    /// until one may.
    fn failure(&self, ip: Option<IpAddr>) -> Result<(), u64> {
        let ip = client_key(ip);
        let burst = self.per_minute;
        let now = Instant::now();
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        // Cleaning up is linear in what is tracked, so it runs at most once a second however
        // many new addresses arrive; in between, new ones beyond the limit share one bucket.
        let crowded = !st.buckets.contains_key(&ip) && st.buckets.len() >= MAX_TRACKED;
        if crowded
            && st
                .cleaned
                .is_none_or(|t| now.duration_since(t) >= CLEAN_EVERY)
        {
            st.cleaned = Some(now);
            st.buckets.retain(|_, x| x.refused > 0 || !x.is_full(burst));
        }
        let global_burst = burst * GLOBAL_ADDRESSES;
        let Throttled {
            buckets,
            others,
            global,
            ..
        } = &mut *st;
        let bucket = if buckets.len() < MAX_TRACKED || buckets.contains_key(&ip) {
            buckets
                .entry(ip)
                .or_insert_with(|| Bucket::full(burst, now))
        } else {
            others.get_or_insert_with(|| Bucket::full(burst, now))
        };
        let global = global.get_or_insert_with(|| Bucket::full(global_burst, now));
        if bucket.take(burst, now) && global.take(global_burst, now) {
            return Ok(());
        }
        bucket.refused += 1;
        Err(((1.0 - bucket.tokens.min(global.tokens)) * 60.0 / burst)
            .ceil()
            .max(1.0) as u64)
    }

    /// The failures refused since the last call, per address (the counts are reset).
    pub(crate) fn take_refused(&self) -> Vec<(Counted, u64)> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<(Counted, u64)> = st
            .buckets
            .iter_mut()
            .filter(|(_, x)| x.refused > 0)
            .map(|(ip, x)| (Counted::Address(*ip), std::mem::take(&mut x.refused)))
            .collect();
        if let Some(n) = st.others.as_mut().map(|o| std::mem::take(&mut o.refused)) {
            if n > 0 {
                out.push((Counted::Others, n));
            }
        }
        // Addresses whose allowance is whole again are forgotten.
        let burst = self.per_minute;
        st.buckets.retain(|_, x| !x.is_full(burst));
        out
    }
}

/// Records the failures the throttle refused, one record per address.
pub(crate) async fn report_refused(state: &AppState) {
    for (who, n) in state.auth_throttle.take_refused() {
        let (client, whose) = match who {
            Counted::Address(ip) => (ip.map(|i| i.to_string()), "one address".to_owned()),
            Counted::Others => (
                None,
                format!(
                    "addresses beyond the {MAX_TRACKED} tracked one by one, which share one address's allowance"
                ),
            ),
        };
        let _ = state
            .service
            .auditor()
            .record(highside_audit::Event::AuthFailure {
                request_id: format!("auth-{}", uuid::Uuid::new_v4().simple()),
                client,
                route: "*".into(),
                reason: format!(
                    "{n} failed authentications refused with 429 (more than the allowance of {} a minute for {whose})",
                    state.config.auth_failures_per_minute
                ),
                count: Some(n),
            })
            .await;
    }
}

/// The signing name boto3's `bedrock-runtime` client uses.
const SIGV4_SERVICE: &str = "bedrock";

/// The authenticated request's client address, for audit records.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientAddr(pub Option<std::net::SocketAddr>);

fn unauthorized(message: String) -> Response {
    let mut res = HttpError(ApiError::unauthorized(message)).into_response();
    res.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    res
}

/// How a refused request is answered: OpenAI's 401, or on the Bedrock routes AWS's 403 with
/// the exception boto3 expects.
#[derive(Debug, Clone, Copy)]
enum Answer {
    OpenAi,
    /// `x-amzn-ErrorType` of the refusal.
    Aws(&'static str),
}

/// Records an authentication failure durably, then answers 401 (503 if it cannot be
/// recorded). The record names the route and reason, never the credential. An address past
/// its allowance of failures gets 429 instead, counted for the aggregate record.
async fn refuse(
    state: &AppState,
    route: String,
    client: Option<std::net::SocketAddr>,
    reason: String,
    answer: Answer,
) -> Response {
    if let Err(retry) = state.auth_throttle.failure(client.map(|c| c.ip())) {
        metrics::counter!("highside_auth_throttled_total").increment(1);
        let e = ApiError {
            code: Some("too_many_failed_authentications"),
            ..ApiError::overloaded(
                "too many failed authentications from this address; wait before trying again",
                retry,
            )
        };
        return match answer {
            Answer::Aws(_) => crate::bedrock::error_response(&e),
            Answer::OpenAi => HttpError(e).into_response(),
        };
    }
    let request_id = format!("auth-{}", uuid::Uuid::new_v4().simple());
    let recorded = state
        .service
        .auditor()
        .record(highside_audit::Event::AuthFailure {
            request_id: request_id.clone(),
            client: client.map(|c| c.to_string()),
            route,
            reason: reason.clone(),
            count: None,
        })
        .await;
    let mut res = match (recorded, answer) {
        (Ok(_), Answer::OpenAi) => unauthorized(reason),
        (Ok(_), Answer::Aws(kind)) => crate::bedrock::aws_error(403, kind, &reason),
        (Err(e), Answer::OpenAi) => HttpError(e).into_response(),
        (Err(e), Answer::Aws(_)) => crate::bedrock::error_response(&e),
    };
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        res.headers_mut().insert("x-request-id", v);
    }
    res
}

/// Authenticates the request and stores its [`Principal`] in the request extensions, or
/// answers 401. Credentials never reach a log line or an error message.
pub(crate) async fn require_principal(
    state: Arc<AppState>,
    surface: Surface,
    req: Request,
    next: Next,
) -> Response {
    let headers = req.headers();
    let auth: Vec<&[u8]> = headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect();
    let api_key: Vec<&[u8]> = headers
        .get_all("x-api-key")
        .iter()
        .map(HeaderValue::as_bytes)
        .collect();
    let client = req
        .extensions()
        .get::<ConnectInfo<ClientInfo>>()
        .map(|c| c.0.clone());
    let route = format!("{} {}", req.method(), req.uri().path());
    let addr = client.as_ref().map(|c| c.addr);
    let bedrock = surface == Surface::Bedrock;
    let answer = if bedrock {
        Answer::Aws("UnrecognizedClientException")
    } else {
        Answer::OpenAi
    };
    let certificate = client.as_ref().and_then(|c| c.certificate.clone());
    let sigv4 = auth.len() == 1 && auth[0].starts_with(b"AWS4-HMAC-SHA256 ");
    let (result, req) = if sigv4 {
        // SigV4 signs the body, so it is read before the caller is known: only for a header
        // that parses with a current date, and only so many at once.
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let amz_date = req
            .headers()
            .get("x-amz-date")
            .and_then(|v| v.to_str().ok());
        let pre = std::str::from_utf8(auth[0])
            .map_err(|_| highside_sigv4::SigError::Missing)
            .and_then(|h| highside_sigv4::precheck(h, amz_date, SIGV4_SERVICE, now));
        // Headers that change what a request is allowed or charged must be signed too, or a
        // replayed signature could carry different ones.
        let unsigned = pre
            .as_ref()
            .ok()
            .and(std::str::from_utf8(auth[0]).ok())
            .and_then(|h| {
                let signed = highside_sigv4::parse_authorization(h).ok()?.signed_headers;
                [crate::http::LABEL_HEADER, "idempotency-key"]
                    .into_iter()
                    .find(|name| {
                        req.headers().contains_key(*name) && !signed.iter().any(|s| s == name)
                    })
            });
        let pre = match (pre, unsigned) {
            (Err(e), _) => Err(e.to_string()),
            (Ok(_), Some(name)) => Err(format!(
                "the {name} header must be signed (list it in SignedHeaders)"
            )),
            (Ok(_), None) => Ok(()),
        };
        if let Err(why) = pre {
            let answer = match answer {
                Answer::Aws(_) => Answer::Aws("InvalidSignatureException"),
                a => a,
            };
            return refuse(&state, route, addr, why, answer).await;
        }
        let busy = || {
            surface.error(&ApiError::unavailable(
                "too many signed requests are being verified; retry",
            ))
        };
        let Some(_client_permit) = ClientPermit::take(client_key(addr.map(|a| a.ip()))) else {
            return busy();
        };
        // The access key must exist before its body is read: an unknown key ID fails at once,
        // like a wrong signature.
        let access_key = std::str::from_utf8(auth[0])
            .ok()
            .and_then(|h| highside_sigv4::parse_authorization(h).ok())
            .map(|a| a.access_key)
            .unwrap_or_default();
        let st = Arc::clone(&state);
        let known =
            tokio::task::spawn_blocking(move || st.auth.knows_access_key(&access_key)).await;
        match known {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => {
                let answer = match answer {
                    Answer::Aws(_) => Answer::Aws("InvalidSignatureException"),
                    a => a,
                };
                let why = highside_sigv4::SigError::Mismatch.to_string();
                return refuse(&state, route, addr, why, answer).await;
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "identity store failed during authentication");
                return surface.error(&ApiError::internal("cannot check credentials"));
            }
            Err(_) => return surface.error(&ApiError::internal("cannot check credentials")),
        }
        let Ok(_permit) = UNVERIFIED_BODIES.try_acquire() else {
            return busy();
        };
        let (parts, body) = req.into_parts();
        let bytes = match crate::http::read_body_within(
            Request::from_parts(parts.clone(), body),
            &state.config,
            state.config.body_timeout.min(UNVERIFIED_BODY_TIMEOUT),
        )
        .await
        {
            Ok(b) => b,
            Err(e) => return surface.error(&e),
        };
        let st = Arc::clone(&state);
        let (p, b) = (parts.clone(), bytes.clone());
        let result = tokio::task::spawn_blocking(move || {
            let headers: Vec<(&str, &str)> = p
                .headers
                .iter()
                .filter_map(|(n, v)| v.to_str().ok().map(|v| (n.as_str(), v)))
                .collect();
            let signed = highside_sigv4::Request {
                method: p.method.as_str(),
                path: p.uri.path(),
                query: p.uri.query().unwrap_or(""),
                headers: &headers,
                body: &b,
            };
            st.auth.authenticate_sigv4(
                &signed,
                SIGV4_SERVICE,
                certificate.as_ref(),
                time::OffsetDateTime::now_utc(),
            )
        })
        .await;
        (
            result,
            Request::from_parts(parts, axum::body::Body::from(bytes)),
        )
    } else {
        let key = match parse_credentials(&auth, &api_key) {
            Ok(k) => k,
            Err(e) => {
                tracing::info!(path = %req.uri().path(), reason = %e, "authentication failed");
                return refuse(&state, route, addr, e.to_string(), answer).await;
            }
        };
        let st = Arc::clone(&state);
        // SQLite calls block; keep them off the async workers.
        let result = tokio::task::spawn_blocking(move || {
            st.auth.authenticate(
                key.as_ref(),
                certificate.as_ref(),
                time::OffsetDateTime::now_utc(),
            )
        })
        .await;
        (result, req)
    };
    let mut req = req;
    let principal: Principal = match result {
        Ok(Ok(p)) => p,
        Ok(Err(AuthError::Store(e))) => {
            tracing::error!(error = %e, "identity store failed during authentication");
            return surface.error(&ApiError::internal("cannot check credentials"));
        }
        Ok(Err(e)) => {
            tracing::info!(
                path = %req.uri().path(),
                client = ?addr,
                reason = %e,
                "authentication failed"
            );
            let answer = match (&e, answer) {
                (AuthError::Signature(_), Answer::Aws(_)) => {
                    Answer::Aws("InvalidSignatureException")
                }
                (_, a) => a,
            };
            return refuse(&state, route, addr, e.to_string(), answer).await;
        }
        Err(e) => {
            tracing::error!(error = %e, "authentication task failed");
            return surface.error(&ApiError::internal("cannot check credentials"));
        }
    };
    tracing::debug!(
        user = %principal.user,
        agency = %principal.agency,
        key = ?principal.key,
        path = %req.uri().path(),
        "authenticated"
    );
    req.extensions_mut().insert(principal);
    req.extensions_mut().insert(ClientAddr(addr));
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(n: u32) -> Option<IpAddr> {
        Some(IpAddr::V4(std::net::Ipv4Addr::from(0x0A00_0000 + n)))
    }

    #[test]
    fn an_address_beyond_its_allowance_is_refused_and_counted() {
        let t = AuthThrottle::new(2);
        assert!(t.failure(v4(1)).is_ok());
        assert!(t.failure(v4(1)).is_ok());
        assert!(t.failure(v4(1)).is_err());
        assert!(
            t.failure(v4(2)).is_ok(),
            "another address has its own allowance"
        );
        assert_eq!(t.take_refused(), [(Counted::Address(v4(1)), 1)]);
        assert!(
            t.take_refused().is_empty(),
            "counts are reset once reported"
        );
    }

    #[test]
    fn addresses_beyond_the_tracked_ones_share_one_allowance() {
        let t = AuthThrottle::new(1);
        let n = u32::try_from(MAX_TRACKED).unwrap();
        // Each address spends its allowance (or is refused once the node's is spent), so
        // none may be forgotten yet.
        for i in 0..n {
            let _ = t.failure(v4(i));
        }
        // New addresses share one bucket rather than growing the map (or rescanning it on
        // every failure).
        for i in n..n + 100 {
            assert!(t.failure(v4(i)).is_err());
        }
        assert_eq!(t.state.lock().unwrap().buckets.len(), MAX_TRACKED);
        let refused = t.take_refused();
        assert!(
            refused.contains(&(Counted::Others, 100)),
            "{:?}",
            refused.last()
        );
        assert_eq!(refused.len(), MAX_TRACKED - 50 + 1);
    }

    #[test]
    fn an_ipv6_slash_64_is_one_client() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(Some(a)), client_key(Some(b)));
        assert_ne!(client_key(Some(a)), client_key(Some(c)));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(client_key(Some(mapped)), v4(1));
    }
}
