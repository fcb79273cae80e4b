//! The tamper-evident audit log: an append-only sequence of segment files under the data
//! directory. Each entry is framed (magic, kind, length, checksum, payload); records (canonical
//! JSON objects) are the leaves of an RFC 6962 Merkle tree, and signed checkpoints (node, tree
//! size, root, time; Ed25519) are written every N records or T milliseconds and at close.
//! [`AuditLog`] appends with group commit and acknowledges only what is synced; [`scan`]
//! and [`verify`] read a log back and name the first bad entry.
#![forbid(unsafe_code)]

mod checkpoint;
pub mod frame;
mod log;
pub mod merkle;
mod proof;
mod record;
mod scan;

pub use checkpoint::{Checkpoint, KeyError, PublicKey, Signer};
pub use frame::{FrameError, Kind, MAX_PAYLOAD};
pub use log::{
    is_locked, now_rfc3339, AuditError, AuditLog, Disk, Options, Reply, SegmentFile, Storage,
    LOCK_FILE,
};
pub use proof::{
    prove_consistency, prove_inclusion, ConsistencyProof, InclusionProof, Proof, ProofError,
};
pub use record::{Actor, BadTime, Event, Fields, Filter, Matcher, Record};
pub use scan::{
    scan, scan_segments, segment_name, segments, verify, verify_segments, Position, Summary,
    VerifyError,
};
