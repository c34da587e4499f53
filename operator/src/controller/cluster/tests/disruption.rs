//! What stands between a cluster and a disruption: a storage change the
//! API server refuses is reported without stopping the rest of the run,
//! and the disruption budgets follow the collections' replication.

use super::*;
use crate::crd::StorageSpec;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// A StatefulSet named `name` as the API server has it: 3 ready pods and
/// a `data` claim of `size`.
fn statefulset_with_claim(name: &str, size: &str) -> serde_json::Value {
    json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": { "name": name, "namespace": "default" },
        "spec": {
            "replicas": 3, "serviceName": name, "selector": {}, "template": {},
            "volumeClaimTemplates": [{
                "metadata": { "name": "data" },
                "spec": { "accessModes": ["ReadWriteOnce"], "resources": { "requests": { "storage": size } } },
            }],
        },
        "status": { "replicas": 3, "readyReplicas": 3 },
    })
}

/// A cluster whose three shards are all admitted.
fn settled_cluster() -> RuLakeCluster {
    let mut c = cluster(3);
    c.status = Some(RuLakeClusterStatus::default());
    c.status.as_mut().unwrap().shards.admitted = 3;
    c
}

/// A change the API server refuses (422 Invalid) is a Warning event and a
/// condition naming it, the StatefulSet keeps running as it is, every other
/// object is still applied, and the run is not retried every few seconds:
/// it waits for the spec to change. The event's reason says whether the
/// storage was what changed.
#[tokio::test]
async fn a_refused_statefulset_change_is_reported_and_the_rest_applied() {
    let shard_storage = Refusal {
        path: "statefulsets/demo-shard",
        current: statefulset_with_claim("demo-shard", "1Gi"),
        reason: "StorageChangeRefused",
    };
    // The meta claim asks for what the StatefulSet has: something else
    // was refused.
    let meta_other = Refusal {
        path: "statefulsets/demo-meta",
        current: statefulset_with_claim("demo-meta", "1Gi"),
        reason: "StatefulSetRefused",
    };
    for refusal in [shard_storage, meta_other] {
        let reason = refusal.reason;
        let fake = Arc::new(FakeAdmin::default());
        *fake.status.lock().unwrap() = Some(healthy(3));
        let (ctx, mut api) = test_context(fake.clone());
        let mut c = settled_cluster();
        c.spec.shards.storage = Some(StorageSpec {
            size: Quantity("2Gi".into()),
            storage_class_name: None,
        });
        let server = tokio::spawn(async move {
            shard_lookup(&mut api, Some(3)).await;
            expect_certs(&mut api, StoredCerts::default(), &["ca", "certs"]).await;
            let path = refusal.path;
            let applied = expect_each_child(&mut api, [3, 3, 2], Some(refusal)).await;
            if path == "statefulsets/demo-shard" {
                let claim = &applied[path]["spec"]["volumeClaimTemplates"][0];
                assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "2Gi");
            }
            let status = api.expect(Method::PATCH, STATUS).await;
            for type_ in ["Ready", "Progressing"] {
                assert_eq!(
                    condition(&status.body, type_),
                    ("False".into(), reason.into()),
                    "{type_}"
                );
            }
            assert_eq!(
                condition(&status.body, "Degraded"),
                ("True".into(), reason.into())
            );
            let conditions = status.body["status"]["conditions"].to_string();
            assert!(conditions.contains("docs/operations.md"), "{conditions}");
            assert_eq!(
                status.body["status"]["shards"]["ready"], 3,
                "counts from the StatefulSet as it stands"
            );
            status.respond(serde_json::to_value(cluster(3)).unwrap());
            api
        });
        let action = reconcile(Arc::new(c), ctx)
            .await
            .expect("a refusal is reported, not an error");
        assert_eq!(action, Action::requeue(RESYNC), "{reason}");
        server.await.unwrap().done().await;
    }
}

/// Routes of `collection`: `partitions` partitions with `replicas` replicas
/// each.
fn routes(collection: &str, partitions: u32, replicas: usize) -> Vec<pb::PartitionRoute> {
    (0..partitions)
        .map(|p| pb::PartitionRoute {
            collection: collection.into(),
            partition: p,
            replicas: (0..replicas).map(|i| format!("demo-shard-{i}")).collect(),
            warm: Vec::new(),
        })
        .collect()
}

/// The shard budget lets one less shard go than the smallest replication
/// factor (at least one); meta and coordinators one; unready pods are
/// always evictable. An admin API that does not answer leaves the safest
/// shard budget.
#[tokio::test]
async fn budgets_keep_a_warm_replica_of_every_partition() {
    let with_routes = |rs: Vec<Vec<pb::PartitionRoute>>| {
        let mut status = healthy(3);
        status.routes = rs.into_iter().flatten().collect();
        Some(status)
    };
    let cases = [
        (with_routes(vec![]), 1),
        (with_routes(vec![routes("a", 4, 3), routes("b", 2, 3)]), 2),
        (with_routes(vec![routes("a", 4, 3), routes("b", 2, 2)]), 1),
        (with_routes(vec![routes("a", 4, 1)]), 1),
        (None, 1),
    ];
    for (admin_status, shard_max_unavailable) in cases {
        let fake = Arc::new(FakeAdmin::default());
        *fake.status.lock().unwrap() = admin_status;
        let (ctx, mut api) = test_context(fake.clone());
        let server = tokio::spawn(async move {
            shard_lookup(&mut api, Some(3)).await;
            expect_certs(&mut api, StoredCerts::default(), &["ca", "certs"]).await;
            let applied = expect_each_child(&mut api, [3, 3, 2], None).await;
            for (role, max) in [
                ("meta", 1),
                ("shard", shard_max_unavailable),
                ("coordinator", 1),
            ] {
                let pdb = &applied[format!("poddisruptionbudgets/demo-{role}").as_str()];
                assert_eq!(pdb["spec"]["maxUnavailable"], max, "{role}");
                assert_eq!(pdb["spec"]["unhealthyPodEvictionPolicy"], "AlwaysAllow");
                assert_eq!(
                    pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"],
                    role
                );
            }
            api.expect(Method::PATCH, STATUS)
                .await
                .respond(serde_json::to_value(cluster(3)).unwrap());
            api
        });
        reconcile(Arc::new(settled_cluster()), ctx)
            .await
            .expect("reconcile");
        server.await.unwrap().done().await;
        assert_eq!(fake.calls(), ["status"], "asked once, before the budgets");
    }
}
