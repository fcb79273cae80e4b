//! The writer on a real directory: concurrent appends are all acknowledged with distinct
//! indices and all verify; reopening continues the tree; a torn tail is dropped at open and
//! nothing else is; segments rotate; a failed sync is never acknowledged and stops the log.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use highside_audit::{
    segment_name, verify, AuditError, AuditLog, Disk, Options, SegmentFile, Signer, Storage,
    VerifyError,
};

fn options(every: u64, segment_bytes: u64) -> Options {
    Options {
        node: "test-node".into(),
        segment_bytes,
        checkpoint_every: every,
        checkpoint_interval: Duration::from_secs(3600),
    }
}

fn signer(pkcs8: &[u8]) -> Signer {
    Signer::from_pkcs8(pkcs8).unwrap()
}

fn record(i: usize) -> Vec<u8> {
    format!("{{\"kind\":\"test\",\"i\":{i}}}").into_bytes()
}

#[test]
fn concurrent_appends_are_acknowledged_once_each_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let (pkcs8, s) = Signer::generate().unwrap();
    let public = s.public_key();
    let log =
        Arc::new(AuditLog::open(dir.path(), s, Arc::new(Disk), options(50, 1 << 20)).unwrap());
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                (0..100)
                    .map(|i| log.append(record(t * 1000 + i)).unwrap())
                    .collect::<Vec<u64>>()
            })
        })
        .collect();
    let mut indices: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    indices.sort_unstable();
    assert_eq!(indices, (0..1600).collect::<Vec<u64>>());
    let last = log.close().unwrap();
    assert_eq!(last.tree_size, 1600);
    let summary = verify(dir.path(), &public, Some(&last)).unwrap();
    assert_eq!(summary.records, 1600);
    assert!(summary.checkpoints >= 2);

    // Reopened, the tree continues, and the old checkpoint is a prefix of the new tree.
    let log = AuditLog::open(
        dir.path(),
        signer(&pkcs8),
        Arc::new(Disk),
        options(50, 1 << 20),
    )
    .unwrap();
    assert_eq!(log.append(record(1)).unwrap(), 1600);
    let newer = log.close().unwrap();
    assert_eq!(newer.tree_size, 1601);
    verify(dir.path(), &public, Some(&last)).unwrap();
    verify(dir.path(), &public, Some(&newer)).unwrap();
}

#[test]
fn a_torn_tail_is_dropped_and_only_that() {
    let dir = tempfile::tempdir().unwrap();
    let (pkcs8, s) = Signer::generate().unwrap();
    let public = s.public_key();
    let log = AuditLog::open(dir.path(), s, Arc::new(Disk), options(4, 1 << 20)).unwrap();
    for i in 0..10 {
        log.append(record(i)).unwrap();
    }
    let cp = log.close().unwrap();
    let seg = dir.path().join(segment_name(1));
    let clean = std::fs::read(&seg).unwrap();
    // Half of a new frame, as a crash mid-write leaves it.
    let mut frame = Vec::new();
    highside_audit::frame::encode(highside_audit::Kind::Record, &record(99), &mut frame);
    let mut torn = clean.clone();
    torn.extend_from_slice(&frame[..frame.len() / 2]);
    std::fs::write(&seg, &torn).unwrap();
    assert!(matches!(
        verify(dir.path(), &public, None),
        Err(VerifyError::TornTail { .. })
    ));
    let log = AuditLog::open(
        dir.path(),
        signer(&pkcs8),
        Arc::new(Disk),
        options(4, 1 << 20),
    )
    .unwrap();
    assert_eq!(
        std::fs::read(&seg).unwrap(),
        clean,
        "exactly the torn bytes were dropped"
    );
    assert_eq!(log.append(record(10)).unwrap(), 10);
    log.close().unwrap();
    verify(dir.path(), &public, Some(&cp)).unwrap();

    // Damage that is not at the tail refuses the open: the node must not start on it.
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[20] ^= 0x40;
    std::fs::write(&seg, &bytes).unwrap();
    let err = AuditLog::open(
        dir.path(),
        signer(&pkcs8),
        Arc::new(Disk),
        options(4, 1 << 20),
    )
    .unwrap_err();
    assert!(matches!(err, AuditError::Corrupt(_)), "{err}");
}

#[test]
fn segments_rotate_and_a_missing_one_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (_, s) = Signer::generate().unwrap();
    let public = s.public_key();
    let log = AuditLog::open(dir.path(), s, Arc::new(Disk), options(8, 512)).unwrap();
    for i in 0..200 {
        log.append(record(i)).unwrap();
    }
    let cp = log.close().unwrap();
    let summary = verify(dir.path(), &public, Some(&cp)).unwrap();
    assert!(
        summary.segments.len() > 3,
        "{} segments",
        summary.segments.len()
    );
    std::fs::remove_file(dir.path().join(segment_name(2))).unwrap();
    assert!(matches!(
        verify(dir.path(), &public, Some(&cp)),
        Err(VerifyError::Layout(_))
    ));
}

