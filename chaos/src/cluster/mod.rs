//! A RuLakeCluster run as containers the way Kubernetes would run it, on a
//! machine with a Docker Engine and no Kubernetes API server.
//!
//! Why: the operator's pods (image, command, args, env, probes, security
//! context, volumes, DNS names) are what users run, and mocked-API tests
//! only show that the reconciler asks for them. Here every pod is built by
//! the operator's own manifest functions (the ones its reconciler calls:
//! [`rulake_operator::manifests`], [`rulake_operator::certs`]) and then run
//! as a container on a private network, so a wrong flag, a probe that kills
//! a starting shard, or a name peers cannot resolve fails here first.
//!
//! What stands in for Kubernetes, and nothing more: the kubelet (container
//! start, `$(VAR)` expansion, env from ConfigMaps and Secrets, Secret files,
//! probes, restarts: [`docker`], [`kubelet`]), cluster DNS (network aliases
//! per Service), the operator's Secret issuing (certificates at `up`), and
//! what the StatefulSet and Deployment controllers do to pods on a scale or
//! a new image ([`ops`]), with the operator's own admin-side steps around
//! them. The reconcile loop against an API server is proven only by the
//! mocked-API tests in `operator/`.
//!
//! # Layout
//! - this module: the manifest ([`Manifest`]) and the pods it makes ([`pods`]).
//! - [`docker`]: one pod as `docker run` arguments; the Docker CLI calls.
//! - [`kubelet`]: probes, readiness and restarts, as a detached process.
//! - [`lifecycle`]: `up` and `down`.
//! - [`ops`]: pods started, deleted as a kubelet deletes them, the shard
//!   count changed through the operator's drain and admission steps, and
//!   every pod rolled to a new image in the operator's order.

pub mod docker;
pub mod kubelet;
pub mod lifecycle;
pub mod ops;

use anyhow::{bail, Context};
use rulake_operator::certs::{self, Names, Stored};
use rulake_operator::crd::{RuLakeCluster, RuLakeCollection};
use rulake_operator::k8s::api::core::v1::{PodSpec, Service};
use rulake_operator::k8s::jiff::Timestamp;
use rulake_operator::manifests::{self, Role};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A Secret's or ConfigMap's data: key → bytes.
pub type Data = BTreeMap<String, Vec<u8>>;

/// What a manifest file holds: one cluster, its collections and the
/// Secrets they name.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    /// The cluster.
    pub cluster: RuLakeCluster,
    /// Collections to create once the cluster is ready.
    pub collections: Vec<RuLakeCollection>,
    /// Secrets by name.
    pub secrets: BTreeMap<String, Data>,
}

#[derive(Deserialize)]
struct Head {
    kind: String,
}

#[derive(Deserialize)]
struct SecretDoc {
    metadata: NameOnly,
    #[serde(default)]
    data: BTreeMap<String, String>,
    #[serde(default, rename = "stringData")]
    string_data: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct NameOnly {
    name: String,
}

impl Manifest {
    /// Parse a multi-document YAML file of one `RuLakeCluster`, any
    /// `RuLakeCollection`s and `Secret`s (other kinds are refused: the
    /// harness would silently not run them).
    pub fn parse(text: &str) -> anyhow::Result<Manifest> {
        let mut cluster = None;
        let mut collections = Vec::new();
        let mut secrets = BTreeMap::new();
        for doc in serde_yaml::Deserializer::from_str(text) {
            let value = serde_yaml::Value::deserialize(doc)?;
            if value.is_null() {
                continue;
            }
            let head: Head =
                serde_yaml::from_value(value.clone()).context("a document without kind")?;
            match head.kind.as_str() {
                "RuLakeCluster" => {
                    if cluster.is_some() {
                        bail!("one RuLakeCluster per manifest");
                    }
                    let mut c: RuLakeCluster = serde_yaml::from_value(value)?;
                    c.metadata.namespace.get_or_insert_with(|| "default".into());
                    cluster = Some(c);
                }
                "RuLakeCollection" => collections.push(serde_yaml::from_value(value)?),
                "Secret" => {
                    let s: SecretDoc = serde_yaml::from_value(value)?;
                    let mut data = Data::new();
                    for (k, v) in s.data {
                        let bytes = base64_decode(&v)
                            .with_context(|| format!("secret {} key {k}", s.metadata.name))?;
                        data.insert(k, bytes);
                    }
                    for (k, v) in s.string_data {
                        data.insert(k, v.into_bytes());
                    }
                    secrets.insert(s.metadata.name, data);
                }
                other => bail!(
                    "this harness runs RuLakeCluster, RuLakeCollection and Secret, not {other}"
                ),
            }
        }
        let cluster = cluster.context("the manifest has no RuLakeCluster")?;
        Ok(Manifest {
            cluster,
            collections,
            secrets,
        })
    }

