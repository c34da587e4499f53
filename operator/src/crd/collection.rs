//! `RuLakeCollection`: one collection served by a `RuLakeCluster`, mirroring
//! `rulake.v1.CollectionSpec`.

// Each `printcolumn(...)` repeats `type_` and friends; clippy takes the
// repeats for duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The finalizer that drops the collection from its cluster before the
/// resource goes away.
pub const COLLECTION_FINALIZER: &str = "rulake.io/collection";

/// Desired state of a collection. The collection's name in RuLake is the
/// resource's `metadata.name`.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "rulake.io",
    version = "v1alpha1",
    kind = "RuLakeCollection",
    plural = "rulakecollections",
    shortname = "rlcol",
    namespaced,
    status = "RuLakeCollectionStatus",
    derive = "PartialEq",
    doc = "A vector collection served by a RuLakeCluster in the same namespace.",
    printcolumn(
        name = "Cluster",
        type_ = "string",
        json_path = ".spec.clusterRef.name"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Vectors", type_ = "integer", json_path = ".status.vectorCount"),
    printcolumn(name = "Warm", type_ = "integer", json_path = ".status.partitionsWarm"),
    printcolumn(name = "Partitions", type_ = "integer", json_path = ".spec.partitions"),
    printcolumn(
        name = "Generation",
        type_ = "string",
        json_path = ".status.generation",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct RuLakeCollectionSpec {
    /// The RuLakeCluster (same namespace) serving the collection. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("clusterRef is immutable"))]
    pub cluster_ref: ClusterRef,
    /// Where the vectors come from. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("source is immutable"))]
    pub source: CollectionSource,
    /// Components per vector. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("dimension is immutable"))]
    #[schemars(range(min = 1, max = 65536))]
    pub dimension: u32,
    /// Distance. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("metric is immutable"))]
    pub metric: Metric,
    /// Partitions (units of caching and placement). Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("partitions is immutable"))]
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 4096))]
    pub partitions: u32,
    /// Replicas of each partition on distinct shard nodes; at most the
    /// cluster's shard replicas (checked by the operator).
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 16))]
    pub replication_factor: u32,
    /// When the source is checked for a newer generation.
    #[serde(default)]
    pub consistency: Consistency,
    /// Candidate pool as a multiple of k; the server's default when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub rerank: Option<u32>,
    /// IVF lists probed; when unset, each partition probes what it
    /// calibrated for `targetRecall`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub nprobe: Option<u32>,
    /// Recall@10 a search at the defaults aims for, in (0, 1]; the
    /// server's default (0.95) when unset. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("targetRecall is immutable"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.01, max = 1.0))]
    pub target_recall: Option<f32>,
    /// Scalar columns of the source kept beside the vectors, for filters
    /// and returned columns (integers, floats, strings, booleans,
    /// timestamps, dates, lists of strings). A managed source declares
    /// each with its type, `year:int`. Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("payloadColumns is immutable"))]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub payload_columns: Vec<String>,
    /// Keep only the rows matching this filter, in the filter language of
    /// `rulake search --filter` (`lang = "en" and year >= 2024`): files
    /// and row groups the lake's statistics rule out are never read.
    /// Immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("standingFilter is immutable"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 65536))]
    pub standing_filter: Option<String>,
}

fn one() -> u32 {
    1
}

/// A RuLakeCluster in the collection's namespace.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRef {
    /// The cluster's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Distance measure; every distance is "smaller is nearer".
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum Metric {
    /// Squared Euclidean distance.
    L2,
    /// 1 − cosine similarity.
    Cosine,
    /// The negated inner product.
    InnerProduct,
}

/// Exactly one kind of source.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("[has(self.parquet), has(self.delta), has(self.iceberg), has(self.managed)].filter(x, x).size() == 1").message("set exactly one of parquet, delta, iceberg, managed"))]
#[serde(rename_all = "camelCase")]
pub struct CollectionSource {
    /// Parquet files under an object-store prefix or glob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parquet: Option<ParquetSource>,
    /// A Delta Lake table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<DeltaSource>,
    /// An Apache Iceberg table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iceberg: Option<IcebergSource>,
    /// RuLake owns the data (written through the Ingest API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed: Option<ManagedSource>,
}

