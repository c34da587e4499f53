//! Who may talk to a RuLake cluster, and how its roles talk to each other:
//! `spec.auth` and `spec.tls`.
//!
//! Both are secure unless a field whose name says otherwise is set. The
//! coordinators need authentication (`auth.secretRef`, the auth config
//! JSON the server reads) or an explicit `auth.allowAnonymous: true`;
//! a cluster with neither is refused by the schema (CEL) and, for objects
//! stored before that rule existed, reported by the reconciler. Mutual TLS
//! between the roles is on unless `tls.insecureClusterPlaintext: true`:
//! with `tls.clusterSecretRef` it uses the user's certificates, otherwise
//! the operator issues and rotates its own (`crate::certs`).

use super::SecretRef;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One key of a Secret in the cluster's namespace.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The key within the Secret.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

/// Authentication of the coordinators' public API, and the operator's own
/// credential for it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.secretRef) != (has(self.allowAnonymous) && self.allowAnonymous)").message("set exactly one of auth.secretRef and auth.allowAnonymous: true"))]
#[x_kube(validation = Rule::new("!has(self.secretRef) || has(self.adminKeySecretRef)").message("auth.secretRef needs auth.adminKeySecretRef: the operator calls the admin API (drains, admissions, collections) with that key"))]
pub struct AuthSpec {
    /// The auth config JSON the coordinators load (`--auth-config`): API
    /// key digests, JWT settings and grants (see docs/security.md). The
    /// whole Secret is mounted read-only in one directory, so key files the
    /// config names (a JWT secret or public key) can sit in the same Secret
    /// and be named relative to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyRef>,
    /// Development only: serve the API without authentication
    /// (`--allow-anonymous`). Anyone who reaches the coordinators' port
    /// may then do anything the server lets an anonymous caller do.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_anonymous: bool,
    /// An API key the operator sends (`authorization: Bearer <key>`) on
    /// its admin calls; the auth config must grant it `admin:*`. Required
    /// with `secretRef`; optional with `allowAnonymous`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_key_secret_ref: Option<SecretKeyRef>,
}

/// TLS for the gRPC API, and mutual TLS between the cluster's pods.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.clientCaSecretRef) || has(self.serverSecretRef)").message("tls.clientCaSecretRef needs tls.serverSecretRef: client certificates are checked by the API's TLS"))]
#[x_kube(validation = Rule::new("!(has(self.clusterSecretRef) && has(self.insecureClusterPlaintext) && self.insecureClusterPlaintext)").message("tls.clusterSecretRef and tls.insecureClusterPlaintext contradict each other"))]
pub struct TlsSpec {
    /// A `kubernetes.io/tls` Secret (`tls.crt`, `tls.key`) the coordinators
    /// present to clients of the gRPC API; the API is plaintext without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_secret_ref: Option<SecretRef>,
    /// A Secret with `ca.crt`; when set, API clients must present a
    /// certificate it signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca_secret_ref: Option<SecretRef>,
    /// A Secret with `ca.crt`, `tls.crt` and `tls.key` (as cert-manager
    /// writes them): every meta, shard and coordinator pod presents this
    /// certificate to the others and accepts only peers the CA signed (Raft,
    /// catalog, shard scans, heartbeats). The certificate must name
    /// `*.<cluster>-meta.<namespace>.svc` and `*.<cluster>-shard.<namespace>.svc`.
    /// Without it the operator issues a cluster CA and one certificate per
    /// role itself, and renews them before they expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_secret_ref: Option<SecretRef>,
    /// Development only: no TLS between the roles. Anyone who reaches a
    /// meta or shard pod can then read and write the catalog and read
    /// vectors; only the NetworkPolicies stand in the way.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_cluster_plaintext: bool,
}

/// How a cluster's roles authenticate each other.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ClusterTls<'a> {
    /// Mutual TLS with the user's Secret (`tls.clusterSecretRef`).
    Provided(&'a SecretRef),
    /// Mutual TLS with certificates the operator issues and rotates.
    Issued,
    /// Plaintext (`tls.insecureClusterPlaintext: true`).
    Plaintext,
}

