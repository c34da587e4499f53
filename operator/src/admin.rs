//! The operator's calls into a RuLake cluster (`rulake.v1` AdminService and
//! CollectionService), behind [`ClusterAdmin`] so the reconcilers can be
//! tested against a fake cluster.
//!
//! The real implementation, [`GrpcAdmin`], reaches the cluster through its
//! client Service (the coordinators), like any other client, and like any
//! other client it authenticates: with the API key the cluster's
//! `spec.auth.adminKeySecretRef` names ([`AdminKey`]), sent as
//! `authorization: Bearer <key>` on every call.

use crate::crd::RuLakeCluster;
use async_trait::async_trait;
use kube::ResourceExt;
use rulake_proto::v1::{
    admin_service_client::AdminServiceClient, collection_service_client::CollectionServiceClient,
    AdmitShardRequest, AdmitShardResponse, AlterCollectionRequest, BackupSummary,
    ClusterStatusRequest, ClusterStatusResponse, CollectionInfo, CollectionSpec,
    CreateBackupRequest, CreateCollectionRequest, DescribeCollectionRequest, DrainShardRequest,
    DrainShardResponse, DropCollectionRequest,
};
use std::sync::Arc;
use std::time::Duration;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

/// Port of the gRPC API on every RuLake pod and on the client Service.
pub const GRPC_PORT: u16 = 50051;

/// A failed call into a RuLake cluster.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The cluster answered with a gRPC error status.
    #[error("{}: {}", .0.code(), .0.message())]
    Status(#[from] tonic::Status),
    /// No connection could be made.
    #[error("connecting to {endpoint}: {source}")]
    Connect {
        /// Where the operator tried to connect.
        endpoint: String,
        /// Why it failed.
        #[source]
        source: tonic::transport::Error,
    },
    /// The operator is not set up to reach this cluster (for example, the
    /// cluster serves TLS and the operator has no CA to check it with).
    #[error("{0}")]
    Config(String),
}

impl AdminError {
    /// The gRPC code, `Unavailable` for connection failures.
    pub fn code(&self) -> tonic::Code {
        match self {
            AdminError::Status(s) => s.code(),
            AdminError::Connect { .. } => tonic::Code::Unavailable,
            AdminError::Config(_) => tonic::Code::FailedPrecondition,
        }
    }
}

/// What the operator asks of a RuLake cluster.
#[async_trait]
pub trait ClusterAdmin: Send + Sync {
    /// Members, leader, assignment epoch and shard nodes.
    async fn cluster_status(&self) -> Result<ClusterStatusResponse, AdminError>;
    /// Takes a shard node out of placement; returns once its partitions are
    /// warm elsewhere. Idempotent.
    async fn drain_shard(&self, node_id: &str) -> Result<DrainShardResponse, AdminError>;
    /// Puts a registered shard node into placement. Idempotent;
    /// `NOT_FOUND` until the node has registered.
    async fn admit_shard(&self, node_id: &str) -> Result<AdmitShardResponse, AdminError>;
    /// Creates a collection; `ALREADY_EXISTS` when the name is taken.
    async fn create_collection(&self, spec: CollectionSpec) -> Result<CollectionInfo, AdminError>;
    /// Describes a collection; `NOT_FOUND` when there is none.
    async fn describe_collection(&self, name: &str) -> Result<CollectionInfo, AdminError>;
    /// Changes what may change without a rebuild.
    async fn alter_collection(
        &self,
        req: AlterCollectionRequest,
    ) -> Result<CollectionInfo, AdminError>;
    /// Drops a collection; `NOT_FOUND` when there is none.
    async fn drop_collection(&self, name: &str) -> Result<(), AdminError>;
    /// Writes a backup to `to` (under the coordinators' --backup-allow)
    /// and returns once its manifest is written.
    async fn create_backup(&self, to: &str) -> Result<BackupSummary, AdminError>;
}

/// The API key the operator presents to a cluster. Its `Debug` never shows
/// the key.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminKey(MetadataValue<Ascii>);

