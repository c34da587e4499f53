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
//! # Layout
//! - [`TlsFiles`], [`ReloadingAcceptor`] — server side (this file).
//! - [`TlsError`] — what can be wrong with the files.

use futures::Stream;
use parking_lot::{Mutex, RwLock};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
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
                let mut roots = RootCertStore::empty();
                for c in certs(ca)? {
                    roots.add(c).map_err(|e| file_err(ca, e))?;
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .map_err(|e| TlsError::Config(format!("client CA {}: {e}", ca.display())))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|e| TlsError::Config(format!("{}: {e}", self.cert.display())))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(config)
    }

    fn stamp(&self) -> Vec<Option<(u64, SystemTime)>> {
        let one = |p: &Path| {
            std::fs::metadata(p)
                .ok()
                .map(|m| (m.len(), m.modified().unwrap_or(SystemTime::UNIX_EPOCH)))
        };
        let mut v = vec![one(&self.cert), one(&self.key)];
        if let Some(ca) = &self.client_ca {
            v.push(one(ca));
        }
        v
    }
}

/// Accepts TLS connections with the newest valid configuration.
pub struct ReloadingAcceptor {
    files: TlsFiles,
    config: RwLock<Arc<ServerConfig>>,
    stamp: Mutex<Vec<Option<(u64, SystemTime)>>>,
}

impl ReloadingAcceptor {
    /// Load the files; an invalid set is an error here (at start-up a
    /// server must not come up without the TLS it was asked for).
    pub fn new(files: TlsFiles) -> Result<Arc<Self>, TlsError> {
        let stamp = files.stamp();
        let config = files.server_config()?;
        Ok(Arc::new(ReloadingAcceptor {
            files,
            config: RwLock::new(Arc::new(config)),
            stamp: Mutex::new(stamp),
        }))
    }

    /// Rebuild the configuration if a file changed. Returns whether it did;
    /// on an invalid new set the old configuration stays and the error is
    /// returned.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let now = self.files.stamp();
        let mut stamp = self.stamp.lock();
        if *stamp == now {
            return Ok(false);
        }
        // Remember the attempt either way: a broken rotation is reported
        // once, and retried when the files change again.
        *stamp = now;
        let config = self.files.server_config()?;
        *self.config.write() = Arc::new(config);
        Ok(true)
    }

    /// Check the files every `every` until the acceptor is dropped.
    pub fn watch(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(me) = weak.upgrade() else { return };
                match me.reload_if_changed() {
                    Ok(true) => {
                        tracing::info!(cert = %me.files.cert.display(), "TLS certificates reloaded")
                    }
                    Ok(false) => {}
                    Err(e) => {
                        tracing::error!(error = %e, "TLS files changed but are not usable; the previous certificates keep serving")
                    }
                }
            }
        })
    }

    /// The configuration new connections get.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.config.read().clone()
    }

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
