//! One pod as a container, as a kubelet would start it: the same image,
//! command and args (`$(VAR)` expanded), env (values, the pod name, and
//! ConfigMap and Secret sources), Secret files with their modes, the
//! security context (user, read-only root, no capabilities, no new
//! privileges), memory and CPU limits as cgroup limits, emptyDirs and
//! claims as named volumes owned by the pod's `fsGroup`. Everything made
//! carries the label [`LABEL`] so `down` removes exactly what `up` made.
//!
//! The Docker CLI is called as a command: the harness needs a dozen of its
//! verbs, and the CLI is what a reader would type to reproduce a step.

use super::{Data, Pod};
use anyhow::{bail, Context};
use rulake_operator::k8s::api::core::v1::{Container, EnvVar};
use rulake_operator::k8s::apimachinery::pkg::api::resource::Quantity;
use rulake_operator::manifests::quantity_bytes;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// Label on every container, network and volume the harness makes; its
/// value is the cluster's name.
pub const LABEL: &str = "io.rulake.chaos.cluster";

/// Run `docker args...`, answering its trimmed stdout; a failure says
/// which command and what Docker printed.
pub fn docker(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .context("running docker (is the Docker Engine installed?)")?;
    if !out.status.success() {
        bail!(
            "docker {}: {}",
            args.iter().take(3).copied().collect::<Vec<_>>().join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Expand `$(NAME)` from `env` the way Kubernetes does: unknown names stay
/// as written, `$$` is a literal `$`.
pub fn expand(s: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i + 1..];
        if let Some(t) = tail.strip_prefix('$') {
            out.push('$');
            rest = t;
        } else if let Some((name, after)) = tail.strip_prefix('(').and_then(|t| t.split_once(')')) {
            match env.get(name) {
                Some(v) => out.push_str(v),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = after;
        } else {
            out.push('$');
            rest = tail;
        }
    }
    out.push_str(rest);
    out
}

/// The container's environment: `envFrom` sources in order, then `env`
/// (later wins, as in Kubernetes).
pub fn environment(
    pod: &str,
    c: &Container,
    config_maps: &BTreeMap<String, BTreeMap<String, String>>,
    secrets: &BTreeMap<String, Data>,
) -> anyhow::Result<BTreeMap<String, String>> {
    let mut env = BTreeMap::new();
    for from in c.env_from.iter().flatten() {
        if let Some(cm) = &from.config_map_ref {
            let data = config_maps
                .get(&cm.name)
                .with_context(|| format!("ConfigMap {} is not in the manifest", cm.name))?;
            env.extend(data.clone());
        }
        if let Some(s) = &from.secret_ref {
            let data = secrets
                .get(&s.name)
                .with_context(|| format!("Secret {} is not in the manifest", s.name))?;
            for (k, v) in data {
                env.insert(k.clone(), String::from_utf8_lossy(v).into_owned());
            }
        }
    }
    for EnvVar {
        name,
        value,
        value_from,
    } in c.env.iter().flatten()
    {
        let v = match (value, value_from) {
            (Some(v), _) => expand(v, &env),
            (None, Some(from)) => match (&from.field_ref, &from.secret_key_ref) {
                (Some(f), _) if f.field_path == "metadata.name" => pod.to_string(),
                (_, Some(k)) => secrets
                    .get(&k.name)
                    .and_then(|d| d.get(&k.key))
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .with_context(|| {
                        format!("Secret {} key {} is not in the manifest", k.name, k.key)
                    })?,
                _ => bail!("env {name}: only metadata.name and secretKeyRef are supported"),
            },
            (None, None) => String::new(),
        };
        env.insert(name.clone(), v);
    }
    Ok(env)
}

/// Write a Secret volume's files under `dir` (all keys, or `items`), owned
/// by root and the pod's group with the volume's mode, as the kubelet does.
fn secret_files(
    dir: &Path,
    data: &Data,
    items: Option<&Vec<rulake_operator::k8s::api::core::v1::KeyToPath>>,
    mode: u32,
    group: u32,
) -> anyhow::Result<()> {
    use std::os::unix::fs::{chown, PermissionsExt};
    std::fs::create_dir_all(dir)?;
    let files: Vec<(String, String)> = match items {
        Some(items) => items
            .iter()
            .map(|i| (i.key.clone(), i.path.clone()))
            .collect(),
        None => data.keys().map(|k| (k.clone(), k.clone())).collect(),
    };
    for (key, path) in files {
        let bytes = data.get(&key).with_context(|| format!("no key {key}"))?;
        let file = dir.join(&path);
        std::fs::write(&file, bytes)?;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode))?;
        chown(&file, Some(0), Some(group))?;
    }
    chown(dir, Some(0), Some(group))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o750))?;
    Ok(())
}