impl std::fmt::Debug for AdminKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminKey(<redacted>)")
    }
}

impl AdminKey {
    /// A key as a Secret holds it: surrounding whitespace (the newline of
    /// a file made with `echo`) is dropped; what is left must be a
    /// non-empty header value.
    pub fn new(raw: &[u8]) -> Result<Self, AdminError> {
        let key = std::str::from_utf8(raw)
            .map(str::trim)
            .ok()
            .filter(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_graphic()))
            .and_then(|k| format!("Bearer {k}").parse().ok())
            .ok_or_else(|| {
                AdminError::Config("the admin key is empty or not a printable ASCII string".into())
            })?;
        Ok(AdminKey(key))
    }

    /// The `authorization` header value, `Bearer <key>`.
    pub fn header(&self) -> &MetadataValue<Ascii> {
        &self.0
    }
}

/// Gives a [`ClusterAdmin`] for a cluster resource.
pub trait AdminFactory: Send + Sync {
    /// The admin client of `cluster`, presenting `key` when given.
    /// Connecting is lazy: errors surface on the first call.
    fn admin(
        &self,
        cluster: &RuLakeCluster,
        key: Option<&AdminKey>,
    ) -> Result<Arc<dyn ClusterAdmin>, AdminError>;
}

/// An admin client whose every call fails with `reason` (the operator is
/// not set up to reach the cluster), so the reconcilers report it as they
/// report an unreachable cluster instead of stopping.
pub fn unreachable(reason: String) -> Arc<dyn ClusterAdmin> {
    Arc::new(Unreachable(reason))
}

/// Connects to clusters over gRPC through their client Service.
#[derive(Clone, Debug)]
pub struct GrpcAdminFactory {
    /// Deadline of every call. Draining waits for partitions to warm on
    /// their new owners, so this is minutes, not seconds.
    pub timeout: Duration,
    /// How to reach clusters whose API serves TLS (`spec.tls`).
    pub tls: Option<AdminTls>,
}

impl Default for GrpcAdminFactory {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(300),
            tls: None,
        }
    }
}

/// The operator's TLS material for clusters' APIs, read from files on
/// every connection so a rotated Secret is used without a restart.
#[derive(Clone, Debug)]
pub struct AdminTls {
    /// PEM bundle of the CA that signed the clusters' API certificates.
    pub ca: std::path::PathBuf,
    /// PEM certificate and key the operator presents, for clusters that
    /// require client certificates (`spec.tls.clientCaSecretRef`).
    pub identity: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

impl AdminTls {
    fn config(&self, domain: &str) -> Result<tonic::transport::ClientTlsConfig, AdminError> {
        use tonic::transport::{Certificate, ClientTlsConfig, Identity};
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|e| AdminError::Config(format!("{}: {e}", p.display())))
        };
        let mut cfg = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read(&self.ca)?))
            .domain_name(domain);
        if let Some((cert, key)) = &self.identity {
            cfg = cfg.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        Ok(cfg)
    }
}

