//! A bound on the calls one client connection has in flight.
//!
//! HTTP/2 lets one connection carry any number of concurrent streams, so
//! without a bound a single client can occupy every worker with slow
//! searches and starve everyone else. tonic's own
//! `concurrency_limit_per_connection` queues the excess (a client waits
//! without being told why), and its load-shedding variant answers with a
//! fixed message that names no limit; this layer answers the excess at
//! once with `RESOURCE_EXHAUSTED` saying what to do.
//!
//! Why a map keyed by address: tonic applies server layers once and clones
//! the result for each connection and again for each request, so a layer
//! cannot tell connections apart by its own instances. The connection's
//! (local, remote) address pair, which tonic puts into every request's
//! extensions, identifies one open TCP connection; an entry lives only
//! while that connection has calls in flight.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use tonic::codegen::http;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

/// Default for [`crate::Limits::max_concurrent_per_connection`]: enough
/// for a client multiplexing its searches over one channel, small enough
/// that one connection cannot hold every worker of a server.
pub const MAX_CONCURRENT_PER_CONNECTION: usize = 64;

type Key = (Option<SocketAddr>, SocketAddr);

/// Limits calls in flight per client connection to `limit` (0: no limit).
#[derive(Clone, Debug)]
pub struct PerConnectionLimitLayer {
    limit: usize,
    in_flight: Arc<Mutex<HashMap<Key, usize>>>,
}

impl PerConnectionLimitLayer {
    /// A layer allowing `limit` calls in flight on each connection.
    pub fn new(limit: usize) -> Self {
        PerConnectionLimitLayer {
            limit,
            in_flight: Arc::default(),
        }
    }
}

impl<S> tower::Layer<S> for PerConnectionLimitLayer {
    type Service = PerConnectionLimit<S>;
    fn layer(&self, inner: S) -> PerConnectionLimit<S> {
        PerConnectionLimit {
            inner,
            limit: self.limit,
            in_flight: self.in_flight.clone(),
        }
    }
}

/// The service [`PerConnectionLimitLayer`] wraps around the server.
#[derive(Clone, Debug)]
pub struct PerConnectionLimit<S> {
    inner: S,
    limit: usize,
    in_flight: Arc<Mutex<HashMap<Key, usize>>>,
}

/// A call's slot on its connection, given back when the call's handler
/// has answered (or the call was dropped).
struct Slot {
    key: Key,
    in_flight: Arc<Mutex<HashMap<Key, usize>>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut map = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.key);
            }
        }
    }
}

fn connection_of<B>(req: &http::Request<B>) -> Option<Key> {
    let ext = req.extensions();
    let tcp = ext.get::<TcpConnectInfo>().or_else(|| {
        ext.get::<TlsConnectInfo<TcpConnectInfo>>()
            .map(|t| t.get_ref())
    })?;
    Some((tcp.local_addr(), tcp.remote_addr()?))
}

impl<S> PerConnectionLimit<S> {
    /// A slot for this call, or `None` when its connection is at the limit.
    /// Calls whose connection is unknown (not TCP) are not limited.
    fn acquire<B>(&self, req: &http::Request<B>) -> Result<Option<Slot>, ()> {
        if self.limit == 0 {
            return Ok(None);
        }
        let Some(key) = connection_of(req) else {
            return Ok(None);
        };
        let mut map = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(key).or_insert(0);
        if *n >= self.limit {
            return Err(());
        }
        *n += 1;
        Ok(Some(Slot {
            key,
            in_flight: self.in_flight.clone(),
        }))
    }
}

impl<S, B, RB> tower::Service<http::Request<B>> for PerConnectionLimit<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    RB: Default + Send + 'static,
{
    type Response = http::Response<RB>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        // The ready service handles this call; a fresh clone takes its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        match self.acquire(&req) {
            Ok(slot) => Box::pin(async move {
                let r = inner.call(req).await;
                drop(slot);
                r
            }),
            Err(()) => {
                let resp = crate::status::too_many_in_flight(self.limit).into_http();
                Box::pin(async move { Ok(resp) })
            }
        }
    }
}
