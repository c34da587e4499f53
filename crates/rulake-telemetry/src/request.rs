//! The context of the request a task is serving, as a tokio task-local.
//!
//! The server's gRPC layer scopes one [`RequestContext`] around every
//! handler; code below it (the API handlers, the coordinator's router)
//! reads or adds to it without any parameter threaded through: handlers
//! name the collection a call is about ([`set_collection`]), outgoing calls
//! continue the call's trace ([`crate::outgoing`]). Outside a scope every
//! function here does nothing or returns `None`.

use crate::TraceContext;
use std::future::Future;
use std::sync::{Arc, Mutex};
use tokio::task::futures::TaskLocalFuture;

tokio::task_local! {
    static REQUEST: RequestContext;
}

/// What a served call carries: its trace, and the collection its handler
/// named. Clones share the collection slot.
#[derive(Clone, Debug)]
pub struct RequestContext {
    collection: Arc<Mutex<Option<String>>>,
    trace: TraceContext,
}

impl RequestContext {
    /// A context for a call in trace `trace`, naming no collection yet.
    pub fn new(trace: TraceContext) -> Self {
        RequestContext {
            collection: Arc::default(),
            trace,
        }
    }

    /// The call's trace context.
    pub fn trace(&self) -> TraceContext {
        self.trace
    }

    /// The collection the handler named, if it named one (the last name
    /// wins).
    pub fn collection(&self) -> Option<String> {
        self.collection
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Run `f` with this context as the task's request.
    pub fn scope<F: Future>(self, f: F) -> TaskLocalFuture<RequestContext, F> {
        REQUEST.scope(self, f)
    }
}

/// The trace context of the call this task serves (see [`crate::outgoing`]).
pub(crate) fn current_trace() -> Option<TraceContext> {
    REQUEST.try_with(|c| c.trace).ok()
}

/// Name the collection the current call is about. Call it from a handler
/// running inside [`RequestContext::scope`]; anywhere else it does nothing.
/// The last call wins.
pub fn set_collection(name: &str) {
    let _ = REQUEST.try_with(|c| {
        *c.collection.lock().unwrap_or_else(|p| p.into_inner()) = Some(name.to_owned());
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_scope_carries_trace_and_collection_and_nothing_leaks_outside() {
        let ctx = RequestContext::new(TraceContext::new_root());
        let seen = ctx.clone();
        set_collection("outside");
        ctx.scope(async {
            assert_eq!(current_trace(), Some(seen.trace()));
            set_collection("a");
            set_collection("b");
        })
        .await;
        assert_eq!(seen.collection().as_deref(), Some("b"));
        assert_eq!(current_trace(), None);
    }
}
