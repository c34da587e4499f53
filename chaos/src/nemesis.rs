//! What a scenario does to a catalog member, and how it heals. Faults are
//! aimed at the leader by default because that is where a consensus system
//! is most likely to lose or reorder a write; a fault on a follower checks
//! that catch-up after a gap does not rewrite history.

use rulake_tests::Cluster;
use std::time::Duration;

/// One fault on one member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL, then restart on the same data directory.
    Kill,
    /// SIGSTOP, then SIGCONT: the member comes back believing it leads.
    Pause,
    /// SIGTERM (it must exit cleanly), then restart.
    Restart,
}

impl Fault {
    /// The faults a scenario cycles through.
    pub const ALL: [Fault; 3] = [Fault::Kill, Fault::Pause, Fault::Restart];

    /// Inject on member `id`, wait `hold`, heal. The member is running
    /// again when this returns.
    pub async fn apply(self, cluster: &mut Cluster, id: u64, hold: Duration) {
        match self {
            Fault::Kill => {
                cluster.kill(id);
                tokio::time::sleep(hold).await;
                cluster.spawn(id, false);
            }
            Fault::Pause => {
                cluster.pause(id);
                tokio::time::sleep(hold).await;
                cluster.resume(id);
            }
            Fault::Restart => {
                cluster.stop(id, Duration::from_secs(20));
                tokio::time::sleep(hold).await;
                cluster.spawn(id, false);
            }
        }
    }
}
