//! Reading a log back: every segment in order, every frame checked, the tree recomputed and
//! every checkpoint's size, root and signature checked. Used by recovery at start (which may
//! drop a torn last frame) and by `verify` (which reports the first bad entry).

use std::path::{Path, PathBuf};

use crate::checkpoint::{Checkpoint, PublicKey};
use crate::frame::{self, FrameError, Kind};
use crate::merkle::{self, Hash, Tree};

/// Where an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Segment number (from the file name).
    pub segment: u32,
    /// Byte offset in the segment.
    pub offset: u64,
    /// Entries (records and checkpoints) before this one in the whole log.
    pub entry: u64,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "entry {} (segment {}, offset {})",
            self.entry, self.segment, self.offset
        )
    }
}

/// Why a log does not verify. Each names the first bad place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A file could not be read.
    #[error("cannot read the audit log: {0}")]
    Io(String),
    /// A segment file name is not `segment-NNNNNNNN.log`, or numbers are missing.
    #[error("unexpected segment layout: {0}")]
    Layout(String),
    /// A frame is damaged.
    #[error("{at}: {error}")]
    Frame {
        /// Where.
        at: Position,
        /// What.
        error: FrameError,
    },
    /// The last frame of the log is cut short (a crash mid-write; recovery drops it).
    #[error("{at}: the last entry is torn (cut short)")]
    TornTail {
        /// Where.
        at: Position,
    },
    /// A record's payload is not a JSON object.
    #[error("{at}: record {index} is not a JSON object")]
    Payload {
        /// Where.
        at: Position,
        /// Leaf index.
        index: u64,
    },
    /// A checkpoint does not parse, or its size, root or signature is wrong.
    #[error("{at}: checkpoint is not valid: {why}")]
    Checkpoint {
        /// Where.
        at: Position,
        /// What is wrong.
        why: String,
    },
    /// Records follow the last checkpoint (a closed log ends with one).
    #[error("{0} records after the last checkpoint are not covered by a signature")]
    UnsignedTail(u64),
    /// The log is not consistent with a checkpoint the auditor trusts.
    #[error("the log does not match the trusted checkpoint: {0}")]
    Trusted(String),
}

/// What a scan found.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Records (leaves).
    pub records: u64,
    /// Checkpoints.
    pub checkpoints: u64,
    /// The last checkpoint, if any.
    pub last_checkpoint: Option<Checkpoint>,
    /// Every checkpoint, in order (for proofs between them).
    pub checkpoint_list: Vec<Checkpoint>,
    /// Records after the last checkpoint.
    pub unsigned: u64,
    /// The tree over every record.
    pub tree: Tree,
    /// A torn last frame that was tolerated: the segment file and the length to keep.
    pub torn: Option<(PathBuf, u64)>,
    /// The segment files, in order, with their lengths (after any torn tail).
    pub segments: Vec<(u32, PathBuf, u64)>,
}

impl Summary {
    /// The current root.
    pub fn root(&self) -> Hash {
        self.tree.root()
    }
}

