//! What Kubernetes' workload controllers and the operator do to a running
//! cluster's pods, done to its containers: start a pod, delete one the way
//! a kubelet stops it, change the shard count through the operator's own
//! drain-before-shrink and admission steps ([`rulake_operator::scale`]),
//! and roll every pod to a new image in the operator's order
//! ([`rulake_operator::manifests::rollout_order`]).
//!
//! Deleting a pod is what a kubelet does with a pod being deleted: no more
//! restarts, the container's `preStop` hook run in it, then SIGTERM, and
//! SIGKILL once `terminationGracePeriodSeconds` (counted from the start of
//! the hook) is up; its emptyDirs go with it, its claims stay (a
//! StatefulSet's claims outlive its pods).

use super::docker::{self, docker, Site};
use super::kubelet::{self, Probe, Watched};
use super::lifecycle::{admin_client, network_name, Up};
use super::{pods, Pod};
use anyhow::{bail, Context};
use rulake_operator::admin::GRPC_PORT;
use rulake_operator::manifests::{self, Role};
use rulake_operator::scale::{self, ScaleEvent};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

type Boxed<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Create and start `pod`'s container and have the kubelet watch it (in
/// place of a pod of the same name). Returns the container's id.
pub fn start_pod(up: &Up, pod: &Pod) -> anyhow::Result<String> {
    let cm = manifests::config_map(&up.manifest.cluster);
    let config_maps: BTreeMap<_, _> = [(
        cm.metadata.name.clone().unwrap_or_default(),
        cm.data.unwrap_or_default(),
    )]
    .into_iter()
    .collect();
    let network = network_name(&up.cluster);
    let container = docker::container_name(&up.cluster, &pod.name);
    let site = Site {
        cluster: &up.cluster,
        network: &network,
        state: &up.state,
        config_maps: &config_maps,
        secrets: &up.manifest.secrets,
        // Every coordinator, so the host reaches whichever is the client
        // Service's now.
        publish: (pod.role == Role::Coordinator.as_str()).then_some(GRPC_PORT),
    };
    let creation = docker::create_args(&site, pod)?;
    for (vol, group) in &creation.volumes {
        docker::owned_volume(&up.cluster, vol, *group)?;
    }
    let mut args = creation.args;
    if let (Some(lake), true) = (&up.lake, pod.role != Role::Meta.as_str()) {
        args.insert(1, format!("{}:/lake:ro", lake.display()));
        args.insert(1, "--volume".into());
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let id = docker(&refs).with_context(|| format!("creating pod {}", pod.name))?;
    docker(&["start", &container])?;
    let c = &pod.spec.containers[0];
    let mut watched = kubelet::load_pods(&up.state);
    watched.retain(|w| w.pod != pod.name);
    watched.push(Watched {
        pod: pod.name.clone(),
        container,
        startup: Probe::of(c, c.startup_probe.as_ref()),
        liveness: Probe::of(c, c.liveness_probe.as_ref()),
        readiness: Probe::of(c, c.readiness_probe.as_ref()),
    });
    kubelet::save_pods(&up.state, &watched)?;
    Ok(id)
}

/// How a deleted pod's container stopped.
#[derive(Clone, Debug)]
pub struct Stopped {
    /// Its exit status (137: killed at the end of the grace period).
    pub exit_code: i64,
    /// From the start of the `preStop` hook to exit.
    pub took: Duration,
}

/// Delete `pod` as a kubelet stops a pod being deleted (see the module
/// doc). Its claims' volumes stay.
pub fn delete_pod(up: &Up, pod: &Pod) -> anyhow::Result<Stopped> {
    let marker = kubelet::terminating_marker(&up.state, &pod.name);
    if let Some(dir) = marker.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&marker, b"")?;
    let mut watched = kubelet::load_pods(&up.state);
    watched.retain(|w| w.pod != pod.name);
    kubelet::save_pods(&up.state, &watched)?;
    let container = docker::container_name(&up.cluster, &pod.name);
    let start = Instant::now();
    let c = &pod.spec.containers[0];
    let hook = c
        .lifecycle
        .as_ref()
        .and_then(|l| l.pre_stop.as_ref())
        .and_then(|h| h.exec.as_ref())
        .and_then(|e| e.command.clone());
    if let Some(command) = hook {
        let mut args = vec!["exec", container.as_str()];
        args.extend(command.iter().map(String::as_str));
        if let Err(e) = docker(&args) {
            eprintln!("  {}: preStop hook failed: {e}", pod.name);
        }
    }
    let grace = pod.spec.termination_grace_period_seconds.unwrap_or(30);
    let left = (grace - start.elapsed().as_secs() as i64).max(1);
    docker(&["stop", "--time", &left.to_string(), &container])?;
    let took = start.elapsed();
    let exit_code = docker(&["inspect", "--format", "{{.State.ExitCode}}", &container])?
        .parse()
        .context("exit code")?;
    docker(&["rm", "-f", &container])?;
    for m in c.volume_mounts.iter().flatten() {
        let empty_dir =
            pod.spec.volumes.iter().flatten().any(|v| {
                v.name == m.name && v.empty_dir.is_some() && !pod.claims.contains(&m.name)
            });
        if empty_dir {
            docker(&[
                "volume",
                "rm",
                "-f",
                &docker::volume_name(&up.cluster, &pod.name, &m.name),
            ])?;
        }
    }
    let _ = std::fs::remove_file(&marker);
    Ok(Stopped { exit_code, took })
}

