//! The operator's HTTP port: `/metrics` for Prometheus, `/healthz` and
//! `/readyz` for the kubelet's probes.
//!
//! Three fixed GET routes with small answers need little of HTTP, so this
//! is a minimal HTTP/1.1 responder on a TCP listener (one request per
//! connection, `Connection: close`) rather than a server library: `hyper`
//! belongs to `rulake-metrics` by the layer table, and the operator does
//! not depend on that crate. Requests are read with a deadline and a size
//! cap, so a slow or oversized client cannot hold a task.
//!
//! Liveness answers while the process's runtime does; readiness once the
//! Kubernetes API answered at start. A standby replica (waiting for the
//! leader Lease) is ready too: it serves its probes and metrics, and a
//! rollout must not wait for it to lead.

use crate::metrics::Metrics;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Longest wait for a request's head.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest request head read.
const MAX_REQUEST: usize = 8 * 1024;

/// What the endpoints answer from.
#[derive(Clone)]
pub struct Endpoints {
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
}

impl Endpoints {
    /// Endpoints over `metrics`, not ready until [`Endpoints::set_ready`].
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Endpoints {
            metrics,
            ready: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Marks the operator ready (or not).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Serves `listener` until `stop` resolves.
    pub async fn serve(self, listener: TcpListener, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            let accepted = tokio::select! {
                _ = &mut stop => return,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, _)) => {
                    let this = self.clone();
                    tokio::spawn(async move { this.answer(stream).await });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accepting on the metrics port failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    async fn answer(&self, mut stream: TcpStream) {
        let Ok(Some(path)) = tokio::time::timeout(READ_TIMEOUT, read_path(&mut stream)).await
        else {
            let _ = write(&mut stream, 400, "text/plain", "bad request\n").await;
            return;
        };
        let (code, kind, body) = self.route(&path);
        if let Err(e) = write(&mut stream, code, kind, &body).await {
            tracing::debug!(error = %e, "writing a metrics-port answer failed");
        }
    }

    /// Status, content type and body for a GET of `path`.
    fn route(&self, path: &str) -> (u16, &'static str, String) {
        const TEXT: &str = "text/plain; charset=utf-8";
        match path {
            "/metrics" => (200, "text/plain; version=0.0.4", self.metrics.render()),
            "/healthz" => (200, TEXT, "ok\n".into()),
            "/readyz" if self.ready.load(Ordering::Relaxed) => (200, TEXT, "ready\n".into()),
            "/readyz" => (503, TEXT, "not ready\n".into()),
            _ => (404, TEXT, "not found\n".into()),
        }
    }
}

/// Reads a request head and returns the path of a GET (query dropped);
/// `None` for anything else.
async fn read_path(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 || head.len() + n > MAX_REQUEST {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = std::str::from_utf8(&head).ok()?.lines().next()?;
    let mut parts = line.split(' ');
    let (method, target) = (parts.next()?, parts.next()?);
    let path = target.split('?').next()?;
    (method == "GET" && parts.next()?.starts_with("HTTP/1.")).then(|| path.to_string())
}

async fn write(stream: &mut TcpStream, code: u16, kind: &str, body: &str) -> std::io::Result<()> {
    let reason = match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        _ => "Service Unavailable",
    };
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(addr: std::net::SocketAddr, request: &str) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer
    }

    #[tokio::test]
    async fn answers_probes_and_metrics() {
        let metrics = Arc::new(Metrics::default());
        let endpoints = Endpoints::new(metrics.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(endpoints.clone().serve(listener, async {
            let _ = stopped.await;
        }));
        let request = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");

        assert!(get(addr, &request("/healthz"))
            .await
            .starts_with("HTTP/1.1 200 OK\r\n"));
        let not_ready = get(addr, &request("/readyz")).await;
        assert!(not_ready.starts_with("HTTP/1.1 503 "), "{not_ready}");
        endpoints.set_ready(true);
        assert!(get(addr, &request("/readyz?verbose"))
            .await
            .starts_with("HTTP/1.1 200 "));

        metrics.set_leader(true);
        let answer = get(addr, &request("/metrics")).await;
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains("Content-Type: text/plain; version=0.0.4"),
            "{head}"
        );
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{head}"
        );
        assert!(body.contains("\nrulake_operator_leader 1\n"), "{body}");

        assert!(get(addr, &request("/other"))
            .await
            .starts_with("HTTP/1.1 404 "));
        let post = get(addr, "POST /metrics HTTP/1.1\r\n\r\n").await;
        assert!(post.starts_with("HTTP/1.1 400 "), "{post}");
        // An oversized head is cut off (the answer may be lost to the
        // reset); the port keeps serving.
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let huge = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_REQUEST));
        let _ = stream.write_all(huge.as_bytes()).await;
        let _ = stream.read_to_end(&mut Vec::new()).await;
        assert!(get(addr, &request("/healthz"))
            .await
            .starts_with("HTTP/1.1 200 "));

        stop.send(()).unwrap();
        server.await.unwrap();
    }
}
