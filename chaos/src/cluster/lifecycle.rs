//! `up` and `down`: a manifest's cluster started as containers with its
//! kubelet, and everything it made removed again.

use super::docker::{self, docker, LABEL};
use super::{kubelet, ops, pods, Manifest};
use anyhow::{bail, Context};
use rulake_operator::admin::{AdminKey, ClusterAdmin, GrpcAdmin};
use rulake_operator::manifests;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How `up` runs a manifest.
#[derive(Clone, Debug)]
pub struct UpOptions {
    /// Image for every pod, overriding `spec.image`.
    pub image: Option<String>,
    /// A host directory mounted read-only at `/lake` in shard and
    /// coordinator pods (a lake on a shared volume).
    pub lake: Option<PathBuf>,
    /// How long to wait for every pod to be ready.
    pub ready_within: Duration,
}

/// A cluster that `up` started, and what [`super::ops`] needs to change it
/// (kept as `up.json` in the state directory, so later commands can).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Up {
    /// Cluster name.
    pub cluster: String,
    /// The coordinator's gRPC address on the host (`127.0.0.1:port`): the
    /// client Service, as the host reaches it.
    pub address: String,
    /// The harness's state directory.
    pub state: PathBuf,
    /// Seconds from start to every pod ready.
    pub ready_after: f64,
    /// The manifest as run (its image, issued certificates).
    pub manifest: Manifest,
    /// The lake directory mounted in shard and coordinator pods.
    pub lake: Option<PathBuf>,
    /// Shard pods now (the StatefulSet's size).
    pub shards: i32,
    /// Shard ordinals placement counts on (`status.shards.admitted`).
    pub admitted: i32,
    /// Coordinator pods now, by name; the first is the one `address` reaches.
    pub coordinators: Vec<String>,
}

