//! TLS for RuLake's gRPC endpoints with rustls, from PEM files.
//!
//! Certificates in Kubernetes arrive as mounted Secrets that cert-manager
//! rotates in place, so a server must pick up new files without a restart
//! and without dropping connections: [`ReloadingAcceptor`] holds the current
//! `ServerConfig`, checks the files' size and modification time on an
//! interval, and builds a new config when they change. Connections already
//! open keep the config they were accepted with; new ones get the new one.
//! A rotation that leaves unreadable or mismatched files keeps the old
//! config serving and says why in the log.
//!
//! With a client CA configured, every client must present a certificate
//! that CA signed (mutual TLS): that is how cluster members authenticate
//! each other.
//!
//! Cluster members talk to each other over mutual TLS with one cluster CA:
//! each presents its certificate as a client and checks the server's
//! against the CA. The client side reloads the same way
//! ([`ReloadingConnector`]): a rotated certificate is used from the next
//! connection on.
//!
//! # Layout
//! - [`TlsFiles`], [`ReloadingAcceptor`], [`incoming`] — server side (this
//!   file); [`Reloading`] — the reload logic both sides share.
//! - [`client`] — [`ClientTlsFiles`], [`ReloadingConnector`] and the
//!   [`TlsConnector`] gRPC channels dial through.
//! - [`TlsError`] — what can be wrong with the files.

pub mod client;

pub use client::{ClientTlsFiles, ReloadingConnector, TlsConnector};

use futures::Stream;
use parking_lot::{Mutex, RwLock};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;

/// How long a client has to finish its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What can be wrong with the TLS files.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read or holds no usable PEM section.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The files do not make a valid configuration (key does not match the
    /// certificate, an empty CA bundle, ...).
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// Where a server's certificate, key and (for mutual TLS) client CA live.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM bundle of CAs whose client certificates are accepted; `None`
    /// serves TLS without client certificates.
    pub client_ca: Option<PathBuf>,
}

fn file_err(path: &Path, reason: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// The CAs of a PEM bundle as a root store.
fn roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in certs(path)? {
        roots.add(c).map_err(|e| file_err(path, e))?;
    }
    Ok(roots)
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(path, e))?;
    if certs.is_empty() {
        return Err(file_err(path, "no CERTIFICATE section"));
    }
    Ok(certs)
}

impl TlsFiles {
    /// Build a server config from the files as they are now.
    pub fn server_config(&self) -> Result<ServerConfig, TlsError> {
        let chain = certs(&self.cert)?;
        let key = PrivateKeyDer::from_pem_file(&self.key).map_err(|e| file_err(&self.key, e))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(roots(ca)?.into(), provider)
                        .build()
                        .map_err(|e| {
                            TlsError::Config(format!("client CA {}: {e}", ca.display()))
                        })?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|e| TlsError::Config(format!("{}: {e}", self.cert.display())))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(config)
    }
}

/// A set of PEM files a TLS configuration is built from.
pub trait PemSet: Send + Sync + 'static {
    /// The rustls configuration the files make.
    type Config: Send + Sync + 'static;
    /// Build the configuration from the files as they are now.
    fn build(&self) -> Result<Self::Config, TlsError>;
    /// The files, to notice a change (size and modification time).
    fn paths(&self) -> Vec<&Path>;
}

impl PemSet for TlsFiles {
    type Config = ServerConfig;
    fn build(&self) -> Result<ServerConfig, TlsError> {
        self.server_config()
    }
    fn paths(&self) -> Vec<&Path> {
        let mut v = vec![self.cert.as_path(), self.key.as_path()];
        v.extend(self.client_ca.as_deref());
        v
    }
}

type Stamp = Vec<Option<(u64, SystemTime)>>;

fn stamp(paths: &[&Path]) -> Stamp {
    paths
        .iter()
        .map(|p| {
            std::fs::metadata(p)
                .ok()
                .map(|m| (m.len(), m.modified().unwrap_or(SystemTime::UNIX_EPOCH)))
        })
        .collect()
}

/// The newest valid configuration built from a [`PemSet`]: servers accept
/// with it ([`ReloadingAcceptor`]), clients connect with it
/// ([`ReloadingConnector`]).
pub struct Reloading<F: PemSet> {
    files: F,
    config: RwLock<Arc<F::Config>>,
    stamp: Mutex<Stamp>,
}

/// Accepts TLS connections with the newest valid configuration.
pub type ReloadingAcceptor = Reloading<TlsFiles>;

