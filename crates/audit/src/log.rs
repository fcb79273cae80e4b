//! The writer: one thread owns the open segment; appenders hand it their payloads and block
//! until the batch that holds theirs is written and synced (group commit). Every N records or
//! T milliseconds, and at close, it appends a signed checkpoint. A failed write or sync is
//! fatal: that batch is not acknowledged, nothing is retried, and every later append fails.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::checkpoint::{Checkpoint, Signer};
use crate::frame::{self, Kind, MAX_PAYLOAD};
use crate::merkle::Tree;
use crate::scan::{self, segment_name, VerifyError};

/// A segment file as the writer needs it; tests inject failures through it.
pub trait SegmentFile: Send {
    /// Appends bytes at the end.
    fn append(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Makes everything appended durable (fdatasync).
    fn sync(&mut self) -> io::Result<()>;
}

/// Where segments live; tests inject failures through it.
pub trait Storage: Send + Sync + 'static {
    /// Opens a segment for appending, creating it if needed.
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn SegmentFile>>;
    /// Makes a directory's entries (a new segment's name) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// The real file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct Disk;

struct DiskFile(std::fs::File);

impl SegmentFile for DiskFile {
    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        io::Write::write_all(&mut self.0, bytes)
    }
    fn sync(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
}

impl Storage for Disk {
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn SegmentFile>> {
        let mut options = std::fs::OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        Ok(Box::new(DiskFile(options.open(path)?)))
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        std::fs::File::open(dir)?.sync_all()
    }
}

/// Why an append or an open failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuditError {
    /// The log on disk is damaged beyond a torn last entry: the node must not start.
    #[error("the audit log does not verify: {0}")]
    Corrupt(#[from] VerifyError),
    /// A write or sync failed; the log accepts nothing more (the node must stop serving).
    #[error("the audit log failed and accepts no more records: {0}")]
    Failed(String),
    /// A record is larger than a frame may be.
    #[error("an audit record may be at most {MAX_PAYLOAD} bytes")]
    TooLarge,
    /// The log was closed.
    #[error("the audit log is closed")]
    Closed,
    /// Opening or preparing the directory failed.
    #[error("cannot open the audit log: {0}")]
    Io(String),
    /// Another process (a running server) is writing this log.
    #[error("another process is writing this audit log (is `highside serve` running on this data directory?)")]
    Locked,
}

/// Tuning of the writer.
#[derive(Debug, Clone)]
pub struct Options {
    /// This node's name, in every checkpoint.
    pub node: String,
    /// A new segment starts once the current one reaches this size.
    pub segment_bytes: u64,
    /// A checkpoint after this many records.
    pub checkpoint_every: u64,
    /// A checkpoint after this long with unsigned records.
    pub checkpoint_interval: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            node: "node-1".into(),
            segment_bytes: 64 << 20,
            checkpoint_every: 1000,
            checkpoint_interval: Duration::from_millis(1000),
        }
    }
}

/// Called once with an append's outcome: the leaf index once durable, or why not.
pub type Reply = Box<dyn FnOnce(Result<u64, AuditError>) + Send>;

enum Msg {
    Append(Vec<u8>, Reply),
    Close(SyncSender<Result<Checkpoint, AuditError>>),
}

/// The lock file that makes one process the log's only writer.
pub const LOCK_FILE: &str = "LOCK";

