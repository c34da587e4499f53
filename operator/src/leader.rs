//! Leader election over a `coordination.k8s.io` Lease, so that of several
//! operator replicas exactly one reconciles; the others wait, ready to
//! take over within a lease duration of the leader's end.
//!
//! The protocol is the one Kubernetes' own controllers follow. The Lease
//! names its holder (the pod name) and is renewed every [`RETRY_PERIOD`].
//! A candidate takes the Lease over when it is released (no holder) or
//! when its record has not changed for [`LEASE_DURATION`], measured on the
//! candidate's own clock from when it saw the record change, never by
//! comparing the holder's `renewTime` with local time, so clock skew
//! between nodes cannot make a live leader look expired. Every write
//! carries the `resourceVersion` it was based on, so of two replicas
//! racing for the Lease the API server lets exactly one win (the other
//! gets 409 Conflict). A leader that has not renewed for
//! [`RENEW_DEADLINE`], shorter than the lease duration, stops leading
//! (the process exits and comes back as a candidate) before the others
//! may take over; on a clean shutdown it releases the Lease so a standby
//! takes over at once.

use crate::metrics::Metrics;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Client;
use std::future::Future;
use std::time::{Duration, Instant};

/// How long a Lease holds without renewal before others may take it.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
/// How long a leader keeps leading without a successful renewal.
pub const RENEW_DEADLINE: Duration = Duration::from_secs(10);
/// How often the leader renews and a candidate looks again.
pub const RETRY_PERIOD: Duration = Duration::from_secs(2);

/// Why leading ended other than by the work finishing.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// The Lease could not be renewed in time, or another replica holds it.
    #[error("lost the leader Lease {0}: another replica may reconcile now")]
    Lost(String),
}

/// What to do with the Lease as last read.
#[derive(Debug, PartialEq)]
enum Step {
    /// There is none: create it, held by this replica.
    Create,
    /// This replica holds it: renew.
    Renew,
    /// Released or expired: take it over.
    TakeOver,
    /// Another replica holds it.
    Follow,
}

