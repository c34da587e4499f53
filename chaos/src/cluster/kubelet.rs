//! What a kubelet does for the harness's pods once they run: probes on
//! their periods and thresholds, restarts, readiness.
//!
//! Kubernetes semantics kept, because they decide whether a slow start is
//! survived: no liveness or readiness probe runs before the startup probe
//! has succeeded; a probe counts only after `initialDelaySeconds`; a
//! container is restarted after `failureThreshold` consecutive failures of
//! its startup or liveness probe, or when it exits (restart policy
//! `Always`). Readiness and restart counts are written to `status.json` in
//! the state directory after every round, which is how `up` and the tests
//! learn that the cluster is ready.
//!
//! The pods it watches are `pods.json` in the state directory, read again
//! every round, so pods can be added, replaced and removed while it runs
//! (a scale, a rolling upgrade: [`super::ops`]). A pod being terminated is
//! marked (`terminating/<pod>`) and never restarted, as a kubelet does not
//! restart a container of a pod that is being deleted; a container
//! replaced under the same pod name (a new pod of a StatefulSet) starts
//! its probes afresh.

use super::docker::{address, docker};
use rulake_operator::k8s::api::core::v1::{Container, Probe as K8sProbe};
use rulake_operator::k8s::apimachinery::pkg::util::intstr::IntOrString;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

/// An HTTP GET probe.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Probe {
    /// Path requested.
    pub path: String,
    /// Container port.
    pub port: u16,
    /// Seconds after a start before the probe counts.
    pub initial_delay: u64,
    /// Seconds between tries.
    pub period: u64,
    /// Consecutive failures that fail the probe.
    pub failure_threshold: u32,
}

impl Probe {
    /// The probe of a container as the operator wrote it (HTTP GET only).
    pub fn of(c: &Container, p: Option<&K8sProbe>) -> Option<Probe> {
        let p = p?;
        let get = p.http_get.as_ref()?;
        let port = match &get.port {
            IntOrString::Int(n) => *n as u16,
            IntOrString::String(name) => c
                .ports
                .iter()
                .flatten()
                .find(|q| q.name.as_deref() == Some(name))
                .map(|q| q.container_port as u16)?,
        };
        Some(Probe {
            path: get.path.clone().unwrap_or_else(|| "/".into()),
            port,
            initial_delay: p.initial_delay_seconds.unwrap_or(0) as u64,
            period: p.period_seconds.unwrap_or(10).max(1) as u64,
            failure_threshold: p.failure_threshold.unwrap_or(3).max(1) as u32,
        })
    }
}

/// One container under watch.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Watched {
    /// Pod name.
    pub pod: String,
    /// Container name.
    pub container: String,
    /// Startup probe.
    pub startup: Option<Probe>,
    /// Liveness probe.
    pub liveness: Option<Probe>,
    /// Readiness probe.
    pub readiness: Option<Probe>,
}

/// What the kubelet reports per pod.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct PodStatus {
    /// Readiness probe passing (or none defined) and running.
    pub ready: bool,
    /// Restarts so far (exits and failed probes).
    pub restarts: u32,
    /// The container this status is about (Docker's id).
    #[serde(default)]
    pub container_id: String,
}

/// GET `path` from `ip:port`; a 2xx or 3xx answer within a second passes.
pub fn http_ok(ip: &str, port: u16, path: &str) -> bool {
    let Ok(addr) = format!("{ip}:{port}").parse::<SocketAddr>() else {
        return false;
    };
    let t = Duration::from_secs(1);
    let Ok(mut s) = TcpStream::connect_timeout(&addr, t) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(t));
    let _ = s.set_write_timeout(Some(t));
    if s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {ip}\r\n\r\n").as_bytes())
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    if s.read_exact(&mut head).is_err() {
        return false;
    }
    matches!(&head[9..10], b"2" | b"3")
}

#[derive(Default)]
struct Track {
    started: Option<Instant>,
    started_ok: bool,
    fails: BTreeMap<&'static str, u32>,
    last: BTreeMap<&'static str, Instant>,
    status: PodStatus,
}

impl Track {
    /// Run `probe` (`kind`) if due; `Some(passed)` when it ran.
    fn due(&mut self, kind: &'static str, probe: &Probe, ip: &str, now: Instant) -> Option<bool> {
        let since = now.duration_since(self.started?);
        if since < Duration::from_secs(probe.initial_delay) {
            return None;
        }
        if let Some(last) = self.last.get(kind) {
            if now.duration_since(*last) < Duration::from_secs(probe.period) {
                return None;
            }
        }
        self.last.insert(kind, now);
        let ok = http_ok(ip, probe.port, &probe.path);
        let fails = self.fails.entry(kind).or_default();
        *fails = if ok { 0 } else { *fails + 1 };
        Some(ok)
    }

