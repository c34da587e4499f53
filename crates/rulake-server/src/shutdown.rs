//! One shutdown for a whole process.
//!
//! Every role (serve, meta, shard, coordinator, dev) stops the same way: one
//! signal handler turns Ctrl-C or SIGTERM into one [`Shutdown`] signal; the
//! gRPC servers stop accepting on it and let in-flight calls finish; every
//! background task the role started through [`Shutdown::spawn`] sees the
//! same signal and returns; and the role waits for those tasks before the
//! process exits, so nothing is cut off half-way through a write (a
//! persisted partition, a metrics scrape, a Raft shutdown). A task that does
//! not finish within the grace period is named in the log and left behind,
//! so a stuck task delays exit by a bounded time, never forever.

use std::future::Future;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long [`Shutdown::wait`] lets background tasks finish by default:
/// well inside Kubernetes' default 30 s termination grace period.
pub const GRACE: Duration = Duration::from_secs(10);

/// The process's shutdown signal and the background tasks that observe it.
/// Cheap to clone; clones share both.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    token: CancellationToken,
    tasks: TaskTracker,
}

impl Shutdown {
    /// A shutdown that fires only when [`Shutdown::trigger`] is called.
    pub fn new() -> Self {
        Self::default()
    }

    /// A shutdown that also fires on Ctrl-C or SIGTERM: the one signal
    /// handler of the process.
    pub fn on_signal() -> Self {
        let s = Self::new();
        let token = s.token.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = signal() => {
                    tracing::info!("shutdown requested by signal");
                    token.cancel();
                }
                () = token.cancelled() => {}
            }
        });
        s
    }

    /// Fire the signal (idempotent).
    pub fn trigger(&self) {
        self.token.cancel();
    }

    /// Whether the signal has fired.
    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    /// A future that resolves once the signal fires: hand it to a server's
    /// `serve_with_shutdown`.
    pub fn signalled(&self) -> impl Future<Output = ()> + Send + 'static {
        self.token.clone().cancelled_owned()
    }

    /// Run `task` in the background until it returns or the signal fires,
    /// whichever is first; [`Shutdown::wait`] waits for it.
    pub fn spawn<F>(&self, name: &'static str, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let token = self.token.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                () = task => tracing::debug!(task = name, "background task finished"),
                () = token.cancelled() => tracing::debug!(task = name, "background task stopped"),
            }
        });
    }

    /// Fire the signal and wait up to `grace` for every task started with
    /// [`Shutdown::spawn`]. Returns whether all of them finished.
    pub async fn wait(&self, grace: Duration) -> bool {
        self.trigger();
        self.tasks.close();
        let done = tokio::time::timeout(grace, self.tasks.wait()).await.is_ok();
        if !done {
            tracing::warn!(
                left = self.tasks.len(),
                "background tasks did not stop within {grace:?}; exiting without them"
            );
        }
        done
    }
}

/// Resolves on Ctrl-C or (on Unix) SIGTERM.
async fn signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = async {
            match signal(SignalKind::terminate()) {
                Ok(mut t) => {
                    t.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = ctrl_c => {}
            () = term => {}
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tasks_stop_on_the_signal_and_wait_sees_them_finish() {
        let s = Shutdown::new();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        s.spawn("forever", async move {
            let _keep = tx;
            std::future::pending::<()>().await;
        });
        s.spawn("quick", async {});
        assert!(!s.is_triggered());
        assert!(s.wait(Duration::from_secs(5)).await);
        assert!(s.is_triggered());
        // The forever task was dropped, so its sender is gone.
        assert!(rx.recv().await.is_none());
        s.signalled().await;
    }

    #[tokio::test]
    async fn a_task_that_ignores_the_signal_is_left_behind_after_the_grace() {
        let s = Shutdown::new();
        let tasks = s.tasks.clone();
        tasks.spawn(std::future::pending::<()>());
        assert!(!s.wait(Duration::from_millis(50)).await);
    }
}
