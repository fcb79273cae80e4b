//! Sync-failure injection through the audit log's file abstraction: the request whose record
//! could not be made durable is not answered as if it had been, and the node stops serving.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use highside_audit::{AuditLog, Disk, Options, SegmentFile, Signer, Storage};
use highside_label::Encodings;
use highside_monitor::{Monitor, Policies};
use highside_server::{AppState, Auditor, PlainListener, Registry, ServeError, ServerConfig};

/// Storage whose file syncs fail after the first `ok`.
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_sync_is_not_acknowledged_and_the_node_stops_serving() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(highside_store::SqliteStore::open(&dir.path().join("db.sqlite")).unwrap());
    let audit_dir = dir.path().join("audit");
    let (_, signer) = Signer::generate().unwrap();
    let public = signer.public_key();
    let storage = Arc::new(FailingSync {
        ok: 1,
        syncs: Arc::new(AtomicUsize::new(0)),
    });
    let log = AuditLog::open(&audit_dir, signer, storage, Options::default()).unwrap();
    let auditor = Arc::new(Auditor::new(log, "node-1", &audit_dir, public.clone()));
    let encodings = Arc::new(Encodings::builtin());
    let state = AppState::new(
        Registry::default(),
        ServerConfig {
            max_body_bytes: 1 << 20,
            shutdown_grace: Duration::from_secs(1),
            ..ServerConfig::default()
        },
        highside_server::Stores {
            identity: store.clone(),
            catalog: store.clone(),
            metering: store,
        },
        Monitor::new(encodings, Policies::parse("").unwrap()),
        Arc::clone(&auditor),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(highside_server::serve(
        PlainListener::new(listener),
        state,
        std::future::pending(),
    ));
    let http = reqwest::Client::new();
    let bad_key = |path: &str| {
        http.get(format!("{base}{path}"))
            .bearer_auth("hs-not-a-key")
            .send()
    };
    // The first failure is recorded (one sync succeeds): an ordinary 401.
    let first = bad_key("/v1/models").await.unwrap();
    assert_eq!(first.status(), 401);
    // The second cannot be made durable: not a 401 that would imply it was recorded.
    let second = bad_key("/v1/models").await.unwrap();
    assert_eq!(second.status(), 503);
    let body: serde_json::Value = second.json().await.unwrap();
    assert_eq!(body["error"]["code"], "audit_unavailable", "{body}");
    assert!(auditor.is_failed());
    // The node stops on its own, and says why.
    let result = tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .expect("the server did not stop after the audit log failed")
        .unwrap();
    assert!(matches!(result, Err(ServeError::AuditFailed)), "{result:?}");
    // Nothing more is accepted, and what was acknowledged is intact on disk.
    assert!(auditor.close().is_err());
    let summary = highside_audit::scan(&audit_dir, &public, true, |_, _| {}).unwrap();
    assert!(summary.records >= 1);
}