/// Where a pod runs: the cluster's network, its image, and the directory
/// holding materialised Secret files.
pub struct Site<'a> {
    /// Cluster name (the label's value, the prefix of container names).
    pub cluster: &'a str,
    /// Docker network.
    pub network: &'a str,
    /// State directory (Secret files go under `<state>/files/<pod>/`).
    pub state: &'a Path,
    /// ConfigMaps by name.
    pub config_maps: &'a BTreeMap<String, BTreeMap<String, String>>,
    /// Secrets by name.
    pub secrets: &'a BTreeMap<String, Data>,
    /// Container port to publish on the host's loopback (the API).
    pub publish: Option<u16>,
}

/// Container name of `pod`.
pub fn container_name(cluster: &str, pod: &str) -> String {
    format!("rulake-{cluster}-{pod}")
}

/// Named volume of `pod`'s `claim` (a StatefulSet's `<claim>-<pod>`).
pub fn volume_name(cluster: &str, pod: &str, claim: &str) -> String {
    format!("rulake-{cluster}-{claim}-{pod}")
}

/// What starting a pod takes: the `docker create` arguments, and the
/// named volumes (with the group that must own them) to make first with
/// [`owned_volume`]. Secret files are written under the state directory.
pub struct Creation {
    /// Arguments after `docker`.
    pub args: Vec<String>,
    /// Volume names and their owning group.
    pub volumes: Vec<(String, u32)>,
}

/// How to create `pod`'s container.
pub fn create_args(site: &Site<'_>, pod: &Pod) -> anyhow::Result<Creation> {
    let spec = &pod.spec;
    let c = spec
        .containers
        .first()
        .context("a pod without containers")?;
    let pod_sc = spec.security_context.clone().unwrap_or_default();
    let sc = c.security_context.clone().unwrap_or_default();
    let user = sc.run_as_user.or(pod_sc.run_as_user).unwrap_or(0);
    let group = sc.run_as_group.or(pod_sc.run_as_group).unwrap_or(0);
    let fs_group = pod_sc.fs_group.unwrap_or(group) as u32;
    let name = container_name(site.cluster, &pod.name);
    let mut args: Vec<String> = vec![
        "create".into(),
        "--name".into(),
        name,
        "--hostname".into(),
        pod.name.clone(),
        "--network".into(),
        site.network.into(),
        "--label".into(),
        format!("{LABEL}={}", site.cluster),
        "--label".into(),
        format!("io.rulake.chaos.role={}", pod.role),
        "--user".into(),
        format!("{user}:{group}"),
        "--group-add".into(),
        fs_group.to_string(),
    ];
    for a in &pod.aliases {
        args.extend(["--network-alias".into(), a.clone()]);
    }
    if sc.read_only_root_filesystem == Some(true) {
        args.push("--read-only".into());
    }
    if sc.allow_privilege_escalation == Some(false) {
        args.extend(["--security-opt".into(), "no-new-privileges".into()]);
    }
    for cap in sc.capabilities.iter().flat_map(|c| c.drop.iter().flatten()) {
        args.extend(["--cap-drop".into(), cap.clone()]);
    }
    if let Some(port) = site.publish {
        args.extend(["--publish".into(), format!("127.0.0.1::{port}")]);
    }
    args.extend(resource_args(c)?);
    let volumes: BTreeMap<_, _> = spec
        .volumes
        .iter()
        .flatten()
        .map(|v| (v.name.clone(), v))
        .collect();
    let mut owned = Vec::new();
    for m in c.volume_mounts.iter().flatten() {
        let ro = if m.read_only == Some(true) { ":ro" } else { "" };
        if pod.claims.contains(&m.name) {
            let vol = volume_name(site.cluster, &pod.name, &m.name);
            args.extend(["--volume".into(), format!("{vol}:{}{ro}", m.mount_path)]);
            owned.push((vol, fs_group));
            continue;
        }
        let v = volumes
            .get(&m.name)
            .with_context(|| format!("{}: mount {} names no volume", pod.name, m.name))?;
        if v.empty_dir.is_some() {
            // A volume of the pod's own, given to `fsGroup` like a claim:
            // it outlives container restarts and goes with the pod, as an
            // emptyDir does. (A tmpfs would take the image directory's
            // mode, not the pod's group.)
            let vol = volume_name(site.cluster, &pod.name, &m.name);
            args.extend(["--volume".into(), format!("{vol}:{}", m.mount_path)]);
            owned.push((vol, fs_group));
        } else if let Some(s) = &v.secret {
            let secret = s.secret_name.clone().unwrap_or_default();
            let data = site
                .secrets
                .get(&secret)
                .with_context(|| format!("Secret {secret} is not in the manifest"))?;
            let dir = site.state.join("files").join(&pod.name).join(&m.name);
            let mode = s.default_mode.unwrap_or(0o644) as u32;
            secret_files(&dir, data, s.items.as_ref(), mode, fs_group)?;
            args.extend([
                "--volume".into(),
                format!("{}:{}:ro", dir.display(), m.mount_path),
            ]);
        } else {
            bail!(
                "{}: volume {} is neither emptyDir, Secret nor a claim",
                pod.name,
                m.name
            );
        }
    }
    let env = environment(&pod.name, c, site.config_maps, site.secrets)?;
    for (k, v) in &env {
        args.extend(["--env".into(), format!("{k}={v}")]);
    }
    let mut words: Vec<String> = c.command.clone().unwrap_or_default();
    if let Some(first) = words.first().cloned() {
        args.extend(["--entrypoint".into(), first]);
        words.remove(0);
    }
    words.extend(c.args.clone().unwrap_or_default());
    args.push(c.image.clone().context("a container without image")?);
    args.extend(words.iter().map(|w| expand(w, &env)));
    Ok(Creation {
        args,
        volumes: owned,
    })
}

