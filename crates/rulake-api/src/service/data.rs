//! `DataService`: writing managed collections (ingest, delete, compact)
//! and picking up what changed in the lake (refresh). Apart because only these calls
//! need write rights and only ingest streams, which brings its own limits:
//! a stream's size is known only as it is read, so they are counted here.
//!
//! A write through an alias needs `write` on the alias and on the
//! collection behind it, and goes to the collection it was authorized on
//! (see `call`).

use super::call::{Call, Scope};
use super::streamed::{streamed, Streamed};
use super::{Api, Limits};
use crate::convert::id_from;
use crate::status::{ingest_too_large, invalid, oversized, to_status};
use rulake_auth::Perm;
use rulake_coordinator::ingest::shown_column;
use rulake_coordinator::wire::value_from;
use rulake_proto::v1 as pb;
use rulake_proto::v1::ingest_request::Message;
use rulake_types::{Generation, Value, VectorId};
use std::collections::BTreeMap;
use std::sync::Arc;
use tonic::{Request, Response, Status, Streaming};

#[tonic::async_trait]
impl pb::data_service_server::DataService for Api {
    async fn ingest(
        &self,
        req: Request<Streaming<pb::IngestRequest>>,
    ) -> Result<Response<pb::IngestResponse>, Status> {
        // The collection is named by the stream's header, read within the
        // deadline like the rest of the stream.
        self.handle(
            req,
            "Ingest",
            Perm::Write,
            Scope::Deferred,
            move |stream, call| async move {
                // Dropping the ingest (an error, the deadline, a client that
                // went away) deletes whatever it wrote; only `commit` makes it
                // visible.
                let (records, generation) = call.within(self.ingest_stream(stream, &call)).await?;
                Ok(pb::IngestResponse {
                    records,
                    generation: generation.0,
                })
            },
        )
        .await
    }

    async fn delete(
        &self,
        req: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        self.handle(
            req,
            "Delete",
            Perm::Write,
            Scope::Collection(|r| &r.collection),
            move |r, call| async move {
                let ids = r
                    .ids
                    .into_iter()
                    .map(|i| id_from(Some(i)))
                    .collect::<Result<Vec<_>, _>>()?;
                let target = call.target(&r.collection);
                let added = call.run(self.coord.delete(target, ids)).await?;
                Ok(pb::DeleteResponse {
                    tombstones_added: added,
                })
            },
        )
        .await
    }

    async fn refresh(
        &self,
        req: Request<pb::RefreshRequest>,
    ) -> Result<Response<pb::RefreshResponse>, Status> {
        self.handle(
            req,
            "Refresh",
            Perm::Write,
            Scope::Collection(|r| &r.collection),
            move |r, call| async move {
                let target = call.target(&r.collection);
                let (g, changed) = call.run(self.coord.refresh(target)).await?;
                Ok(pb::RefreshResponse {
                    changed,
                    generation: g.0,
                })
            },
        )
        .await
    }

    type CompactStream = Streamed<pb::CompactProgress>;

    async fn compact(
        &self,
        req: Request<pb::CompactRequest>,
    ) -> Result<Response<Self::CompactStream>, Status> {
        self.handle(
            req,
            "Compact",
            Perm::Write,
            Scope::Collection(|r| &r.collection),
            move |r, call| async move {
                let target = call.target(&r.collection).to_owned();
                call.run(async { self.coord.resolve(&target) }).await?;
                let coord = self.coord.clone();
                Ok(streamed(move |reporter| async move {
                    let reporter = Arc::new(reporter);
                    let progress: rulake_coordinator::Progress = Arc::new(move |p| {
                        reporter.report(pb::CompactProgress {
                            files_scanned: p.files_scanned,
                            files_total: p.files_total,
                            rows_dropped: p.rows_dropped,
                            done: None,
                        })
                    });
                    let c = coord
                        .compact(&target, Default::default(), progress)
                        .await
                        .map_err(to_status)?;
                    Ok(pb::CompactProgress {
                        files_scanned: c.files_scanned,
                        files_total: c.files_scanned,
                        rows_dropped: c.rows_dropped,
                        done: Some(pb::CompactSummary {
                            files_scanned: c.files_scanned,
                            files_retired: c.files_retired,
                            files_written: c.files_written,
                            rows_kept: c.rows_kept,
                            rows_dropped: c.rows_dropped,
                            tombstones_retired: c.tombstones_retired,
                            generation: c.generation.map(|g| g.0).unwrap_or_default(),
                            retired_files_deleted: c.retired_files_deleted,
                        }),
                    })
                }))
            },
        )
        .await
    }
}

