//! Scheduled backups: a slot that came since the last backup runs once,
//! through the admin API, into a location of its own; the outcome is in
//! the status and an event; a failure waits for the next slot; a schedule
//! that does not parse is reported, not run.

use super::*;
use crate::crd::BackupSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// A settled cluster, created years ago, backed up daily at midnight.
fn scheduled(schedule: &str) -> RuLakeCluster {
    let mut c = cluster(3);
    c.metadata.creation_timestamp = Some(Time("2020-01-01T00:00:00Z".parse().unwrap()));
    c.spec.backup = Some(BackupSpec {
        schedule: schedule.into(),
        location: "s3://backups/rulake/".into(),
        suspend: false,
    });
    c.status = Some(RuLakeClusterStatus::default());
    c.status.as_mut().unwrap().shards.admitted = 3;
    c
}

/// One run of `c` against a healthy cluster: the children, then the
/// events the run publishes (their reasons are returned), then the status
/// written (returned).
async fn run(
    c: RuLakeCluster,
    fake: Arc<FakeAdmin>,
    events: usize,
) -> (Vec<String>, serde_json::Value) {
    *fake.status.lock().unwrap() = Some(healthy(3));
    let (ctx, mut api) = test_context(fake);
    let server = tokio::spawn(async move {
        shard_lookup(&mut api, Some(3)).await;
        expect_children(&mut api, [3, 3, 2]).await;
        let mut reasons = Vec::new();
        for _ in 0..events {
            reasons.push(api.expect_event("default").await);
        }
        let status = api.expect(Method::PATCH, STATUS).await;
        let body = status.body["status"].clone();
        status.respond(serde_json::to_value(cluster(3)).unwrap());
        (api, reasons, body)
    });
    reconcile(Arc::new(c), ctx).await.expect("reconcile");
    let (api, reasons, body) = server.await.unwrap();
    api.done().await;
    (reasons, body)
}

#[tokio::test]
async fn a_due_slot_is_backed_up_once_into_a_location_of_its_own() {
    let fake = Arc::new(FakeAdmin::default());
    let c = scheduled("0 0 * * *");
    let (reasons, status) = run(c.clone(), fake.clone(), 1).await;
    assert_eq!(reasons, ["BackupCreated"]);
    let calls = fake.calls();
    let backup: Vec<&String> = calls.iter().filter(|c| c.starts_with("backup")).collect();
    assert_eq!(backup.len(), 1, "{calls:?}");
    // Today's midnight slot, named by the cluster and the slot.
    let today = Timestamp::now()
        .to_zoned(k8s_openapi::jiff::tz::TimeZone::UTC)
        .strftime("%Y%m%d")
        .to_string();
    let want = format!("backup s3://backups/rulake/demo-{today}T0000Z");
    assert_eq!(*backup[0], want);
    let b = &status["backup"];
    assert_eq!(b["lastLocation"], want.trim_start_matches("backup "));
    assert_eq!(b["lastFiles"], 3);
    assert_eq!(b["lastBytes"], 4096);
    assert!(b["lastSuccessfulTime"].is_string(), "{b}");
    assert!(
        b["lastScheduleTime"]
            .as_str()
            .unwrap()
            .ends_with("T00:00:00Z"),
        "{b}"
    );
    assert!(b.get("lastError").is_none(), "{b}");
    assert!(b["nextScheduleTime"].is_string(), "{b}");

    // The next run, with that status, does not back up the same slot again.
    let fake = Arc::new(FakeAdmin::default());
    let mut again = c;
    again.status.as_mut().unwrap().backup = serde_json::from_value(b.clone()).unwrap();
    let (reasons, status) = run(again, fake.clone(), 0).await;
    assert!(reasons.is_empty());
    assert!(
        !fake.calls().iter().any(|c| c.starts_with("backup")),
        "{:?}",
        fake.calls()
    );
    assert_eq!(status["backup"]["lastLocation"], b["lastLocation"]);
}

#[tokio::test]
async fn a_failed_backup_is_reported_and_waits_for_the_next_slot() {
    let fake = Arc::new(FakeAdmin::default());
    *fake.backup_error.lock().unwrap() = Some(tonic::Code::PermissionDenied);
    let (reasons, status) = run(scheduled("@daily"), fake.clone(), 1).await;
    assert_eq!(reasons, ["BackupFailed"]);
    let b = &status["backup"];
    let error = b["lastError"].as_str().unwrap();
    assert!(
        error.contains("PermissionDenied") || error.contains("permission"),
        "{error}"
    );
    assert!(b["lastScheduleTime"].is_string(), "the slot is spent: {b}");
    assert!(b.get("lastSuccessfulTime").is_none(), "{b}");
}

#[tokio::test]
async fn a_suspended_or_unparsable_schedule_takes_no_backup() {
    let fake = Arc::new(FakeAdmin::default());
    let mut c = scheduled("@daily");
    c.spec.backup.as_mut().unwrap().suspend = true;
    let (reasons, status) = run(c, fake.clone(), 0).await;
    assert!(reasons.is_empty());
    assert!(status["backup"]["nextScheduleTime"].is_string());
    let fake2 = Arc::new(FakeAdmin::default());
    let (reasons, status) = run(scheduled("0 25 * * *"), fake2.clone(), 1).await;
    assert_eq!(reasons, ["InvalidBackupSchedule"]);
    let error = status["backup"]["lastError"].as_str().unwrap();
    assert!(error.contains("spec.backup.hour"), "{error}");
    for f in [fake, fake2] {
        assert!(!f.calls().iter().any(|c| c.starts_with("backup")));
    }
}
