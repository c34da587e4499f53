//! Per-RPC metrics for a tonic server, as a tower layer.
//!
//! [`GrpcMetricsLayer`] wraps the whole router, so every service (the
//! public API, health, reflection) is measured the same way without any
//! handler doing more than naming its collection. A call is recorded once,
//! when it completes:
//! - a response whose headers carry `grpc-status` (tonic's "trailers-only"
//!   form for errors returned before any message) completes at once;
//! - otherwise the call completes when the response body yields its
//!   trailers (where `grpc-status` is), so a server-streaming call is timed
//!   to its last message and a client-streaming one (Ingest) to its answer;
//! - a call whose response is dropped unfinished (the client went away) is
//!   recorded as `CANCELLED`.
//!
//! The collection label comes from the task-local request context
//! ([`rulake_telemetry::RequestContext`]) the layer scopes around the
//! handler: handlers call [`rulake_telemetry::set_collection`] once they
//! know which collection the call is about, and the layer reads it when the
//! call completes. Names of collections that do not exist (checked then)
//! are recorded as [`crate::UNKNOWN_COLLECTION`], so clients cannot grow
//! the label set; method names are capped likewise.

use crate::{Metrics, Result, UNKNOWN_COLLECTION};
use http::{HeaderMap, Request, Response};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use prometheus::{exponential_buckets, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts};
use rulake_telemetry::RequestContext;
use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Instant;
use tokio::task::futures::TaskLocalFuture;

/// Distinct `service/method` pairs recorded before further ones are folded
/// into `_other` (a client can send any path; only real routes should
/// become label values, and a server has far fewer than this).
pub const MAX_METHODS: usize = 256;

/// Label value for a method beyond [`MAX_METHODS`] or with a malformed path.
pub const OTHER_METHOD: &str = "_other";

/// Whether a collection of this name exists (decides the label value).
pub type CollectionExists = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// The gRPC metric families and the bounds on their labels.
#[derive(Clone)]
pub struct GrpcMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
    in_flight: IntGauge,
    methods: Arc<Mutex<HashSet<(String, String)>>>,
    exists: CollectionExists,
}

impl std::fmt::Debug for GrpcMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcMetrics").finish_non_exhaustive()
    }
}

/// Labels of the per-call families.
const LABELS: [&str; 4] = ["service", "method", "collection", "code"];

impl GrpcMetrics {
    /// Register the gRPC families in `metrics`; `exists` says whether a
    /// collection name may become a label value.
    pub fn new(
        metrics: &Metrics,
        exists: impl Fn(&str) -> bool + Send + Sync + 'static,
    ) -> Result<Self> {
        let requests = IntCounterVec::new(
            Opts::new(
                "grpc_requests_total",
                "gRPC calls completed, by service, method, collection and status code.",
            ),
            &LABELS,
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "grpc_request_duration_seconds",
                "gRPC call latency from request to last response byte, by service, method, collection and status code.",
            )
            .buckets(exponential_buckets(0.000_25, 2.0, 18)?),
            &LABELS,
        )?;
        let in_flight = IntGauge::new("grpc_requests_in_flight", "gRPC calls being served now.")?;
        metrics.register(Box::new(requests.clone()))?;
        metrics.register(Box::new(duration.clone()))?;
        metrics.register(Box::new(in_flight.clone()))?;
        Ok(GrpcMetrics {
            requests,
            duration,
            in_flight,
            methods: Arc::default(),
            exists: Arc::new(exists),
        })
    }

    /// The tower layer recording into these families.
    pub fn layer(&self) -> GrpcMetricsLayer {
        GrpcMetricsLayer {
            metrics: self.clone(),
        }
    }

    fn method_labels(&self, path: &str) -> (String, String) {
        let other = || (OTHER_METHOD.to_owned(), OTHER_METHOD.to_owned());
        let Some((service, method)) = path.strip_prefix('/').and_then(|p| p.split_once('/')) else {
            return other();
        };
        let valid = |s: &str, extra: char| {
            !s.is_empty()
                && s.len() <= 128
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == extra)
        };
        if !valid(service, '.') || !valid(method, '_') {
            return other();
        }
        let key = (service.to_owned(), method.to_owned());
        let mut seen = self.methods.lock().unwrap_or_else(|p| p.into_inner());
        if seen.contains(&key) || (seen.len() < MAX_METHODS && seen.insert(key.clone())) {
            key
        } else {
            other()
        }
    }

    fn record(&self, path: &str, collection: Option<String>, code: i32, seconds: f64) {
        let (service, method) = self.method_labels(path);
        let collection = match collection {
            Some(c) if (self.exists)(&c) => c,
            _ => UNKNOWN_COLLECTION.to_owned(),
        };
        let labels = [
            service.as_str(),
            method.as_str(),
            collection.as_str(),
            code_name(code),
        ];
        self.requests.with_label_values(&labels).inc();
        self.duration.with_label_values(&labels).observe(seconds);
    }
}

pub use rulake_telemetry::code_name;