impl AdminFactory for GrpcAdminFactory {
    fn admin(
        &self,
        cluster: &RuLakeCluster,
        key: Option<&AdminKey>,
    ) -> Result<Arc<dyn ClusterAdmin>, AdminError> {
        let namespace = cluster.namespace().unwrap_or_else(|| "default".into());
        let host = format!("{}.{namespace}.svc", cluster.name_any());
        let tls = match (cluster.spec.api_tls(), &self.tls) {
            (None, _) => None,
            (Some(_), Some(t)) => match t.config(&host) {
                Ok(c) => Some(c),
                Err(e) => return Ok(Arc::new(Unreachable(e.to_string()))),
            },
            // The workloads are still applied; every admin call (status,
            // drain, collections) fails with this, which the reconcilers
            // surface as conditions and Events.
            (Some(_), None) => {
                return Ok(unreachable(
                    "the cluster serves its API over TLS (spec.tls.serverSecretRef) and the \
                     operator has no CA to check it with: set the chart value \
                     operator.apiTls.secretName"
                        .into(),
                ))
            }
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let endpoint = format!("{scheme}://{host}:{GRPC_PORT}");
        Ok(Arc::new(GrpcAdmin::connect_lazy_with(
            &endpoint,
            self.timeout,
            tls,
            key,
        )?))
    }
}

/// A cluster the operator is not set up to reach: every call fails with
/// the reason, so the reconcilers report it instead of stopping.
struct Unreachable(String);

#[async_trait]
impl ClusterAdmin for Unreachable {
    async fn cluster_status(&self) -> Result<ClusterStatusResponse, AdminError> {
        Err(AdminError::Config(self.0.clone()))
    }
    async fn drain_shard(&self, _: &str) -> Result<DrainShardResponse, AdminError> {
        Err(AdminError::Config(self.0.clone()))
    }
    async fn admit_shard(&self, _: &str) -> Result<AdmitShardResponse, AdminError> {
        Err(AdminError::Config(self.0.clone()))
    }
    async fn create_collection(&self, _: CollectionSpec) -> Result<CollectionInfo, AdminError> {
        Err(AdminError::Config(self.0.clone()))
    }
    async fn describe_collection(&self, _: &str) -> Result<CollectionInfo, AdminError> {
        Err(AdminError::Config(self.0.clone()))
    }
    async fn alter_collection(
        &self,
        _: AlterCollectionRequest,
    ) -> Result<CollectionInfo, AdminError> {
        Err(AdminError::Config(self.0.clone()))
    }
    async fn drop_collection(&self, _: &str) -> Result<(), AdminError> {
        Err(AdminError::Config(self.0.clone()))
    }
    async fn create_backup(&self, _: &str) -> Result<BackupSummary, AdminError> {
        Err(AdminError::Config(self.0.clone()))
    }
}

/// Puts the operator's credential on every call.
#[derive(Clone, Debug)]
pub struct Bearer(Option<AdminKey>);

impl Bearer {
    /// Sends `key` on every call (nothing when `None`).
    pub fn new(key: Option<AdminKey>) -> Self {
        Bearer(key)
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(key) = &self.0 {
            req.metadata_mut()
                .insert("authorization", key.header().clone());
        }
        Ok(req)
    }
}

type Authenticated = InterceptedService<Channel, Bearer>;

/// [`ClusterAdmin`] over gRPC.
#[derive(Clone, Debug)]
pub struct GrpcAdmin {
    admin: AdminServiceClient<Authenticated>,
    collections: CollectionServiceClient<Authenticated>,
}

impl GrpcAdmin {
    /// A client for `endpoint` (`http://host:port`) that connects on first
    /// use and sends no credential.
    pub fn connect_lazy(endpoint: &str, timeout: Duration) -> Result<Self, AdminError> {
        Self::connect_lazy_with(endpoint, timeout, None, None)
    }

    /// As [`GrpcAdmin::connect_lazy`], over TLS when `tls` is set
    /// (`https://host:port`), presenting `key` when given.
    pub fn connect_lazy_with(
        endpoint: &str,
        timeout: Duration,
        tls: Option<tonic::transport::ClientTlsConfig>,
        key: Option<&AdminKey>,
    ) -> Result<Self, AdminError> {
        let connect = |source| AdminError::Connect {
            endpoint: endpoint.to_string(),
            source,
        };
        let mut ep = Endpoint::from_shared(endpoint.to_string())
            .map_err(connect)?
            .connect_timeout(Duration::from_secs(5))
            .timeout(timeout);
        if let Some(tls) = tls {
            ep = ep.tls_config(tls).map_err(connect)?;
        }
        let channel = ep.connect_lazy();
        let bearer = Bearer::new(key.cloned());
        Ok(Self {
            admin: AdminServiceClient::with_interceptor(channel.clone(), bearer.clone()),
            collections: CollectionServiceClient::with_interceptor(channel, bearer),
        })
    }
}

fn info(info: Option<CollectionInfo>) -> Result<CollectionInfo, AdminError> {
    info.ok_or_else(|| tonic::Status::internal("reply without collection info").into())
}

#[async_trait]
impl ClusterAdmin for GrpcAdmin {
    async fn cluster_status(&self) -> Result<ClusterStatusResponse, AdminError> {
        Ok(self
            .admin
            .clone()
            .cluster_status(ClusterStatusRequest {})
            .await?
            .into_inner())
    }

