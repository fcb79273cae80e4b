//! Differential test against botocore: every request in `tests/fixtures/sigv4.jsonl` was signed
//! by botocore's SigV4 signer (what boto3's bedrock-runtime client uses); each must verify,
//! and any change to what the signature covers must not.

use base64::Engine;
use highside_sigv4::{verify, Request, SigError};
use serde_json::Value;

#[derive(Clone)]
struct Case {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    access_key: String,
    secret: String,
    now: i64,
}

fn cases() -> Vec<Case> {
    let text = include_str!("../../../tests/fixtures/sigv4.jsonl");
    text.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let s = |k: &str| v[k].as_str().unwrap().to_owned();
            let amz = s("amz_date");
            Case {
                method: s("method"),
                path: s("path"),
                query: s("query"),
                headers: v["headers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|h| {
                        (
                            h[0].as_str().unwrap().to_owned(),
                            h[1].as_str().unwrap().to_owned(),
                        )
                    })
                    .collect(),
                body: base64::engine::general_purpose::STANDARD
                    .decode(s("body"))
                    .unwrap(),
                access_key: s("access_key"),
                secret: s("secret"),
                now: secs(&amz),
            }
        })
        .collect()
}

/// Unix seconds of an X-Amz-Date, counted year by year (a different method from the crate's
/// civil-from-days arithmetic, so the two check each other).
fn secs(amz: &str) -> i64 {
    let n = |a: usize, b: usize| amz[a..b].parse::<i64>().unwrap();
    let (y, m, d) = (n(0, 4), n(4, 6), n(6, 8));
    let mut days = 0i64;
    for year in 1970..y {
        days += if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 {
            366
        } else {
            365
        };
    }
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    days += month_days[..(m - 1) as usize].iter().sum::<i64>() + d - 1;
    days * 86_400 + n(9, 11) * 3600 + n(11, 13) * 60 + n(13, 15)
}

fn check(c: &Case) -> Result<(), SigError> {
    let headers: Vec<(&str, &str)> = c
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let req = Request {
        method: &c.method,
        path: &c.path,
        query: &c.query,
        headers: &headers,
        body: &c.body,
    };
    let secret = c.secret.clone();
    let key = c.access_key.clone();
    verify(&req, "bedrock", c.now, move |k| {
        (k == key).then_some(secret)
    })
    .map(|_| ())
}

#[test]
fn every_botocore_signature_verifies() {
    let cases = cases();
    assert!(cases.len() >= 200);
    for (i, c) in cases.iter().enumerate() {
        assert_eq!(
            check(c),
            Ok(()),
            "case {i}: {} {}?{}",
            c.method,
            c.path,
            c.query
        );
    }
}

#[test]
fn any_change_to_what_is_signed_fails() {
    for (i, c) in cases().into_iter().enumerate().take(60) {
        let mut tampered: Vec<Case> = Vec::new();
        let mut t = |f: &dyn Fn(&mut Case)| {
            let mut x = c.clone();
            f(&mut x);
            tampered.push(x);
        };
        t(&|x| x.body.push(b' '));
        t(&|x| x.path.push('x'));
        t(&|x| x.method = "PUT".into());
        t(&|x| {
            x.query = if x.query.is_empty() {
                "a=1".into()
            } else {
                String::new()
            }
        });
        t(&|x| x.secret.push('x'));
        t(&|x| x.access_key.push('x'));
        t(&|x| {
            for h in &mut x.headers {
                if h.0.eq_ignore_ascii_case("content-type") {
                    h.1.push('x');
                }
            }
        });
        t(&|x| {
            for h in &mut x.headers {
                if h.0.eq_ignore_ascii_case("host") {
                    h.1 = "evil.example".into();
                }
            }
        });
        t(&|x| x.now += 16 * 60);
        t(&|x| {
            for h in &mut x.headers {
                if h.0.eq_ignore_ascii_case("authorization") {
                    h.1 = h.1.replace("/bedrock/", "/s3/");
                }
            }
        });
        for (j, x) in tampered.iter().enumerate() {
            assert!(check(x).is_err(), "case {i}, tampering {j} verified");
        }
    }
}
