//! The client side of mutual TLS between cluster members.
//!
//! tonic's own TLS settings are fixed when a channel is built, and RuLake's
//! channels live as long as the process (they reconnect on their own). So
//! channels dial through a [`TlsConnector`] instead: each new connection
//! takes the newest configuration of a [`ReloadingConnector`], and a rotated
//! certificate is in use from the next connection on, without a restart.

use crate::{certs, file_err, roots, PemSet, Reloading, TlsError};
use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivateKeyDer, ServerName};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::net::TcpStream;

/// What a cluster member dials with: the CA that signed the servers'
/// certificates and, for mutual TLS, its own certificate and key.
#[derive(Clone, Debug)]
pub struct ClientTlsFiles {
    /// PEM bundle of the CAs a server's certificate must chain to.
    pub ca: PathBuf,
    /// PEM certificate chain presented to servers, leaf first, and its key;
    /// `None` connects without a client certificate.
    pub identity: Option<(PathBuf, PathBuf)>,
}

impl ClientTlsFiles {
    /// Build a client config from the files as they are now.
    pub fn client_config(&self) -> Result<ClientConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_root_certificates(roots(&self.ca)?);
        let mut config = match &self.identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = certs(cert)?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|e| file_err(key, e))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| TlsError::Config(format!("{}: {e}", cert.display())))?
            }
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(config)
    }
}

impl PemSet for ClientTlsFiles {
    type Config = ClientConfig;
    fn build(&self) -> Result<ClientConfig, TlsError> {
        self.client_config()
    }
    fn paths(&self) -> Vec<&Path> {
        let mut v = vec![self.ca.as_path()];
        if let Some((c, k)) = &self.identity {
            v.extend([c.as_path(), k.as_path()]);
        }
        v
    }
}

/// Dials TLS connections with the newest valid client configuration.
pub type ReloadingConnector = Reloading<ClientTlsFiles>;

impl ReloadingConnector {
    /// A connector for `tonic`'s `Endpoint::connect_with_connector_lazy`.
    pub fn connector(self: &Arc<Self>) -> TlsConnector {
        TlsConnector { tls: self.clone() }
    }
}

/// A `tower` service from a URI to a TLS connection: the host part of the
/// URI is both where to connect and the name the server's certificate must
/// carry (a DNS name or an IP address). The URI's scheme is ignored, since
/// this connector always speaks TLS.
#[derive(Clone)]
pub struct TlsConnector {
    tls: Arc<ReloadingConnector>,
}

type Connecting = Pin<
    Box<
        dyn Future<
                Output = std::io::Result<
                    hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<TcpStream>>,
                >,
            > + Send,
    >,
>;

impl tower_service::Service<http::Uri> for TlsConnector {
    type Response = hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = std::io::Error;
    type Future = Connecting;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let config = self.tls.current();
        Box::pin(async move {
            let bad = |why: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, why);
            let host = uri
                .host()
                .ok_or_else(|| bad(format!("{uri}: no host")))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let port = uri
                .port_u16()
                .ok_or_else(|| bad(format!("{uri}: no port")))?;
            let name = ServerName::try_from(host.clone())
                .map_err(|e| bad(format!("{host}: not a server name: {e}")))?;
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            let _ = tcp.set_nodelay(true);
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await?;
            Ok(hyper_util::rt::TokioIo::new(tls))
        })
    }
}
