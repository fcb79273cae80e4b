//! API keys: `hs_<16 hex public prefix>_<64 hex secret>`.
//!
//! The prefix is public: it names the key in listings and logs and finds its row. The whole key
//! is secret; only its SHA-256 is stored. A key holds 256 random bits, so a fast hash is enough
//! (there is nothing to brute-force), and hashes are compared in constant time.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const SCHEME: &str = "hs_";
const PREFIX_HEX: usize = 16;
const SECRET_HEX: usize = 64;
/// Length of a well-formed key.
pub(crate) const KEY_LEN: usize = SCHEME.len() + PREFIX_HEX + 1 + SECRET_HEX;

/// Why a string is not an API key. Deliberately says nothing about the string itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed API key (expected hs_ followed by 16 and 64 lowercase hex digits)")]
pub struct KeyFormatError;

/// The public part of a key, `hs_` and 16 hex digits. Safe to show and log.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct KeyPrefix(String);

impl KeyPrefix {
    /// The prefix as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Accepts a stored prefix; `None` if malformed.
    pub fn parse(s: &str) -> Option<Self> {
        let hex = s.strip_prefix(SCHEME)?;
        (hex.len() == PREFIX_HEX && is_lower_hex(hex)).then(|| Self(s.to_owned()))
    }
}

impl fmt::Display for KeyPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a key authenticates: a bearer key (`Authorization: Bearer hs_…`), or an AWS-style
/// access key pair whose ID is the key's prefix and whose secret signs requests (SigV4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyKind {
    /// `hs_<prefix>_<secret>` sent whole.
    Bearer,
    /// Access key ID `hs_<prefix>` and a secret access key, for Signature V4.
    Aws,
}

impl KeyKind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bearer => "bearer",
            Self::Aws => "aws",
        }
    }

    /// Reads the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "bearer" => Some(Self::Bearer),
            "aws" => Some(Self::Aws),
            _ => None,
        }
    }
}

/// A whole API key. Debug and Display redact it; only [`ApiKeySecret::expose`] reveals it, and
/// the only callers are the one-time print at creation and the hash.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeySecret(String);

impl ApiKeySecret {
    /// A fresh key from the operating system's randomness.
    pub fn generate() -> (KeyPrefix, ApiKeySecret) {
        let prefix = format!("{SCHEME}{}", crate::ids::random_hex::<{ PREFIX_HEX / 2 }>());
        let secret = crate::ids::random_hex::<{ SECRET_HEX / 2 }>();
        let key = format!("{prefix}_{secret}");
        (KeyPrefix(prefix), ApiKeySecret(key))
    }

    /// The key text. Call only to hand the key to its owner once, or to send it as a client.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Wraps a key a client was given (from a flag or environment variable) without checking it.
    pub fn from_client(key: String) -> Self {
        Self(key)
    }

    /// The SHA-256 of the whole key, which is all the store keeps.
    pub fn hash(&self) -> KeyHash {
        KeyHash::of(self.0.as_bytes())
    }
}

impl fmt::Debug for ApiKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKeySecret([REDACTED])")
    }
}

impl fmt::Display for ApiKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

/// A well-formed key split into its public prefix and the secret whole.
#[derive(Debug, Clone)]
pub struct ParsedKey {
    /// The public prefix that finds the key's row.
    pub prefix: KeyPrefix,
    /// The whole key.
    pub secret: ApiKeySecret,
}

impl ParsedKey {
    /// Parses a presented key strictly; anything but the exact format is refused.
    pub fn parse(s: &str) -> Result<Self, KeyFormatError> {
        if s.len() != KEY_LEN || !s.is_ascii() {
            return Err(KeyFormatError);
        }
        let rest = s.strip_prefix(SCHEME).ok_or(KeyFormatError)?;
        let (prefix_hex, tail) = rest.split_at(PREFIX_HEX);
        let secret_hex = tail.strip_prefix('_').ok_or(KeyFormatError)?;
        if !is_lower_hex(prefix_hex) || !is_lower_hex(secret_hex) || secret_hex.len() != SECRET_HEX
        {
            return Err(KeyFormatError);
        }
        Ok(Self {
            prefix: KeyPrefix(format!("{SCHEME}{prefix_hex}")),
            secret: ApiKeySecret(s.to_owned()),
        })
    }
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// SHA-256 of a key. Compared only in constant time.
#[derive(Clone, Copy)]
pub struct KeyHash([u8; 32]);

impl KeyHash {
    /// The SHA-256 of `secret`.
    pub(crate) fn of(secret: &[u8]) -> Self {
        Self(Sha256::digest(secret).into())
    }

    /// Lowercase hex, the stored form.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Reads the stored form; `None` if it is not 64 hex digits.
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Self(out))
    }

    /// Constant-time equality: the time taken does not depend on where the hashes differ.
    pub fn matches(&self, other: &KeyHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyHash(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn generated_keys_parse_and_hash_stably() {
        let (prefix, key) = ApiKeySecret::generate();
        let parsed = ParsedKey::parse(key.expose()).unwrap();
        assert_eq!(parsed.prefix, prefix);
        assert!(parsed.secret.hash().matches(&key.hash()));
        assert!(KeyHash::from_hex(&key.hash().to_hex())
            .unwrap()
            .matches(&key.hash()));
        let (_, other) = ApiKeySecret::generate();
        assert!(!other.hash().matches(&key.hash()));
        assert_eq!(KeyPrefix::parse(prefix.as_str()), Some(prefix));
    }

    #[test]
    fn secrets_never_print() {
        let (_, key) = ApiKeySecret::generate();
        let secret_part = &key.expose()[KEY_LEN - SECRET_HEX..];
        for shown in [
            format!("{key:?}"),
            format!("{key}"),
            format!("{:?}", ParsedKey::parse(key.expose()).unwrap()),
            format!("{:?}", key.hash()),
        ] {
            assert!(!shown.contains(secret_part), "{shown}");
        }
    }

    #[test]
    fn near_misses_are_refused() {
        let (_, key) = ApiKeySecret::generate();
        let k = key.expose();
        assert!(ParsedKey::parse(&k.to_uppercase()).is_err());
        assert!(ParsedKey::parse(&k[..k.len() - 1]).is_err());
        assert!(ParsedKey::parse(&format!("{k}0")).is_err());
        assert!(ParsedKey::parse(&k.replacen('_', "-", 1)).is_err());
        assert!(ParsedKey::parse(&k.replace(&k[3..19], "zzzzzzzzzzzzzzzz")).is_err());
        assert!(ParsedKey::parse(&format!("{}é", &k[..k.len() - 2])).is_err());
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_accepts_only_the_format(s in "\\PC{0,100}") {
            if let Ok(p) = ParsedKey::parse(&s) {
                prop_assert_eq!(p.secret.expose(), s.as_str());
                prop_assert!(s.starts_with(p.prefix.as_str()));
                prop_assert_eq!(s.len(), KEY_LEN);
            }
        }

        #[test]
        fn any_well_formed_key_parses(p in "[0-9a-f]{16}", q in "[0-9a-f]{64}") {
            let s = format!("hs_{p}_{q}");
            let parsed = ParsedKey::parse(&s).unwrap();
            prop_assert_eq!(parsed.prefix.as_str(), format!("hs_{p}"));
        }
    }
}