    fn failed(&self, kind: &'static str, probe: &Probe) -> bool {
        self.fails.get(kind).copied().unwrap_or(0) >= probe.failure_threshold
    }

    fn restarted(&mut self, now: Instant) {
        *self = Track {
            started: Some(now),
            status: PodStatus {
                ready: false,
                restarts: self.status.restarts + 1,
                container_id: self.status.container_id.clone(),
            },
            ..Track::default()
        };
    }
}

/// `container`'s id and whether it runs (`None`: it does not exist).
fn container_state(container: &str) -> Option<(String, bool)> {
    let out = docker(&[
        "inspect",
        "--format",
        "{{.Id}} {{.State.Running}}",
        container,
    ])
    .ok()?;
    let (id, running) = out.split_once(' ')?;
    Some((id.to_string(), running == "true"))
}

/// The marker that pod `pod` is being terminated.
pub fn terminating_marker(state: &Path, pod: &str) -> std::path::PathBuf {
    state.join("terminating").join(pod)
}

/// Restart `container` of `pod` unless the pod is being terminated.
fn restart(state: &Path, pod: &str, args: &[&str]) -> bool {
    !terminating_marker(state, pod).exists() && docker(args).is_ok()
}

/// The pods the kubelet watches (`pods.json`; none when unreadable).
pub fn load_pods(state: &Path) -> Vec<Watched> {
    std::fs::read(state.join("pods.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Replace the pods the kubelet watches (written whole, then renamed, so
/// the kubelet never reads half a file).
pub fn save_pods(state: &Path, pods: &[Watched]) -> anyhow::Result<()> {
    let tmp = state.join("pods.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(pods)?)?;
    std::fs::rename(&tmp, state.join("pods.json"))?;
    Ok(())
}

/// Watch the pods of `state` on `network` until `stop()`, writing
/// `status.json` to `state` after every round. Containers removed from
/// outside are left alone until they exist again.
pub fn watch(state: &Path, network: &str, stop: impl Fn() -> bool) {
    let mut tracks: BTreeMap<String, Track> = BTreeMap::new();
    let now = Instant::now();
    for p in load_pods(state) {
        tracks.entry(p.pod.clone()).or_default().started = Some(now);
    }
    while !stop() {
        let now = Instant::now();
        let pods = load_pods(state);
        tracks.retain(|name, _| pods.iter().any(|p| &p.pod == name));
        for p in &pods {
            let t = tracks.entry(p.pod.clone()).or_default();
            let Some((id, running)) = container_state(&p.container) else {
                t.status.ready = false;
                continue;
            };
            if t.status.container_id != id {
                // A new container for this pod: a new pod, probed afresh.
                *t = Track {
                    started: Some(now),
                    status: PodStatus {
                        container_id: id,
                        ..PodStatus::default()
                    },
                    ..Track::default()
                };
            }
            if !running {
                if restart(state, &p.pod, &["start", &p.container]) {
                    t.restarted(now);
                }
                continue;
            }
            let Ok(ip) = address(&p.container, network) else {
                continue;
            };
            if let Some(probe) = p.startup.as_ref().filter(|_| !t.started_ok) {
                if t.due("startup", probe, &ip, now) == Some(true) {
                    t.started_ok = true;
                } else if t.failed("startup", probe)
                    && restart(state, &p.pod, &["restart", "--time", "5", &p.container])
                {
                    t.restarted(Instant::now());
                }
                continue;
            }
            t.started_ok = true;
            if let Some(probe) = &p.liveness {
                t.due("liveness", probe, &ip, now);
                if t.failed("liveness", probe)
                    && restart(state, &p.pod, &["restart", "--time", "5", &p.container])
                {
                    t.restarted(Instant::now());
                    continue;
                }
            }
            match &p.readiness {
                Some(probe) => {
                    if let Some(ok) = t.due("readiness", probe, &ip, now) {
                        t.status.ready = ok || (t.status.ready && !t.failed("readiness", probe));
                    }
                }
                None => t.status.ready = true,
            }
        }
        let status: BTreeMap<&String, &PodStatus> =
            tracks.iter().map(|(k, t)| (k, &t.status)).collect();
        if let Ok(json) = serde_json::to_vec_pretty(&status) {
            let tmp = state.join("status.json.tmp");
            if std::fs::write(&tmp, json).is_ok() {
                let _ = std::fs::rename(&tmp, state.join("status.json"));
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The last status the kubelet wrote.
pub fn status(state: &Path) -> BTreeMap<String, PodStatus> {
    std::fs::read(state.join("status.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}
