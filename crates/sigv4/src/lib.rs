//! Verification of AWS Signature Version 4 (`AWS4-HMAC-SHA256` in the `Authorization`
//! header), as the AWS SDKs sign requests, so `boto3`'s `bedrock-runtime` client can talk to
//! Highside unchanged. Pure: the caller supplies the request as received, the secret of the
//! access key it names and the time. Checked against requests signed by botocore
//! (`tests/fixtures/sigv4.jsonl`).
#![forbid(unsafe_code)]

use ring::{digest, hmac};

/// The only algorithm accepted.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// How far the request's time may be from the server's (AWS allows 15 minutes).
pub const MAX_SKEW_SECS: i64 = 15 * 60;

/// Why a request's signature is not accepted. Messages never include the secret or the
/// expected signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigError {
    /// No `Authorization` header, or not SigV4.
    #[error("the request is not signed with AWS Signature Version 4")]
    Missing,
    /// The `Authorization` header does not parse.
    #[error("the Authorization header is malformed: {0}")]
    Malformed(&'static str),
    /// `X-Amz-Date` is missing, malformed or does not match the credential scope's date.
    #[error("the request date is missing or does not match the credential scope")]
    Date,
    /// The request time is too far from the server's.
    #[error("the request time is more than 15 minutes from the server's time")]
    Skew,
    /// A header the signature must cover (host, x-amz-date) is not signed, or a signed
    /// header is absent.
    #[error("the signed headers must include host and x-amz-date, and every signed header must be present")]
    Headers,
    /// The scope names another service.
    #[error("the credential scope is for another service")]
    Service,
    /// The signature does not match.
    #[error("the request signature we calculated does not match the signature you provided")]
    Mismatch,
    /// `x-amz-content-sha256` is not the body's digest (`UNSIGNED-PAYLOAD` included): the
    /// signature must cover the body the server acts on.
    #[error("the x-amz-content-sha256 header does not match the request body")]
    Payload,
}

/// The parsed `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    /// The access key ID.
    pub access_key: String,
    /// `YYYYMMDD` of the scope.
    pub date: String,
    /// The region of the scope.
    pub region: String,
    /// The service of the scope.
    pub service: String,
    /// Signed header names, lowercase, as listed.
    pub signed_headers: Vec<String>,
    /// The signature.
    pub signature: Vec<u8>,
}

/// Parses `AWS4-HMAC-SHA256 Credential=AKID/20261123/region/service/aws4_request,
/// SignedHeaders=a;b, Signature=hex`.
pub fn parse_authorization(value: &str) -> Result<Authorization, SigError> {
    let rest = value
        .strip_prefix(ALGORITHM)
        .and_then(|r| r.strip_prefix(' '))
        .ok_or(SigError::Missing)?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (k, v) = part
            .trim()
            .split_once('=')
            .ok_or(SigError::Malformed("a component is not key=value"))?;
        let slot = match k {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed,
            "Signature" => &mut signature,
            _ => return Err(SigError::Malformed("unknown component")),
        };
        if slot.replace(v).is_some() {
            return Err(SigError::Malformed("a component is repeated"));
        }
    }
    let credential = credential.ok_or(SigError::Malformed("no Credential"))?;
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key, date, region, service, "aws4_request"] = scope[..] else {
        return Err(SigError::Malformed(
            "the credential scope is not key/date/region/service/aws4_request",
        ));
    };
    if access_key.is_empty() || region.is_empty() || service.is_empty() {
        return Err(SigError::Malformed("an empty credential component"));
    }
    if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SigError::Malformed("the scope date is not YYYYMMDD"));
    }
    let signed_headers: Vec<String> = signed
        .ok_or(SigError::Malformed("no SignedHeaders"))?
        .split(';')
        .map(str::to_owned)
        .collect();
    if signed_headers
        .iter()
        .any(|h| h.is_empty() || h.bytes().any(|b| b.is_ascii_uppercase()))
    {
        return Err(SigError::Malformed("signed header names must be lowercase"));
    }
    let signature = signature.ok_or(SigError::Malformed("no Signature"))?;
    if signature.len() != 64 {
        return Err(SigError::Malformed("the signature is not 64 hex digits"));
    }
    let signature =
        hex::decode(signature).map_err(|_| SigError::Malformed("the signature is not hex"))?;
    Ok(Authorization {
        access_key: access_key.to_owned(),
        date: date.to_owned(),
        region: region.to_owned(),
        service: service.to_owned(),
        signed_headers,
        signature,
    })
}

