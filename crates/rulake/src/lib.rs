//! What the `rulake` binary runs besides the server roles (which live in
//! `rulake-server`): the client commands against a running server, `query`
//! over a lake without a server, and the `demo`.
//!
//! A library so the benchmark binary measures with the same code the demo
//! prints its figures with ([`measure`]), and the multi-process tests run
//! the same command line as the binary ([`command`]).
//!
//! # Layout
//! - [`command`] — the command line: parse and dispatch.
//! - `allocator` — the process allocator every binary built from here uses.
//! - [`cli`] — `collections`, `alias`, `ingest`, `search`, `stats`: gRPC
//!   clients of a running server.
//! - [`lifecycle`] — `delete`, `compact`: what is stored, not what is served.
//! - [`catalog_admin`] — `rulake meta <subcommand>`: administer a catalog group.
//! - [`query`] — answer a Parquet file of queries against a Parquet source.
//! - [`demo`] — the README's first command.
//! - [`measure`] — write a lake, time queries, compute recall.

mod allocator;
pub mod audit;
pub mod catalog_admin;
pub mod cli;
pub mod command;
pub mod demo;
pub mod lifecycle;
pub mod measure;
pub mod query;