impl<F: PemSet> Reloading<F> {
    /// Load the files; an invalid set is an error here (at start-up a
    /// process must not come up without the TLS it was asked for).
    pub fn new(files: F) -> Result<Arc<Self>, TlsError> {
        let stamp = stamp(&files.paths());
        let config = files.build()?;
        Ok(Arc::new(Reloading {
            files,
            config: RwLock::new(Arc::new(config)),
            stamp: Mutex::new(stamp),
        }))
    }

    /// Rebuild the configuration if a file changed. Returns whether it did;
    /// on an invalid new set the old configuration stays and the error is
    /// returned.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let now = stamp(&self.files.paths());
        let mut stamp = self.stamp.lock();
        if *stamp == now {
            return Ok(false);
        }
        // Remember the attempt either way: a broken rotation is reported
        // once, and retried when the files change again.
        *stamp = now;
        let config = self.files.build()?;
        *self.config.write() = Arc::new(config);
        Ok(true)
    }

    /// Check the files every `every` until the last handle is dropped.
    pub fn watch(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(me) = weak.upgrade() else { return };
                let first = me.files.paths().first().map(|p| p.display().to_string());
                match me.reload_if_changed() {
                    Ok(true) => tracing::info!(file = ?first, "TLS certificates reloaded"),
                    Ok(false) => {}
                    Err(e) => {
                        tracing::error!(error = %e, "TLS files changed but are not usable; the previous certificates stay in use")
                    }
                }
            }
        })
    }

    /// The configuration new connections get.
    pub fn current(&self) -> Arc<F::Config> {
        self.config.read().clone()
    }
}

impl ReloadingAcceptor {
    /// Accept on `listener`, handshake each connection on its own task (a
    /// slow or hostile client holds up nobody else) and yield the
    /// connections that completed it. Failed handshakes (a plain-text
    /// client, an unknown CA, an expired or missing client certificate)
    /// are closed and logged.
    pub fn incoming(
        self: Arc<Self>,
        listener: TcpListener,
    ) -> impl Stream<Item = std::io::Result<TlsStream<TcpStream>>> {
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<TlsStream<TcpStream>>>(64);
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if tx.is_closed() {
                    return;
                }
                let _ = tcp.set_nodelay(true);
                let acceptor = tokio_rustls::TlsAcceptor::from(self.current());
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send(Ok(tls)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) })
    }
}

/// A server-side connection with or without TLS, so that a process serves
/// the same way whether TLS is configured or not.
pub enum ServerConn {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP (boxed: the TLS state is large).
    Tls(Box<TlsStream<TcpStream>>),
}

impl ServerConn {
    fn tcp(&self) -> &TcpStream {
        match self {
            ServerConn::Plain(s) => s,
            ServerConn::Tls(t) => t.get_ref().0,
        }
    }
}

impl tonic::transport::server::Connected for ServerConn {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;
    fn connect_info(&self) -> Self::ConnectInfo {
        self.tcp().connect_info()
    }
}

impl AsyncRead for ServerConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ServerConn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ServerConn::Tls(t) => Pin::new(t.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ServerConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            ServerConn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ServerConn::Tls(t) => Pin::new(t.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            ServerConn::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            ServerConn::Tls(t) => Pin::new(t.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ServerConn::Plain(s) => s.is_write_vectored(),
            ServerConn::Tls(t) => t.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ServerConn::Plain(s) => Pin::new(s).poll_flush(cx),
            ServerConn::Tls(t) => Pin::new(t.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ServerConn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ServerConn::Tls(t) => Pin::new(t.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The connections a server accepts on `listener`: TLS handshakes through
/// `tls` when it is set (see [`ReloadingAcceptor::incoming`]), plain TCP
/// with `TCP_NODELAY` otherwise.
pub fn incoming(
    listener: TcpListener,
    tls: Option<Arc<ReloadingAcceptor>>,
) -> Pin<Box<dyn Stream<Item = std::io::Result<ServerConn>> + Send>> {
    use futures::StreamExt;
    match tls {
        Some(acceptor) => Box::pin(
            acceptor
                .incoming(listener)
                .map(|c| c.map(|t| ServerConn::Tls(Box::new(t)))),
        ),
        None => Box::pin(futures::stream::unfold(listener, |l| async move {
            let r = l.accept().await.map(|(s, _)| {
                let _ = s.set_nodelay(true);
                ServerConn::Plain(s)
            });
            Some((r, l))
        })),
    }
}