impl Api {
    /// Read an `Ingest` stream into a new generation of its collection,
    /// authorizing the caller once the header names the collection.
    async fn ingest_stream(
        &self,
        mut stream: Streaming<pb::IngestRequest>,
        call: &Call<'_>,
    ) -> Result<(u64, Generation), Status> {
        let header = header(&mut stream).await?;
        let target = call.authorize_through(&header.collection)?;
        call.label(&target);
        let mut ingest = self.coord.ingest(&target).map_err(to_status)?;
        let mut budget = Budget::new(&self.limits);
        while let Some(msg) = stream.message().await.map_err(oversized)? {
            let batch = match msg.message {
                Some(Message::Batch(b)) => b,
                Some(Message::Header(_)) => {
                    return Err(invalid("only the first Ingest message is a header"))
                }
                None => return Err(invalid("an Ingest message carries a header or a batch")),
            };
            for r in batch.records {
                let id = id_from(r.id)?;
                let v = r.vector.map(|v| v.values).unwrap_or_default();
                let columns = r
                    .columns
                    .into_iter()
                    .map(|(name, value)| {
                        let value = value_from(value).map_err(|e| {
                            invalid(format!(
                                "column {}: {}",
                                shown_column(&name),
                                tonic::Status::from(&e).message()
                            ))
                        })?;
                        Ok((name, value))
                    })
                    .collect::<Result<BTreeMap<String, Value>, Status>>()?;
                if let Some((what, limit)) =
                    budget.charge(ingest.records(), record_bytes(&id, &v, &columns))
                {
                    // Delete what was written before answering, so the
                    // refusal leaves nothing behind.
                    ingest.abort().await;
                    return Err(ingest_too_large(what, limit));
                }
                ingest.add_row(id, &v, columns).await.map_err(to_status)?;
            }
        }
        ingest.commit().await.map_err(to_status)
    }
}

/// The first message of an `Ingest` stream, which must be its header.
async fn header(stream: &mut Streaming<pb::IngestRequest>) -> Result<pb::IngestHeader, Status> {
    match stream.message().await.map_err(oversized)? {
        Some(pb::IngestRequest {
            message: Some(Message::Header(h)),
        }) => Ok(h),
        _ => Err(invalid("the first Ingest message must be a header")),
    }
}

/// What one `Ingest` stream may still add under [`Limits::max_ingest_records`]
/// and [`Limits::max_ingest_bytes`].
struct Budget {
    max_records: u64,
    max_bytes: u64,
    bytes: u64,
}

impl Budget {
    fn new(limits: &Limits) -> Self {
        Budget {
            max_records: limits.max_ingest_records,
            max_bytes: limits.max_ingest_bytes,
            bytes: 0,
        }
    }

    /// Count a record of `bytes` ([`record_bytes`]) on top of the `held`
    /// already added: the limit it goes past (its name and value), if any.
    fn charge(&mut self, held: u64, bytes: u64) -> Option<(&'static str, u64)> {
        self.bytes += bytes;
        if held >= self.max_records {
            Some(("records", self.max_records))
        } else if self.bytes > self.max_bytes {
            Some(("bytes", self.max_bytes))
        } else {
            None
        }
    }
}

/// What a record counts against [`Limits::max_ingest_bytes`]: its vector,
/// its id and its payload values as stored (names included: a map of many
/// long names is as heavy as long values).
fn record_bytes(id: &VectorId, v: &[f32], columns: &BTreeMap<String, Value>) -> u64 {
    let id = match id {
        VectorId::U64(_) => 8,
        VectorId::Str(s) => s.len(),
    };
    let payload: usize = columns
        .iter()
        .map(|(name, value)| name.len() + value_bytes(value))
        .sum();
    (v.len() * 4 + id + payload) as u64
}

/// A payload value's stored size: eight bytes for a scalar, the text of
/// a string, the texts of a list (each at least one byte).
fn value_bytes(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len(),
        Value::StringList(l) => l.iter().map(|s| s.len().max(1)).sum(),
        _ => 8,
    }
}
