//! Generated protobuf messages and gRPC stubs for every `.proto` under
//! `proto/`, in one crate so that the server, the catalog and clients share
//! one copy of each type and the build needs no system `protoc` (see
//! `build.rs`).
//!
//! # Layout
//! - [`v1`]: `proto/rulake/v1`, the public API.
//! - [`internal::v1`]: `proto/rulake/internal/v1`: Raft traffic between meta
//!   members and the catalog admin service. Not a public contract.
//! - [`FILE_DESCRIPTOR_SET`]: the encoded descriptors of every compiled file,
//!   for gRPC reflection.
//!
//! A new package (for example the public `rulake.v1`) is added by placing its
//! files under `proto/` and a matching module here.

/// The encoded `FileDescriptorSet` of every file under `proto/`.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/rulake_descriptor.bin"));

/// The public API (`proto/rulake/v1`): what clients, the CLI and the
/// operator speak. Versioned: fields are only ever added within `v1`.
pub mod v1 {
    #![allow(missing_docs, clippy::all)]
    tonic::include_proto!("rulake.v1");
}

/// Internal services (`rulake.internal.*`).
pub mod internal {
    /// Version 1 of the internal services.
    #[allow(missing_docs, clippy::all)]
    pub mod v1 {
        tonic::include_proto!("rulake.internal.v1");
    }
}
