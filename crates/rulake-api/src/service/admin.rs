//! `AdminService`: the cache and the cluster's state, and moving partitions
//! between shard nodes. Apart because every call here is cluster-wide
//! (authorized against `admin:*`) and must also answer sensibly on a
//! single-process server, which has no shard nodes: the two kinds of
//! server are told apart here and nowhere else in the API.

use super::call::Scope;
use super::streamed::{streamed, Streamed};
use super::Api;
use crate::status::{invalid, to_status};
use rulake_auth::Perm;
use rulake_catalog::Catalog;
use rulake_coordinator::{cache_stats_message, Coordinator, Router};
use rulake_proto::v1 as pb;
use tonic::{Request, Response, Status};

/// The shard node of a single-process server, as admin answers and the
/// placement metrics name it.
pub const LOCAL_NODE: &str = "local";

#[tonic::async_trait]
impl pb::admin_service_server::AdminService for Api {
    async fn cache_stats(
        &self,
        req: Request<pb::CacheStatsRequest>,
    ) -> Result<Response<pb::CacheStatsResponse>, Status> {
        self.handle(
            req,
            "CacheStats",
            Perm::Admin,
            Scope::Cluster,
            move |_, _| async move {
                let nodes = match self.coord.router() {
                    // Each shard node's own figures, polled now: the
                    // coordinator's engine holds no partition.
                    Some(router) => {
                        router.refresh_status().await;
                        router
                            .shard_states()
                            .into_iter()
                            .filter_map(|s| Some((s.id.to_string(), s.cache?)))
                            .collect()
                    }
                    None => {
                        let stats = cache_stats_message(&self.coord.engine().cache_stats());
                        [(LOCAL_NODE.to_string(), stats)].into_iter().collect()
                    }
                };
                Ok(pb::CacheStatsResponse { nodes })
            },
        )
        .await
    }

    async fn cluster_status(
        &self,
        req: Request<pb::ClusterStatusRequest>,
    ) -> Result<Response<pb::ClusterStatusResponse>, Status> {
        self.handle(
            req,
            "ClusterStatus",
            Perm::Admin,
            Scope::Cluster,
            move |_, call| async move {
                let st = call
                    .within(async {
                        self.coord
                            .meta()
                            .status()
                            .await
                            .map_err(|e| Status::unavailable(format!("meta status: {e}")))
                    })
                    .await?;
                let cat = self.coord.catalog();
                let router = self.coord.router();
                let (routing_epoch, routes) = router.map_or((0, Vec::new()), routes);
                let shards = match router {
                    Some(router) => shard_nodes(router, &cat),
                    None => vec![local_node(&self.coord, &cat)],
                };
                Ok(pb::ClusterStatusResponse {
                    members: st
                        .members
                        .into_iter()
                        .map(|m| pb::MetaMember {
                            id: m.id,
                            address: m.addr,
                            voter: m.voter,
                        })
                        .collect(),
                    leader_id: st.leader,
                    term: st.term,
                    commit_index: st.commit_index,
                    applied_index: st.applied_index,
                    assignment_epoch: st.epoch,
                    shards,
                    routing_epoch,
                    routes,
                })
            },
        )
        .await
    }

    async fn drain_shard(
        &self,
        req: Request<pb::DrainShardRequest>,
    ) -> Result<Response<pb::DrainShardResponse>, Status> {
        self.handle(
            req,
            "DrainShard",
            Perm::Admin,
            Scope::Cluster,
            move |r, call| async move {
                let node = shard_node(&self.coord, &r.node_id)?;
                let (moved, epoch) = call.run(self.coord.drain(node)).await?;
                Ok(pb::DrainShardResponse {
                    partitions_moved: moved,
                    assignment_epoch: epoch,
                })
            },
        )
        .await
    }

    async fn admit_shard(
        &self,
        req: Request<pb::AdmitShardRequest>,
    ) -> Result<Response<pb::AdmitShardResponse>, Status> {
        self.handle(
            req,
            "AdmitShard",
            Perm::Admin,
            Scope::Cluster,
            move |r, call| async move {
                let node = shard_node(&self.coord, &r.node_id)?;
                let (assigned, epoch) = call.run(self.coord.admit(node)).await?;
                Ok(pb::AdmitShardResponse {
                    partitions_assigned: assigned,
                    assignment_epoch: epoch,
                })
            },
        )
        .await
    }

    type CreateBackupStream = Streamed<pb::BackupProgress>;

    async fn create_backup(
        &self,
        req: Request<pb::CreateBackupRequest>,
    ) -> Result<Response<Self::CreateBackupStream>, Status> {
        self.handle(
            req,
            "CreateBackup",
            Perm::Admin,
            Scope::Cluster,
            move |r, _call| async move {
                let to = self.backup_location(r.to)?;
                let coord = self.coord.clone();
                Ok(streamed(move |reporter| async move {
                    let m = coord
                        .backup(&to, &|p| reporter.report(progress(p)))
                        .await
                        .map_err(to_status)?;
                    Ok(finished(to, m))
                }))
            },
        )
        .await
    }

