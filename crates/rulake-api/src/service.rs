//! The `rulake.v1` services over one coordinator.
//!
//! Handlers are thin: decode, call the coordinator within the request's
//! deadline, encode, and convert errors in [`crate::status`]. Limits that
//! protect the server (batch size, k) are enforced here, before any work.
//!
//! Each service has its own file, because they change for different
//! reasons (collections and aliases with the catalog, search with the
//! engine's answers, data with ingestion, admin with placement), while the
//! way a call begins — authorize the caller, name the collection for the
//! metrics, take the deadline — is in one place, `Api::handle` in `call`,
//! so that no handler can skip a check or compute its deadline differently.

mod admin;

pub use admin::LOCAL_NODE;
mod audit;
pub use audit::Audit;
mod call;
mod collections;
mod data;
mod search;
mod streamed;

pub(crate) use call::parse_grpc_timeout;

use rulake_coordinator::Coordinator;
use std::time::Duration;

/// Server-side limits, each answered with a clear status code.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Queries in one `BatchSearch` (`INVALID_ARGUMENT` beyond it).
    pub max_batch: usize,
    /// Largest `k` (`INVALID_ARGUMENT` beyond it).
    pub max_k: usize,
    /// Upper bound on any request's run time; a client's shorter deadline
    /// (`grpc-timeout`) applies first. Past it: `DEADLINE_EXCEEDED`.
    pub request_timeout: Duration,
    /// Largest message accepted or sent (`RESOURCE_EXHAUSTED` beyond it).
    pub max_message_bytes: usize,
    /// Calls one client connection may have in flight; the next one gets
    /// `RESOURCE_EXHAUSTED` at once (0: no limit). Enforced by
    /// [`crate::per_connection_limit`], a layer of the server.
    pub max_concurrent_per_connection: usize,
    /// Records in one `Ingest` stream (`RESOURCE_EXHAUSTED` beyond it, and
    /// nothing of the stream is committed).
    pub max_ingest_records: u64,
    /// Vector and id bytes in one `Ingest` stream (as for records).
    pub max_ingest_bytes: u64,
    /// Hits one search call may ask for: `k × queries × collections` of a
    /// `Search`, `BatchSearch` or `FederatedSearch` (`INVALID_ARGUMENT`
    /// beyond it, before any work).
    pub max_search_hits: usize,
    /// Distinct collections one `FederatedSearch` may name (a name given
    /// twice counts once; `INVALID_ARGUMENT` beyond it).
    pub max_federated: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_batch: 1024,
            max_k: rulake_engine::MAX_K,
            request_timeout: Duration::from_secs(30),
            max_message_bytes: crate::MAX_MESSAGE_BYTES,
            max_concurrent_per_connection: crate::limit::MAX_CONCURRENT_PER_CONNECTION,
            max_ingest_records: MAX_INGEST_RECORDS,
            max_ingest_bytes: MAX_INGEST_BYTES,
            max_search_hits: MAX_SEARCH_HITS,
            max_federated: MAX_FEDERATED,
        }
    }
}

/// Default for [`Limits::max_search_hits`]: a full default batch (1,024
/// queries) at `k` = 1,024, or one query at the largest `k` over 64
/// collections, and an answer (about 30 bytes a hit) well inside the
/// default message limit. Every query's top-k is held and merged in memory
/// before the answer is sent, so this bounds a call's memory whatever the
/// other limits allow.
pub const MAX_SEARCH_HITS: usize = 1 << 20;

/// Default for [`Limits::max_federated`]: federations span a handful of
/// collections (a table's versions, a tenant's shards); each one named is
/// resolved, authorized and searched in full.
pub const MAX_FEDERATED: usize = 64;

/// Default for [`Limits::max_ingest_records`]: an ingest buffers at most a
/// file of rows, but remembers every id it was given (to refuse repeats),
/// so the stream's length bounds its memory; bigger loads are several
/// ingests (or an external source).
pub const MAX_INGEST_RECORDS: u64 = 10_000_000;

/// Default for [`Limits::max_ingest_bytes`]: 10 M vectors of 256 floats.
pub const MAX_INGEST_BYTES: u64 = 10 << 30;

/// The public API over one coordinator: every `rulake.v1` service.
#[derive(Clone)]
pub struct Api {
    coord: Coordinator,
    limits: Limits,
    audit: Option<Audit>,
    /// Where `CreateBackup` may write (none: nowhere).
    backups: Option<std::sync::Arc<rulake_lake::SourcePolicy>>,
}

impl Api {
    /// Serve `coord` with `limits`.
    pub fn new(coord: Coordinator, limits: Limits) -> Self {
        Api {
            coord,
            limits,
            audit: None,
            backups: None,
        }
    }

    /// Let `CreateBackup` write where `policy` permits (its prefixes, minus
    /// its fences); without one every backup location is refused.
    pub fn with_backup_policy(mut self, policy: rulake_lake::SourcePolicy) -> Self {
        self.backups = Some(std::sync::Arc::new(policy));
        self
    }

    /// Record the calls [`Audit`] keeps.
    pub fn with_audit(mut self, audit: Audit) -> Self {
        self.audit = Some(audit);
        self
    }

    /// The coordinator behind the API.
    pub fn coordinator(&self) -> &Coordinator {
        &self.coord
    }

    /// The limits it enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }
}