    async fn drain_shard(&self, node_id: &str) -> Result<DrainShardResponse, AdminError> {
        let req = DrainShardRequest {
            node_id: node_id.to_string(),
        };
        Ok(self.admin.clone().drain_shard(req).await?.into_inner())
    }

    async fn admit_shard(&self, node_id: &str) -> Result<AdmitShardResponse, AdminError> {
        let req = AdmitShardRequest {
            node_id: node_id.to_string(),
        };
        Ok(self.admin.clone().admit_shard(req).await?.into_inner())
    }

    async fn create_collection(&self, spec: CollectionSpec) -> Result<CollectionInfo, AdminError> {
        let req = CreateCollectionRequest { spec: Some(spec) };
        info(
            self.collections
                .clone()
                .create_collection(req)
                .await?
                .into_inner()
                .info,
        )
    }

    async fn describe_collection(&self, name: &str) -> Result<CollectionInfo, AdminError> {
        let req = DescribeCollectionRequest {
            name: name.to_string(),
        };
        info(
            self.collections
                .clone()
                .describe_collection(req)
                .await?
                .into_inner()
                .info,
        )
    }

    async fn alter_collection(
        &self,
        req: AlterCollectionRequest,
    ) -> Result<CollectionInfo, AdminError> {
        info(
            self.collections
                .clone()
                .alter_collection(req)
                .await?
                .into_inner()
                .info,
        )
    }

    async fn drop_collection(&self, name: &str) -> Result<(), AdminError> {
        let req = DropCollectionRequest {
            name: name.to_string(),
        };
        self.collections.clone().drop_collection(req).await?;
        Ok(())
    }

    async fn create_backup(&self, to: &str) -> Result<BackupSummary, AdminError> {
        let req = CreateBackupRequest { to: to.to_string() };
        let mut progress = self.admin.clone().create_backup(req).await?.into_inner();
        // One message per file copied; the last carries the summary.
        while let Some(p) = progress.message().await? {
            if let Some(done) = p.done {
                return Ok(done);
            }
        }
        Err(tonic::Status::unavailable("the backup's reply ended before it finished").into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{SecretRef, TlsSpec};

    #[test]
    fn admin_keys_are_trimmed_checked_and_never_printed() {
        let key = AdminKey::new(b"  s3cret\n").unwrap();
        assert_eq!(key.header(), "Bearer s3cret");
        assert!(!format!("{key:?}").contains("s3cret"));
        for bad in [
            &b""[..],
            b" \n",
            b"line\nbreak",
            b"\xff\xfe",
            "caf\u{e9}".as_bytes(),
        ] {
            let err = AdminKey::new(bad).expect_err("refused");
            assert_eq!(err.code(), tonic::Code::FailedPrecondition);
        }
    }

    #[tokio::test]
    async fn a_tls_cluster_without_the_operator_ca_says_what_to_set() {
        let mut cluster = crate::fixtures::cluster(3);
        cluster.spec.tls = Some(TlsSpec {
            server_secret_ref: Some(SecretRef { name: "api".into() }),
            ..TlsSpec::default()
        });
        let admin = GrpcAdminFactory::default().admin(&cluster, None).unwrap();
        let err = admin.cluster_status().await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition);
        assert!(
            err.to_string().contains("operator.apiTls.secretName"),
            "{err}"
        );

        // A CA file that cannot be read is named in the error.
        let factory = GrpcAdminFactory {
            tls: Some(AdminTls {
                ca: "/nonexistent/ca.crt".into(),
                identity: None,
            }),
            ..GrpcAdminFactory::default()
        };
        let err = factory
            .admin(&cluster, None)
            .unwrap()
            .drain_shard("demo-shard-0")
            .await;
        assert!(err.unwrap_err().to_string().contains("ca.crt"));
    }
}