impl Up {
    /// Keep this in the state directory (`up.json`).
    pub fn save(&self) -> anyhow::Result<()> {
        let tmp = self.state.join("up.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(self)?)?;
        std::fs::rename(&tmp, self.state.join("up.json"))?;
        Ok(())
    }

    /// The cluster `up` started under the name `cluster`, as last saved.
    pub fn load(cluster: &str) -> anyhow::Result<Up> {
        let path = state_dir(cluster).join("up.json");
        let bytes = std::fs::read(&path)
            .with_context(|| format!("{}: is cluster {cluster} up?", path.display()))?;
        Ok(serde_json::from_slice(&bytes)?)
    }
}

/// The harness's state directory for `cluster`.
pub fn state_dir(cluster: &str) -> PathBuf {
    std::env::temp_dir().join(format!("rulake-chaos-cluster-{cluster}"))
}

/// The Docker network of `cluster`.
pub fn network_name(cluster: &str) -> String {
    format!("rulake-{cluster}")
}

/// Start `manifest`'s cluster: network, pods, kubelet; wait until every
/// pod is ready; admit the shards and create its collections through the
/// operator's admin client, as the reconciler does. `kubelet_cmd` starts
/// the kubelet process for a state dir.
pub async fn up(
    mut manifest: Manifest,
    opts: &UpOptions,
    kubelet_cmd: impl FnOnce(&Path) -> anyhow::Result<u32>,
) -> anyhow::Result<Up> {
    let start = Instant::now();
    if let Some(image) = &opts.image {
        manifest.cluster.spec.image = image.clone();
    }
    manifest.issue_certificates(rulake_operator::k8s::jiff::Timestamp::now())?;
    let cluster = manifest.names().cluster;
    let state = state_dir(&cluster);
    if docker(&["network", "inspect", &network_name(&cluster)]).is_ok() {
        bail!("cluster {cluster} is already up: run `down` first");
    }
    std::fs::create_dir_all(&state)?;
    let network = network_name(&cluster);
    docker(&[
        "network",
        "create",
        "--label",
        &format!("{LABEL}={cluster}"),
        &network,
    ])?;
    std::fs::write(state.join("network"), &network)?;
    kubelet::save_pods(&state, &[])?;
    let mut up = Up {
        cluster: cluster.clone(),
        address: String::new(),
        state: state.clone(),
        ready_after: 0.0,
        lake: opts.lake.clone(),
        shards: manifest.cluster.spec.shards.replicas,
        admitted: 0,
        coordinators: Vec::new(),
        manifest,
    };
    let all = pods(&up.manifest.cluster, None)?;
    for pod in &all {
        ops::start_pod(&up, pod)?;
        if pod.role == manifests::Role::Coordinator.as_str() {
            up.coordinators.push(pod.name.clone());
        }
    }
    let pid = kubelet_cmd(&state)?;
    std::fs::write(state.join("kubelet.pid"), pid.to_string())?;
    eprintln!(
        "cluster {cluster}: {} pods started, waiting for them to be ready",
        all.len()
    );
    wait_ready(&state, all.len(), opts.ready_within).await?;
    up.ready_after = start.elapsed().as_secs_f64();
    let first = up.coordinators.first().context("no coordinator")?.clone();
    up.address = ops::published_address(&up, &first)?;
    ops::admit(&mut up, opts.ready_within).await?;
    create_collections(&up.manifest, &up.address).await?;
    up.save()?;
    Ok(up)
}

async fn wait_ready(state: &Path, pods: usize, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    let mut last = usize::MAX;
    loop {
        let status = kubelet::status(state);
        let ready = status.values().filter(|s| s.ready).count();
        if ready != last {
            eprintln!("  {ready}/{pods} pods ready");
            last = ready;
        }
        if ready == pods {
            return Ok(());
        }
        if Instant::now() > deadline {
            let mut logs = String::new();
            let cluster = state
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("rulake-chaos-cluster-"))
                .unwrap_or_default();
            for (pod, s) in status.iter().filter(|(_, s)| !s.ready) {
                let name = docker::container_name(cluster, pod);
                let tail = std::process::Command::new("docker")
                    .args(["logs", "--tail", "15", &name])
                    .output()
                    .map(|o| {
                        String::from_utf8_lossy(&o.stderr).into_owned()
                            + &String::from_utf8_lossy(&o.stdout)
                    })
                    .unwrap_or_default();
                logs.push_str(&format!("\n--- {pod} ({} restarts):\n{tail}", s.restarts));
            }
            bail!("not every pod ready within {within:?}: {status:?}{logs}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The admin key the operator would send (`auth.adminKeySecretRef`).
pub fn admin_key(manifest: &Manifest) -> anyhow::Result<Option<AdminKey>> {
    let Some(r) = manifest
        .cluster
        .spec
        .auth
        .as_ref()
        .and_then(|a| a.admin_key_secret_ref.as_ref())
    else {
        return Ok(None);
    };
    let raw = manifest
        .secrets
        .get(&r.name)
        .and_then(|d| d.get(&r.key))
        .with_context(|| format!("Secret {} key {} is not in the manifest", r.name, r.key))?;
    Ok(Some(AdminKey::new(raw)?))
}

/// The operator's admin client for the cluster at `address`, with the
/// key the operator would send. Calls wait up to `timeout` (a drain waits
/// for partitions to warm elsewhere).
pub fn admin_client(
    manifest: &Manifest,
    address: &str,
    timeout: Duration,
) -> anyhow::Result<GrpcAdmin> {
    let key = admin_key(manifest)?;
    Ok(GrpcAdmin::connect_lazy_with(
        &format!("http://{address}"),
        timeout,
        None,
        key.as_ref(),
    )?)
}

async fn create_collections(manifest: &Manifest, address: &str) -> anyhow::Result<()> {
    if manifest.collections.is_empty() {
        return Ok(());
    }
    let admin = admin_client(manifest, address, Duration::from_secs(30))?;
    for c in &manifest.collections {
        let name = c.metadata.name.clone().unwrap_or_default();
        let spec = rulake_operator::controller::collection::to_proto(&name, &c.spec);
        admin
            .create_collection(spec)
            .await
            .with_context(|| format!("creating collection {name}"))?;
        eprintln!("  collection {name} created");
    }
    Ok(())
}

/// Remove every container, network and volume `up` made for `cluster`,
/// stop its kubelet and remove its state. Answers how many objects went.
pub fn down(cluster: &str) -> anyhow::Result<usize> {
    let state = state_dir(cluster);
    if let Ok(pid) = std::fs::read_to_string(state.join("kubelet.pid")) {
        let _ = std::process::Command::new("kill").arg(pid.trim()).status();
    }
    let filter = format!("label={LABEL}={cluster}");
    let mut removed = 0;
    let containers = docker(&["ps", "-aq", "--filter", &filter])?;
    for id in containers.lines().filter(|l| !l.is_empty()) {
        docker(&["rm", "-f", "-v", id])?;
        removed += 1;
    }
    for id in docker(&["network", "ls", "-q", "--filter", &filter])?
        .lines()
        .filter(|l| !l.is_empty())
    {
        docker(&["network", "rm", id])?;
        removed += 1;
    }
    for id in docker(&["volume", "ls", "-q", "--filter", &filter])?
        .lines()
        .filter(|l| !l.is_empty())
    {
        docker(&["volume", "rm", "-f", id])?;
        removed += 1;
    }
    let _ = std::fs::remove_dir_all(&state);
    Ok(removed)
}