impl super::RuLakeClusterSpec {
    /// How the roles authenticate each other. A user's Secret wins over
    /// the insecure flag (the schema refuses both together).
    pub fn cluster_tls(&self) -> ClusterTls<'_> {
        match &self.tls {
            Some(TlsSpec {
                cluster_secret_ref: Some(secret),
                ..
            }) => ClusterTls::Provided(secret),
            Some(TlsSpec {
                insecure_cluster_plaintext: true,
                ..
            }) => ClusterTls::Plaintext,
            _ => ClusterTls::Issued,
        }
    }

    /// The API's certificate Secret, when the API serves TLS.
    pub fn api_tls(&self) -> Option<&SecretRef> {
        self.tls.as_ref().and_then(|t| t.server_secret_ref.as_ref())
    }

    /// What the schema's CEL rules say about `auth` and `tls`, checked
    /// again by the reconciler for objects stored before the rules existed
    /// (or by an API server that does not run CEL). `Err` says what to fix.
    pub fn check_security(&self) -> Result<(), String> {
        let Some(auth) = &self.auth else {
            return Err(
                "spec.auth is required: name the auth config Secret (auth.secretRef, \
                 with auth.adminKeySecretRef for the operator), or set \
                 auth.allowAnonymous: true for development"
                    .into(),
            );
        };
        if auth.secret_ref.is_some() == auth.allow_anonymous {
            return Err("set exactly one of auth.secretRef and auth.allowAnonymous: true".into());
        }
        if auth.secret_ref.is_some() && auth.admin_key_secret_ref.is_none() {
            return Err(
                "auth.secretRef needs auth.adminKeySecretRef: the operator calls the \
                 admin API (drains, admissions, collections) with that key"
                    .into(),
            );
        }
        if let Some(tls) = &self.tls {
            if tls.client_ca_secret_ref.is_some() && tls.server_secret_ref.is_none() {
                return Err("tls.clientCaSecretRef needs tls.serverSecretRef".into());
            }
            if tls.cluster_secret_ref.is_some() && tls.insecure_cluster_plaintext {
                return Err(
                    "tls.clusterSecretRef and tls.insecureClusterPlaintext contradict each other"
                        .into(),
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> Option<SecretKeyRef> {
        Some(SecretKeyRef {
            name: name.into(),
            key: "k".into(),
        })
    }

    #[test]
    fn check_security_mirrors_the_cel_rules() {
        let mut spec = crate::fixtures::cluster(3).spec;
        assert_eq!(spec.check_security(), Ok(()));
        assert_eq!(
            spec.cluster_tls(),
            ClusterTls::Issued,
            "mutual TLS by default"
        );
        assert_eq!(spec.api_tls(), None);

        let secured = spec.auth.clone();
        let refused = |what: &str, spec: &super::super::RuLakeClusterSpec| {
            let err = spec.check_security().expect_err(what);
            assert!(!err.is_empty());
        };
        spec.auth = None;
        refused("no auth", &spec);
        spec.auth = Some(AuthSpec::default());
        refused("empty auth", &spec);
        spec.auth = Some(AuthSpec {
            secret_ref: key("auth"),
            admin_key_secret_ref: None,
            allow_anonymous: false,
        });
        refused("no admin key", &spec);
        spec.auth = Some(AuthSpec {
            allow_anonymous: true,
            ..secured.clone().unwrap()
        });
        refused("auth and anonymous", &spec);
        spec.auth = Some(AuthSpec {
            allow_anonymous: true,
            admin_key_secret_ref: key("admin"),
            secret_ref: None,
        });
        assert_eq!(
            spec.check_security(),
            Ok(()),
            "anonymous may still send a key"
        );

        spec.auth = secured;
        spec.tls = Some(TlsSpec {
            client_ca_secret_ref: Some(SecretRef { name: "ca".into() }),
            ..TlsSpec::default()
        });
        refused("client CA without server TLS", &spec);
        spec.tls = Some(TlsSpec {
            cluster_secret_ref: Some(SecretRef { name: "m".into() }),
            insecure_cluster_plaintext: true,
            ..TlsSpec::default()
        });
        refused("both cluster secret and plaintext", &spec);
        assert!(
            matches!(spec.cluster_tls(), ClusterTls::Provided(s) if s.name == "m"),
            "the user's certificates win over the insecure flag"
        );
    }
}