/// An open audit log.
pub struct AuditLog {
    tx: Sender<Msg>,
    failed: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
    // Held (locked) until close; the OS releases it if the process dies.
    lock: Mutex<Option<std::fs::File>>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("failed", &self.failed.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

/// The current time as RFC 3339 UTC with nanoseconds, the form every record and checkpoint uses.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

struct Writer {
    dir: PathBuf,
    storage: Arc<dyn Storage>,
    signer: Signer,
    options: Options,
    tree: Tree,
    segment: u32,
    size: u64,
    file: Box<dyn SegmentFile>,
    unsigned: u64,
    last_checkpoint: Instant,
    last_checkpoint_size: u64,
    failed: Arc<AtomicBool>,
}

impl AuditLog {
    /// Opens (or creates) the log in `dir`: recovers it (drops a torn last entry, verifies
    /// every frame and checkpoint up to the end with the signer's own public key) and starts
    /// the writer.
    pub fn open(
        dir: &Path,
        signer: Signer,
        storage: Arc<dyn Storage>,
        options: Options,
    ) -> Result<Self, AuditError> {
        let io_err = |e: io::Error| AuditError::Io(e.to_string());
        std::fs::create_dir_all(dir).map_err(io_err)?;
        let lock = lock_exclusive(dir)?;
        let summary = scan::scan(dir, &signer.public_key(), true, |_, _| {})?;
        if let Some((path, keep)) = &summary.torn {
            tracing::warn!(segment = %path.display(), keep, "audit log: dropping a torn last entry");
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(io_err)?;
            f.set_len(*keep).map_err(io_err)?;
            f.sync_all().map_err(io_err)?;
        }
        let (segment, size) = match summary.segments.last() {
            Some((n, _, len)) => (*n, *len),
            None => (1, 0),
        };
        let path = dir.join(segment_name(segment));
        let file = storage.open_append(&path).map_err(io_err)?;
        if summary.segments.is_empty() {
            storage.sync_dir(dir).map_err(io_err)?;
        }
        let failed = Arc::new(AtomicBool::new(false));
        let writer = Writer {
            dir: dir.to_path_buf(),
            storage,
            signer,
            options,
            tree: summary.tree,
            segment,
            size,
            file,
            unsigned: summary.unsigned,
            last_checkpoint: Instant::now(),
            last_checkpoint_size: summary.last_checkpoint.as_ref().map_or(0, |c| c.tree_size),
            failed: Arc::clone(&failed),
        };
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("highside-audit".into())
            .spawn(move || writer.run(rx))
            .map_err(io_err)?;
        Ok(Self {
            tx,
            failed,
            thread: Mutex::new(Some(thread)),
            lock: Mutex::new(Some(lock)),
        })
    }

    /// Appends a record and returns its leaf index once it is durable (blocks the thread).
    pub fn append(&self, payload: Vec<u8>) -> Result<u64, AuditError> {
        let (done, wait) = mpsc::sync_channel(1);
        self.submit(
            payload,
            Box::new(move |r| {
                let _ = done.send(r);
            }),
        );
        wait.recv().unwrap_or(Err(AuditError::Closed))
    }

    /// Queues a record; `reply` is called (on the writer thread, so it must be quick) once
    /// the record is durable or has failed. For callers that must not block, e.g. async code.
    pub fn submit(&self, payload: Vec<u8>, reply: Reply) {
        if payload.len() > MAX_PAYLOAD {
            return reply(Err(AuditError::TooLarge));
        }
        if payload.first() != Some(&b'{') {
            return reply(Err(AuditError::Io(
                "an audit record must be a JSON object".into(),
            )));
        }
        if self.is_failed() {
            return reply(Err(AuditError::Failed(
                "an earlier write or sync failed".into(),
            )));
        }
        if let Err(mpsc::SendError(Msg::Append(_, reply))) =
            self.tx.send(Msg::Append(payload, reply))
        {
            reply(Err(AuditError::Closed));
        }
    }

    /// Serializes `record` as JSON and appends it.
    pub fn append_json<T: serde::Serialize>(&self, record: &T) -> Result<u64, AuditError> {
        let bytes = serde_json::to_vec(record).map_err(|e| AuditError::Io(e.to_string()))?;
        self.append(bytes)
    }

    /// Whether a write or sync has failed (the node must stop serving).
    pub fn is_failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }

    /// Writes a final checkpoint, syncs and stops the writer.
    pub fn close(&self) -> Result<Checkpoint, AuditError> {
        let (done, wait) = mpsc::sync_channel(1);
        self.tx
            .send(Msg::Close(done))
            .map_err(|_| AuditError::Closed)?;
        let result = wait.recv().unwrap_or(Err(AuditError::Closed));
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
        // The writer is gone: another process may write the log now.
        drop(self.lock.lock().unwrap_or_else(|p| p.into_inner()).take());
        result
    }
}

impl Writer {
    fn run(mut self, rx: Receiver<Msg>) {
        loop {
            let wait = self
                .options
                .checkpoint_interval
                .saturating_sub(self.last_checkpoint.elapsed());
            let first = match rx.recv_timeout(wait) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => {
                    // Dropped without close: sign what is written, unless a write failed (a
                    // checkpoint would then cover records that are not on disk).
                    if !self.failed.load(Ordering::SeqCst) {
                        let _ = self.commit(Vec::new(), true);
                    }
                    return;
                }
            };
            let mut batch: Vec<Msg> = first.into_iter().collect();
            while batch.len() < 4096 {
                match rx.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            let closing = batch.iter().any(|m| matches!(m, Msg::Close(_)));
            if self.failed.load(Ordering::SeqCst) {
                fail_all(batch, "an earlier write or sync failed");
                if closing {
                    return;
                }
                continue;
            }
            let mut payloads = Vec::new();
            let mut replies = Vec::new();
            let mut closers = Vec::new();
            for m in batch {
                match m {
                    Msg::Append(p, done) => {
                        payloads.push(p);
                        replies.push(done);
                    }
                    Msg::Close(done) => closers.push(done),
                }
            }
            match self.commit(payloads, closing) {
                Ok((first_index, checkpoint)) => {
                    for (i, r) in replies.into_iter().enumerate() {
                        r(Ok(first_index + i as u64));
                    }
                    for c in closers {
                        let _ = c.send(checkpoint.clone().ok_or(AuditError::Closed));
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "audit log write failed: no further records will be accepted");
                    self.failed.store(true, Ordering::SeqCst);
                    for r in replies {
                        r(Err(e.clone()));
                    }
                    for c in closers {
                        let _ = c.send(Err(e.clone()));
                    }
                }
            }
            if closing {
                return;
            }
        }
    }

