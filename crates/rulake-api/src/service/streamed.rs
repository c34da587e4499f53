//! Calls that run longer than a request deadline (compaction, backup):
//! their reply is a stream of progress messages ending with one that
//! carries the result, and the work runs in a task of its own, so it ends
//! where it would have ended even if the caller goes away (each such
//! operation is safe to cut short, but cutting it wastes what it did).
//!
//! Why a stream rather than a long unary call: the server's deadline (and
//! the transport's backstop timeout) bound how long a handler may take to
//! answer; a stream has answered once it starts, and progress tells the
//! caller it is still alive.

use std::future::Future;
use tokio::sync::mpsc;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

/// The reply stream of a long call.
pub(super) type Streamed<M> = ReceiverStream<Result<M, Status>>;

/// Where long work reports progress; a reader slower than the work misses
/// progress messages, never the last one.
pub(super) struct Reporter<M>(mpsc::Sender<Result<M, Status>>);

impl<M> Reporter<M> {
    /// Send one progress message, unless the reader is behind.
    pub(super) fn report(&self, m: M) {
        let _ = self.0.try_send(Ok(m));
    }
}

/// Run `work` in a task of its own; the stream carries what it reports,
/// then its result.
pub(super) fn streamed<M, Fut>(work: impl FnOnce(Reporter<M>) -> Fut) -> Streamed<M>
where
    M: Send + 'static,
    Fut: Future<Output = Result<M, Status>> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(16);
    let fut = work(Reporter(tx.clone()));
    tokio::spawn(async move {
        let last = fut.await;
        let _ = tx.send(last).await;
    });
    ReceiverStream::new(rx)
}