/// The container's resources as Docker flags, as the kubelet gives them
/// to the runtime: the memory limit as a hard cgroup limit with no swap
/// beyond it (a pod over its limit is OOM-killed, not swapped), the
/// memory request as a soft reservation, and a CPU limit as a CPU quota.
fn resource_args(c: &Container) -> anyhow::Result<Vec<String>> {
    let Some(r) = &c.resources else {
        return Ok(Vec::new());
    };
    let mut args = Vec::new();
    let memory = |list: &Option<BTreeMap<String, Quantity>>| -> anyhow::Result<Option<u64>> {
        list.as_ref()
            .and_then(|l| l.get("memory"))
            .map(|q| {
                quantity_bytes(q).with_context(|| format!("memory {:?} is not a quantity", q.0))
            })
            .transpose()
    };
    if let Some(limit) = memory(&r.limits)? {
        args.extend([
            "--memory".into(),
            limit.to_string(),
            "--memory-swap".into(),
            limit.to_string(),
        ]);
    }
    if let Some(request) = memory(&r.requests)? {
        args.extend(["--memory-reservation".into(), request.to_string()]);
    }
    if let Some(q) = r.limits.as_ref().and_then(|l| l.get("cpu")) {
        let cpus = match q.0.strip_suffix('m') {
            Some(milli) => milli.parse::<f64>().map(|m| m / 1000.0),
            None => q.0.parse::<f64>(),
        }
        .with_context(|| format!("cpu {:?} is not a quantity", q.0))?;
        args.extend(["--cpus".into(), format!("{cpus}")]);
    }
    Ok(args)
}

/// Create the named volume `vol` (labelled) and give it to `group`, as
/// `fsGroup` does for a claim.
pub fn owned_volume(cluster: &str, vol: &str, group: u32) -> anyhow::Result<()> {
    if docker(&["volume", "inspect", vol]).is_ok() {
        return Ok(());
    }
    docker(&[
        "volume",
        "create",
        "--label",
        &format!("{LABEL}={cluster}"),
        vol,
    ])?;
    docker(&[
        "run",
        "--rm",
        "--user",
        "0",
        "--network",
        "none",
        "--entrypoint",
        "/bin/sh",
        "--volume",
        &format!("{vol}:/v"),
        &base_image(),
        "-c",
        &format!("chown 0:{group} /v && chmod 2775 /v"),
    ])?;
    Ok(())
}

/// The image used for volume set-up (any image with a shell).
pub fn base_image() -> String {
    std::env::var("RULAKE_BASE_IMAGE").unwrap_or_else(|_| "rulake-base:bookworm".into())
}

/// The container's IP address on `network`.
pub fn address(container: &str, network: &str) -> anyhow::Result<String> {
    let ip = docker(&[
        "inspect",
        "--format",
        &format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}"),
        container,
    ])?;
    if ip.is_empty() {
        bail!("{container} has no address on {network}");
    }
    Ok(ip)
}
