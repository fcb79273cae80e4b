//! AWS-style access key pairs for Signature V4 clients (boto3's `bedrock-runtime`).
//!
//! SigV4 is an HMAC over the request keyed by the secret itself, so the server must be able to
//! recompute a secret, not just check a hash of it. Rather than store secrets (even encrypted),
//! each secret is derived: `HMAC-SHA256(master, access key ID ‖ salt)`, where the master is a
//! 32-byte file in the data directory and the salt a random 32 bytes in the key's row. Reading
//! a secret needs both the database and the master file; the store also keeps the secret's
//! SHA-256, so a replaced master fails closed instead of deriving different secrets.

use std::fmt;

use ring::hmac;

use crate::key::{KeyHash, KeyPrefix};

/// Domain separation: a derived secret is never a valid MAC of anything else.
const CONTEXT: &[u8] = b"highside aws secret access key v1\0";

/// The data directory's master secret. Debug redacts it.
pub struct AwsKeyMaster(hmac::Key);

impl AwsKeyMaster {
    /// Length of the master file.
    pub const LEN: usize = 32;

    /// A fresh master from the operating system's randomness, with its bytes for the file.
    pub fn generate() -> ([u8; Self::LEN], Self) {
        let mut bytes = [0u8; Self::LEN];
        getrandom::fill(&mut bytes).expect("the operating system's random number generator failed");
        let master = Self::from_bytes(&bytes).expect("the length is right");
        (bytes, master)
    }

    /// The master stored in a file; `None` unless exactly [`Self::LEN`] bytes.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        (bytes.len() == Self::LEN).then(|| Self(hmac::Key::new(hmac::HMAC_SHA256, bytes)))
    }

    /// The secret access key of `access_key` with `salt`.
    pub fn derive(&self, access_key: &KeyPrefix, salt: &KeySalt) -> AwsSecret {
        let mut ctx = hmac::Context::with_key(&self.0);
        ctx.update(CONTEXT);
        ctx.update(access_key.as_str().as_bytes());
        ctx.update(b"\0");
        ctx.update(&salt.0);
        AwsSecret(hex::encode(ctx.sign().as_ref()))
    }
}

impl fmt::Debug for AwsKeyMaster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AwsKeyMaster([REDACTED])")
    }
}

/// The random salt of one access key pair (not secret on its own, but kept out of listings).
#[derive(Clone, PartialEq, Eq)]
pub struct KeySalt([u8; 32]);

impl KeySalt {
    /// A fresh salt.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).expect("the operating system's random number generator failed");
        Self(bytes)
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
}

impl fmt::Debug for KeySalt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeySalt(..)")
    }
}

/// A secret access key. Debug and Display redact it; only [`AwsSecret::expose`] reveals it.
#[derive(Clone, PartialEq, Eq)]
pub struct AwsSecret(String);

impl AwsSecret {
    /// The secret text: to hand it to its owner once, or to key the SigV4 HMAC.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Its SHA-256, which the store keeps to detect a replaced master.
    pub fn hash(&self) -> KeyHash {
        KeyHash::of(self.0.as_bytes())
    }
}

impl fmt::Debug for AwsSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AwsSecret([REDACTED])")
    }
}

impl fmt::Display for AwsSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivation_depends_on_master_key_and_salt_and_redacts() {
        let (bytes, m) = AwsKeyMaster::generate();
        let again = AwsKeyMaster::from_bytes(&bytes).unwrap();
        let (_, other) = AwsKeyMaster::generate();
        let (a, _) = crate::ApiKeySecret::generate();
        let (b, _) = crate::ApiKeySecret::generate();
        let salt = KeySalt::generate();
        let s = m.derive(&a, &salt);
        assert_eq!(s, again.derive(&a, &salt));
        assert_eq!(s.expose().len(), 64);
        assert_ne!(s, other.derive(&a, &salt));
        assert_ne!(s, m.derive(&b, &salt));
        assert_ne!(s, m.derive(&a, &KeySalt::generate()));
        assert!(s.hash().matches(&again.derive(&a, &salt).hash()));
        for shown in [
            format!("{s:?}"),
            format!("{s}"),
            format!("{m:?}"),
            format!("{salt:?}"),
        ] {
            assert!(!shown.contains(s.expose()) && !shown.contains(&salt.to_hex()));
        }
        assert!(AwsKeyMaster::from_bytes(&bytes[1..]).is_none());
        assert_eq!(KeySalt::from_hex(&salt.to_hex()), Some(salt));
    }
}
