//! The preamble every public call runs before its work, written once.
//!
//! Every handler used to repeat it: take the deadline, authorize the caller
//! for the collections the request names, name the collection for the
//! per-collection metrics, then run the work within the deadline and turn
//! its error into a status. A handler that forgot a step would answer
//! differently from its neighbours (an unchecked name, a missing label, a
//! bare `CANCELLED`), so the steps live here, in [`Api::handle`], and a
//! handler only says which names it is authorized against ([`Scope`]).

use super::Api;
use crate::status::to_status;
use rulake_auth::{authorize, Perm};
use rulake_coordinator::CoordinatorError;
use std::future::Future;
use std::time::{Duration, Instant};
use tonic::metadata::MetadataMap;
use tonic::{Extensions, Request, Response, Status};

/// What cluster-wide admin calls are authorized against: only a grant
/// matching every name (`admin:*`) covers it.
const CLUSTER: &str = "*";

/// The names a call of request type `R` is authorized against, before any
/// of its work.
pub(super) enum Scope<R> {
    /// The collection (or alias) the request names: authorized, then named
    /// for the per-collection metrics.
    Collection(fn(&R) -> &str),
    /// Every name the request lists, authorized in order, none named for
    /// the metrics (the call spans collections, or is about an alias).
    Names(fn(&R) -> &[String]),
    /// The cluster as a whole ([`CLUSTER`]).
    Cluster,
    /// Names the handler must dig out first (a stream's header, a field
    /// that must be present, pairs checked as they are read) or filters by:
    /// it authorizes through its [`Call`].
    Deferred,
}

/// A call past its preamble: what its handler authorizes, labels and runs
/// through, so those steps read the same in every handler.
pub(super) struct Call<'a> {
    api: &'a Api,
    what: &'static str,
    perm: Perm,
    extensions: Extensions,
    deadline: Duration,
}

impl Api {
    /// Run the call `what` (the RPC's name): take its deadline, authorize
    /// the caller for `perm` on the names `scope` reads from the request,
    /// label the collection, then hand the message and its [`Call`] to
    /// `work` and wrap the answer in a response.
    pub(super) async fn handle<'a, R, T, F, Fut>(
        &'a self,
        req: Request<R>,
        what: &'static str,
        perm: Perm,
        scope: Scope<R>,
        work: F,
    ) -> Result<Response<T>, Status>
    where
        F: FnOnce(R, Call<'a>) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let deadline = deadline_of(req.metadata(), self.limits.request_timeout);
        let (_, extensions, message) = req.into_parts();
        match scope {
            Scope::Collection(name) => {
                let name = name(&message);
                authorize(&extensions, perm, name)?;
                self.label(name);
            }
            Scope::Names(names) => {
                for name in names(&message) {
                    authorize(&extensions, perm, name)?;
                }
            }
            Scope::Cluster => authorize(&extensions, perm, CLUSTER)?,
            Scope::Deferred => {}
        }
        let call = Call {
            api: self,
            what,
            perm,
            extensions,
            deadline,
        };
        work(message, call).await.map(Response::new)
    }

    /// Name the call's collection for the per-collection metrics: the
    /// collection an alias stands for, or the name as given (recorded as
    /// unknown when no such collection exists, so labels stay bounded).
    fn label(&self, name: &str) {
        match self.coord.resolve(name) {
            Ok(target) => rulake_telemetry::set_collection(&target),
            Err(_) => rulake_telemetry::set_collection(name),
        }
    }
}

impl Call<'_> {
    /// Check the call's permission on `name` (for [`Scope::Deferred`]).
    pub(super) fn authorize(&self, name: &str) -> Result<(), Status> {
        authorize(&self.extensions, self.perm, name)
    }

    /// Whether the caller holds the call's permission on `name`: what a
    /// listing shows, leaving the rest unseen.
    pub(super) fn permits(&self, name: &str) -> bool {
        self.authorize(name).is_ok()
    }

    /// Name `name` for the per-collection metrics (for [`Scope::Deferred`]).
    pub(super) fn label(&self, name: &str) {
        self.api.label(name);
    }

    /// The instant the call must answer by, from now: what the coordinator
    /// is given so that it answers with what it has rather than time out.
    pub(super) fn by(&self) -> Instant {
        Instant::now() + self.deadline
    }

    /// Run a coordinator call within the deadline, its error as a status.
    pub(super) async fn run<T>(
        &self,
        work: impl Future<Output = Result<T, CoordinatorError>>,
    ) -> Result<T, Status> {
        self.within(async { work.await.map_err(to_status) }).await
    }

    /// Run `work` within the deadline; past it the work is dropped (an
    /// ingest cleans up its files, a load is abandoned) and the caller gets
    /// `DEADLINE_EXCEEDED`, naming the call.
    pub(super) async fn within<T>(
        &self,
        work: impl Future<Output = Result<T, Status>>,
    ) -> Result<T, Status> {
        match tokio::time::timeout(self.deadline, work).await {
            Ok(r) => r,
            Err(_) => Err(Status::deadline_exceeded(format!(
                "{} did not finish within the deadline of {:?}",
                self.what, self.deadline
            ))),
        }
    }
}

/// The deadline of a request: its `grpc-timeout`, capped by the server's.
/// A client's deadline is cut by a small margin so the handler answers
/// `DEADLINE_EXCEEDED` itself, naming the call, before the transport's own
/// timer cancels the call with a bare `CANCELLED`.
fn deadline_of(metadata: &MetadataMap, cap: Duration) -> Duration {
    metadata
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_grpc_timeout)
        .map_or(cap, |d| {
            let margin = (d / 20).min(Duration::from_millis(50));
            (d - margin).min(cap)
        })
}

/// `grpc-timeout` is digits followed by one unit letter (H M S m u n).
pub(crate) fn parse_grpc_timeout(v: &str) -> Option<Duration> {
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::{deadline_of, parse_grpc_timeout};
    use std::time::Duration;
    use tonic::metadata::MetadataMap;

    #[test]
    fn grpc_timeout_units() {
        assert_eq!(parse_grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse_grpc_timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_grpc_timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(parse_grpc_timeout("S"), None);
        assert_eq!(parse_grpc_timeout("5x"), None);
        assert_eq!(parse_grpc_timeout(""), None);
    }

    fn with_timeout(v: &'static str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert("grpc-timeout", v.parse().unwrap());
        m
    }

    #[test]
    fn deadline_is_the_clients_less_a_margin_capped_by_the_servers() {
        let cap = Duration::from_secs(30);
        assert_eq!(deadline_of(&MetadataMap::new(), cap), cap);
        assert_eq!(deadline_of(&with_timeout("bogus"), cap), cap);
        // 5% of a short deadline, at most 50 ms of a long one.
        assert_eq!(
            deadline_of(&with_timeout("200m"), cap),
            Duration::from_millis(190)
        );
        assert_eq!(
            deadline_of(&with_timeout("10S"), cap),
            Duration::from_millis(9950)
        );
        assert_eq!(deadline_of(&with_timeout("1H"), cap), cap);
    }
}
