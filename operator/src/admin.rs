//! The operator's calls into a RuLake cluster (`rulake.v1` AdminService and
//! CollectionService), behind [`ClusterAdmin`] so the reconcilers can be
//! tested against a fake cluster.
//!
//! The real implementation, [`GrpcAdmin`], reaches the cluster through its
//! client Service (the coordinators), like any other client.

use crate::crd::RuLakeCluster;
use async_trait::async_trait;
use kube::ResourceExt;
use rulake_proto::v1::{
    admin_service_client::AdminServiceClient, collection_service_client::CollectionServiceClient,
    AdmitShardRequest, AdmitShardResponse, AlterCollectionRequest, ClusterStatusRequest,
    ClusterStatusResponse, CollectionInfo, CollectionSpec, CreateCollectionRequest,
    DescribeCollectionRequest, DrainShardRequest, DrainShardResponse, DropCollectionRequest,
};
use std::sync::Arc;
use std::time::Duration;
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
}

impl AdminError {
    /// The gRPC code, `Unavailable` for connection failures.
    pub fn code(&self) -> tonic::Code {
        match self {
            AdminError::Status(s) => s.code(),
            AdminError::Connect { .. } => tonic::Code::Unavailable,
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
}

/// Gives a [`ClusterAdmin`] for a cluster resource.
pub trait AdminFactory: Send + Sync {
    /// The admin client of `cluster`. Connecting is lazy: errors surface on
    /// the first call.
    fn admin(&self, cluster: &RuLakeCluster) -> Result<Arc<dyn ClusterAdmin>, AdminError>;
}

/// Connects to clusters over gRPC through their client Service.
#[derive(Clone, Debug)]
pub struct GrpcAdminFactory {
    /// Deadline of every call. Draining waits for partitions to warm on
    /// their new owners, so this is minutes, not seconds.
    pub timeout: Duration,
}

impl Default for GrpcAdminFactory {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(300),
        }
    }
}

impl AdminFactory for GrpcAdminFactory {
    fn admin(&self, cluster: &RuLakeCluster) -> Result<Arc<dyn ClusterAdmin>, AdminError> {
        let namespace = cluster.namespace().unwrap_or_else(|| "default".into());
        // Plaintext: the operator does not yet present a client certificate,
        // so clusters with `spec.tls` need a plaintext admin listener.
        let endpoint = format!("http://{}.{namespace}.svc:{GRPC_PORT}", cluster.name_any());
        Ok(Arc::new(GrpcAdmin::connect_lazy(&endpoint, self.timeout)?))
    }
}

/// [`ClusterAdmin`] over gRPC.
#[derive(Clone, Debug)]
pub struct GrpcAdmin {
    admin: AdminServiceClient<Channel>,
    collections: CollectionServiceClient<Channel>,
}

impl GrpcAdmin {
    /// A client for `endpoint` (`http://host:port`) that connects on first use.
    pub fn connect_lazy(endpoint: &str, timeout: Duration) -> Result<Self, AdminError> {
        let channel = Endpoint::from_shared(endpoint.to_string())
            .map_err(|source| AdminError::Connect {
                endpoint: endpoint.to_string(),
                source,
            })?
            .connect_timeout(Duration::from_secs(5))
            .timeout(timeout)
            .connect_lazy();
        Ok(Self {
            admin: AdminServiceClient::new(channel.clone()),
            collections: CollectionServiceClient::new(channel),
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
}
