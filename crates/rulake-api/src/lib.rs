//! RuLake's public gRPC API (`rulake.v1`) over a coordinator.
//!
//! # Layout
//! - [`service`]: the four services on one [`Api`] value, with its
//!   [`Limits`]; [`router`] mounts them on a tonic server. One file a
//!   service: `service/collections.rs` (collections and aliases),
//!   `service/search.rs`, `service/data.rs` (ingest, delete, refresh),
//!   `service/admin.rs` (cache, cluster status, shard placement).
//!   `service/call.rs` holds the preamble every handler runs through
//!   (`Api::handle`): the deadline, authorization, the metrics label, and
//!   running the work within the deadline.
//! - [`shard`]: the shard node's internal `ShardService` ([`ShardApi`]).
//! - [`status`]: the one mapping of RuLake's errors to gRPC status codes.
//! - `convert`: wire types to catalog and engine types and back.
//! - [`limit`]: the bound on calls in flight per client connection, a
//!   server layer because only the transport knows connections.
//!
//! What a single process cannot do (drain or admit shard nodes) is answered
//! with `FAILED_PRECONDITION` and a message saying why.

mod convert;
pub mod limit;
pub mod service;
pub mod shard;
pub mod status;

pub use limit::PerConnectionLimitLayer;
pub use service::{
    Api, Audit, Limits, MAX_FEDERATED, MAX_INGEST_BYTES, MAX_INGEST_RECORDS, MAX_SEARCH_HITS,
};
pub use shard::ShardApi;

use rulake_proto::v1 as pb;

/// Largest message accepted or sent by default (a `BatchSearch` of 1,024
/// queries of 1,536 floats is about 6 MiB).
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// A tonic router serving every `rulake.v1` service from `api`, accepting
/// messages up to `limits.max_message_bytes`.
pub fn router(api: Api) -> tonic::service::Routes {
    use pb::admin_service_server::AdminServiceServer;
    use pb::collection_service_server::CollectionServiceServer;
    use pb::data_service_server::DataServiceServer;
    use pb::search_service_server::SearchServiceServer;
    let max = api.limits().max_message_bytes;
    tonic::service::Routes::new(
        CollectionServiceServer::new(api.clone())
            .max_decoding_message_size(max)
            .max_encoding_message_size(max),
    )
    .add_service(
        SearchServiceServer::new(api.clone())
            .max_decoding_message_size(max)
            .max_encoding_message_size(max),
    )
    .add_service(
        DataServiceServer::new(api.clone())
            .max_decoding_message_size(max)
            .max_encoding_message_size(max),
    )
    .add_service(AdminServiceServer::new(api))
}

/// A layer for the server that reports a request over the message size
/// limit as `RESOURCE_EXHAUSTED`, as gRPC specifies; tonic's decoder says
/// `OUT_OF_RANGE`. Streaming calls are mapped by their handler.
pub fn oversized_as_resource_exhausted<B>(
) -> tower::util::MapResponseLayer<fn(http::Response<B>) -> http::Response<B>> {
    tower::util::MapResponseLayer::new(status::map_oversized::<B>)
}

use tonic::codegen::http;

/// A layer for the server that answers a call beyond
/// `limits.max_concurrent_per_connection` in flight on its connection with
/// `RESOURCE_EXHAUSTED`. Add it before authentication, so a refused call
/// costs nothing, and after the metrics layer, so refusals are counted.
pub fn per_connection_limit(limits: &Limits) -> PerConnectionLimitLayer {
    PerConnectionLimitLayer::new(limits.max_concurrent_per_connection)
}

/// Fuzzing entry points: the conversions and checks a handler runs on a
/// request before any work, for messages decoded from arbitrary bytes.
/// They must answer every input with an error, never a panic.
#[doc(hidden)]
pub mod fuzz {
    use crate::convert::*;
    use crate::pb;
    use rulake_catalog::{Catalog, Command, SourceRecord};

    /// `CreateCollection`: the spec's conversion, then the catalog's checks
    /// of the source and collection commands it becomes.
    pub fn create_collection(spec: pb::CollectionSpec) -> Result<(), String> {
        let def = def_from(spec).map_err(|s| s.message().to_owned())?;
        let mut record = def.record;
        record.source = record.name.clone();
        let mut catalog = Catalog::default();
        catalog
            .apply(Command::CreateSource(SourceRecord {
                name: record.name.clone(),
                kind: def.source,
                options: def.options,
            }))
            .map_err(|e| e.to_string())?;
        catalog
            .apply(Command::CreateCollection(record))
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    /// `Search`, `BatchSearch`: the query and its parameters.
    pub fn search(r: pb::SearchRequest) -> Result<(), String> {
        query_from(r.query).map_err(|s| s.message().to_owned())?;
        params_from(r.params).map_err(|s| s.message().to_owned())?;
        Ok(())
    }

    /// `Ingest`, `Delete`: every id.
    pub fn ids(ids: Vec<pb::VectorId>) -> Result<(), String> {
        for id in ids {
            id_from(Some(id)).map_err(|s| s.message().to_owned())?;
        }
        Ok(())
    }
}
