//! Reading an API key from request headers: `Authorization: Bearer <key>` or `x-api-key: <key>`.
//!
//! Headers are untrusted bytes. The parser never echoes them: an error says what was wrong
//! with the shape, never what was sent, because what was sent may be someone's key.

use crate::key::{KeyFormatError, ParsedKey};

/// Why the presented credentials cannot be used. Each is a 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// The Authorization header uses a scheme other than Bearer.
    #[error("unsupported authorization scheme (use 'Authorization: Bearer <key>')")]
    UnsupportedScheme,
    /// A header is present but its value is not a key.
    #[error(transparent)]
    Malformed(#[from] KeyFormatError),
    /// A header is not valid visible ASCII.
    #[error("credential headers must be visible ASCII")]
    NotAscii,
    /// The same header appears twice, or the two headers carry different keys.
    #[error("conflicting credentials: send one key in one header")]
    Conflicting,
}

fn text(value: &[u8]) -> Result<&str, CredentialError> {
    if !value
        .iter()
        .all(|b| (0x20..0x7f).contains(b) || *b == b'\t')
    {
        return Err(CredentialError::NotAscii);
    }
    std::str::from_utf8(value).map_err(|_| CredentialError::NotAscii)
}

fn bearer(value: &[u8]) -> Result<ParsedKey, CredentialError> {
    let value = text(value)?.trim_matches([' ', '\t']);
    let (scheme, rest) = value
        .split_once([' ', '\t'])
        .ok_or(CredentialError::UnsupportedScheme)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(CredentialError::UnsupportedScheme);
    }
    Ok(ParsedKey::parse(rest.trim_start_matches([' ', '\t']))?)
}

fn single<'a>(values: &[&'a [u8]]) -> Result<Option<&'a [u8]>, CredentialError> {
    match values {
        [] => Ok(None),
        [one] => Ok(Some(one)),
        _ => Err(CredentialError::Conflicting),
    }
}

/// Reads the key from every `Authorization` and every `x-api-key` header value of a request.
/// `Ok(None)` when neither header is present.
pub fn parse_credentials(
    authorization: &[&[u8]],
    x_api_key: &[&[u8]],
) -> Result<Option<ParsedKey>, CredentialError> {
    let from_auth = single(authorization)?.map(bearer).transpose()?;
    let from_header = single(x_api_key)?
        .map(|v| -> Result<ParsedKey, CredentialError> {
            Ok(ParsedKey::parse(text(v)?.trim_matches([' ', '\t']))?)
        })
        .transpose()?;
    match (from_auth, from_header) {
        (Some(a), Some(b)) if a.secret.hash().matches(&b.secret.hash()) => Ok(Some(a)),
        (Some(_), Some(_)) => Err(CredentialError::Conflicting),
        (a, b) => Ok(a.or(b)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ApiKeySecret;
    use proptest::prelude::*;

    fn key() -> String {
        ApiKeySecret::generate().1.expose().to_owned()
    }

    #[test]
    fn bearer_and_x_api_key() {
        let k = key();
        let auth = format!("Bearer {k}");
        let got = parse_credentials(&[auth.as_bytes()], &[]).unwrap().unwrap();
        assert_eq!(got.secret.expose(), k);
        let lower = format!("bearer   {k} ");
        assert!(parse_credentials(&[lower.as_bytes()], &[])
            .unwrap()
            .is_some());
        let got = parse_credentials(&[], &[k.as_bytes()]).unwrap().unwrap();
        assert_eq!(got.secret.expose(), k);
        assert!(parse_credentials(&[auth.as_bytes()], &[k.as_bytes()])
            .unwrap()
            .is_some());
        assert!(parse_credentials(&[], &[]).unwrap().is_none());
    }

    #[test]
    fn malformed_and_conflicting() {
        let (k, other) = (key(), key());
        let auth = format!("Bearer {k}");
        let e = |a: &[&[u8]], x: &[&[u8]]| parse_credentials(a, x).unwrap_err();
        assert_eq!(
            e(&[b"Basic dXNlcjpwYXNz"], &[]),
            CredentialError::UnsupportedScheme
        );
        assert_eq!(e(&[b"Bearer"], &[]), CredentialError::UnsupportedScheme);
        assert!(matches!(
            e(&[b"Bearer nope"], &[]),
            CredentialError::Malformed(_)
        ));
        assert_eq!(e(&[b"Bearer \xff"], &[]), CredentialError::NotAscii);
        assert_eq!(
            e(&[auth.as_bytes(), auth.as_bytes()], &[]),
            CredentialError::Conflicting
        );
        assert_eq!(
            e(&[auth.as_bytes()], &[other.as_bytes()]),
            CredentialError::Conflicting
        );
        assert!(matches!(e(&[], &[b""]), CredentialError::Malformed(_)));
    }

    #[test]
    fn errors_never_contain_the_input() {
        let k = key();
        let inputs = [
            format!("Basic {k}"),
            format!("Bearer {k}x"),
            format!("Bearer {}", &k[1..]),
        ];
        for input in inputs {
            let err = parse_credentials(&[input.as_bytes()], &[]).unwrap_err();
            assert!(!format!("{err} {err:?}").contains(&k[20..]));
        }
    }

    proptest! {
        #[test]
        fn arbitrary_headers_never_panic(
            a in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..120), 0..3),
            x in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..120), 0..3),
        ) {
            let a: Vec<&[u8]> = a.iter().map(Vec::as_slice).collect();
            let x: Vec<&[u8]> = x.iter().map(Vec::as_slice).collect();
            if let Ok(Some(k)) = parse_credentials(&a, &x) {
                // Whatever was accepted is a well-formed key that was present in a header.
                prop_assert!(ParsedKey::parse(k.secret.expose()).is_ok());
                let needle = k.secret.expose().as_bytes();
                let present = a.iter().chain(x.iter()).any(|h| h.windows(needle.len()).any(|w| w == needle));
                prop_assert!(present);
            }
        }

        #[test]
        fn bearer_with_any_spacing_and_case(pre in "[ \t]{0,3}", mid in "[ \t]{1,3}", post in "[ \t]{0,3}", upper in any::<bool>()) {
            let k = key();
            let scheme = if upper { "BEARER" } else { "Bearer" };
            let h = format!("{pre}{scheme}{mid}{k}{post}");
            let got = parse_credentials(&[h.as_bytes()], &[]).unwrap().unwrap();
            prop_assert_eq!(got.secret.expose(), k.as_str());
        }
    }
}
