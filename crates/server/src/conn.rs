//! Serving connections with deadlines. Every connection gets hyper's HTTP/1.1 server with a
//! header-read deadline (which also closes keep-alive connections left idle), and its socket
//! a write deadline, so a client that stops reading an answer cannot hold a connection (and
//! what the answer holds) forever. Bodies have their own deadline where they are read
//! (`http::read_body`).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::serve::Listener;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;
use tower::ServiceExt;

use crate::ClientInfo;

/// Connections served at once at most; beyond, new ones wait in the listen backlog (so a
/// flood of idle connections cannot exhaust the node's file descriptors).
const MAX_CONNECTIONS: usize = 1000;

/// Counts what each client address (an IPv6 /64 is one) holds at once, so that no one address
/// takes all of a node-wide limit.
#[derive(Debug, Default)]
pub(crate) struct PerAddress {
    held: Mutex<HashMap<Option<IpAddr>, usize>>,
}

/// One of an address's shares; given back on drop.
#[derive(Debug)]
pub(crate) struct AddressShare {
    owner: Arc<PerAddress>,
    key: Option<IpAddr>,
}

impl PerAddress {
    /// One more share for `ip`, unless it holds `max` already.
    pub(crate) fn take(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<AddressShare> {
        let key = crate::auth::client_key(Some(ip));
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let n = held.entry(key).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(AddressShare {
            owner: Arc::clone(self),
            key,
        })
    }
}

impl Drop for AddressShare {
    fn drop(&mut self) {
        let mut held = self.owner.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = held.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.key);
            }
        }
    }
}

/// How long each stage of a connection may take.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadlines {
    /// To send a request's headers; also how long an idle keep-alive connection stays open.
    pub(crate) header: Duration,
    /// For a write to make progress (a client that does not read).
    pub(crate) write: Duration,
    /// Connections one client address may hold open at once; beyond, new ones are closed.
    pub(crate) per_address: usize,
}

/// Accepts connections on `listener` and serves `app` on each until `stop` turns true; then
/// asks every connection to finish its request and close, and returns once all have.
pub(crate) async fn run<L>(
    mut listener: L,
    app: Router,
    deadlines: Deadlines,
    mut stop: watch::Receiver<bool>,
) where
    L: Listener<Addr = ClientInfo>,
{
    // Each connection holds a receiver; `closed` resolves once every one is dropped.
    let (all_done, done) = watch::channel(());
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let addresses = Arc::new(PerAddress::default());
    loop {
        let slot = tokio::select! {
            s = Arc::clone(&slots).acquire_owned() => match s {
                Ok(s) => s,
                Err(_) => break,
            },
            () = stopped(&mut stop) => break,
        };
        let (io, client) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stopped(&mut stop) => break,
        };
        let Some(share) = addresses.take(client.addr.ip(), deadlines.per_address) else {
            tracing::warn!(client = %client.addr, "too many connections from one address: connection closed");
            metrics::counter!("highside_connections_refused_total").increment(1);
            continue;
        };
        let app = app.clone();
        let mut stop = stop.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let _share = share;
            let io = TokioIo::new(WriteDeadline::new(io, deadlines.write));
            let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(client.clone()));
                let app = app.clone();
                async move { app.oneshot(req.map(Body::new)).await }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(deadlines.header)
                .keep_alive(true);
            let conn = builder.serve_connection(io, service);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                }
                () = stopped(&mut stop) => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
            drop(done);
            drop(slot);
        });
    }
    drop(done);
    all_done.closed().await;
}

/// Resolves once `stop` is true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// A socket whose writes fail once one has made no progress for `limit`.
struct WriteDeadline<T> {
    inner: T,
    limit: Duration,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<T> WriteDeadline<T> {
    fn new(inner: T, limit: Duration) -> Self {
        Self {
            inner,
            limit,
            stalled: None,
        }
    }

    /// Called when a write is pending: fails once it has been pending for the limit.
    fn check(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let limit = self.limit;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client did not read the answer in time",
            )),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteDeadline<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Pending => self.check(cx).map(Err),
            done => {
                self.stalled = None;
                done
            }
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Pending => self.check(cx).map(Err),
            done => {
                self.stalled = None;
                done
            }
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write_vectored(cx, bufs) {
            Poll::Pending => self.check(cx).map(Err),
            done => {
                self.stalled = None;
                done
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