/// The segment files of `dir`, in order.
pub fn segments(dir: &Path) -> Result<Vec<(u32, PathBuf)>, VerifyError> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(VerifyError::Io(e.to_string())),
    };
    for entry in entries {
        let entry = entry.map_err(|e| VerifyError::Io(e.to_string()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(number) = name
            .strip_prefix("segment-")
            .and_then(|n| n.strip_suffix(".log"))
        else {
            continue;
        };
        let n: u32 = number
            .parse()
            .map_err(|_| VerifyError::Layout(name.clone()))?;
        out.push((n, entry.path()));
    }
    out.sort();
    for (i, (n, _)) in out.iter().enumerate() {
        if *n as usize != i + 1 {
            return Err(VerifyError::Layout(format!("segment {} is missing", i + 1)));
        }
    }
    Ok(out)
}

/// The file name of segment `n`.
pub fn segment_name(n: u32) -> String {
    format!("segment-{n:08}.log")
}

/// Scans the log in `dir`. `tolerate_torn` accepts a cut-short last frame (recovery);
/// otherwise it is an error (verification). Each record's leaf index and payload is passed to
/// `on_record`.
pub fn scan(
    dir: &Path,
    public_key: &PublicKey,
    tolerate_torn: bool,
    on_record: impl FnMut(u64, &[u8]),
) -> Result<Summary, VerifyError> {
    let mut files = Vec::new();
    for (number, path) in segments(dir)? {
        let bytes = std::fs::read(&path).map_err(|e| VerifyError::Io(e.to_string()))?;
        files.push((number, path, bytes));
    }
    let view: Vec<(u32, PathBuf, &[u8])> = files
        .iter()
        .map(|(n, p, b)| (*n, p.clone(), b.as_slice()))
        .collect();
    scan_segments(&view, public_key, tolerate_torn, on_record)
}

/// [`scan`] over segments already in memory: (number, path, bytes), in order.
pub fn scan_segments(
    files: &[(u32, PathBuf, &[u8])],
    public_key: &PublicKey,
    tolerate_torn: bool,
    mut on_record: impl FnMut(u64, &[u8]),
) -> Result<Summary, VerifyError> {
    let mut s = Summary::default();
    let mut entry = 0u64;
    let count = files.len();
    for (i, (number, path, bytes)) in files.iter().enumerate() {
        let (number, bytes) = (*number, *bytes);
        let mut offset = 0usize;
        let last_segment = i + 1 == count;
        while offset < bytes.len() {
            let at = Position {
                segment: number,
                offset: offset as u64,
                entry,
            };
            let frame::Frame {
                kind,
                payload,
                len,
                digest,
            } = match frame::decode_hashed(&bytes[offset..]) {
                Ok(x) => x,
                Err(FrameError::Short) if last_segment => {
                    // A crash leaves only the start of the last frames: a whole valid frame
                    // further on means a damaged length field, which recovery must not
                    // "repair" by dropping the acknowledged records after it.
                    if complete_frame_after(&bytes[offset + 1..]) {
                        return Err(VerifyError::Frame {
                            at,
                            error: FrameError::Length(usize::MAX),
                        });
                    }
                    if tolerate_torn {
                        s.torn = Some((path.clone(), offset as u64));
                        break;
                    }
                    return Err(VerifyError::TornTail { at });
                }
                Err(error) => return Err(VerifyError::Frame { at, error }),
            };
            match kind {
                Kind::Record => {
                    // Records are JSON objects; anything else was not written by Highside.
                    if payload.first() != Some(&b'{') {
                        return Err(VerifyError::Payload {
                            at,
                            index: s.records,
                        });
                    }
                    on_record(s.records, payload);
                    // A record's frame digest is its leaf hash.
                    s.tree.push(digest);
                    s.records += 1;
                    s.unsigned += 1;
                }
                Kind::Checkpoint => {
                    let bad = |why: String| VerifyError::Checkpoint { at, why };
                    let cp: Checkpoint = serde_json::from_slice(payload)
                        .map_err(|e| bad(format!("does not parse: {e}")))?;
                    if cp.tree_size != s.records {
                        return Err(bad(format!(
                            "it covers {} records but {} precede it",
                            cp.tree_size, s.records
                        )));
                    }
                    let previous = s.last_checkpoint.as_ref().map_or(0, |c| c.tree_size);
                    if cp.previous_size != previous {
                        return Err(bad(format!(
                            "it follows a checkpoint of {} records, but the one before it covers {previous}",
                            cp.previous_size
                        )));
                    }
                    if cp.root_hash() != Some(s.tree.root()) {
                        return Err(bad(
                            "its root is not the root of the records before it".into()
                        ));
                    }
                    if !cp.verify(public_key) {
                        return Err(bad(
                            "the signature does not verify with the public key".into()
                        ));
                    }
                    s.checkpoints += 1;
                    s.unsigned = 0;
                    s.checkpoint_list.push(cp.clone());
                    s.last_checkpoint = Some(cp);
                }
            }
            offset += len;
            entry += 1;
        }
        s.segments.push((number, path.clone(), offset as u64));
    }
    Ok(s)
}

/// Whether a whole, checksummed frame starts anywhere in (the first 4 MiB of) `rest`.
fn complete_frame_after(rest: &[u8]) -> bool {
    let rest = &rest[..rest.len().min(4 << 20)];
    rest.iter()
        .enumerate()
        .any(|(i, &b)| b == frame::MAGIC && frame::decode(&rest[i..]).is_ok())
}

/// Full verification for an auditor: no torn tail, no unsigned records, and, given a
/// checkpoint the auditor trusts (one they kept earlier), the log must contain its tree as a
/// prefix, so nothing up to it can have been cut or rewritten.
pub fn verify(
    dir: &Path,
    public_key: &PublicKey,
    trusted: Option<&Checkpoint>,
) -> Result<Summary, VerifyError> {
    let s = scan(dir, public_key, false, |_, _| {})?;
    check_closed(s, public_key, trusted)
}

/// [`verify`] over segments already in memory.
pub fn verify_segments(
    files: &[(u32, PathBuf, &[u8])],
    public_key: &PublicKey,
    trusted: Option<&Checkpoint>,
) -> Result<Summary, VerifyError> {
    let s = scan_segments(files, public_key, false, |_, _| {})?;
    check_closed(s, public_key, trusted)
}

fn check_closed(
    s: Summary,
    public_key: &PublicKey,
    trusted: Option<&Checkpoint>,
) -> Result<Summary, VerifyError> {
    if s.unsigned > 0 {
        return Err(VerifyError::UnsignedTail(s.unsigned));
    }
    if let Some(t) = trusted {
        if !t.verify(public_key) {
            return Err(VerifyError::Trusted("its signature does not verify".into()));
        }
        if t.tree_size > s.records {
            return Err(VerifyError::Trusted(format!(
                "it covers {} records but the log holds {}",
                t.tree_size, s.records
            )));
        }
        let size = t.tree_size as usize;
        let root = merkle::root(&s.tree.leaves()[..size]);
        if t.root_hash() != Some(root) {
            return Err(VerifyError::Trusted(format!(
                "the first {size} records have a different root"
            )));
        }
    }
    Ok(s)
}