/// A request as the server received it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// `POST`, ...
    pub method: &'a str,
    /// The path exactly as received (still percent-encoded).
    pub path: &'a str,
    /// The query string exactly as received, without `?`.
    pub query: &'a str,
    /// Every header (any case; repeated names allowed).
    pub headers: &'a [(&'a str, &'a str)],
    /// The body.
    pub body: &'a [u8],
}

/// RFC 3986 unreserved characters pass; everything else is %XX (uppercase), `/` kept when
/// asked (paths).
fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The canonical URI of a non-S3 service: the received path encoded once more (so `%3A`
/// becomes `%253A`), as the SDKs compute it.
fn canonical_uri(path: &str) -> String {
    if path.is_empty() {
        return "/".into();
    }
    uri_encode(path, true)
}

/// Pairs sorted by name then value, each kept as received (the SDKs sign the encoded form).
fn canonical_query(query: &str) -> String {
    if query.is_empty() {
        return String::new();
    }
    let mut pairs: Vec<(&str, &str)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect();
    pairs.sort_unstable();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA256, data))
}

/// HMAC-SHA256 of `data` under `key`.
fn mac(key: &[u8], data: &str) -> hmac::Tag {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data.as_bytes())
}

/// The signing key of `secret` for a date, region and service: the HMAC chain of SigV4.
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> hmac::Key {
    let k_date = mac(format!("AWS4{secret}").as_bytes(), date);
    let k_region = mac(k_date.as_ref(), region);
    let k_service = mac(k_region.as_ref(), service);
    let k_signing = mac(k_service.as_ref(), "aws4_request");
    hmac::Key::new(hmac::HMAC_SHA256, k_signing.as_ref())
}

/// The canonical request and the string to sign of `req` under `auth`, or why not.
pub fn string_to_sign(
    req: &Request<'_>,
    auth: &Authorization,
    amz_date: &str,
) -> Result<String, SigError> {
    let mut canonical_headers = String::new();
    for name in &auth.signed_headers {
        let values: Vec<String> = req
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        if values.is_empty() {
            return Err(SigError::Headers);
        }
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    let payload = req
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("x-amz-content-sha256"))
        .map_or_else(|| sha256_hex(req.body), |(_, v)| (*v).to_owned());
    let canonical = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method,
        canonical_uri(req.path),
        canonical_query(req.query),
        canonical_headers,
        auth.signed_headers.join(";"),
        payload
    );
    let scope = format!(
        "{}/{}/{}/aws4_request",
        auth.date, auth.region, auth.service
    );
    Ok(format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical.as_bytes())
    ))
}

/// Seconds since the Unix epoch of `YYYYMMDDTHHMMSSZ`.
fn amz_date_secs(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        if t.bytes().all(|c| c.is_ascii_digit()) {
            t.parse().ok()
        } else {
            None
        }
    };
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, se) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * (if mo > 2 { mo - 3 } else { mo + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + se)
}

/// The checks that need neither the body nor a key: the `Authorization` header parses, names
/// `service`, and `X-Amz-Date` matches its scope and is within the allowed skew of `now`. A
/// server runs them before it buffers the body of an unauthenticated request.
pub fn precheck(
    authorization: &str,
    amz_date: Option<&str>,
    service: &str,
    now: i64,
) -> Result<Authorization, SigError> {
    let auth = parse_authorization(authorization)?;
    if auth.service != service {
        return Err(SigError::Service);
    }
    let amz_date = amz_date.ok_or(SigError::Date)?;
    if amz_date.get(..8) != Some(auth.date.as_str()) {
        return Err(SigError::Date);
    }
    let t = amz_date_secs(amz_date).ok_or(SigError::Date)?;
    if (t - now).abs() > MAX_SKEW_SECS {
        return Err(SigError::Skew);
    }
    Ok(auth)
}

