//! A catalog read cut into pieces by the member that serves it and joined
//! again by the client (`CatalogService.ReadChunks`). The catalog grows with
//! its tombstones while every message must stay under a fixed limit (see
//! [`crate::limits`]), so the catalog is serialised once, from one applied
//! state, and sent in pieces of [`READ_CHUNK_BYTES`].
//!
//! Each piece says where it starts and how long the whole is, so the
//! joiner refuses a stream that skips, repeats or stops early (a member
//! that died mid-read) instead of decoding half a catalog; such a read
//! fails like any broken call, and reads are safe to retry.

use crate::limits::READ_CHUNK_BYTES;
use futures::{Stream, StreamExt};
use rulake_proto::internal::v1 as pb;
use std::pin::Pin;
use std::sync::Arc;
use tonic::Status;

/// What a read reflects; the same in every piece.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    /// Raft log index the catalog reflects.
    pub applied_index: u64,
    /// Its placement epoch.
    pub epoch: u64,
    /// Member that served the read.
    pub served_by: u64,
    /// Nothing applied past the reader's index: no catalog follows.
    pub unchanged: bool,
}

impl Header {
    fn of(c: &pb::ReadChunk) -> Self {
        Header {
            applied_index: c.applied_index,
            epoch: c.epoch,
            served_by: c.served_by,
            unchanged: c.unchanged,
        }
    }
}

/// The pieces of a streamed read, as the service returns them.
pub(crate) type ChunkStream = Pin<Box<dyn Stream<Item = Result<pb::ReadChunk, Status>> + Send>>;

/// `json` (empty when `header.unchanged`) as a stream of pieces of at most
/// [`READ_CHUNK_BYTES`]; always at least one piece, which carries the header.
pub(crate) fn split(header: Header, json: Vec<u8>) -> ChunkStream {
    let json = Arc::new(json);
    let total = json.len();
    let pieces = total.div_ceil(READ_CHUNK_BYTES).max(1);
    Box::pin(futures::stream::iter((0..pieces).map(move |i| {
        let lo = i * READ_CHUNK_BYTES;
        let hi = (lo + READ_CHUNK_BYTES).min(total);
        Ok(pb::ReadChunk {
            catalog_json: json[lo..hi].to_vec(),
            offset: lo as u64,
            total_len: total as u64,
            applied_index: header.applied_index,
            epoch: header.epoch,
            served_by: header.served_by,
            unchanged: header.unchanged,
        })
    })))
}

fn broken(msg: String) -> Status {
    Status::internal(format!("catalog read stream: {msg}"))
}

/// Join a streamed read: its header and the catalog's JSON (`None` when
/// unchanged). A stream that is empty, out of order, inconsistent or cut
/// short is an error.
pub(crate) async fn join(
    mut stream: impl Stream<Item = Result<pb::ReadChunk, Status>> + Unpin,
) -> Result<(Header, Option<Vec<u8>>), Status> {
    let first = stream
        .next()
        .await
        .ok_or_else(|| broken("ended before its first piece".into()))??;
    let header = Header::of(&first);
    let total = usize::try_from(first.total_len)
        .map_err(|_| broken(format!("length {} too large", first.total_len)))?;
    // Grown as pieces arrive: the announced length is not trusted for memory.
    let mut json = Vec::with_capacity(total.min(64 * READ_CHUNK_BYTES));
    let mut next = Some(first);
    loop {
        let piece = match next.take() {
            Some(p) => p,
            None => match stream.next().await {
                Some(p) => p?,
                None => break,
            },
        };
        if Header::of(&piece) != header || piece.total_len != total as u64 {
            return Err(broken("pieces of different reads".into()));
        }
        if piece.offset != json.len() as u64 {
            return Err(broken(format!(
                "piece at {} where {} was expected",
                piece.offset,
                json.len()
            )));
        }
        if json.len() + piece.catalog_json.len() > total {
            return Err(broken(format!("more than the announced {total} bytes")));
        }
        json.extend_from_slice(&piece.catalog_json);
    }
    if json.len() != total {
        return Err(broken(format!(
            "ended after {} of {total} bytes",
            json.len()
        )));
    }
    if header.unchanged {
        return Ok((header, None));
    }
    Ok((header, Some(json)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            applied_index: 7,
            epoch: 2,
            served_by: 1,
            unchanged: false,
        }
    }

    async fn pieces(json: Vec<u8>) -> Vec<pb::ReadChunk> {
        split(header(), json)
            .map(|p| p.expect("piece"))
            .collect()
            .await
    }

    fn stream(p: Vec<pb::ReadChunk>) -> impl Stream<Item = Result<pb::ReadChunk, Status>> + Unpin {
        futures::stream::iter(p.into_iter().map(Ok))
    }

    #[tokio::test]
    async fn a_read_splits_and_joins_back() {
        for len in [
            0,
            1,
            READ_CHUNK_BYTES - 1,
            READ_CHUNK_BYTES,
            3 * READ_CHUNK_BYTES + 5,
        ] {
            let json: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let p = pieces(json.clone()).await;
            assert_eq!(p.len(), len.div_ceil(READ_CHUNK_BYTES).max(1));
            assert!(p.iter().all(|c| c.catalog_json.len() <= READ_CHUNK_BYTES));
            let (h, got) = join(stream(p)).await.expect("join");
            assert_eq!(h, header());
            assert_eq!(got, Some(json));
        }
    }

    #[tokio::test]
    async fn a_broken_stream_is_refused() {
        let json = vec![b'x'; 2 * READ_CHUNK_BYTES + 1];
        let p = pieces(json).await;
        // Cut short.
        assert!(join(stream(p[..2].to_vec())).await.is_err());
        // A piece missing in the middle.
        assert!(join(stream(vec![p[0].clone(), p[2].clone()]))
            .await
            .is_err());
        // A piece repeated.
        let mut rep = p.clone();
        rep.insert(1, p[0].clone());
        assert!(join(stream(rep)).await.is_err());
        // Pieces of two reads.
        let mut mixed = p.clone();
        mixed[1].applied_index += 1;
        assert!(join(stream(mixed)).await.is_err());
        // Nothing at all.
        assert!(join(stream(Vec::new())).await.is_err());
    }
}