/// The step for `lease` as read by `me`, whose record has not changed for
/// `unchanged_for` on this replica's clock.
fn step(lease: Option<&Lease>, me: &str, unchanged_for: Duration) -> Step {
    let Some(lease) = lease else {
        return Step::Create;
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let duration = spec
        .lease_duration_seconds
        .and_then(|s| u64::try_from(s).ok())
        .map_or(LEASE_DURATION, Duration::from_secs);
    match spec.holder_identity.as_deref() {
        Some(holder) if holder == me => Step::Renew,
        None | Some("") => Step::TakeOver,
        Some(_) if unchanged_for >= duration => Step::TakeOver,
        Some(_) => Step::Follow,
    }
}

/// One replica's handle on the leader Lease.
pub struct LeaseLock {
    api: Api<Lease>,
    name: String,
    identity: String,
    /// The record's resourceVersion when last read, and since when it has
    /// been that.
    seen: Option<(Option<String>, Instant)>,
}

impl LeaseLock {
    /// The Lease `name` in `namespace`, competed for as `identity`.
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str) -> Self {
        LeaseLock {
            api: Api::namespaced(client, namespace),
            name: name.into(),
            identity: identity.into(),
            seen: None,
        }
    }

    /// How long the record has been unchanged, noting `lease` as seen now.
    fn unchanged_for(&mut self, lease: Option<&Lease>) -> Duration {
        let version = lease.and_then(|l| l.metadata.resource_version.clone());
        match &self.seen {
            Some((seen, since)) if *seen == version => since.elapsed(),
            _ => {
                self.seen = Some((version, Instant::now()));
                Duration::ZERO
            }
        }
    }

    /// Reads the Lease and acquires, renews or takes it over as it allows;
    /// returns whether this replica holds it now.
    pub async fn try_lead(&mut self) -> Result<bool, kube::Error> {
        let lease = self.api.get_opt(&self.name).await?;
        let unchanged_for = self.unchanged_for(lease.as_ref());
        let result = match (step(lease.as_ref(), &self.identity, unchanged_for), lease) {
            (Step::Create, _) => {
                self.api
                    .create(&PostParams::default(), &self.new_lease())
                    .await
            }
            (Step::Renew, Some(lease)) => self.write(&lease, false).await,
            (Step::TakeOver, Some(lease)) => self.write(&lease, true).await,
            _ => return Ok(false),
        };
        match result {
            Ok(_) => Ok(true),
            // Another replica created or wrote it first.
            Err(kube::Error::Api(s)) if s.is_already_exists() || s.is_conflict() => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn new_lease(&self) -> Lease {
        let now = MicroTime(Timestamp::now());
        Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.identity.clone()),
                lease_duration_seconds: Some(LEASE_DURATION.as_secs() as i32),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        }
    }

    /// Renews `lease`, or takes it over, on the condition that it is still
    /// the version read.
    async fn write(&self, lease: &Lease, take_over: bool) -> Result<Lease, kube::Error> {
        let now = MicroTime(Timestamp::now());
        let mut patch = serde_json::json!({
            "metadata": { "resourceVersion": lease.metadata.resource_version },
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": LEASE_DURATION.as_secs(),
                "renewTime": now,
            },
        });
        if take_over {
            let transitions = lease
                .spec
                .as_ref()
                .and_then(|s| s.lease_transitions)
                .unwrap_or(0);
            patch["spec"]["acquireTime"] = serde_json::json!(now);
            patch["spec"]["leaseTransitions"] = serde_json::json!(transitions.saturating_add(1));
        }
        let params = PatchParams::default();
        self.api
            .patch(&self.name, &params, &Patch::Merge(&patch))
            .await
    }

    /// Renews until a renewal is refused (another replica holds the Lease)
    /// or none succeeded for [`RENEW_DEADLINE`]; returns why it stopped.
    pub async fn keep_leading(&mut self) -> LeaseError {
        let mut renewed = Instant::now();
        loop {
            tokio::time::sleep(RETRY_PERIOD).await;
            match self.try_lead().await {
                Ok(true) => renewed = Instant::now(),
                Ok(false) => return LeaseError::Lost(self.name.clone()),
                Err(e) => {
                    tracing::warn!(error = %e, lease = %self.name, "renewing the leader Lease failed")
                }
            }
            if renewed.elapsed() > RENEW_DEADLINE {
                return LeaseError::Lost(self.name.clone());
            }
        }
    }

    /// Gives the Lease up, if this replica holds it, so a standby takes
    /// over at once. Best effort: on failure the Lease expires instead.
    pub async fn release(&mut self) {
        if let Err(e) = self.release_held().await {
            tracing::warn!(error = %e, lease = %self.name, "releasing the leader Lease failed");
        }
    }

    async fn release_held(&self) -> Result<(), kube::Error> {
        let Some(lease) = self.api.get_opt(&self.name).await? else {
            return Ok(());
        };
        let holder = lease
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.as_deref());
        if holder != Some(self.identity.as_str()) {
            return Ok(());
        }
        let patch = serde_json::json!({
            "metadata": { "resourceVersion": lease.metadata.resource_version },
            "spec": { "holderIdentity": null, "leaseDurationSeconds": 1 },
        });
        let params = PatchParams::default();
        self.api
            .patch(&self.name, &params, &Patch::Merge(&patch))
            .await?;
        Ok(())
    }
}