/// Verifies `req`'s SigV4 signature for `service` with the secret of the access key it names
/// (`secret_of` returns `None` for an unknown key), at `now` (Unix seconds). Returns the
/// parsed authorization (the access key ID, the region) on success.
pub fn verify(
    req: &Request<'_>,
    service: &str,
    now: i64,
    secret_of: impl FnOnce(&str) -> Option<String>,
) -> Result<Authorization, SigError> {
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    };
    let auth = parse_authorization(header("authorization").ok_or(SigError::Missing)?)?;
    if auth.service != service {
        return Err(SigError::Service);
    }
    if !auth.signed_headers.iter().any(|h| h == "host")
        || !auth.signed_headers.iter().any(|h| h == "x-amz-date")
    {
        return Err(SigError::Headers);
    }
    let amz_date = header("x-amz-date").ok_or(SigError::Date)?;
    if amz_date.get(..8) != Some(auth.date.as_str()) {
        return Err(SigError::Date);
    }
    let t = amz_date_secs(amz_date).ok_or(SigError::Date)?;
    if (t - now).abs() > MAX_SKEW_SECS {
        return Err(SigError::Skew);
    }
    if let Some(declared) = header("x-amz-content-sha256") {
        if !declared.eq_ignore_ascii_case(&sha256_hex(req.body)) {
            return Err(SigError::Payload);
        }
    }
    // An unknown key fails exactly like a wrong signature.
    let secret = secret_of(&auth.access_key).ok_or(SigError::Mismatch)?;
    let to_sign = string_to_sign(req, &auth, amz_date)?;
    let key = signing_key(&secret, &auth.date, &auth.region, &auth.service);
    hmac::verify(&key, to_sign.as_bytes(), &auth.signature).map_err(|_| SigError::Mismatch)?;
    Ok(auth)
}