/// Wait until the kubelet reports `pod`'s container `container_id` ready.
pub async fn wait_pod_ready(
    up: &Up,
    pod: &str,
    container_id: &str,
    within: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let status = kubelet::status(&up.state);
        if status
            .get(pod)
            .is_some_and(|s| s.ready && s.container_id == container_id)
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{pod} not ready within {within:?}: {:?}", status.get(pod));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The host address of coordinator pod `pod`'s API port.
pub fn published_address(up: &Up, pod: &str) -> anyhow::Result<String> {
    let container = docker::container_name(&up.cluster, pod);
    let port = docker(&["port", &container, &GRPC_PORT.to_string()])?;
    port.lines()
        .find(|l| l.starts_with("127.0.0.1:"))
        .map(str::to_string)
        .with_context(|| format!("{pod}'s API port is not published"))
}

/// The scale steps' events, printed (the reconciler publishes them).
fn print_events() -> impl FnMut(ScaleEvent) -> Boxed<()> + Send {
    |e: ScaleEvent| -> Boxed<()> {
        let kind = if e.warning { "Warning" } else { "Normal" };
        eprintln!("  event {kind} {} ({}): {}", e.reason, e.action, e.note);
        Box::pin(async {})
    }
}

/// Admit the shards the StatefulSet has beyond `up.admitted`, each once the
/// kubelet reports it Ready, through the operator's own step
/// ([`scale::admit_ready`]), looking again every second as the reconciler
/// requeues, for at most `within`.
pub async fn admit(up: &mut Up, within: Duration) -> anyhow::Result<()> {
    let admin = admin_client(&up.manifest, &up.address, Duration::from_secs(60))?;
    let deadline = Instant::now() + within;
    let mut events = print_events();
    loop {
        let state = up.state.clone();
        let mut ready = move |node: String| -> Boxed<Result<bool, std::convert::Infallible>> {
            let ready = kubelet::status(&state).get(&node).is_some_and(|s| s.ready);
            Box::pin(async move { Ok(ready) })
        };
        let waiting = scale::admit_ready(
            &up.manifest.cluster,
            &admin,
            &mut up.admitted,
            up.shards,
            &mut ready,
            &mut events,
        )
        .await;
        let Ok(Some((reason, message))) = waiting else {
            return Ok(());
        };
        if Instant::now() > deadline {
            bail!("shards not admitted within {within:?}: {reason}: {message}");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The pod named `name` among `all`.
fn find<'a>(all: &'a [Pod], name: &str) -> anyhow::Result<&'a Pod> {
    all.iter()
        .find(|p| p.name == name)
        .with_context(|| format!("no pod {name}"))
}

/// Change the shard count to `to` as the operator does: shrinking drains
/// the nodes going away first ([`scale::drain_before_shrink`], highest
/// ordinal first) and only then deletes their pods; growing starts the new
/// pods and admits each once Ready ([`admit`]). Returns the stops of the
/// deleted pods.
pub async fn scale_shards(up: &mut Up, to: i32, within: Duration) -> anyhow::Result<Vec<Stopped>> {
    let current = up.shards;
    let mut stopped = Vec::new();
    if to < current {
        let admin = admin_client(&up.manifest, &up.address, within)?;
        let mut events = print_events();
        scale::drain_before_shrink(&up.manifest.cluster, &admin, current, to, &mut events)
            .await
            .map_err(|f| anyhow::anyhow!(f.message))?;
        up.admitted = up.admitted.min(to);
        let all = pods(&up.manifest.cluster, Some(current))?;
        for ordinal in (to..current).rev() {
            let name = manifests::shard_node_id(&up.manifest.cluster, ordinal);
            stopped.push(delete_pod(up, find(&all, &name)?)?);
        }
    } else if to > current {
        let all = pods(&up.manifest.cluster, Some(to))?;
        for ordinal in current..to {
            let name = manifests::shard_node_id(&up.manifest.cluster, ordinal);
            start_pod(up, find(&all, &name)?)?;
        }
    }
    up.shards = to;
    up.manifest.cluster.spec.shards.replicas = to;
    up.save()?;
    admit(up, within).await?;
    up.save()?;
    Ok(stopped)
}

/// One pod a roll replaced.
#[derive(Clone, Debug)]
pub struct Replaced {
    /// The pod deleted.
    pub pod: String,
    /// How it stopped.
    pub stopped: Stopped,
    /// Seconds from its deletion until its replacement was Ready.
    pub seconds: f64,
}

/// Replace every pod with one running `image`, one at a time, in the
/// operator's order ([`manifests::rollout_order`]), each once the one
/// before is Ready: a meta or shard pod is deleted and made again under
/// its name and claims, as a StatefulSet does; a coordinator's replacement
/// is started and Ready first, then `service` is told its address (the
/// client Service's endpoints move), then the old one is deleted.
pub async fn roll(
    up: &mut Up,
    image: &str,
    within: Duration,
    service: &mut (dyn FnMut(&str) + Send),
) -> anyhow::Result<Vec<Replaced>> {
    up.manifest.cluster.spec.image = image.to_string();
    up.save()?;
    let cluster = up.manifest.cluster.clone();
    let all = pods(&cluster, Some(up.shards))?;
    let mut out = Vec::new();
    for (role, i) in manifests::rollout_order(&cluster, up.shards) {
        let start = Instant::now();
        if role == Role::Coordinator {
            let old_name = up.coordinators[i as usize].clone();
            let template = find(
                &all,
                &format!("{}-{i}", manifests::role_name(&cluster, role)),
            )?;
            let mut old = template.clone();
            old.name = old_name.clone();
            let mut new = template.clone();
            new.name = format!(
                "{}-{}",
                manifests::role_name(&cluster, role),
                next_index(up)
            );
            let id = start_pod(up, &new)?;
            wait_pod_ready(up, &new.name, &id, within).await?;
            let address = published_address(up, &new.name)?;
            service(&address);
            if i == 0 {
                up.address = address;
            }
            let stopped = delete_pod(up, &old)?;
            up.coordinators[i as usize] = new.name.clone();
            up.save()?;
            out.push(Replaced {
                pod: old_name,
                stopped,
                seconds: start.elapsed().as_secs_f64(),
            });
            continue;
        }
        let pod = find(
            &all,
            &format!("{}-{i}", manifests::role_name(&cluster, role)),
        )?;
        let stopped = delete_pod(up, pod)?;
        let id = start_pod(up, pod)?;
        wait_pod_ready(up, &pod.name, &id, within).await?;
        out.push(Replaced {
            pod: pod.name.clone(),
            stopped,
            seconds: start.elapsed().as_secs_f64(),
        });
    }
    Ok(out)
}

/// An index no coordinator pod of `up` has used (pods of a Deployment get
/// new names).
fn next_index(up: &Up) -> usize {
    up.coordinators
        .iter()
        .filter_map(|n| n.rsplit_once('-')?.1.parse::<usize>().ok())
        .max()
        .map_or(0, |m| m + 1)
        .max(up.coordinators.len())
}