/// Parquet files: `file://`, `s3://`, `gs://` or `az://`.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ParquetSource {
    /// URL of a prefix, a file, or a glob such as `s3://bucket/emb/*.parquet`.
    #[schemars(length(min = 1))]
    pub url: String,
    /// Column holding ids (integer or string).
    #[schemars(length(min = 1))]
    pub id_column: String,
    /// Column holding vectors (list of float).
    #[schemars(length(min = 1))]
    pub vector_column: String,
    /// Object-store options (region, endpoint, ...). Secrets belong in the
    /// cluster's `objectStore.credentialsSecretRef`, not here.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

/// A Delta Lake table.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeltaSource {
    /// URL of the table's root.
    #[schemars(length(min = 1))]
    pub table_url: String,
    /// Column holding ids.
    #[schemars(length(min = 1))]
    pub id_column: String,
    /// Column holding vectors.
    #[schemars(length(min = 1))]
    pub vector_column: String,
    /// Pin a table version; unset follows the latest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub version: Option<i64>,
    /// Object-store options.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

/// An Apache Iceberg table, by metadata file or by catalog table.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("has(self.metadataLocation) != has(self.catalogTable)").message("set exactly one of metadataLocation, catalogTable"))]
#[serde(rename_all = "camelCase")]
pub struct IcebergSource {
    /// URL of a table metadata file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_location: Option<String>,
    /// A table in a catalog the servers are configured with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog_table: Option<CatalogTable>,
    /// Column holding ids.
    #[schemars(length(min = 1))]
    pub id_column: String,
    /// Column holding vectors.
    #[schemars(length(min = 1))]
    pub vector_column: String,
    /// Pin a snapshot; unset follows the current one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<i64>,
    /// Object-store options.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

/// A table in a configured Iceberg catalog.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CatalogTable {
    /// Catalog name in the servers' configuration or, with `uri`, the SQL
    /// catalog's name (the `catalog_name` column pyiceberg's SqlCatalog
    /// writes).
    pub catalog: String,
    /// Dot-separated namespace.
    pub namespace: String,
    /// Table name.
    pub table: String,
    /// A SQL catalog over SQLite to read the table's current metadata
    /// location from: `sqlite:///path/catalog.db` or a path, as the shard
    /// and coordinator pods see it (a mounted volume).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
}

/// A collection RuLake owns; it has no fields.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct ManagedSource {}

/// How fresh answers are.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("self.mode != 'eventual' || (has(self.maxStalenessSeconds) && self.maxStalenessSeconds > 0)").message("eventual consistency needs maxStalenessSeconds > 0"))]
#[serde(rename_all = "camelCase")]
pub struct Consistency {
    /// `fresh` checks the source before every answer; `eventual` checks it
    /// in the background.
    pub mode: ConsistencyMode,
    /// For `eventual`: no answer comes from a generation verified longer
    /// ago than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_staleness_seconds: Option<u64>,
}

impl Default for Consistency {
    fn default() -> Self {
        Self {
            mode: ConsistencyMode::Fresh,
            max_staleness_seconds: None,
        }
    }
}

/// Consistency level.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum ConsistencyMode {
    /// The generation is checked before answering.
    Fresh,
    /// The generation is checked in the background.
    Eventual,
}

/// Observed state of a collection.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RuLakeCollectionStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The source generation served (table version, snapshot id, listing
    /// digest or commit sequence).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<String>,
    /// Vectors served, tombstones excluded.
    #[serde(default)]
    pub vector_count: u64,
    /// Partitions whose cache is built.
    #[serde(default)]
    pub partitions_warm: u32,
    /// Partitions in all.
    #[serde(default)]
    pub partitions_total: u32,
    /// `Ready`, `Progressing` and `Degraded`.
    #[serde(default)]
    #[schemars(schema_with = "super::conditions_schema")]
    pub conditions: Vec<Condition>,
}