/// The `Authorization` header value for `req` signed by `access_key`/`secret` in `region` for
/// `service` at `amz_date` (`YYYYMMDDTHHMMSSZ`), signing every header `req` carries. The
/// request must already carry `host` and `x-amz-date: amz_date`. For clients and tests.
pub fn sign(
    req: &Request<'_>,
    access_key: &str,
    secret: &str,
    region: &str,
    service: &str,
    amz_date: &str,
) -> Result<String, SigError> {
    let date = amz_date.get(..8).ok_or(SigError::Date)?;
    let mut signed_headers: Vec<String> = req
        .headers
        .iter()
        .map(|(n, _)| n.to_ascii_lowercase())
        .filter(|n| n != "authorization")
        .collect();
    signed_headers.sort();
    signed_headers.dedup();
    let auth = Authorization {
        access_key: access_key.to_owned(),
        date: date.to_owned(),
        region: region.to_owned(),
        service: service.to_owned(),
        signed_headers,
        signature: Vec::new(),
    };
    let to_sign = string_to_sign(req, &auth, amz_date)?;
    let key = signing_key(secret, date, region, service);
    let signature = hmac::sign(&key, to_sign.as_bytes());
    Ok(format!(
        "{ALGORITHM} Credential={access_key}/{date}/{region}/{service}/aws4_request, \
         SignedHeaders={}, Signature={}",
        auth.signed_headers.join(";"),
        hex::encode(signature.as_ref())
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_sign_signs_verifies() {
        let date = "20261124T010203Z";
        let mut headers = vec![
            ("Host", "localhost:8080"),
            ("X-Amz-Date", date),
            ("Content-Type", "application/json"),
        ];
        let req = |h: &[(&'static str, &'static str)]| Request {
            method: "POST",
            path: "/model/m%3A1/converse",
            query: "",
            headers: Box::leak(h.to_vec().into_boxed_slice()),
            body: b"{}",
        };
        let auth = sign(&req(&headers), "AK", "s3cret", "us-east-1", "bedrock", date).unwrap();
        headers.push(("Authorization", Box::leak(auth.into_boxed_str())));
        let now = amz_date_secs(date).unwrap();
        let ok = verify(&req(&headers), "bedrock", now, |k| {
            (k == "AK").then(|| "s3cret".into())
        });
        assert_eq!(ok.unwrap().signed_headers.len(), 3);
        let wrong = verify(&req(&headers), "bedrock", now, |_| Some("other".into()));
        assert_eq!(wrong.unwrap_err(), SigError::Mismatch);
        // A declared payload digest must be the body's, or the body would be unsigned.
        for declared in ["UNSIGNED-PAYLOAD", &"0".repeat(64)] {
            let mut h = headers[..3].to_vec();
            h.push((
                "x-amz-content-sha256",
                Box::leak(declared.to_owned().into_boxed_str()),
            ));
            let auth = sign(&req(&h), "AK", "s3cret", "us-east-1", "bedrock", date).unwrap();
            h.push(("Authorization", Box::leak(auth.into_boxed_str())));
            let r = verify(&req(&h), "bedrock", now, |_| Some("s3cret".into()));
            assert_eq!(r.unwrap_err(), SigError::Payload);
        }
        let mut h = headers[..3].to_vec();
        h.push((
            "x-amz-content-sha256",
            Box::leak(sha256_hex(b"{}").into_boxed_str()),
        ));
        let auth = sign(&req(&h), "AK", "s3cret", "us-east-1", "bedrock", date).unwrap();
        h.push(("Authorization", Box::leak(auth.into_boxed_str())));
        assert!(verify(&req(&h), "bedrock", now, |_| Some("s3cret".into())).is_ok());
    }

    #[test]
    fn prechecks_refuse_before_any_body_is_read() {
        let h = "AWS4-HMAC-SHA256 Credential=AK/20261124/us-east-1/bedrock/aws4_request, SignedHeaders=host;x-amz-date, Signature=".to_owned() + &"a".repeat(64);
        let now = amz_date_secs("20261124T010203Z").unwrap();
        assert!(precheck(&h, Some("20261124T010203Z"), "bedrock", now).is_ok());
        assert_eq!(
            precheck(&h, None, "bedrock", now).unwrap_err(),
            SigError::Date
        );
        assert_eq!(
            precheck(&h, Some("20261123T010203Z"), "bedrock", now).unwrap_err(),
            SigError::Date
        );
        assert_eq!(
            precheck(&h, Some("20261124T010203Z"), "bedrock", now + 3600).unwrap_err(),
            SigError::Skew
        );
        assert_eq!(
            precheck(&h, Some("20261124T010203Z"), "s3", now).unwrap_err(),
            SigError::Service
        );
        assert!(precheck(
            "AWS4-HMAC-SHA256 nonsense",
            Some("20261124T010203Z"),
            "bedrock",
            now
        )
        .is_err());
    }

    #[test]
    fn amz_dates() {
        assert_eq!(amz_date_secs("19700101T000000Z"), Some(0));
        assert_eq!(amz_date_secs("20010909T014640Z"), Some(1_000_000_000));
        assert_eq!(amz_date_secs("20240229T000000Z"), Some(1_709_164_800));
        for bad in [
            "",
            "20261323T000000Z",
            "20261123 000000Z",
            "2026112T0000000Z",
            "20261123T000000z",
        ] {
            assert_eq!(amz_date_secs(bad), None, "{bad}");
        }
    }

    #[test]
    fn authorization_headers_parse_strictly() {
        let good = "AWS4-HMAC-SHA256 Credential=AK/20261123/us-east-1/bedrock/aws4_request, SignedHeaders=host;x-amz-date, Signature=".to_owned() + &"a".repeat(64);
        let a = parse_authorization(&good).unwrap();
        assert_eq!(
            (
                a.access_key.as_str(),
                a.region.as_str(),
                a.signed_headers.len()
            ),
            ("AK", "us-east-1", 2)
        );
        for bad in [
            "Bearer x".to_owned(),
            good.replace("aws4_request", "aws5_request"),
            good.replace("Signature=", "Signature=zz"),
            good.replace("SignedHeaders=host", "SignedHeaders=Host"),
            good.replace(", Signature", ", Credential=x, Signature"),
            good.replace("20261123", "2026112"),
            good.replace("Credential=AK/", "Credential=/"),
        ] {
            assert!(parse_authorization(&bad).is_err(), "{bad}");
        }
    }
}
