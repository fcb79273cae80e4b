//! The tamper-evident audit log (work in progress: the Merkle tree first).
#![forbid(unsafe_code)]

pub mod merkle;
