//! The memory of the box the node runs in, and of the process itself.
//!
//! Why here: the cache budget is only a promise against out-of-memory kills
//! if it is set from the limit the kernel enforces, which in a container is
//! the cgroup's, not the machine's. A budget larger than the limit allows
//! (after the process's fixed base and the gap between what the cache
//! accounts and what the allocator keeps resident) is refused at start-up
//! rather than discovered by the OOM killer during a load.
//!
//! Everything is read from files (`/proc/self/status`, `/proc/self/cgroup`,
//! `/sys/fs/cgroup/...`, `/proc/meminfo`), and the parsing takes the file
//! contents or a root directory, so the tests run the real parsing against
//! files they write.

use std::path::Path;
use thiserror::Error;

/// Share of the box's memory given to the cache budget by default: the rest
/// covers the fixed base, the gap between accounted and resident bytes
/// ([`RESIDENT_FACTOR`]) and a load's transient buffers, which admission
/// counts inside the budget while they last (docs/operations.md, "Memory").
pub const DEFAULT_BUDGET_FRACTION: f64 = 0.6;

/// Resident bytes per accounted cache byte that a limit must allow for:
/// allocator slack, list capacity and per-row allocations the index does
/// not count. Measured at 1.11–1.15 after a load on release builds with
/// jemalloc (docs/BENCHMARKS.md, "Memory"); the alert and the operator's
/// pod limit use the same factor.
pub const RESIDENT_FACTOR: f64 = 1.2;

/// Resident bytes of a node holding nothing: runtime, catalog, gRPC,
/// metrics, thread stacks. Measured at 27–28 MiB for `rulake serve`
/// (docs/BENCHMARKS.md, "Memory"); stated with headroom.
pub const FIXED_BASE_BYTES: u64 = 64 << 20;

/// Smallest cache budget a derived default may come to; a box too small
/// for it is refused.
pub const MIN_BUDGET_BYTES: u64 = 16 << 20;

/// A cgroup v1 limit at or above this is the kernel's "unlimited" (a page-
/// rounded `i64::MAX`).
const V1_UNLIMITED: u64 = 1 << 60;

/// A budget that cannot work in this box.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum BudgetError {
    /// The requested budget, with the resident factor and the fixed base,
    /// does not fit the memory limit.
    #[error("a cache budget of {budget} bytes needs about {needed} bytes of memory ({RESIDENT_FACTOR} × budget + {FIXED_BASE_BYTES} bytes of fixed base), but the limit is {limit} bytes ({source_of_limit}); lower --cache-bytes or raise the limit")]
    DoesNotFit {
        /// The requested budget.
        budget: u64,
        /// Memory it needs.
        needed: u64,
        /// The limit.
        limit: u64,
        /// Where the limit came from.
        source_of_limit: &'static str,
    },
    /// The box is too small for any useful budget.
    #[error("the memory limit of {limit} bytes ({source_of_limit}) leaves less than {MIN_BUDGET_BYTES} bytes for the cache")]
    BoxTooSmall {
        /// The limit.
        limit: u64,
        /// Where the limit came from.
        source_of_limit: &'static str,
    },
}

/// Resident memory of a process, from `/proc/<pid>/status`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessMemory {
    /// `VmRSS`: resident now.
    pub resident: u64,
    /// `VmHWM`: the most resident since start (or the last reset).
    pub peak: u64,
}

/// Parse `VmRSS` and `VmHWM` (in kB) out of a `/proc/<pid>/status` text.
pub fn parse_status(text: &str) -> Option<ProcessMemory> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map(|kb| kb * 1024)
    };
    Some(ProcessMemory {
        resident: field("VmRSS")?,
        peak: field("VmHWM")?,
    })
}

/// This process's resident and peak memory (`None` off Linux).
pub fn process_memory() -> Option<ProcessMemory> {
    parse_status(&std::fs::read_to_string("/proc/self/status").ok()?)
}

