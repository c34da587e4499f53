//! How a shard node stops without failing a scan: it leaves routing first.
//!
//! On the shutdown signal (SIGTERM from Kubernetes, `docker stop`, Ctrl-C)
//! a shard node does not stop accepting at once. It first tells
//! coordinators it is leaving ([`ShardNode::leave`]: its status reports
//! show nothing warm, and its gRPC health says `NOT_SERVING`), waits long
//! enough for every coordinator's status poll to see that, then waits for
//! the scans already sent to it to finish and for new ones to stop
//! arriving, and only then lets the server close. Coordinators meanwhile
//! send new scans to the partitions' other replicas, so with replication
//! 2 or more a stop costs no query a retry; with replication 1 the node
//! keeps answering its partitions until the drain's time is up.
//!
//! Why routing and not placement: a restart (an image upgrade, an evicted
//! pod) comes back as the same node with the same volume, so moving its
//! partitions away and back would cost two rounds of loading for nothing.
//! The node's heartbeats keep telling the meta group the truth, and its
//! partitions stay assigned to it; only an admin drain (the operator's,
//! before a scale-down) moves partitions. This is how Qdrant, Elasticsearch
//! and etcd treat a restarting member: out of request routing at once, out
//! of data placement only after a grace period (`rulake meta
//! --shard-grace-ms`).

use rulake_coordinator::ShardNode;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tonic::codegen::http;

/// How long a leaving node waits before it looks for quiet: several of a
/// coordinator's status polls (every 250 ms by default), so every
/// coordinator has seen it leave.
pub const NOTICE: Duration = Duration::from_secs(1);

/// No shard call started this long, and none in flight: coordinators have
/// stopped sending.
pub const QUIET: Duration = Duration::from_millis(500);

/// Calls to the `ShardService` that do work (scans, lookups, refreshes;
/// not status polls) in flight, and when the last one started. Cheap to
/// clone; clones share the counts.
#[derive(Clone, Debug)]
pub struct Calls(Arc<Counts>);

#[derive(Debug)]
struct Counts {
    base: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `base` at which the latest call started.
    last_start_ms: AtomicU64,
}

impl Default for Calls {
    fn default() -> Self {
        Calls(Arc::new(Counts {
            base: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_start_ms: AtomicU64::new(0),
        }))
    }
}

impl Calls {
    /// Calls in flight now.
    pub fn in_flight(&self) -> usize {
        self.0.in_flight.load(Ordering::SeqCst)
    }

    /// Time since the latest call started (since creation if none did).
    pub fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.0.last_start_ms.load(Ordering::SeqCst));
        self.0.base.elapsed().saturating_sub(last)
    }

    fn start(&self) -> CallGuard {
        let now = self.0.base.elapsed().as_millis() as u64;
        self.0.last_start_ms.fetch_max(now, Ordering::SeqCst);
        self.0.in_flight.fetch_add(1, Ordering::SeqCst);
        CallGuard(self.clone())
    }

    /// The tower layer that counts the calls of a server.
    pub fn layer(&self) -> CountCallsLayer {
        CountCallsLayer(self.clone())
    }
}

/// One call in flight until dropped (answered, failed or cancelled).
struct CallGuard(Calls);

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.0 .0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Whether a request path is a `ShardService` call that does work.
fn counted(path: &str) -> bool {
    path.strip_prefix("/rulake.internal.v1.ShardService/")
        .is_some_and(|method| method != "Status")
}

/// Counts a server's `ShardService` calls into [`Calls`].
#[derive(Clone, Debug)]
pub struct CountCallsLayer(Calls);

impl<S> tower::Layer<S> for CountCallsLayer {
    type Service = CountCalls<S>;

    fn layer(&self, inner: S) -> CountCalls<S> {
        CountCalls {
            inner,
            calls: self.0.clone(),
        }
    }
}

/// The service of [`CountCallsLayer`].
#[derive(Clone, Debug)]
pub struct CountCalls<S> {
    inner: S,
    calls: Calls,
}

impl<S, B> tower::Service<http::Request<B>> for CountCalls<S>
where
    S: tower::Service<http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let guard = counted(req.uri().path()).then(|| self.calls.start());
        let fut = self.inner.call(req);
        Box::pin(async move {
            let out = fut.await;
            drop(guard);
            out
        })
    }
}

/// Leave routing and wait until coordinators have stopped sending work:
/// [`NOTICE`], then until nothing is in flight and nothing started for
/// [`QUIET`], at most `most` in all. Returns how long it took.
pub async fn drain(
    node: &ShardNode,
    calls: &Calls,
    health: &tonic_health::server::HealthReporter,
    most: Duration,
) -> Duration {
    let start = Instant::now();
    node.leave();
    health
        .set_service_status("", tonic_health::ServingStatus::NotServing)
        .await;
    eprintln!(
        "rulake shard: node {} leaving routing; draining for at most {most:?}",
        node.id()
    );
    tokio::time::sleep(NOTICE.min(most)).await;
    loop {
        if calls.in_flight() == 0 && calls.idle_for() >= QUIET {
            break;
        }
        if start.elapsed() >= most {
            tracing::warn!(
                in_flight = calls.in_flight(),
                "calls still arriving after {most:?} (a partition with no other replica?); stopping anyway"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = start.elapsed();
    eprintln!(
        "rulake shard: node {} drained in {:.1} s",
        node.id(),
        took.as_secs_f64()
    );
    took
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_shard_calls_that_do_work_are_counted() {
        assert!(counted("/rulake.internal.v1.ShardService/Scan"));
        assert!(counted("/rulake.internal.v1.ShardService/Lookup"));
        assert!(!counted("/rulake.internal.v1.ShardService/Status"));
        assert!(!counted("/grpc.health.v1.Health/Check"));
    }

    #[tokio::test]
    async fn calls_are_counted_until_they_finish() {
        use tower::{Layer, Service, ServiceExt};
        let calls = Calls::default();
        let release = Arc::new(tokio::sync::Notify::new());
        let r = release.clone();
        let inner = tower::service_fn(move |_req: http::Request<()>| {
            let r = r.clone();
            async move {
                r.notified().await;
                Ok::<_, std::convert::Infallible>(())
            }
        });
        let mut svc = calls.layer().layer(inner);
        let req = |path: &str| http::Request::builder().uri(path).body(()).unwrap();
        let scan = svc
            .ready()
            .await
            .unwrap()
            .call(req("/rulake.internal.v1.ShardService/Scan"));
        assert_eq!(calls.in_flight(), 1);
        assert!(calls.idle_for() < QUIET);
        release.notify_one();
        scan.await.unwrap();
        assert_eq!(calls.in_flight(), 0);
        let status = svc
            .ready()
            .await
            .unwrap()
            .call(req("/rulake.internal.v1.ShardService/Status"));
        assert_eq!(calls.in_flight(), 0, "status polls are not work");
        drop(status);
    }
}