/// Waits to hold the Lease (or for `stop`), then runs `work` while renewing
/// it. Returns when `work` ends (the Lease released) or `stop` fires before
/// leading; fails when the Lease is lost, and then `work` has been dropped.
pub async fn lead<W: Future<Output = ()>>(
    lock: &mut LeaseLock,
    metrics: &Metrics,
    stop: impl Future<Output = ()>,
    work: impl FnOnce() -> W,
) -> Result<(), LeaseError> {
    tokio::pin!(stop);
    let mut waiting_logged = false;
    loop {
        match lock.try_lead().await {
            Ok(true) => break,
            Ok(false) if !waiting_logged => {
                tracing::info!(lease = %lock.name, "another replica leads; standing by");
                waiting_logged = true;
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, lease = %lock.name, "reading the leader Lease failed")
            }
        }
        tokio::select! {
            _ = &mut stop => return Ok(()),
            _ = tokio::time::sleep(RETRY_PERIOD) => {}
        }
    }
    tracing::info!(lease = %lock.name, identity = %lock.identity, "leading");
    metrics.set_leader(true);
    let outcome = tokio::select! {
        _ = work() => Ok(()),
        lost = lock.keep_leading() => Err(lost),
    };
    metrics.set_leader(false);
    if outcome.is_ok() {
        lock.release().await;
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::mock_client;
    use http::Method;
    use serde_json::json;

    const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/ops/leases";

    fn lease(holder: Option<&str>, version: &str) -> serde_json::Value {
        json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": { "name": "rulake-operator", "namespace": "ops", "resourceVersion": version },
            "spec": { "holderIdentity": holder, "leaseDurationSeconds": 15, "leaseTransitions": 4 },
        })
    }

    #[test]
    fn steps_follow_the_record() {
        let read =
            |holder: Option<&str>| serde_json::from_value::<Lease>(lease(holder, "1")).unwrap();
        let fresh = Duration::from_secs(3);
        let stale = Duration::from_secs(16);
        assert_eq!(step(None, "me", fresh), Step::Create);
        assert_eq!(step(Some(&read(Some("me"))), "me", stale), Step::Renew);
        assert_eq!(step(Some(&read(Some("other"))), "me", fresh), Step::Follow);
        assert_eq!(
            step(Some(&read(Some("other"))), "me", stale),
            Step::TakeOver
        );
        assert_eq!(
            step(Some(&read(Some(""))), "me", fresh),
            Step::TakeOver,
            "released"
        );
        assert_eq!(
            step(Some(&read(None)), "me", fresh),
            Step::TakeOver,
            "released"
        );
    }

    #[tokio::test]
    async fn creates_a_missing_lease_and_renews_its_own() {
        let (client, mut api) = mock_client();
        let server = tokio::spawn(async move {
            let path = format!("{LEASES}/rulake-operator");
            api.expect(Method::GET, &path).await.not_found();
            let create = api.expect(Method::POST, LEASES).await;
            assert_eq!(create.body["spec"]["holderIdentity"], "pod-a");
            assert_eq!(create.body["spec"]["leaseDurationSeconds"], 15);
            create.echo();
            api.expect(Method::GET, &path)
                .await
                .respond(lease(Some("pod-a"), "7"));
            let renew = api.expect(Method::PATCH, &path).await;
            assert_eq!(
                renew.body["metadata"]["resourceVersion"], "7",
                "conditional on the version read"
            );
            assert_eq!(renew.body["spec"]["holderIdentity"], "pod-a");
            assert!(renew.body["spec"]["renewTime"].is_string());
            assert!(
                renew.body["spec"].get("leaseTransitions").is_none(),
                "a renewal is no transition"
            );
            renew.respond(lease(Some("pod-a"), "8"));
            api
        });
        let mut lock = LeaseLock::new(client, "ops", "rulake-operator", "pod-a");
        assert!(lock.try_lead().await.unwrap(), "created");
        assert!(lock.try_lead().await.unwrap(), "renewed");
        drop(lock);
        server.await.unwrap().done().await;
    }

    #[tokio::test]
    async fn follows_a_live_holder_and_takes_over_an_expired_one() {
        let (client, mut api) = mock_client();
        let server = tokio::spawn(async move {
            let path = format!("{LEASES}/rulake-operator");
            api.expect(Method::GET, &path)
                .await
                .respond(lease(Some("pod-a"), "7"));
            // Unchanged for longer than the lease duration: taken over.
            api.expect(Method::GET, &path)
                .await
                .respond(lease(Some("pod-a"), "7"));
            let take = api.expect(Method::PATCH, &path).await;
            assert_eq!(take.body["metadata"]["resourceVersion"], "7");
            assert_eq!(take.body["spec"]["holderIdentity"], "pod-b");
            assert_eq!(take.body["spec"]["leaseTransitions"], 5);
            assert!(take.body["spec"]["acquireTime"].is_string());
            // Another candidate won the race: 409, not leading.
            take.error(409, "Conflict");
            api
        });
        let mut lock = LeaseLock::new(client, "ops", "rulake-operator", "pod-b");
        assert!(!lock.try_lead().await.unwrap(), "pod-a's lease is fresh");
        let long_ago = Instant::now().checked_sub(LEASE_DURATION + Duration::from_secs(1));
        lock.seen = Some((Some("7".into()), long_ago.unwrap()));
        assert!(!lock.try_lead().await.unwrap(), "lost the race");
        drop(lock);
        server.await.unwrap().done().await;
    }

    #[tokio::test]
    async fn release_clears_the_holder_only_when_held() {
        let (client, mut api) = mock_client();
        let server = tokio::spawn(async move {
            let path = format!("{LEASES}/rulake-operator");
            api.expect(Method::GET, &path)
                .await
                .respond(lease(Some("pod-a"), "9"));
            let release = api.expect(Method::PATCH, &path).await;
            assert_eq!(
                release.body["spec"]["holderIdentity"],
                serde_json::Value::Null
            );
            assert_eq!(release.body["metadata"]["resourceVersion"], "9");
            release.respond(lease(None, "10"));
            api.expect(Method::GET, &path)
                .await
                .respond(lease(Some("pod-c"), "11"));
            api
        });
        let mut lock = LeaseLock::new(client.clone(), "ops", "rulake-operator", "pod-a");
        lock.release().await;
        lock.release().await;
        drop((lock, client));
        server.await.unwrap().done().await;
    }
}