/// The memory limit a process in the cgroups of `proc_cgroup` (the text of
/// `/proc/self/cgroup`) has, looking under `root` (normally
/// `/sys/fs/cgroup`): cgroup v2 `memory.max`, else v1
/// `memory.limit_in_bytes`, each at the process's own cgroup path and at
/// the root (where a container's namespace puts its own cgroup). `None`
/// when no limit is set.
pub fn cgroup_limit(root: &Path, proc_cgroup: &str) -> Option<u64> {
    let mut v2 = None;
    let mut v1 = None;
    for line in proc_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let path = path.trim_start_matches('/');
        if id == "0" && controllers.is_empty() {
            v2 = Some(path);
        } else if controllers.split(',').any(|c| c == "memory") {
            v1 = Some(path);
        }
    }
    let read = |file: &Path| std::fs::read_to_string(file).ok();
    if let Some(path) = v2 {
        for dir in [root.join(path), root.to_path_buf()] {
            if let Some(text) = read(&dir.join("memory.max")) {
                return match text.trim() {
                    "max" => None,
                    v => v.parse().ok(),
                };
            }
        }
    }
    if let Some(path) = v1 {
        let base = root.join("memory");
        for dir in [base.join(path), base.clone()] {
            if let Some(text) = read(&dir.join("memory.limit_in_bytes")) {
                return text.trim().parse().ok().filter(|&v| v < V1_UNLIMITED);
            }
        }
    }
    None
}

/// `MemTotal` (in bytes) out of a `/proc/meminfo` text.
pub fn parse_meminfo_total(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// The memory this process may use and where that figure came from: the
/// cgroup limit when one is set and lower than the machine's memory, else
/// the machine's memory. `None` when neither can be read (not Linux).
pub fn memory_limit() -> Option<(u64, &'static str)> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|t| cgroup_limit(Path::new("/sys/fs/cgroup"), &t));
    let total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| parse_meminfo_total(&t));
    match (cgroup, total) {
        (Some(c), Some(t)) if c < t => Some((c, "cgroup memory limit")),
        (Some(c), None) => Some((c, "cgroup memory limit")),
        (_, Some(t)) => Some((t, "machine memory")),
        (None, None) => None,
    }
}

/// Memory a cache budget of `budget` bytes needs: the budget at the
/// resident factor plus the fixed base.
pub fn needed_for(budget: u64) -> u64 {
    (budget as f64 * RESIDENT_FACTOR) as u64 + FIXED_BASE_BYTES
}

