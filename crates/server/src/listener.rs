//! Listening sockets: plain TCP, or TLS (rustls) that may require client certificates from a
//! configured CA. Either way each connection carries a [`ClientInfo`] to the handlers.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::serve::Listener;
use highside_tenancy::PeerCertificate;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// A handshake that has not finished in this time is dropped, so slow clients cannot pile up.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at most; a connection beyond them is closed at once, so a flood of
/// connections that never finish a handshake costs a bounded number of tasks.
const MAX_HANDSHAKES: usize = 256;
/// Of those, at most this many from one client address, so a few addresses cannot hold
/// them all.
const HANDSHAKES_PER_ADDRESS: usize = 16;

/// Who is on the other end of a connection.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    /// The peer's address.
    pub addr: SocketAddr,
    /// The client certificate, already verified against the configured CA.
    pub certificate: Option<PeerCertificate>,
}

/// Where the TLS material lives.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// PEM certificate chain of the server.
    pub cert: PathBuf,
    /// PEM private key of the server.
    pub key: PathBuf,
    /// PEM CA certificates; when set, every client must present a certificate they issued.
    pub client_ca: Option<PathBuf>,
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("cannot read {path}: {message}")]
    Pem {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// rustls refused the configuration.
    #[error("invalid TLS configuration: {0}")]
    Config(String),
}

fn pem_err(path: &Path, message: impl ToString) -> TlsError {
    TlsError::Pem {
        path: path.display().to_string(),
        message: message.to_string(),
    }
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_err(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(path, e))?;
    if certs.is_empty() {
        return Err(pem_err(path, "no certificates in the file"));
    }
    Ok(certs)
}

/// Builds the rustls server configuration (ring provider, TLS 1.2 and 1.3, HTTP/1.1).
pub fn tls_config(settings: &TlsSettings) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = certs(&settings.cert)?;
    let key = PrivateKeyDer::from_pem_file(&settings.key).map_err(|e| pem_err(&settings.key, e))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match &settings.client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in certs(ca)? {
                roots.add(cert).map_err(|e| pem_err(ca, e))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The subject (as its canonical distinguished name, RDN by RDN) and subjectAltNames of a DER
/// certificate, as mappings match them.
pub fn peer_certificate(der: &[u8]) -> Option<PeerCertificate> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let registry = x509_parser::objects::oid_registry();
    let rdns: Vec<Vec<(String, String)>> = cert
        .subject()
        .iter()
        .map(|rdn| {
            rdn.iter()
                .map(|a| {
                    let ty = x509_parser::objects::oid2abbrev(a.attr_type(), registry)
                        .map_or_else(|_| a.attr_type().to_id_string(), str::to_owned);
                    // A value that is not a string is written as RFC 4514's `#` and hex.
                    let value = a.as_str().map_or_else(
                        |_| format!("#{}", hex::encode_upper(a.attr_value().data)),
                        str::to_owned,
                    );
                    (ty, value)
                })
                .collect()
        })
        .collect();
    let subject = highside_identity::canonical_dn(
        rdns.iter()
            .map(|r| r.iter().map(|(t, v)| (t.as_str(), v.as_str()))),
    );
    let mut sans = Vec::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for name in &ext.value.general_names {
            use x509_parser::extensions::GeneralName;
            match name {
                GeneralName::DNSName(s) | GeneralName::RFC822Name(s) | GeneralName::URI(s) => {
                    sans.push((*s).to_owned());
                }
                _ => {}
            }
        }
    }
    Some(PeerCertificate { subject, sans })
}

/// Plain TCP.
#[derive(Debug)]
pub struct PlainListener(TcpListener);

impl PlainListener {
    /// Wraps a bound listener.
    pub fn new(listener: TcpListener) -> Self {
        Self(listener)
    }
}

async fn backoff(e: std::io::Error) {
    // Out of file descriptors and the like: wait instead of spinning, as axum does.
    tracing::warn!(error = %e, "accept failed");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

impl Listener for PlainListener {
    type Io = TcpStream;
    type Addr = ClientInfo;

    async fn accept(&mut self) -> (TcpStream, ClientInfo) {
        loop {
            match self.0.accept().await {
                Ok((io, addr)) => {
                    return (
                        io,
                        ClientInfo {
                            addr,
                            certificate: None,
                        },
                    );
                }
                Err(e) => backoff(e).await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<ClientInfo> {
        Ok(ClientInfo {
            addr: self.0.local_addr()?,
            certificate: None,
        })
    }
}

/// TLS over TCP. Handshakes run concurrently in their own tasks; only finished ones are
/// handed to the HTTP server, so one slow client cannot hold up the others.
#[derive(Debug)]
pub struct TlsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, ClientInfo)>,
}

impl TlsListener {
    /// Starts accepting on `listener` with `config`.
    pub fn new(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let acceptor = TlsAcceptor::from(config);
        let (tx, ready) = mpsc::channel(64);
        let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
        let per_address = Arc::new(crate::conn::PerAddress::default());
        tokio::spawn(async move {
            loop {
                let (tcp, addr) = match listener.accept().await {
                    Ok(x) => x,
                    Err(e) => {
                        backoff(e).await;
                        continue;
                    }
                };
                if tx.is_closed() {
                    return;
                }
                let Some(share) = per_address.take(addr.ip(), HANDSHAKES_PER_ADDRESS) else {
                    tracing::warn!(client = %addr, "too many TLS handshakes from one address: connection closed");
                    continue;
                };
                let Ok(permit) = Arc::clone(&handshakes).try_acquire_owned() else {
                    tracing::warn!(client = %addr, "too many TLS handshakes in progress: connection closed");
                    continue;
                };
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let _permit = (permit, share);
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let certificate = tls
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|c| c.first())
                                .and_then(|c| peer_certificate(c.as_ref()));
                            // The server takes connections only as it has room for them: one
                            // that waits longer is dropped, so waiting ones cannot hold the
                            // handshake permits.
                            let ready = (tls, ClientInfo { addr, certificate });
                            if tokio::time::timeout(HANDSHAKE_TIMEOUT, tx.send(ready))
                                .await
                                .is_err()
                            {
                                tracing::warn!(client = %addr, "server busy: a connection waited too long and was closed");
                            }
                        }
                        Ok(Err(e)) => {
                            tracing::info!(client = %addr, error = %e, "TLS handshake failed");
                        }
                        Err(_) => tracing::info!(client = %addr, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self { local, ready })
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = ClientInfo;

    async fn accept(&mut self) -> (Self::Io, ClientInfo) {
        match self.ready.recv().await {
            Some(x) => x,
            // The accept task only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<ClientInfo> {
        Ok(ClientInfo {
            addr: self.local,
            certificate: None,
        })
    }
}
