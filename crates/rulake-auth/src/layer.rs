//! The tower layer that authenticates every public call, and the reload of
//! its configuration.
//!
//! Keys must rotate without a restart, and a restart to revoke a leaked key
//! is too slow. A layer built with [`AuthLayer::from_file`] remembers the
//! bytes of the configuration and of every key file it named; [`AuthLayer::
//! watch`] compares them every few seconds and, when any changed, loads the
//! new set. Calls already authenticated keep their principal; the next call
//! sees the new keys. A new set that does not load (broken JSON, a missing
//! key file, a half-written file) is logged and the previous configuration
//! stays in force; it is tried again when the files change again.

use crate::config::{digest, AuthConfig};
use crate::AuthError;
use rulake_audit::{AuditLog, Event};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;
use tonic::Status;

/// How often a server checks its auth files for a change.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(2);

/// What a watched layer last read: the files and a digest of their bytes.
struct Watched {
    path: PathBuf,
    files: Vec<PathBuf>,
    digest: [u8; 32],
}

struct Shared {
    current: RwLock<Arc<AuthConfig>>,
    watched: Option<Mutex<Watched>>,
}

/// The tower layer authenticating every public call. Cheap to clone; every
/// clone and every service it made sees a reload.
#[derive(Clone)]
pub struct AuthLayer {
    shared: Arc<Shared>,
    /// Where callers turned away are recorded.
    audit: Option<Arc<AuditLog>>,
}

fn log_warnings(path: &Path, config: &AuthConfig) {
    for w in config.warnings() {
        tracing::warn!(file = %path.display(), "auth configuration: {w}");
    }
    if let Some(g) = config.anonymous_grants() {
        let g: Vec<String> = g.iter().map(|g| g.to_string()).collect();
        tracing::warn!(file = %path.display(), grants = ?g, "callers without a credential are accepted");
    }
}

impl AuthLayer {
    /// Authenticate with `config`, as it is (no file to reload).
    pub fn new(config: AuthConfig) -> Self {
        AuthLayer {
            shared: Arc::new(Shared {
                current: RwLock::new(Arc::new(config)),
                watched: None,
            }),
            audit: None,
        }
    }

    /// Authenticate with the configuration in `path`; [`AuthLayer::watch`]
    /// then reloads it when it or a key file changes. A file that does not
    /// load is an error here: a server must not come up without the
    /// authentication it was asked for. Its warnings are logged.
    pub fn from_file(path: &Path) -> Result<Self, AuthError> {
        let (files, config) = AuthConfig::load(path);
        let config = config?;
        log_warnings(path, &config);
        let watched = Watched {
            path: path.to_owned(),
            digest: files.digest(),
            files: files.seen.into_iter().map(|(p, _)| p).collect(),
        };
        Ok(AuthLayer {
            shared: Arc::new(Shared {
                current: RwLock::new(Arc::new(config)),
                watched: Some(Mutex::new(watched)),
            }),
            audit: None,
        })
    }

    /// Record every caller turned away (`UNAUTHENTICATED`) in `log`:
    /// they never reach the handlers, which record the rest.
    pub fn with_audit(mut self, log: Arc<AuditLog>) -> Self {
        self.audit = Some(log);
        self
    }

    /// The configuration calls are checked against now.
    pub fn current(&self) -> Arc<AuthConfig> {
        current(&self.shared)
    }

    /// Load the configuration again if the file or a key file it names
    /// changed. Returns whether a new configuration is in force; a new set
    /// that does not load is an error and the previous one stays.
    pub fn reload_if_changed(&self) -> Result<bool, AuthError> {
        let Some(watched) = &self.shared.watched else {
            return Ok(false);
        };
        let mut w = watched.lock().unwrap_or_else(PoisonError::into_inner);
        let unchanged = {
            let now: Vec<_> = w.files.iter().map(|p| (p, std::fs::read(p).ok())).collect();
            digest(now.iter().map(|(p, b)| (p.as_path(), b.as_deref()))) == w.digest
        };
        if unchanged {
            return Ok(false);
        }
        let (files, config) = AuthConfig::load(&w.path);
        // Remember this attempt either way: a broken file is reported once
        // and tried again when the files change again.
        w.digest = files.digest();
        w.files = files.seen.into_iter().map(|(p, _)| p).collect();
        let config = config?;
        log_warnings(&w.path, &config);
        *self
            .shared
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(config);
        Ok(true)
    }

    /// Check the files every `every` until the last clone of this layer
    /// (and every service it made) is dropped. Needs a Tokio runtime.
    pub fn watch(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(&self.shared);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(shared) = weak.upgrade() else { return };
                let layer = AuthLayer {
                    shared,
                    audit: None,
                };
                match layer.reload_if_changed() {
                    Ok(true) => tracing::info!("auth configuration reloaded"),
                    Ok(false) => {}
                    Err(e) => tracing::error!(
                        error = %e,
                        "auth configuration changed but does not load; the previous one stays in force"
                    ),
                }
            }
        })
    }
}

fn current(shared: &Shared) -> Arc<AuthConfig> {
    shared
        .current
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = Auth<S>;
    fn layer(&self, inner: S) -> Auth<S> {
        Auth {
            inner,
            shared: self.shared.clone(),
            audit: self.audit.clone(),
        }
    }
}

/// The service [`AuthLayer`] wraps around the server.
#[derive(Clone)]
pub struct Auth<S> {
    inner: S,
    shared: Arc<Shared>,
    audit: Option<Arc<AuditLog>>,
}

/// The audit record of a call refused before any handler saw it.
fn refusal<B>(req: &Http<B>, status: &Status) -> Event {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(256).collect::<String>())
    };
    let trace = rulake_telemetry::current().or_else(|| rulake_telemetry::extract(req.headers()));
    Event {
        principal: "unauthenticated".into(),
        action: req.uri().path().rsplit('/').next().unwrap_or("").into(),
        resource: String::new(),
        request_id: header("x-request-id")
            .or_else(|| trace.as_ref().map(|t| t.span_id_hex()))
            .unwrap_or_default(),
        trace_id: trace.map(|t| t.trace_id_hex()).unwrap_or_default(),
        outcome: rulake_telemetry::code_name(status.code() as i32).into(),
    }
}

/// Calls that never need a credential: health checks and reflection.
fn exempt(path: &str) -> bool {
    path.starts_with("/grpc.health.v1.") || path.starts_with("/grpc.reflection.")
}

type Http<B> = tonic::codegen::http::Request<B>;
type HttpResponse = tonic::codegen::http::Response<tonic::body::Body>;

impl<S, B> tower::Service<Http<B>> for Auth<S>
where
    S: tower::Service<Http<B>, Response = HttpResponse> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = HttpResponse;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<HttpResponse, S::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Http<B>) -> Self::Future {
        // The ready service handles this call; a fresh clone takes its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        if exempt(req.uri().path()) {
            return Box::pin(inner.call(req));
        }
        let header = req
            .headers()
            .get("authorization")
            .or_else(|| req.headers().get("x-api-key"))
            .and_then(|v| v.to_str().ok());
        match current(&self.shared).authenticate(header) {
            Ok(p) => {
                req.extensions_mut().insert(p);
                Box::pin(inner.call(req))
            }
            Err(e) => {
                let status = Status::from(e);
                if let Some(log) = &self.audit {
                    log.record(refusal(&req, &status));
                }
                let resp = status.into_http();
                Box::pin(async move { Ok(resp) })
            }
        }
    }
}
