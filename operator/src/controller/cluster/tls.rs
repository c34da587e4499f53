//! The cluster's own CA and role certificates, when the operator issues
//! them (no `tls.clusterSecretRef`, mutual TLS not turned off): read both
//! Secrets, let `crate::certs::plan` decide what is missing or due, and
//! apply only what changed, the CA Secret first, so the certificates'
//! Secret never names a CA that is not stored. A renewal is a Normal
//! event saying what was issued and until when the certificates hold.

use super::super::{apply, Context};
use crate::certs::{self, Data, Names, Stored};
use crate::crd::{ClusterTls, RuLakeCluster};
use crate::manifests::{self, CA_TRUSTED_SINCE};
use crate::{Error, Result};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::events::EventType;
use kube::ResourceExt;
use std::collections::BTreeMap;

fn data(secret: &Secret) -> Data {
    secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect()
}

/// Issues and renews the cluster's certificates as of `now`; nothing when
/// the user provides them or turned mutual TLS off.
pub(super) async fn issue(
    cluster: &RuLakeCluster,
    ctx: &Context,
    ns: &str,
    now: Timestamp,
) -> Result<()> {
    if cluster.spec.cluster_tls() != ClusterTls::Issued {
        return Ok(());
    }
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let ca_name = manifests::cluster_ca_secret_name(cluster);
    let certs_name = manifests::cluster_certs_secret_name(cluster);
    let ca = secrets.get_opt(&ca_name).await?;
    let certs = secrets.get_opt(&certs_name).await?;
    let (ca_data, certs_data) = (ca.as_ref().map(data), certs.as_ref().map(data));
    let trusted_since = certs
        .as_ref()
        .and_then(|s| s.annotations().get(CA_TRUSTED_SINCE))
        .and_then(|t| t.parse().ok());
    let names = Names {
        cluster: cluster.name_any(),
        namespace: ns.to_string(),
    };
    let stored = Stored {
        ca: ca_data.as_ref(),
        certs: certs_data.as_ref(),
        trusted_since,
    };
    let plan = certs::plan(&names, stored, now).map_err(Error::Certificates)?;

    if let Some(data) = plan.ca {
        let secret = manifests::owned_secret(cluster, ca_name.clone(), data, BTreeMap::new());
        apply(&secrets, &ca_name, &secret).await?;
    }
    if let Some((data, since)) = plan.certs {
        let annotations = BTreeMap::from([(CA_TRUSTED_SINCE.to_string(), since.to_string())]);
        let secret = manifests::owned_secret(cluster, certs_name.clone(), data, annotations);
        apply(&secrets, &certs_name, &secret).await?;
    }
    if !plan.issued.is_empty() {
        let until = plan.expires.map(|t| t.to_string()).unwrap_or_default();
        let note = format!(
            "issued cluster certificates: {}; role certificates valid until {until}",
            plan.issued.join(", ")
        );
        ctx.event(
            cluster,
            EventType::Normal,
            "CertificatesIssued",
            "IssueCertificates",
            note,
        )
        .await;
    }
    Ok(())
}
