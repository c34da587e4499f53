//! A lake that fails on demand: an S3-compatible server over a local
//! directory (`s3s-fs`), started by the scenario on loopback, with a fault
//! layer in front that the scenario switches at run time.
//!
//! Why a server of our own rather than a wrapped `ObjectStore`: the
//! faults must cross the real protocol, so that what RuLake sees is what a
//! failing object store sends — a `503 SlowDown` the client's retry policy
//! handles, a response that comes seconds late, a body whose connection
//! drops halfway — and the processes under test need nothing but an
//! endpoint in their source policy.
//!
//! Faults are drawn per request from a seeded RNG, so a run is
//! reproducible as far as the order in which requests arrive is; each
//! injected fault is counted, so a scenario can say how many it survived
//! (and tell a quiet run from one that injected nothing).

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// Access key the lake accepts (its only credentials).
pub const ACCESS_KEY: &str = "chaos";
/// Secret key of [`ACCESS_KEY`].
pub const SECRET_KEY: &str = "chaos-secret";

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type ResponseBody = UnsyncBoxBody<Bytes, BoxError>;

/// What the lake does to each request from now on.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LakeFault {
    /// Every request served as asked.
    Healthy,
    /// With probability `p`, a request is refused with HTTP 503 (S3's
    /// `SlowDown` or `ServiceUnavailable`, alternately drawn).
    Unavailable {
        /// Probability per request.
        p: f64,
    },
    /// With probability `p`, a request is held for `pause` before it is
    /// served.
    Stall {
        /// Probability per request.
        p: f64,
        /// How long a stalled request waits.
        pause: Duration,
    },
    /// With probability `p`, a `GET` answer (an object's bytes or a
    /// listing) keeps its declared length but its connection drops after
    /// half the body.
    Truncate {
        /// Probability per request.
        p: f64,
    },
}

/// Requests seen and faults injected since the lake started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LakeCounts {
    /// Requests received.
    pub requests: u64,
    /// Refused with 503.
    pub unavailable: u64,
    /// Held back.
    pub stalled: u64,
    /// Bodies cut short.
    pub truncated: u64,
}

/// What one request gets.
#[derive(Clone, Copy, Debug)]
enum Decision {
    Serve,
    Refuse { slow_down: bool },
    Stall(Duration),
    Truncate,
}

struct State {
    fault: Mutex<LakeFault>,
    rng: Mutex<StdRng>,
    requests: AtomicU64,
    unavailable: AtomicU64,
    stalled: AtomicU64,
    truncated: AtomicU64,
}

impl State {
    /// Draw the fate of one request (one draw per request, whatever the
    /// fault, so the sequence depends only on the seed and the order).
    fn decide(&self, method: &http::Method) -> Decision {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let fault = *self.fault.lock();
        let (u, coin): (f64, bool) = {
            let mut rng = self.rng.lock();
            (rng.gen(), rng.gen())
        };
        match fault {
            LakeFault::Healthy => Decision::Serve,
            LakeFault::Unavailable { p } if u < p => {
                self.unavailable.fetch_add(1, Ordering::Relaxed);
                Decision::Refuse { slow_down: coin }
            }
            LakeFault::Stall { p, pause } if u < p => {
                self.stalled.fetch_add(1, Ordering::Relaxed);
                Decision::Stall(pause)
            }
            LakeFault::Truncate { p } if u < p && method == http::Method::GET => Decision::Truncate,
            _ => Decision::Serve,
        }
    }
}

/// The running lake; the server stops when this is dropped.
pub struct FaultyLake {
    /// `http://127.0.0.1:<port>`: the `aws_endpoint` of sources on it.
    pub endpoint: String,
    /// The directory it serves: each subdirectory is a bucket, each file
    /// under it an object, so a scenario may write objects directly.
    pub root: PathBuf,
    state: Arc<State>,
    server: tokio::task::JoinHandle<()>,
}