/// Disk, but every sync after the first `ok` ones fails.
struct FailingSync {
    ok: usize,
    syncs: Arc<AtomicUsize>,
}

struct FailingFile {
    inner: Box<dyn SegmentFile>,
    ok: usize,
    syncs: Arc<AtomicUsize>,
}

impl SegmentFile for FailingFile {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.inner.append(bytes)
    }
    fn sync(&mut self) -> io::Result<()> {
        if self.syncs.fetch_add(1, Ordering::SeqCst) >= self.ok {
            return Err(io::Error::other("injected fsync failure"));
        }
        self.inner.sync()
    }
}

impl Storage for FailingSync {
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn SegmentFile>> {
        Ok(Box::new(FailingFile {
            inner: Disk.open_append(path)?,
            ok: self.ok,
            syncs: Arc::clone(&self.syncs),
        }))
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        Disk.sync_dir(dir)
    }
}

#[test]
fn a_failed_sync_is_not_acknowledged_and_stops_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (_, s) = Signer::generate().unwrap();
    let public = s.public_key();
    let storage = Arc::new(FailingSync {
        ok: 3,
        syncs: Arc::new(AtomicUsize::new(0)),
    });
    let log = AuditLog::open(dir.path(), s, storage, options(1000, 1 << 20)).unwrap();
    for i in 0..3 {
        assert_eq!(log.append(record(i)).unwrap(), i as u64);
    }
    assert!(!log.is_failed());
    let err = log.append(record(3)).unwrap_err();
    assert!(matches!(err, AuditError::Failed(_)), "{err}");
    assert!(log.is_failed());
    // Never retried: every later append fails too, and so does the closing checkpoint.
    assert!(matches!(log.append(record(4)), Err(AuditError::Failed(_))));
    assert!(log.close().is_err());
    // What was acknowledged is on disk and its chain is intact.
    let summary = highside_audit::scan(dir.path(), &public, true, |_, _| {}).unwrap();
    assert!(summary.records >= 3);
}

#[test]
fn records_must_be_json_objects_of_bounded_size() {
    let dir = tempfile::tempdir().unwrap();
    let (_, s) = Signer::generate().unwrap();
    let log = AuditLog::open(dir.path(), s, Arc::new(Disk), options(8, 1 << 20)).unwrap();
    assert!(log.append(b"[1]".to_vec()).is_err());
    let mut big = b"{\"x\":\"".to_vec();
    big.resize(highside_audit::MAX_PAYLOAD + 10, b'a');
    assert!(matches!(log.append(big), Err(AuditError::TooLarge)));
    assert_eq!(log.append(record(0)).unwrap(), 0);
    log.close().unwrap();
}

#[test]
fn one_writer_at_a_time_and_close_lets_the_next_in() {
    let dir = tempfile::tempdir().unwrap();
    let (pkcs8, s) = Signer::generate().unwrap();
    let first = AuditLog::open(dir.path(), s, Arc::new(Disk), options(10, 1 << 20)).unwrap();
    assert!(highside_audit::is_locked(dir.path()));
    let second = AuditLog::open(
        dir.path(),
        signer(&pkcs8),
        Arc::new(Disk),
        options(10, 1 << 20),
    );
    assert!(matches!(second, Err(AuditError::Locked)), "{second:?}");
    first.append(record(0)).unwrap();
    first.close().unwrap();
    assert!(!highside_audit::is_locked(dir.path()));
    let again = AuditLog::open(
        dir.path(),
        signer(&pkcs8),
        Arc::new(Disk),
        options(10, 1 << 20),
    )
    .unwrap();
    assert_eq!(again.append(record(1)).unwrap(), 1);
    again.close().unwrap();
}

#[test]
fn a_damaged_length_is_not_mistaken_for_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (pkcs8, s) = Signer::generate().unwrap();
    let log = AuditLog::open(dir.path(), s, Arc::new(Disk), options(1000, 1 << 20)).unwrap();
    for i in 0..10 {
        log.append(record(i)).unwrap();
    }
    log.close().unwrap();
    // Make the third record's length field claim more than the file holds.
    let seg = dir.path().join(segment_name(1));
    let mut bytes = std::fs::read(&seg).unwrap();
    let mut offset = 0;
    for _ in 0..2 {
        offset += highside_audit::frame::decode(&bytes[offset..]).unwrap().2;
    }
    bytes[offset + 2..offset + 6].copy_from_slice(&(1u32 << 20).to_le_bytes());
    std::fs::write(&seg, &bytes).unwrap();
    // Recovery refuses rather than drop the eight acknowledged records after it.
    let reopened = AuditLog::open(
        dir.path(),
        signer(&pkcs8),
        Arc::new(Disk),
        options(1000, 1 << 20),
    );
    assert!(
        matches!(reopened, Err(AuditError::Corrupt(_))),
        "{reopened:?}"
    );
    assert_eq!(std::fs::read(&seg).unwrap(), bytes, "nothing was truncated");
}