    type RestoreBackupStream = Streamed<pb::BackupProgress>;

    async fn restore_backup(
        &self,
        req: Request<pb::RestoreBackupRequest>,
    ) -> Result<Response<Self::RestoreBackupStream>, Status> {
        self.handle(
            req,
            "RestoreBackup",
            Perm::Admin,
            Scope::Cluster,
            move |r, _call| async move {
                let from = self.backup_location(r.from)?;
                let coord = self.coord.clone();
                Ok(streamed(move |reporter| async move {
                    let m = coord
                        .restore(&from, &|p| reporter.report(progress(p)))
                        .await
                        .map_err(to_status)?;
                    Ok(finished(from, m))
                }))
            },
        )
        .await
    }
}

impl Api {
    /// `location` if this server may read and write backups there: under
    /// its --backup-allow, outside its own files.
    fn backup_location(&self, location: String) -> Result<String, Status> {
        if self.backups.as_ref().is_some_and(|p| p.permits(&location)) {
            Ok(location)
        } else {
            Err(Status::permission_denied(format!(
                "no backup may be written or read at {location:?}: a server uses only the locations its --backup-allow names, outside its own files"
            )))
        }
    }
}

/// A backup's or restore's progress as the reply streams it.
fn progress(p: rulake_coordinator::backup::BackupProgress) -> pb::BackupProgress {
    pb::BackupProgress {
        files_done: p.files_done,
        files_total: p.files_total,
        bytes_done: p.bytes_done,
        done: None,
    }
}

/// The last message of a backup or restore of `location`.
fn finished(location: String, m: rulake_coordinator::backup::Manifest) -> pb::BackupProgress {
    let bytes = m.files.iter().map(|f| f.bytes).sum::<u64>() + m.catalog.bytes;
    pb::BackupProgress {
        files_done: m.files.len() as u64,
        files_total: m.files.len() as u64,
        bytes_done: bytes,
        done: Some(pb::BackupSummary {
            location,
            files: m.files.len() as u64 + 1,
            bytes,
            collections: m.collections,
            created_unix_ms: m.created_unix_ms as i64,
        }),
    }
}

/// The routing epoch and every partition's route, as a coordinator over
/// shard nodes knows them.
fn routes(router: &Router) -> (u64, Vec<pb::PartitionRoute>) {
    let (epoch, table) = router.route_table();
    let routes = table
        .into_iter()
        .flat_map(|(collection, routes)| {
            routes.into_iter().map(move |r| pb::PartitionRoute {
                collection: collection.clone(),
                partition: r.partition,
                replicas: r.replicas.iter().map(u64::to_string).collect(),
                warm: r.warm.iter().map(u64::to_string).collect(),
            })
        })
        .collect();
    (epoch, routes)
}

/// The catalog's shard nodes, with what the router last heard of each.
fn shard_nodes(router: &Router, cat: &Catalog) -> Vec<pb::ShardNode> {
    let states = router.shard_states();
    cat.nodes
        .values()
        .map(|n| {
            let assigned = cat
                .assignment
                .partitions
                .values()
                .filter(|ns| ns.contains(&n.id))
                .count() as u32;
            let state = states.iter().find(|s| s.id == n.id);
            pb::ShardNode {
                id: n.id.to_string(),
                address: n.addr.clone(),
                live: state.is_some_and(|s| s.live),
                partitions_assigned: assigned,
                partitions_warm: state.map_or(0, |s| s.warm),
                cache_bytes: state.and_then(|s| s.cache.as_ref()).map_or(0, |c| c.bytes),
                cache_budget_bytes: n.capacity_bytes,
            }
        })
        .collect()
}

/// A single-process server as its one shard node, holding every partition.
fn local_node(coord: &Coordinator, cat: &Catalog) -> pb::ShardNode {
    let cache = coord.engine().cache_stats();
    let (assigned, warm) = cat.collections.values().fold((0, 0), |(a, w), c| {
        let warm = coord
            .engine()
            .describe(&c.name)
            .map_or(0, |i| i.partitions_warm);
        (a + c.partitions, w + warm)
    });
    pb::ShardNode {
        id: LOCAL_NODE.into(),
        address: String::new(),
        live: true,
        partitions_assigned: assigned,
        partitions_warm: warm,
        cache_bytes: cache.bytes as u64,
        cache_budget_bytes: cache.budget_bytes as u64,
    }
}

/// The shard node a placement call (drain, admit) names. Such calls need
/// shard nodes: a single-process server has none, which is said first.
fn shard_node(coord: &Coordinator, id: &str) -> Result<u64, Status> {
    if coord.router().is_none() {
        return Err(Status::failed_precondition(
            "this server runs every role in one process; there are no shard nodes to drain or admit (run `rulake coordinator` over `rulake shard` nodes)",
        ));
    }
    rulake_coordinator::parse_node_id(id).ok_or_else(|| {
        invalid(format!(
            "node_id {id:?} is not a shard node id (a number ≥ 1, or a StatefulSet pod name ending in -<ordinal>)"
        ))
    })
}