impl FaultyLake {
    /// Serve `root` on a free loopback port, healthy, faults drawn from
    /// `seed`. Must be called inside a Tokio runtime; panics (failing the
    /// test) if the server cannot start.
    pub fn start(root: &Path, seed: u64) -> FaultyLake {
        let fs = s3s_fs::FileSystem::new(root)
            .unwrap_or_else(|e| panic!("serve {} over S3: {e:?}", root.display()));
        let mut b = s3s::service::S3ServiceBuilder::new(fs);
        b.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let s3 = b.build();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = listener.local_addr().expect("the lake's address");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let listener =
            tokio::net::TcpListener::from_std(listener).expect("a Tokio listener (in a runtime)");
        let state = Arc::new(State {
            fault: Mutex::new(LakeFault::Healthy),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            requests: AtomicU64::new(0),
            unavailable: AtomicU64::new(0),
            stalled: AtomicU64::new(0),
            truncated: AtomicU64::new(0),
        });
        let service = Faulty {
            s3,
            state: state.clone(),
        };
        let server = tokio::spawn(async move {
            loop {
                let socket = match listener.accept().await {
                    Ok((socket, _)) => socket,
                    Err(_) => {
                        // Out of descriptors, say: try again shortly.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let svc = TowerToHyperService::new(service.clone());
                tokio::spawn(async move {
                    // A connection dropped on purpose (a cut body) ends here.
                    let _ = Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(socket), svc)
                        .await;
                });
            }
        });
        FaultyLake {
            endpoint: format!("http://{addr}"),
            root: root.to_owned(),
            state,
            server,
        }
    }

    /// From now on, treat requests as `fault` says.
    pub fn set(&self, fault: LakeFault) {
        *self.state.fault.lock() = fault;
    }

    /// The fault in force.
    pub fn fault(&self) -> LakeFault {
        *self.state.fault.lock()
    }

    /// Requests seen and faults injected so far.
    pub fn counts(&self) -> LakeCounts {
        let s = &self.state;
        LakeCounts {
            requests: s.requests.load(Ordering::Relaxed),
            unavailable: s.unavailable.load(Ordering::Relaxed),
            stalled: s.stalled.load(Ordering::Relaxed),
            truncated: s.truncated.load(Ordering::Relaxed),
        }
    }

    /// The object-store options a server needs to read this lake
    /// (endpoint, credentials, plain HTTP, path-style requests): what a
    /// source policy file gives its prefix.
    pub fn store_options(&self) -> BTreeMap<String, String> {
        [
            ("aws_endpoint", self.endpoint.as_str()),
            ("aws_allow_http", "true"),
            ("aws_access_key_id", ACCESS_KEY),
            ("aws_secret_access_key", SECRET_KEY),
            ("aws_region", "us-east-1"),
            ("aws_virtual_hosted_style_request", "false"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// A `--source-policy` file allowing `prefix` (`s3://<bucket>/...`)
    /// with [`FaultyLake::store_options`].
    pub fn policy_json(&self, prefix: &str) -> String {
        serde_json::json!({
            "allow": [{ "prefix": prefix, "options": self.store_options() }]
        })
        .to_string()
    }
}

impl Drop for FaultyLake {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The S3 service behind the fault layer.
#[derive(Clone)]
struct Faulty {
    s3: s3s::service::S3Service,
    state: Arc<State>,
}

type Answer = Result<http::Response<ResponseBody>, BoxError>;

impl<B> tower_service::Service<http::Request<B>> for Faulty
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    type Response = http::Response<ResponseBody>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Answer> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let decision = self.state.decide(req.method());
        let (mut s3, state) = (self.s3.clone(), self.state.clone());
        Box::pin(async move {
            if let Decision::Refuse { slow_down } = decision {
                return Ok(unavailable(slow_down));
            }
            if let Decision::Stall(pause) = decision {
                tokio::time::sleep(pause).await;
            }
            let resp = tower_service::Service::call(&mut s3, req)
                .await
                .map_err(BoxError::from)?;
            // Object bodies stream from files with no exact size hint: the
            // declared length is the Content-Length the client will expect.
            let len = resp.body().size_hint().exact().unwrap_or_else(|| {
                resp.headers()
                    .get(http::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok()?.parse().ok())
                    .unwrap_or(0)
            });
            let resp = resp.map(|b| b.map_err(BoxError::from).boxed_unsync());
            if matches!(decision, Decision::Truncate) && len >= 2 {
                state.truncated.fetch_add(1, Ordering::Relaxed);
                let keep = (len / 2) as usize;
                return Ok(resp.map(|b| {
                    Cut {
                        inner: b,
                        left: keep,
                    }
                    .boxed_unsync()
                }));
            }
            Ok(resp)
        })
    }
}

/// A 503 as S3 sends it: an XML error document naming the code.
fn unavailable(slow_down: bool) -> http::Response<ResponseBody> {
    let (code, message) = if slow_down {
        ("SlowDown", "Please reduce your request rate.")
    } else {
        ("ServiceUnavailable", "Service is unable to handle request.")
    };
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
         <Error><Code>{code}</Code><Message>{message}</Message>\
         <RequestId>chaos-lake</RequestId></Error>"
    );
    let mut resp = http::Response::new(
        Full::new(Bytes::from(xml))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *resp.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/xml"),
    );
    resp
}

/// A body that passes `left` bytes on, then fails, which makes the
/// server drop the connection with the declared length unmet.
struct Cut {
    inner: ResponseBody,
    left: usize,
}

impl Body for Cut {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.left == 0 {
            return Poll::Ready(Some(Err("body cut short by the chaos lake".into())));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(mut data) => {
                    if data.len() > this.left {
                        data.truncate(this.left);
                    }
                    this.left -= data.len();
                    Poll::Ready(Some(Ok(Frame::data(data))))
                }
                Err(frame) => Poll::Ready(Some(Ok(frame))),
            },
            other => other,
        }
    }

    fn size_hint(&self) -> SizeHint {
        // The declared length stays the whole body's: that is the fault.
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draws(seed: u64, fault: LakeFault, n: usize) -> Vec<String> {
        let s = State {
            fault: Mutex::new(fault),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            requests: AtomicU64::new(0),
            unavailable: AtomicU64::new(0),
            stalled: AtomicU64::new(0),
            truncated: AtomicU64::new(0),
        };
        (0..n)
            .map(|_| format!("{:?}", s.decide(&http::Method::GET)))
            .collect()
    }

    #[test]
    fn a_seed_repeats_its_faults_and_p_bounds_them() {
        let f = LakeFault::Unavailable { p: 0.3 };
        assert_eq!(draws(7, f, 200), draws(7, f, 200));
        assert_ne!(draws(7, f, 200), draws(8, f, 200));
        let refused = draws(7, f, 2000)
            .iter()
            .filter(|d| d.starts_with("Refuse"))
            .count();
        assert!((450..750).contains(&refused), "{refused} of 2000 at p 0.3");
        assert!(draws(7, LakeFault::Healthy, 100)
            .iter()
            .all(|d| d == "Serve"));
    }
}