    /// The cluster's name and namespace.
    pub fn names(&self) -> Names {
        Names {
            cluster: self.cluster.metadata.name.clone().unwrap_or_default(),
            namespace: self
                .cluster
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
        }
    }

    /// The Secrets the operator would issue for mutual TLS (none when the
    /// cluster names its own or asks for plaintext), added to the rest.
    pub fn issue_certificates(&mut self, now: Timestamp) -> anyhow::Result<()> {
        if !matches!(
            self.cluster.spec.cluster_tls(),
            rulake_operator::crd::ClusterTls::Issued
        ) {
            return Ok(());
        }
        let plan = certs::plan(
            &self.names(),
            Stored {
                ca: None,
                certs: None,
                trusted_since: None,
            },
            now,
        )?;
        let ca = plan.ca.context("a new cluster gets a CA")?;
        let (bundle, _) = plan.certs.context("a new cluster gets certificates")?;
        self.secrets
            .insert(manifests::cluster_ca_secret_name(&self.cluster), ca);
        self.secrets
            .insert(manifests::cluster_certs_secret_name(&self.cluster), bundle);
        Ok(())
    }
}

/// One pod: its name (also its hostname), role, the DNS names peers and
/// clients reach it by, its spec, and the persistent volumes it claims.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Pod {
    /// Pod name, e.g. `demo-shard-0`.
    pub name: String,
    /// Role label.
    pub role: String,
    /// DNS names: `<pod>.<headless service>.<ns>.svc` and the Services
    /// that select it.
    pub aliases: Vec<String>,
    /// The pod spec as the operator made it.
    pub spec: PodSpec,
    /// Claim names of its StatefulSet's volume claim templates.
    pub claims: Vec<String>,
}

fn service_aliases(svc: &Service, ns: &str, pod: &str, headless: bool) -> Vec<String> {
    let name = svc.metadata.name.clone().unwrap_or_default();
    let mut out = Vec::new();
    if headless {
        out.push(format!("{pod}.{name}.{ns}.svc"));
        out.push(format!("{pod}.{name}.{ns}.svc.cluster.local"));
    }
    out.push(format!("{name}.{ns}.svc"));
    out.push(format!("{name}.{ns}.svc.cluster.local"));
    out.push(format!("{name}.{ns}"));
    out.push(name);
    out
}

/// Every pod of `cluster` at its spec's sizes (`shards` overrides the shard
/// count, as a scale does), built by the operator's manifest functions.
pub fn pods(cluster: &RuLakeCluster, shards: Option<i32>) -> anyhow::Result<Vec<Pod>> {
    let ns = cluster
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let Some(cache_bytes) = manifests::quantity_bytes(&cluster.spec.shards.cache_memory) else {
        bail!("shards.cacheMemory is not a quantity");
    };
    let mut out = Vec::new();
    let sets = [
        (
            Role::Meta,
            manifests::meta_statefulset(cluster),
            manifests::meta_service(cluster),
        ),
        (
            Role::Shard,
            manifests::shard_statefulset(
                cluster,
                shards.unwrap_or(cluster.spec.shards.replicas),
                cache_bytes,
            ),
            manifests::shard_service(cluster),
        ),
    ];
    for (role, sts, svc) in sets {
        let name = sts.metadata.name.clone().unwrap_or_default();
        let spec = sts.spec.context("a StatefulSet without spec")?;
        let claims = spec
            .volume_claim_templates
            .iter()
            .flatten()
            .filter_map(|c| c.metadata.name.clone())
            .collect::<Vec<_>>();
        let template = spec.template.spec.context("a pod template without spec")?;
        for i in 0..spec.replicas.unwrap_or(1) {
            let pod = format!("{name}-{i}");
            out.push(Pod {
                aliases: service_aliases(&svc, &ns, &pod, true),
                name: pod,
                role: role.as_str().into(),
                spec: template.clone(),
                claims: claims.clone(),
            });
        }
    }
    let deploy = manifests::coordinator_deployment(cluster);
    let name = deploy.metadata.name.clone().unwrap_or_default();
    let spec = deploy.spec.context("a Deployment without spec")?;
    let template = spec.template.spec.context("a pod template without spec")?;
    let client = manifests::client_service(cluster);
    for i in 0..spec.replicas.unwrap_or(1) {
        let pod = format!("{name}-{i}");
        let mut aliases = service_aliases(&client, &ns, &pod, false);
        // The coordinator certificate names `<cluster>-coordinator.<ns>.svc`.
        aliases.push(format!("{name}.{ns}.svc"));
        out.push(Pod {
            aliases,
            name: pod,
            role: Role::Coordinator.as_str().into(),
            spec: template.clone(),
            claims: Vec::new(),
        });
    }
    Ok(out)
}

/// Decode standard base64 (a Secret's `data`), without a crate for it.
pub fn base64_decode(s: &str) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => bail!("not base64: {:?}", c as char),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
