//! Signed checkpoints: (node, tree size, root hash, time) signed with the node's Ed25519 key.
//! The key is a PKCS#8 file the data directory keeps owner-only; auditors get the raw public
//! key (hex) and need nothing else to verify.

use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use serde::{Deserialize, Serialize};

use crate::merkle::Hash;

/// Why a key could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Random generation or PKCS#8 parsing failed.
    #[error("the audit signing key is not valid: {0}")]
    Invalid(String),
    /// The public key is not 32 bytes of hex.
    #[error("the audit public key must be 64 hex digits")]
    PublicKey,
}

/// A checkpoint as stored in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// The node that wrote the log.
    pub node: String,
    /// Leaves covered.
    pub tree_size: u64,
    /// Leaves covered by the checkpoint before this one (0 for the first), so a deleted
    /// checkpoint breaks the chain.
    pub previous_size: u64,
    /// Root hash over them, hex.
    pub root: String,
    /// RFC 3339 UTC time of signing.
    pub time: String,
    /// Ed25519 signature over [`Checkpoint::signed_text`], hex.
    pub signature: String,
}

impl Checkpoint {
    /// The exact bytes signed: a versioned, line-separated statement.
    pub fn signed_text(
        node: &str,
        tree_size: u64,
        previous_size: u64,
        root: &Hash,
        time: &str,
    ) -> String {
        format!(
            "highside-audit-checkpoint/v1\n{node}\n{tree_size}\n{previous_size}\n{}\n{time}\n",
            hex::encode(root)
        )
    }

    /// Whether the signature is `public_key`'s over this checkpoint's fields.
    pub fn verify(&self, public_key: &PublicKey) -> bool {
        let (Ok(root), Ok(sig)) = (hex::decode(&self.root), hex::decode(&self.signature)) else {
            return false;
        };
        let Ok(root) = <Hash>::try_from(root.as_slice()) else {
            return false;
        };
        let text = Self::signed_text(
            &self.node,
            self.tree_size,
            self.previous_size,
            &root,
            &self.time,
        );
        UnparsedPublicKey::new(&ED25519, &public_key.0)
            .verify(text.as_bytes(), &sig)
            .is_ok()
    }

    /// The root as bytes, if it is well-formed hex.
    pub fn root_hash(&self) -> Option<Hash> {
        hex::decode(&self.root).ok()?.try_into().ok()
    }
}

/// An Ed25519 public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    /// Parses 64 hex digits (surrounding whitespace allowed).
    pub fn from_hex(s: &str) -> Result<Self, KeyError> {
        let bytes = hex::decode(s.trim()).map_err(|_| KeyError::PublicKey)?;
        Ok(Self(bytes.try_into().map_err(|_| KeyError::PublicKey)?))
    }

    /// 64 hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// The node's signing key. Its bytes never appear in `Debug` output.
pub struct Signer {
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer(public {})", self.public_key().to_hex())
    }
}

impl Signer {
    /// A new random key, as PKCS#8 bytes to store (owner-only) and the signer.
    pub fn generate() -> Result<(Vec<u8>, Self), KeyError> {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|e| KeyError::Invalid(e.to_string()))?;
        let bytes = pkcs8.as_ref().to_vec();
        let signer = Self::from_pkcs8(&bytes)?;
        Ok((bytes, signer))
    }

    /// Loads a stored key.
    pub fn from_pkcs8(bytes: &[u8]) -> Result<Self, KeyError> {
        Ed25519KeyPair::from_pkcs8(bytes)
            .map(|pair| Self { pair })
            .map_err(|e| KeyError::Invalid(e.to_string()))
    }

    /// The public half.
    pub fn public_key(&self) -> PublicKey {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.pair.public_key().as_ref());
        PublicKey(out)
    }

    /// Signs a checkpoint of the tree of `tree_size` leaves with `root`, following the
    /// checkpoint of `previous_size` leaves.
    pub fn checkpoint(
        &self,
        node: &str,
        tree_size: u64,
        previous_size: u64,
        root: &Hash,
        time: &str,
    ) -> Checkpoint {
        let text = Checkpoint::signed_text(node, tree_size, previous_size, root, time);
        Checkpoint {
            node: node.to_owned(),
            tree_size,
            previous_size,
            root: hex::encode(root),
            time: time.to_owned(),
            signature: hex::encode(self.pair.sign(text.as_bytes()).as_ref()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_any_change_breaks_them() {
        let (pkcs8, signer) = Signer::generate().unwrap();
        let again = Signer::from_pkcs8(&pkcs8).unwrap();
        assert_eq!(again.public_key(), signer.public_key());
        let pk = PublicKey::from_hex(&signer.public_key().to_hex()).unwrap();
        let cp = signer.checkpoint("node-1", 7, 3, &[9u8; 32], "2026-11-23T00:00:00Z");
        assert!(cp.verify(&pk));
        for bad in [
            Checkpoint {
                tree_size: 8,
                ..cp.clone()
            },
            Checkpoint {
                previous_size: 4,
                ..cp.clone()
            },
            Checkpoint {
                node: "node-2".into(),
                ..cp.clone()
            },
            Checkpoint {
                time: "2026-11-23T00:00:01Z".into(),
                ..cp.clone()
            },
            Checkpoint {
                root: hex::encode([8u8; 32]),
                ..cp.clone()
            },
            Checkpoint {
                signature: "00".repeat(64),
                ..cp.clone()
            },
            Checkpoint {
                signature: "zz".into(),
                ..cp.clone()
            },
        ] {
            assert!(!bad.verify(&pk), "{bad:?}");
        }
        let (_, other) = Signer::generate().unwrap();
        assert!(!cp.verify(&other.public_key()));
        assert!(!format!("{signer:?}").contains(&hex::encode(&pkcs8)));
    }
}