    /// Writes `payloads` (and a checkpoint when due or `force`d) in one write and one sync.
    fn commit(
        &mut self,
        payloads: Vec<Vec<u8>>,
        force: bool,
    ) -> Result<(u64, Option<Checkpoint>), AuditError> {
        let first = self.tree.len();
        let mut buf = Vec::with_capacity(payloads.iter().map(|p| p.len() + frame::HEADER).sum());
        for p in &payloads {
            // The frame's digest is the leaf hash: hashed once.
            let leaf = frame::encode(Kind::Record, p, &mut buf);
            self.tree.push(leaf);
        }
        self.unsigned += payloads.len() as u64;
        let due = self.unsigned >= self.options.checkpoint_every
            || (self.unsigned > 0
                && self.last_checkpoint.elapsed() >= self.options.checkpoint_interval);
        let mut checkpoint = None;
        if due || force {
            let cp = self.signer.checkpoint(
                &self.options.node,
                self.tree.len(),
                self.last_checkpoint_size,
                &self.tree.root(),
                &now_rfc3339(),
            );
            let json = serde_json::to_vec(&cp).map_err(|e| AuditError::Failed(e.to_string()))?;
            frame::encode(Kind::Checkpoint, &json, &mut buf);
            checkpoint = Some(cp);
        }
        if buf.is_empty() {
            return Ok((first, None));
        }
        if self.size >= self.options.segment_bytes {
            self.rotate()?;
        }
        let fail = |e: io::Error| AuditError::Failed(e.to_string());
        self.file.append(&buf).map_err(fail)?;
        self.file.sync().map_err(fail)?;
        self.size += buf.len() as u64;
        if let Some(cp) = &checkpoint {
            self.last_checkpoint_size = cp.tree_size;
            self.unsigned = 0;
            self.last_checkpoint = Instant::now();
        }
        Ok((first, checkpoint))
    }

    fn rotate(&mut self) -> Result<(), AuditError> {
        let fail = |e: io::Error| AuditError::Failed(e.to_string());
        let next = self.segment + 1;
        let file = self
            .storage
            .open_append(&self.dir.join(segment_name(next)))
            .map_err(fail)?;
        self.storage.sync_dir(&self.dir).map_err(fail)?;
        self.file = file;
        self.segment = next;
        self.size = 0;
        Ok(())
    }
}

fn fail_all(batch: Vec<Msg>, why: &str) {
    for m in batch {
        match m {
            Msg::Append(_, done) => done(Err(AuditError::Failed(why.into()))),
            Msg::Close(done) => {
                let _ = done.send(Err(AuditError::Failed(why.into())));
            }
        }
    }
}

/// Takes the directory's writer lock, or says that another process holds it.
fn lock_exclusive(dir: &Path) -> Result<std::fs::File, AuditError> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(LOCK_FILE))
        .map_err(|e| AuditError::Io(e.to_string()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(AuditError::Locked),
        Err(std::fs::TryLockError::Error(e)) => Err(AuditError::Io(e.to_string())),
    }
}

/// Whether a process holds `dir`'s writer lock now (a live server), checked without
/// disturbing it for longer than an instant.
pub fn is_locked(dir: &Path) -> bool {
    let Ok(file) = std::fs::File::open(dir.join(LOCK_FILE)) else {
        return false;
    };
    match file.try_lock_shared() {
        Ok(()) => {
            let _ = file.unlock();
            false
        }
        Err(std::fs::TryLockError::WouldBlock) => true,
        // Unknown: say "not live", so verify applies its strict checks.
        Err(std::fs::TryLockError::Error(_)) => false,
    }
}
