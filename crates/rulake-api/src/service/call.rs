//! The preamble every public call runs before its work, written once.
//!
//! Every handler used to repeat it: take the deadline, authorize the caller
//! for the collections the request names, name the collection for the
//! per-collection metrics, then run the work within the deadline and turn
//! its error into a status. A handler that forgot a step would answer
//! differently from its neighbours (an unchecked name, a missing label, a
//! bare `CANCELLED`), so the steps live here, in [`Api::handle`], and a
//! handler only says which names it is authorized against ([`Scope`]).
//!
//! A name may be an alias, and an alias never lends a caller rights on its
//! collection: a call through one is authorized on the alias *and* on the
//! collection it stands for now ([`Api::authorize_through`]). Handlers
//! that can work on that collection directly do ([`Call::target`]), so
//! re-pointing the alias between the check and the work cannot redirect
//! them. A refusal on the collection names only the alias and reads like
//! any other refusal.

use super::audit::Names;
use super::Api;
use crate::status::to_status;
use rulake_auth::{authorize, Perm, Principal};
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
    /// The collection (or alias) the request names: authorized on the name
    /// and on the collection it stands for, which is named for the
    /// per-collection metrics and becomes the call's [`Call::target`].
    Collection(fn(&R) -> &str),
    /// An alias as such (deleting it): authorized on its own name only, as
    /// the call never reaches the collection behind it.
    Alias(fn(&R) -> &str),
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
    /// The collection a [`Scope::Collection`] call was authorized on.
    target: Option<String>,
    /// Names authorized against, for the audit log.
    names: Names,
}

impl Api {
    /// Run the call `what` (the RPC's name): take its deadline, authorize
    /// the caller for `perm` on the names `scope` reads from the request,
    /// label the collection, then hand the message and its [`Call`] to
    /// `work` and wrap the answer in a response. A refusal's message is
    /// bounded ([`crate::status::bounded`]): it may quote what the caller
    /// sent, and must still fit in the response's headers.
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
        self.handle_unbounded(req, what, perm, scope, work)
            .await
            .map_err(crate::status::bounded)
    }

    async fn handle_unbounded<'a, R, T, F, Fut>(
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
        let (metadata, extensions, message) = req.into_parts();
        let record = self
            .audit
            .as_ref()
            .map(|a| a.begin(what, perm, &metadata, &extensions));
        let names = record.as_ref().map(|r| r.names.clone()).unwrap_or_default();
        let result: Result<Response<T>, Status> = async {
            let mut target = None;
            match scope {
                Scope::Collection(name) => {
                    names.add(name(&message));
                    let t = self.authorize_through(&extensions, perm, name(&message))?;
                    names.add(&t);
                    rulake_telemetry::set_collection(&t);
                    target = Some(t);
                }
                Scope::Alias(name) => {
                    names.add(name(&message));
                    authorize(&extensions, perm, name(&message))?
                }
                Scope::Cluster => {
                    names.add(CLUSTER);
                    authorize(&extensions, perm, CLUSTER)?
                }
                Scope::Deferred => {}
            }
            let call = Call {
                api: self,
                what,
                perm,
                extensions,
                deadline,
                target,
                names: names.clone(),
            };
            work(message, call).await.map(Response::new)
        }
        .await;
        if let Some(r) = record {
            r.finish(&result);
        }
        result
    }

    /// Authorize `perm` on `name` as the caller gave it and, when it is an
    /// alias, on the collection it stands for now; answers that collection
    /// (or `name` itself when it names none, for the work to report). A
    /// refusal on the collection is the one a caller without any grant on
    /// `name` gets, so it tells nothing of where the alias points.
    fn authorize_through(
        &self,
        extensions: &Extensions,
        perm: Perm,
        name: &str,
    ) -> Result<String, Status> {
        authorize(extensions, perm, name)?;
        let target = self.coord.resolve(name).unwrap_or_else(|_| name.to_owned());
        if target != name && authorize(extensions, perm, &target).is_err() {
            return Err(denied(extensions, perm, name));
        }
        Ok(target)
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

/// The `PERMISSION_DENIED` that [`authorize`] gives the call's caller on
/// `name` when it holds no grant there: the same words whether the refusal
/// came from the name or from the collection behind it.
fn denied(extensions: &Extensions, perm: Perm, name: &str) -> Status {
    let mut none = Extensions::new();
    let subject = extensions
        .get::<Principal>()
        .map_or("anonymous", |p| p.subject.as_str());
    none.insert(Principal::new(subject, Vec::new()));
    match authorize(&none, perm, name) {
        Err(status) => status,
        // A principal without grants is refused everything.
        Ok(()) => Status::permission_denied(format!("{subject} may not use {name:?}")),
    }
}

impl Call<'_> {
    /// Check the call's permission on `name` (for [`Scope::Deferred`]).
    pub(super) fn authorize(&self, name: &str) -> Result<(), Status> {
        self.names.add(name);
        authorize(&self.extensions, self.perm, name)
    }

    /// Check the call's permission on `name` and on the collection it
    /// stands for, as [`Scope::Collection`] does (for [`Scope::Deferred`]);
    /// answers that collection, the one to work on.
    pub(super) fn authorize_through(&self, name: &str) -> Result<String, Status> {
        self.names.add(name);
        let target = self
            .api
            .authorize_through(&self.extensions, self.perm, name)?;
        self.names.add(&target);
        Ok(target)
    }

    /// Whether the caller holds the call's permission on `name`: what a
    /// listing shows, leaving the rest unseen.
    pub(super) fn permits(&self, name: &str) -> bool {
        authorize(&self.extensions, self.perm, name).is_ok()
    }

    /// Whether the caller may read `name`: which aliases an answer names.
    pub(super) fn may_read(&self, name: &str) -> bool {
        authorize(&self.extensions, Perm::Read, name).is_ok()
    }

    /// The collection to work on: the one a [`Scope::Collection`] call was
    /// authorized on (an alias resolved once, before the work), else `named`.
    pub(super) fn target<'s>(&'s self, named: &'s str) -> &'s str {
        self.target.as_deref().unwrap_or(named)
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
/// timer cancels the call with a bare `CANCELLED`. The margin is a
/// twentieth of the deadline, but never under half of it or 10 ms, whichever
/// is less: a loaded machine wakes timers a millisecond or more late, and a
/// twentieth of a few milliseconds would lose that race.
fn deadline_of(metadata: &MetadataMap, cap: Duration) -> Duration {
    metadata
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_grpc_timeout)
        .map_or(cap, |d| {
            let margin = (d / 20)
                .max((d / 2).min(Duration::from_millis(10)))
                .min(Duration::from_millis(50));
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
        // Half of a very short deadline, 10 ms of a short one, 5% of a
        // longer one and at most 50 ms.
        assert_eq!(
            deadline_of(&with_timeout("6m"), cap),
            Duration::from_millis(3)
        );
        assert_eq!(
            deadline_of(&with_timeout("40m"), cap),
            Duration::from_millis(30)
        );
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
