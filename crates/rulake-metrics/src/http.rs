//! The observability port: `/metrics`, `/healthz` and `/readyz` over plain
//! HTTP/1.1, on an address of its own so probes and scrapes never queue
//! behind queries and the gRPC port needs no HTTP routing.
//!
//! - `/metrics`: the registry in Prometheus text format.
//! - `/healthz`: 200 while the process serves HTTP at all (liveness).
//! - `/readyz`: 200 when every [`Readiness`] check of the roles this
//!   process runs passes, else 503 with the reasons, one per line
//!   (Kubernetes keeps an unready pod out of its Service).
//!
//! Each role supplies its own check: [`crate::raft::meta_ready`] (the
//! member knows a leader), [`crate::engine::shard_ready`] (collections
//! warmed), or a closure of the caller's.

use crate::{Metrics, Result};
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Whether a role is ready to serve; `Err` carries the reason shown on
/// `/readyz`.
pub trait Readiness: Send + Sync + 'static {
    /// Check now.
    fn check(&self) -> std::result::Result<(), String>;
}

impl<F> Readiness for F
where
    F: Fn() -> std::result::Result<(), String> + Send + Sync + 'static,
{
    fn check(&self) -> std::result::Result<(), String> {
        self()
    }
}

/// What the endpoints serve.
#[derive(Clone)]
pub struct Endpoints {
    metrics: Metrics,
    checks: Vec<Arc<dyn Readiness>>,
}

impl std::fmt::Debug for Endpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoints")
            .field("checks", &self.checks.len())
            .finish_non_exhaustive()
    }
}

impl Endpoints {
    /// Endpoints over `metrics` with no readiness checks yet (always ready).
    pub fn new(metrics: Metrics) -> Self {
        Endpoints {
            metrics,
            checks: Vec::new(),
        }
    }

    /// Add a role's readiness check; all must pass.
    pub fn ready_when(mut self, check: impl Readiness) -> Self {
        self.checks.push(Arc::new(check));
        self
    }

    /// The `/readyz` verdict now.
    pub fn readiness(&self) -> std::result::Result<(), String> {
        let reasons: Vec<String> = self.checks.iter().filter_map(|c| c.check().err()).collect();
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons.join("\n"))
        }
    }

    fn respond(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        let text = |status: StatusCode, body: String| {
            Response::builder()
                .status(status)
                .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
                .body(Full::new(Bytes::from(body)))
                .expect("static response parts")
        };
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n".into());
        }
        match req.uri().path() {
            "/metrics" => match self.metrics.encode() {
                Ok(body) => Response::builder()
                    .header(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)
                    .body(Full::new(Bytes::from(body)))
                    .expect("static response parts"),
                Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
            },
            "/healthz" => text(StatusCode::OK, "ok\n".into()),
            "/readyz" => match self.readiness() {
                Ok(()) => text(StatusCode::OK, "ready\n".into()),
                Err(why) => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not ready: {why}\n"),
                ),
            },
            _ => text(
                StatusCode::NOT_FOUND,
                "try /metrics, /healthz or /readyz\n".into(),
            ),
        }
    }

    /// Serve on `listener` until `shutdown` resolves. Connections are
    /// served concurrently; one failing connection never stops the server.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<()> {
        let this = Arc::new(self);
        tokio::pin!(shutdown);
        loop {
            let (stream, _) = tokio::select! {
                _ = &mut shutdown => return Ok(()),
                r = listener.accept() => match r {
                    Ok(s) => s,
                    Err(e) => {
                        // Out of descriptors and the like: back off, keep serving.
                        tracing::warn!(error = %e, "metrics endpoint: accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            let this = this.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let r = this.respond(&req);
                    async move { Ok::<_, std::convert::Infallible>(r) }
                });
                if let Err(e) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    tracing::debug!(error = %e, "metrics endpoint: connection ended with an error");
                }
            });
        }
    }
}

/// Bind the observability port.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener> {
    Ok(TcpListener::bind(addr).await?)
}
