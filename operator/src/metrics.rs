//! The operator's own metrics, served on `/metrics` (`crate::endpoints`):
//! reconcile runs, failures by kind and durations per controller, and
//! whether this replica holds the leader Lease.
//!
//! The families are few and fixed, so they are counted here and written in
//! Prometheus's text format by hand: the `prometheus` crate belongs to
//! `rulake-metrics` (the layer table gives each external library one
//! owner), and that crate would bring the whole engine into the operator.
//! Label values are bounded: two controllers, and [`crate::Error`]'s
//! `metric_label` for failures.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the reconcile-duration buckets, in seconds. A run that
/// drains shards waits for their partitions to warm elsewhere (up to the
/// admin timeout), hence the long tail.
const BUCKETS: [f64; 12] = [
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// One of the operator's controllers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Controller {
    /// The `RuLakeCluster` reconciler.
    Cluster,
    /// The `RuLakeCollection` reconciler.
    Collection,
}

impl Controller {
    fn as_str(self) -> &'static str {
        match self {
            Controller::Cluster => "cluster",
            Controller::Collection => "collection",
        }
    }
}

#[derive(Default)]
struct Histogram {
    /// Observations per bucket (not cumulative), then above the last.
    counts: [u64; BUCKETS.len() + 1],
    sum: f64,
}

#[derive(Default)]
struct Inner {
    runs: BTreeMap<Controller, u64>,
    failures: BTreeMap<(Controller, &'static str), u64>,
    durations: BTreeMap<Controller, Histogram>,
    leader: bool,
}

/// The operator's metrics; cheap to record into from every reconcile.
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut inner = Inner::default();
        // Every controller's series exist from the start, at zero.
        for c in [Controller::Cluster, Controller::Collection] {
            inner.runs.insert(c, 0);
            inner.durations.insert(c, Histogram::default());
        }
        Metrics {
            inner: Mutex::new(inner),
        }
    }
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records one reconcile run of `controller` that took `elapsed` and
    /// failed with `error` (a `metric_label`), if it failed.
    pub fn reconciled(
        &self,
        controller: Controller,
        elapsed: Duration,
        error: Option<&'static str>,
    ) {
        let mut inner = self.lock();
        *inner.runs.entry(controller).or_default() += 1;
        if let Some(error) = error {
            *inner.failures.entry((controller, error)).or_default() += 1;
        }
        let seconds = elapsed.as_secs_f64();
        let histogram = inner.durations.entry(controller).or_default();
        let bucket = BUCKETS
            .iter()
            .position(|&le| seconds <= le)
            .unwrap_or(BUCKETS.len());
        histogram.counts[bucket] += 1;
        histogram.sum += seconds;
    }

    /// Records whether this replica holds the leader Lease.
    pub fn set_leader(&self, leader: bool) {
        self.lock().leader = leader;
    }

    /// Every family in Prometheus's text exposition format (0.0.4).
    pub fn render(&self) -> String {
        let inner = self.lock();
        let mut out = String::new();
        let o = &mut out;
        let name = header(
            o,
            "build_info",
            "gauge",
            "The operator's version; always 1.",
        );
        let version = env!("CARGO_PKG_VERSION");
        sample(o, &name, &format!("version=\"{version}\""), 1);
        let help = "1 while this replica holds the leader Lease and reconciles, else 0.";
        let name = header(o, "leader", "gauge", help);
        sample(o, &name, "", u8::from(inner.leader));
        let help = "Reconcile runs, by controller.";
        let name = header(o, "reconciliations_total", "counter", help);
        for (c, n) in &inner.runs {
            sample(o, &name, &format!("controller=\"{}\"", c.as_str()), n);
        }
        let help = "Reconcile runs that failed and were retried, by controller and kind of error.";
        let name = header(o, "reconcile_failures_total", "counter", help);
        for ((c, error), n) in &inner.failures {
            let labels = format!("controller=\"{}\",error=\"{error}\"", c.as_str());
            sample(o, &name, &labels, n);
        }
        let help = "Time one reconcile run took, by controller.";
        let name = header(o, "reconcile_duration_seconds", "histogram", help);
        for (c, h) in &inner.durations {
            let c = format!("controller=\"{}\"", c.as_str());
            let mut cumulative = 0;
            for (le, n) in BUCKETS.iter().zip(h.counts) {
                cumulative += n;
                sample(
                    o,
                    &format!("{name}_bucket"),
                    &format!("{c},le=\"{le}\""),
                    cumulative,
                );
            }
            cumulative += h.counts[BUCKETS.len()];
            sample(
                o,
                &format!("{name}_bucket"),
                &format!("{c},le=\"+Inf\""),
                cumulative,
            );
            sample(o, &format!("{name}_sum"), &c, h.sum);
            sample(o, &format!("{name}_count"), &c, cumulative);
        }
        out
    }
}

/// Writes a family's HELP and TYPE lines; returns its full name.
fn header(out: &mut String, name: &str, kind: &str, help: &str) -> String {
    let name = format!("rulake_operator_{name}");
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    name
}

/// Writes one sample line.
fn sample(out: &mut String, name: &str, labels: &str, value: impl std::fmt::Display) {
    let _ = if labels.is_empty() {
        writeln!(out, "{name} {value}")
    } else {
        writeln!(out, "{name}{{{labels}}} {value}")
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_with_cumulative_buckets() {
        let m = Metrics::default();
        m.reconciled(Controller::Cluster, Duration::from_millis(30), None);
        m.reconciled(Controller::Cluster, Duration::from_secs(400), Some("kube"));
        m.set_leader(true);
        let text = m.render();
        for line in [
            "rulake_operator_leader 1",
            "rulake_operator_reconciliations_total{controller=\"cluster\"} 2",
            "rulake_operator_reconciliations_total{controller=\"collection\"} 0",
            "rulake_operator_reconcile_failures_total{controller=\"cluster\",error=\"kube\"} 1",
            "rulake_operator_reconcile_duration_seconds_bucket{controller=\"cluster\",le=\"0.01\"} 0",
            "rulake_operator_reconcile_duration_seconds_bucket{controller=\"cluster\",le=\"0.05\"} 1",
            "rulake_operator_reconcile_duration_seconds_bucket{controller=\"cluster\",le=\"300\"} 1",
            "rulake_operator_reconcile_duration_seconds_bucket{controller=\"cluster\",le=\"+Inf\"} 2",
            "rulake_operator_reconcile_duration_seconds_count{controller=\"cluster\"} 2",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        // Every sample follows its family's TYPE line.
        let mut family = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                family = rest.split(' ').next().unwrap().to_string();
            } else if !line.starts_with('#') {
                assert!(line.starts_with(&family), "{line} outside {family}");
            }
        }
    }
}