/// The cache budget for a node: `requested` when given (refused when it
/// cannot fit `limit`), else [`DEFAULT_BUDGET_FRACTION`] of what `limit`
/// leaves after the fixed base. Without a known limit the requested budget
/// stands and the default is `fallback`.
pub fn resolve_budget(
    requested: Option<u64>,
    limit: Option<(u64, &'static str)>,
    fallback: u64,
) -> Result<u64, BudgetError> {
    let Some((limit, source_of_limit)) = limit else {
        return Ok(requested.unwrap_or(fallback));
    };
    match requested {
        Some(budget) => {
            let needed = needed_for(budget);
            if needed > limit {
                return Err(BudgetError::DoesNotFit {
                    budget,
                    needed,
                    limit,
                    source_of_limit,
                });
            }
            Ok(budget)
        }
        None => {
            let budget =
                (limit.saturating_sub(FIXED_BASE_BYTES) as f64 * DEFAULT_BUDGET_FRACTION) as u64;
            if budget < MIN_BUDGET_BYTES {
                return Err(BudgetError::BoxTooSmall {
                    limit,
                    source_of_limit,
                });
            }
            Ok(budget)
        }
    }
}

/// Budget used when the box's memory cannot be read (not Linux).
pub const FALLBACK_BUDGET_BYTES: u64 = 4 << 30;

/// The cache budget of this node: `requested` (`--cache-bytes`) checked
/// against this box's memory limit, or derived from it when not given
/// (see [`resolve_budget`]). Logs the figures it decided on.
pub fn node_budget(requested: Option<usize>) -> Result<usize, BudgetError> {
    let limit = memory_limit();
    let budget = resolve_budget(requested.map(|b| b as u64), limit, FALLBACK_BUDGET_BYTES)?;
    match limit {
        Some((limit, source)) => tracing::info!(
            budget,
            limit,
            source,
            derived = requested.is_none(),
            "cache budget"
        ),
        None => tracing::info!(budget, "cache budget (memory limit unknown)"),
    }
    Ok(budget as usize)
}

/// What gives the allocator's freed pages back to the kernel now; set by
/// the binary that chose the allocator ([`set_release`]).
static RELEASE: std::sync::OnceLock<fn()> = std::sync::OnceLock::new();

/// Register how to return freed memory to the kernel at once (the `rulake`
/// binary registers a jemalloc purge). A load calls it as it goes
/// ([`release_freed`]); without one registered, nothing happens.
pub fn set_release(release: fn()) {
    let _ = RELEASE.set(release);
}

/// Return the memory freed so far to the kernel, if the allocator can.
///
/// Why a load calls this: it frees buffers as fast as it decodes them
/// (fetched pages, decoded Arrow arrays, each batch's floats), a few bytes
/// for every byte of vectors it keeps, across the threads it hops between.
/// An allocator that returns freed pages only after a decay period keeps
/// all of that resident meanwhile: on a partition of 60,000 × 384 vectors
/// the process peaked at 1.4–1.8× its resident size after the load, which
/// is what a pod limit has to allow for. Returning it every few MiB of
/// vectors keeps the peak within a few percent of the settled size
/// (docs/BENCHMARKS.md, "Memory").
pub fn release_freed() {
    if let Some(release) = RELEASE.get() {
        release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn reads_a_v2_limit_at_the_process_path_then_at_the_root() {
        let d = tempfile::tempdir().unwrap();
        let proc = "0::/kubepods/pod1/c1\n";
        assert_eq!(cgroup_limit(d.path(), proc), None);
        write(d.path(), "memory.max", "1073741824\n");
        assert_eq!(cgroup_limit(d.path(), proc), Some(1 << 30));
        write(d.path(), "kubepods/pod1/c1/memory.max", "536870912\n");
        assert_eq!(cgroup_limit(d.path(), proc), Some(512 << 20));
        write(d.path(), "kubepods/pod1/c1/memory.max", "max\n");
        assert_eq!(cgroup_limit(d.path(), proc), None);
    }

    #[test]
    fn reads_a_v1_limit_and_treats_the_huge_value_as_none() {
        let d = tempfile::tempdir().unwrap();
        let proc = "9:name=systemd:/\n4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n0::/\n";
        write(
            d.path(),
            "memory/memory.limit_in_bytes",
            "9223372036854771712\n",
        );
        assert_eq!(cgroup_limit(d.path(), proc), None);
        write(
            d.path(),
            "memory/docker/abc/memory.limit_in_bytes",
            "2147483648\n",
        );
        assert_eq!(cgroup_limit(d.path(), proc), Some(2 << 30));
        // A combined controller list names memory too.
        let proc = "4:cpu,memory:/docker/abc\n";
        assert_eq!(cgroup_limit(d.path(), proc), Some(2 << 30));
    }

    #[test]
    fn v2_wins_over_v1_in_a_hybrid_layout() {
        let d = tempfile::tempdir().unwrap();
        let proc = "4:memory:/a\n0::/a\n";
        write(d.path(), "memory/a/memory.limit_in_bytes", "2147483648\n");
        write(d.path(), "a/memory.max", "1073741824\n");
        assert_eq!(cgroup_limit(d.path(), proc), Some(1 << 30));
    }

    #[test]
    fn parses_status_and_meminfo() {
        let status = "Name:\trulake\nVmHWM:\t  353000 kB\nVmRSS:\t  263000 kB\nThreads:\t9\n";
        assert_eq!(
            parse_status(status),
            Some(ProcessMemory {
                resident: 263_000 * 1024,
                peak: 353_000 * 1024
            })
        );
        assert_eq!(parse_status("Name:\tx\n"), None);
        assert_eq!(
            parse_meminfo_total("MemTotal:       24576000 kB\nMemFree: 1 kB\n"),
            Some(24_576_000 * 1024)
        );
        let live = process_memory().expect("Linux has /proc/self/status");
        assert!(live.resident > 0 && live.peak >= live.resident, "{live:?}");
    }

    #[test]
    fn a_budget_is_derived_from_the_limit_or_refused_when_it_cannot_fit() {
        let limit = Some((2u64 << 30, "cgroup memory limit"));
        let derived = resolve_budget(None, limit, 4 << 30).unwrap();
        assert_eq!(
            derived,
            (((2u64 << 30) - FIXED_BASE_BYTES) as f64 * DEFAULT_BUDGET_FRACTION) as u64
        );
        assert!(needed_for(derived) <= 2 << 30);
        assert_eq!(resolve_budget(Some(1 << 30), limit, 0), Ok(1 << 30));
        let e = resolve_budget(Some(2 << 30), limit, 0).unwrap_err();
        assert!(matches!(e, BudgetError::DoesNotFit { .. }), "{e}");
        assert!(e.to_string().contains("cgroup memory limit"), "{e}");
        let tiny = Some((FIXED_BASE_BYTES + (1 << 20), "cgroup memory limit"));
        assert!(matches!(
            resolve_budget(None, tiny, 0),
            Err(BudgetError::BoxTooSmall { .. })
        ));
        // No known limit: the request stands, else the fallback.
        assert_eq!(resolve_budget(Some(7), None, 9), Ok(7));
        assert_eq!(resolve_budget(None, None, 9), Ok(9));
    }
}
