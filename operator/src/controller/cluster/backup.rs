//! Scheduled backups (`spec.backup`): at each slot of the schedule the
//! operator asks a coordinator for a backup (`CreateBackup`, the admin
//! call `rulake backup create` makes) and records the outcome in
//! `status.backup` and an event.
//!
//! Why a slot runs at most once: the slot is recorded as
//! `lastScheduleTime` in the status the run writes, and a slot is due only
//! when it is later than that (or, for the first one, later than the
//! cluster's creation). A failed backup is not retried before the next
//! slot; its error stays in `lastError` and a Warning event until a backup
//! succeeds. Each backup gets a location of its own under
//! `spec.backup.location`, named by the cluster and the slot, so no two
//! ever collide (the server refuses a location holding a backup).

use super::super::Context;
use crate::admin::ClusterAdmin;
use crate::crd::{BackupSpec, RuLakeCluster, RuLakeClusterStatus};
use crate::schedule::Schedule;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{tz::TimeZone, Timestamp};
use kube::runtime::events::EventType;
use kube::ResourceExt;
use std::time::Duration;

/// Runs the backup due at `now`, if one is, and records the schedule's
/// state in `status.backup`. Returns how long until the next slot, when
/// the schedule has one and is not suspended.
pub(super) async fn run_due(
    cluster: &RuLakeCluster,
    ctx: &Context,
    admin: &dyn ClusterAdmin,
    status: &mut RuLakeClusterStatus,
    now: Timestamp,
) -> Option<Duration> {
    let Some(spec) = &cluster.spec.backup else {
        status.backup = None;
        return None;
    };
    let state = status.backup.get_or_insert_with(Default::default);
    let schedule: Schedule = match spec.schedule.parse() {
        Ok(s) => s,
        Err(e) => {
            let message = format!("spec.backup.{e}");
            if state.last_error.as_deref() != Some(message.as_str()) {
                ctx.event(
                    cluster,
                    EventType::Warning,
                    "InvalidBackupSchedule",
                    "ScheduleBackup",
                    message.clone(),
                )
                .await;
            }
            state.last_error = Some(message);
            state.next_schedule_time = None;
            return None;
        }
    };
    let next = schedule.next_after(now);
    state.next_schedule_time = next.map(Time);
    if spec.suspend {
        return None;
    }
    let since = state
        .last_schedule_time
        .as_ref()
        .or(cluster.metadata.creation_timestamp.as_ref())
        .map(|t| t.0);
    let due = schedule
        .last_at_or_before(now)
        .filter(|slot| since.is_some_and(|since| *slot > since));
    if let Some(slot) = due {
        state.last_schedule_time = Some(Time(slot));
        let to = location(spec, &cluster.name_any(), slot);
        match admin.create_backup(&to).await {
            Ok(done) => {
                let message = format!(
                    "backed up {} collections to {}: {} files, {} bytes",
                    done.collections.len(),
                    done.location,
                    done.files,
                    done.bytes
                );
                state.last_successful_time = Some(Time(Timestamp::now()));
                state.last_location = Some(done.location);
                state.last_files = Some(done.files);
                state.last_bytes = Some(done.bytes);
                state.last_error = None;
                ctx.event(
                    cluster,
                    EventType::Normal,
                    "BackupCreated",
                    "Backup",
                    message,
                )
                .await;
            }
            Err(e) => {
                let message = format!("backup to {to} failed: {e}; the next slot tries again");
                state.last_error = Some(message.clone());
                ctx.event(
                    cluster,
                    EventType::Warning,
                    "BackupFailed",
                    "Backup",
                    message,
                )
                .await;
            }
        }
    }
    let wait = next?.duration_since(Timestamp::now());
    Some(
        Duration::try_from(wait)
            .unwrap_or(Duration::ZERO)
            .max(Duration::from_secs(1)),
    )
}

/// Where the backup of `slot` goes: `<location>/<cluster>-<UTC time>`.
fn location(spec: &BackupSpec, cluster: &str, slot: Timestamp) -> String {
    let time = slot.to_zoned(TimeZone::UTC).strftime("%Y%m%dT%H%MZ");
    format!("{}/{cluster}-{time}", spec.location.trim_end_matches('/'))
}
