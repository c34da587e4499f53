//! Every size limit of the catalog, in one place, and why no message can
//! outgrow its limit however large the catalog becomes.
//!
//! The catalog grows without bound: every delete adds tombstones, and a
//! collection may hold millions. Its messages must not grow with it, or
//! one day the catalog no longer fits the message that carries it and
//! every process that syncs from it fails at once (with tonic's default
//! 4 MiB limit, about 200k tombstones did that). So:
//! - **Reads are streamed.** `CatalogService.ReadChunks` serialises the
//!   catalog once, from one applied state, and sends it in pieces of
//!   [`READ_CHUNK_BYTES`] that the client joins (`crate::chunked`). A read
//!   is never torn and no piece depends on the catalog's size.
//! - **Snapshots are chunked.** openraft sends a snapshot to a member that
//!   is far behind in chunks of [`SNAPSHOT_CHUNK_BYTES`] (JSON-encoded,
//!   at most 4 bytes per byte), well inside [`MAX_RAFT_MESSAGE`].
//! - **Commands are bounded.** The one thing a client makes bigger is a
//!   command, so a command's encoded size is capped ([`MAX_COMMAND_BYTES`],
//!   checked by the client before sending and by the service on what it
//!   receives), and so is every field in it (names, ids, URLs, options, and
//!   lists by count and by encoded size, checked by the model on every
//!   replica alike).
//! - **Replication is bounded in bytes.** A Raft `AppendEntries` carries at
//!   most [`MAX_APPEND_BYTES`] of entries (or one entry alone), so a
//!   follower that lags behind a burst of the largest commands receives
//!   them in messages far below [`MAX_RAFT_MESSAGE`], each small enough to
//!   arrive within openraft's deadline for it (the heartbeat interval).
//!   openraft on its own batches up to 300 entries whatever their size: a
//!   lagging follower could be sent a message it refuses, again and again,
//!   and never catch up.
//! - **Message limits are explicit** on both ends of each service
//!   ([`MAX_CATALOG_MESSAGE`], [`MAX_RAFT_MESSAGE`]) and sized from the
//!   bounds above, not left to a library default.
//!
//! Why not only raise the limits: any fixed limit is crossed by a catalog
//! that keeps growing, so raising it moves the cliff and makes every read a
//! memory spike on every receiver. Why not paged reads: pages read at
//! different moments belong to different catalogs unless the server keeps a
//! snapshot per reader; one stream from one serialisation cannot tear. Why
//! not move tombstones elsewhere: they are part of the replicated truth
//! (every shard must drop the same ids), and a second store would need a
//! second consistency protocol.
//!
//! What remains proportional to the catalog: a reader still receives the
//! whole catalog when anything changed (a follower polls), and validating a
//! write copies the catalog. Both cost time, not correctness.

/// Longest catalog name (collections, sources, aliases), in bytes; names
/// use `[A-Za-z0-9_.-]` only.
pub const MAX_NAME_LEN: usize = 128;

/// Longest string id, in bytes (UTF-8). Checked when a record is ingested
/// and when an id is deleted (a tombstone names it): an id that could be
/// written but whose tombstone could not be committed could never be
/// deleted.
pub const MAX_ID_LEN: usize = 1024;

/// Longest URL, prefix or address in a command (source URLs, managed
/// prefixes, Iceberg SQL catalog URIs, node addresses, managed file names),
/// in bytes.
pub const MAX_URL_LEN: usize = 4096;

/// Longest identifier inside a source description (id and vector column,
/// Iceberg catalog, namespace and table), in bytes.
pub const MAX_IDENT_LEN: usize = 255;

/// Most options one source may carry.
pub const MAX_OPTIONS: usize = 32;

/// Longest option key, in bytes; keys use `[A-Za-z0-9_.-]` only.
pub const MAX_OPTION_KEY_LEN: usize = 128;

/// Longest option value, in bytes.
pub const MAX_OPTION_VALUE_LEN: usize = 4096;

/// Most ids (tombstones) or files one command may carry.
pub const MAX_BATCH: usize = 100_000;

/// Largest JSON encoding of one command's list of ids or files, in bytes:
/// the list's share of [`MAX_COMMAND_BYTES`], leaving room for the rest of
/// the command. Writers split longer lists with [`crate::model::batches`].
pub const MAX_BATCH_BYTES: usize = MAX_COMMAND_BYTES - (64 << 10);

/// Largest encoded command a client may submit, in bytes.
pub const MAX_COMMAND_BYTES: usize = 1 << 20;

/// Largest message of the `CatalogService`, either way: a write carries at
/// most [`MAX_COMMAND_BYTES`], a streamed read piece [`READ_CHUNK_BYTES`];
/// the rest (heartbeats listing a shard's partitions) is smaller still.
pub const MAX_CATALOG_MESSAGE: usize = 16 << 20;

/// Bytes of the catalog's JSON in one piece of a streamed read.
pub const READ_CHUNK_BYTES: usize = 1 << 20;

/// Largest message of the Raft service and its clients.
pub const MAX_RAFT_MESSAGE: usize = 64 << 20;

/// Most stored bytes of log entries one `AppendEntries` carries, unless
/// its first entry alone is larger (the leader's placement can be).
pub const MAX_APPEND_BYTES: usize = 2 * MAX_COMMAND_BYTES;

/// Raw bytes of snapshot data in one `InstallSnapshot` chunk.
pub const SNAPSHOT_CHUNK_BYTES: u64 = 1 << 20;

// The bounds above fit inside each other; checked when the crate compiles.
const _: () = {
    // A write request: the command plus the envelope.
    assert!(MAX_COMMAND_BYTES + 1024 <= MAX_CATALOG_MESSAGE);
    // A read piece plus its header fields.
    assert!(READ_CHUNK_BYTES + 1024 <= MAX_CATALOG_MESSAGE);
    // A full AppendEntries: its budget plus one more of the largest client
    // commands (a replica's re-encoding adds a few dozen bytes of defaults
    // and the entry's log id), with most of the limit to spare.
    assert!(MAX_APPEND_BYTES + MAX_COMMAND_BYTES + 4096 <= MAX_RAFT_MESSAGE / 8);
    // A snapshot chunk as a JSON array of bytes ("255," per byte).
    assert!(4 * SNAPSHOT_CHUNK_BYTES as usize + 1024 <= MAX_RAFT_MESSAGE);
    // One tombstone of the longest id fits a list, escaped at 6 bytes a byte.
    assert!(6 * (MAX_ID_LEN + 2) + 8 <= MAX_BATCH_BYTES);
};
