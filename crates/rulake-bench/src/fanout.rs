//! The tail of a query fanned out to many shards, simulated from one
//! shard's measured latencies (the `fanout` section of
//! docs/BENCHMARKS.md, written by `rulake-bench grpc`; `docs/capacity.md`
//! reads it).
//!
//! Why a simulation: this machine has two cores, so a fan-out to 100 or
//! 1,000 shard processes cannot be measured here; the shape of the answer
//! can still be. A query answers when its slowest shard does, so its
//! latency is the maximum of F draws from the per-shard distribution, and
//! the p99 of that maximum is roughly the per-shard p(1 − 0.01/F): at
//! 1,000 shards, the per-shard p99.999. Hedging (a second request to
//! another replica once the first has taken longer than the per-shard
//! p95) caps each shard's draw at about p95 plus one more draw. The
//! draws are independent here; real shards share networks and garbage
//! (a busy node is slow for every query that reaches it), so real tails
//! are heavier than these, never lighter.

use std::fmt::Write as _;

/// Fan-out widths simulated.
pub const WIDTHS: [usize; 3] = [10, 100, 1000];

/// Queries simulated per width.
const QUERIES: usize = 20_000;

/// A deterministic 64-bit generator (splitmix64): the simulation is the
/// same on every run over the same samples.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn pick(&mut self, samples: &[f64]) -> f64 {
        samples[(self.next() % samples.len() as u64) as usize]
    }
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}

/// Query latency quantiles (p50, p99, p99.9) at one width.
#[derive(Clone, Copy, Debug)]
pub struct Tail {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
}

/// Simulate `width` shards per query over per-shard `samples` (seconds),
/// hedging after `hedge` seconds when given.
pub fn simulate(samples: &[f64], width: usize, hedge: Option<f64>, seed: u64) -> Tail {
    let mut rng = Rng(seed);
    let mut queries: Vec<f64> = (0..QUERIES)
        .map(|_| {
            (0..width)
                .map(|_| {
                    let first = rng.pick(samples);
                    match hedge {
                        Some(h) if first > h => first.min(h + rng.pick(samples)),
                        _ => first,
                    }
                })
                .fold(0.0, f64::max)
        })
        .collect();
    queries.sort_by(f64::total_cmp);
    Tail {
        p50: quantile(&queries, 0.5),
        p99: quantile(&queries, 0.99),
        p999: quantile(&queries, 0.999),
    }
}

/// The Markdown table of every width, with and without hedging, over the
/// per-shard `samples` of a lake of `n` vectors.
pub fn table(n: usize, samples: &[f64]) -> Result<String, std::fmt::Error> {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let hedge = quantile(&sorted, 0.95);
    let us = |s: f64| s * 1e6;
    let mut md = String::new();
    writeln!(
        md,
        "Per-shard Search over gRPC at n = {n} ({} calls): p50 {:.0} µs, p95 {:.0} µs, p99 {:.0} µs, max {:.0} µs; hedge after {:.0} µs (the p95).\n",
        sorted.len(),
        us(quantile(&sorted, 0.5)),
        us(hedge),
        us(quantile(&sorted, 0.99)),
        us(sorted[sorted.len() - 1]),
        us(hedge),
    )?;
    writeln!(
        md,
        "| shards per query | p50 (µs) | p99 (µs) | p99.9 (µs) | hedged p50 (µs) | hedged p99 (µs) | hedged p99.9 (µs) | hedged requests |"
    )?;
    writeln!(md, "|---:|---:|---:|---:|---:|---:|---:|---:|")?;
    for (i, &w) in WIDTHS.iter().enumerate() {
        let plain = simulate(&sorted, w, None, 7 + i as u64);
        let hedged = simulate(&sorted, w, Some(hedge), 7 + i as u64);
        // Each shard request past the hedge delay sends one more.
        let extra = sorted.iter().filter(|&&s| s > hedge).count() as f64 / sorted.len() as f64;
        writeln!(
            md,
            "| {w} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | +{:.1} % |",
            us(plain.p50),
            us(plain.p99),
            us(plain.p999),
            us(hedged.p50),
            us(hedged.p99),
            us(hedged.p999),
            extra * 100.0,
        )?;
    }
    Ok(md)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hedging_cuts_the_tail_of_a_wide_fan_out() {
        // 98 % of calls take 1 ms, 2 % take 50 ms.
        let samples: Vec<f64> = (0..1000)
            .map(|i| if i % 50 == 0 { 0.050 } else { 0.001 })
            .collect();
        let one = simulate(&samples, 1, None, 1);
        assert_eq!(one.p50, 0.001);
        let wide = simulate(&samples, 100, None, 1);
        assert_eq!(wide.p50, 0.050, "one slow shard in 100 is the norm");
        let hedged = simulate(&samples, 100, Some(0.001), 1);
        assert!(hedged.p50 <= 0.002, "{hedged:?}");
        assert!(hedged.p999 <= 0.051, "{hedged:?}");
    }
}