const CANCELLED: i32 = 1;
const UNKNOWN: i32 = 2;

fn grpc_status(headers: &HeaderMap) -> Option<i32> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// One call being measured; recorded exactly once (as `CANCELLED` if it is
/// dropped before it completes).
struct Call {
    metrics: GrpcMetrics,
    path: String,
    context: RequestContext,
    span: tracing::Span,
    start: Instant,
    done: bool,
}

impl Call {
    fn finish(&mut self, code: i32) {
        if self.done {
            return;
        }
        self.done = true;
        self.metrics.in_flight.dec();
        let collection = self.context.collection();
        let seconds = self.start.elapsed().as_secs_f64();
        // The call's log line, in its span: what joins the logs of caller
        // and callee on `trace_id`.
        self.span.in_scope(|| {
            tracing::info!(
                code = code_name(code),
                seconds,
                collection = collection.as_deref().unwrap_or(""),
                "grpc call completed"
            )
        });
        self.metrics.record(&self.path, collection, code, seconds);
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.finish(CANCELLED);
    }
}

/// Tower layer recording every call of the wrapped service (see the module
/// docs).
#[derive(Clone, Debug)]
pub struct GrpcMetricsLayer {
    metrics: GrpcMetrics,
}

impl<S> tower_layer::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetricsService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// The service [`GrpcMetricsLayer`] builds.
#[derive(Clone, Debug)]
pub struct GrpcMetricsService<S> {
    inner: S,
    metrics: GrpcMetrics,
}

impl<S, ReqBody, ResBody> tower_service::Service<Request<ReqBody>> for GrpcMetricsService<S>
where
    S: tower_service::Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body,
{
    type Response = Response<MeteredBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::result::Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let (span, trace) = rulake_telemetry::request_span(req.uri().path(), req.headers());
        let context = RequestContext::new(trace);
        self.metrics.in_flight.inc();
        let call = Call {
            metrics: self.metrics.clone(),
            path: req.uri().path().to_owned(),
            context: context.clone(),
            span: span.clone(),
            start: Instant::now(),
            done: false,
        };
        let _entered = span.enter();
        let future = context.scope(self.inner.call(req));
        drop(_entered);
        ResponseFuture {
            future,
            span,
            call: Some(call),
        }
    }
}

pin_project! {
    /// The future of a measured call.
    pub struct ResponseFuture<F> {
        #[pin]
        future: TaskLocalFuture<RequestContext, F>,
        span: tracing::Span,
        call: Option<Call>,
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = std::result::Result<Response<B>, E>>,
{
    type Output = std::result::Result<Response<MeteredBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        let result = ready!(this.future.poll(cx));
        let mut call = this.call.take().expect("polled after completion");
        Poll::Ready(match result {
            Ok(response) => {
                let (parts, inner) = response.into_parts();
                let call = match grpc_status(&parts.headers) {
                    // Trailers-only response: the call is over.
                    Some(code) => {
                        call.finish(code);
                        None
                    }
                    None => Some(call),
                };
                Ok(Response::from_parts(parts, MeteredBody { inner, call }))
            }
            Err(e) => {
                call.finish(UNKNOWN);
                Err(e)
            }
        })
    }
}

pin_project! {
    /// A response body that records its call when the trailers pass (or the
    /// body ends or is dropped).
    pub struct MeteredBody<B> {
        #[pin]
        inner: B,
        call: Option<Call>,
    }
}

impl<B: Body> Body for MeteredBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        let code = match &frame {
            Some(Ok(f)) => f.trailers_ref().map(|t| grpc_status(t).unwrap_or(UNKNOWN)),
            Some(Err(_)) => Some(UNKNOWN),
            // A gRPC response always ends with a status; one that does not
            // is an unknown failure.
            None => Some(UNKNOWN),
        };
        if let Some(code) = code {
            if let Some(mut call) = this.call.take() {
                call.finish(code);
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_labels_are_bounded() {
        let m = GrpcMetrics::new(&Metrics::new(), |_| true).unwrap();
        assert_eq!(
            m.method_labels("/rulake.v1.SearchService/Search"),
            ("rulake.v1.SearchService".to_owned(), "Search".to_owned())
        );
        let other = (OTHER_METHOD.to_owned(), OTHER_METHOD.to_owned());
        for bad in ["", "/", "/x", "/a b/c", "/svc/m/extra", "no-slash"] {
            assert_eq!(m.method_labels(bad), other, "{bad:?}");
        }
        for i in 0..MAX_METHODS + 10 {
            let (s, _) = m.method_labels(&format!("/svc/M{i}"));
            assert_eq!(s == OTHER_METHOD, i >= MAX_METHODS - 1, "{i}");
        }
        // Methods seen before the cap keep their names.
        assert_eq!(
            m.method_labels("/rulake.v1.SearchService/Search").1,
            "Search"
        );
        assert_eq!(code_name(5), "NOT_FOUND");
        assert_eq!(code_name(99), "UNKNOWN");
    }
}
