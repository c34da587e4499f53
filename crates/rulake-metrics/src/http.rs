//! The observability port: `/metrics`, `/healthz` and `/readyz` over plain
//! HTTP/1.1, on an address of its own so probes and scrapes never queue
//! behind queries and the gRPC port needs no HTTP routing.
//!
//! - `/metrics`: the registry in Prometheus text format.
//! - `/healthz`: 200 while the process serves HTTP at all (liveness).
//! - `/readyz`: 200 `ready` when every [`Readiness`] check of the roles this
//!   process runs passes, else 503 `not ready` with how many things are
//!   still waiting (Kubernetes keeps an unready pod out of its Service).
//!
//! Each role supplies its own check: [`crate::raft::meta_ready`] (the
//! member knows a leader), [`crate::engine::shard_ready`] (collections
//! warmed), or a closure of the caller's.
//!
//! The port has no authentication (probes and scrapers carry no
//! credentials), so it tells no more than a status: `/readyz` never names
//! a collection, a path, a URL or an error. What is waiting, and why, goes
//! to the server's log when it changes ([`NotReady::detail`]); per
//! collection it is in `DescribeCollection`, behind the API's
//! authentication. `/metrics` labels are bounded names (collections,
//! methods, status codes, source kinds), never a URL, path or error text.

use crate::{Metrics, Result};
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

/// Why a role is not ready yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotReady {
    /// How many things the role still waits for (collections to load, a
    /// leader to learn): all that `/readyz` says.
    pub waiting: usize,
    /// What they are and why, for the server's log only: it may name
    /// collections, paths and URLs, which the open port must not show.
    pub detail: String,
}

/// Whether a role is ready to serve; `Err` says what it waits for.
pub trait Readiness: Send + Sync + 'static {
    /// Check now.
    fn check(&self) -> std::result::Result<(), NotReady>;
}

impl<F> Readiness for F
where
    F: Fn() -> std::result::Result<(), NotReady> + Send + Sync + 'static,
{
    fn check(&self) -> std::result::Result<(), NotReady> {
        self()
    }
}

/// What the endpoints serve.
#[derive(Clone)]
pub struct Endpoints {
    metrics: Metrics,
    checks: Vec<Arc<dyn Readiness>>,
    /// The last details logged, so a probe every few seconds logs a
    /// change once rather than every time.
    logged: Arc<Mutex<Option<String>>>,
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
            logged: Arc::default(),
        }
    }

    /// Add a role's readiness check; all must pass.
    pub fn ready_when(mut self, check: impl Readiness) -> Self {
        self.checks.push(Arc::new(check));
        self
    }

    /// The `/readyz` verdict now: every failing check's count, summed, and
    /// their details, one per line.
    pub fn readiness(&self) -> std::result::Result<(), NotReady> {
        let failing: Vec<NotReady> = self.checks.iter().filter_map(|c| c.check().err()).collect();
        if failing.is_empty() {
            return Ok(());
        }
        Err(NotReady {
            waiting: failing.iter().map(|n| n.waiting).sum(),
            detail: failing
                .into_iter()
                .map(|n| n.detail)
                .collect::<Vec<_>>()
                .join("\n"),
        })
    }

    /// The `/readyz` body for `verdict`, logging its details when they
    /// changed since the last probe.
    fn ready_text(&self, verdict: &std::result::Result<(), NotReady>) -> String {
        let detail = verdict.as_ref().err().map(|n| n.detail.clone());
        let mut logged = self.logged.lock().unwrap_or_else(|p| p.into_inner());
        if *logged != detail {
            match &detail {
                Some(d) => tracing::info!(waiting = %d, "not ready"),
                None => tracing::info!("ready"),
            }
            *logged = detail;
        }
        match verdict {
            Ok(()) => "ready\n".into(),
            Err(n) => format!("not ready: {} waiting\n", n.waiting),
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
                Err(e) => {
                    tracing::error!(error = %e, "metrics could not be encoded");
                    text(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "metrics could not be encoded (see the server log)\n".into(),
                    )
                }
            },
            "/healthz" => text(StatusCode::OK, "ok\n".into()),
            "/readyz" => {
                let verdict = self.readiness();
                let status = match verdict {
                    Ok(()) => StatusCode::OK,
                    Err(_) => StatusCode::SERVICE_UNAVAILABLE,
                };
                text(status, self.ready_text(&verdict))
            }
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
