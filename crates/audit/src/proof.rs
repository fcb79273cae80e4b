//! Proofs an auditor can check with nothing but the public key: that a record is in the log
//! a signed checkpoint covers (inclusion), and that a later checkpoint's log extends an earlier
//! one's without rewriting it (consistency).

use serde::{Deserialize, Serialize};

use crate::checkpoint::{Checkpoint, PublicKey};
use crate::merkle::{self, Hash};
use crate::scan::Summary;

/// That record `index` (whose payload is `record`) is leaf `index` of the tree `checkpoint` signs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionProof {
    /// The leaf index.
    pub index: u64,
    /// The record, exactly as stored (its leaf hash is SHA-256(0x00 || record)).
    pub record: String,
    /// Sibling hashes from the leaf up, hex.
    pub path: Vec<String>,
    /// The signed checkpoint the proof ends at.
    pub checkpoint: Checkpoint,
}

/// That the tree `new` signs extends the tree `old` signs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyProof {
    /// The earlier checkpoint.
    pub old: Checkpoint,
    /// The later checkpoint.
    pub new: Checkpoint,
    /// RFC 6962 consistency proof, hex.
    pub path: Vec<String>,
}

/// Either proof, as `highside audit prove` writes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "proof", rename_all = "snake_case")]
pub enum Proof {
    /// A record's inclusion.
    Inclusion(InclusionProof),
    /// Two checkpoints' consistency.
    Consistency(ConsistencyProof),
}

/// Why a proof could not be made or does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// No checkpoint covers what was asked.
    #[error("{0}")]
    Unavailable(String),
    /// The proof does not verify.
    #[error("the proof does not hold: {0}")]
    Invalid(String),
}

fn hexes(hashes: &[Hash]) -> Vec<String> {
    hashes.iter().map(hex::encode).collect()
}

fn unhex(path: &[String]) -> Result<Vec<Hash>, ProofError> {
    path.iter()
        .map(|h| {
            let bytes =
                hex::decode(h).map_err(|_| ProofError::Invalid("a hash is not hex".into()))?;
            Hash::try_from(bytes.as_slice())
                .map_err(|_| ProofError::Invalid("a hash is not 32 bytes".into()))
        })
        .collect()
}

/// The checkpoint covering exactly `size` records, or the first covering more than `index`.
fn checkpoint_for(s: &Summary, size: Option<u64>, index: u64) -> Result<&Checkpoint, ProofError> {
    match size {
        Some(n) => s
            .checkpoint_list
            .iter()
            .find(|c| c.tree_size == n)
            .ok_or_else(|| {
                ProofError::Unavailable(format!("no checkpoint covers exactly {n} records"))
            }),
        None => s
            .checkpoint_list
            .iter()
            .find(|c| c.tree_size > index)
            .ok_or_else(|| {
                ProofError::Unavailable(format!(
                    "record {index} is not covered by a checkpoint yet (the log holds {} records)",
                    s.records
                ))
            }),
    }
}

/// Proves record `index` (with payload `record`) is in the tree of the checkpoint of `size`
/// records (default: the first checkpoint after it).
pub fn prove_inclusion(
    s: &Summary,
    index: u64,
    record: &[u8],
    size: Option<u64>,
) -> Result<InclusionProof, ProofError> {
    let cp = checkpoint_for(s, size, index)?;
    if index >= cp.tree_size {
        return Err(ProofError::Unavailable(format!(
            "record {index} is not among the {} records of that checkpoint",
            cp.tree_size
        )));
    }
    let leaves = &s.tree.leaves()[..cp.tree_size as usize];
    let path = merkle::inclusion_proof(leaves, index as usize)
        .ok_or_else(|| ProofError::Unavailable("no such record".into()))?;
    Ok(InclusionProof {
        index,
        record: String::from_utf8_lossy(record).into_owned(),
        path: hexes(&path),
        checkpoint: cp.clone(),
    })
}

/// Proves the checkpoint of `new` records extends the checkpoint of `old` records.
pub fn prove_consistency(s: &Summary, old: u64, new: u64) -> Result<ConsistencyProof, ProofError> {
    if old > new {
        return Err(ProofError::Unavailable(
            "the older checkpoint must not be larger than the newer".into(),
        ));
    }
    let old_cp = checkpoint_for(s, Some(old), 0)?;
    let new_cp = checkpoint_for(s, Some(new), 0)?;
    let leaves = &s.tree.leaves()[..new as usize];
    let path = merkle::consistency_proof(leaves, old as usize)
        .ok_or_else(|| ProofError::Unavailable("no proof between those sizes".into()))?;
    Ok(ConsistencyProof {
        old: old_cp.clone(),
        new: new_cp.clone(),
        path: hexes(&path),
    })
}

fn signed_root(cp: &Checkpoint, key: &PublicKey) -> Result<Hash, ProofError> {
    if !cp.verify(key) {
        return Err(ProofError::Invalid(format!(
            "the checkpoint of {} records is not signed by this public key",
            cp.tree_size
        )));
    }
    cp.root_hash()
        .ok_or_else(|| ProofError::Invalid("the checkpoint's root is not a hash".into()))
}

impl Proof {
    /// Checks the proof with only the public key.
    pub fn verify(&self, key: &PublicKey) -> Result<(), ProofError> {
        match self {
            Proof::Inclusion(p) => {
                let root = signed_root(&p.checkpoint, key)?;
                let leaf = merkle::leaf_hash(p.record.as_bytes());
                let path = unhex(&p.path)?;
                if merkle::verify_inclusion(&leaf, p.index, p.checkpoint.tree_size, &path, &root) {
                    Ok(())
                } else {
                    Err(ProofError::Invalid(format!(
                        "record {} is not in the tree the checkpoint signs",
                        p.index
                    )))
                }
            }
            Proof::Consistency(p) => {
                let old = signed_root(&p.old, key)?;
                let new = signed_root(&p.new, key)?;
                let path = unhex(&p.path)?;
                if merkle::verify_consistency(p.old.tree_size, p.new.tree_size, &old, &new, &path) {
                    Ok(())
                } else {
                    Err(ProofError::Invalid(format!(
                        "the log of {} records does not extend the log of {}",
                        p.new.tree_size, p.old.tree_size
                    )))
                }
            }
        }
    }
}
