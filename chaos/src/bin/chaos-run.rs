//! `chaos/run`: fault scenarios against a whole cluster of processes on
//! loopback, each printed as its row of docs/RELIABILITY.md.
//!
//! ```sh
//! chaos/run --list
//! chaos/run --scenario shard-kill --seconds 60 --seed 7
//! chaos/run --all --seconds 60        # CI: 60 s of faults in all
//! ```
//!
//! Exits 1 when any invariant broke, 2 on bad arguments.

use clap::Parser;
use rulake_chaos::scenario::{self, Row, Scenario};
use std::time::Duration;

#[derive(Parser)]
#[command(about = "Fault scenarios under load; every history checked")]
struct Cli {
    /// Print the scenarios and exit.
    #[arg(long)]
    list: bool,
    /// Run every scenario but those with an open violation; `--seconds`
    /// is then the whole run's time of faults, shared out (at least
    /// `--min-seconds` each).
    #[arg(long, conflicts_with = "scenario")]
    all: bool,
    /// With `--all`: the scenarios with an open violation too.
    #[arg(long, requires = "all")]
    with_open: bool,
    /// The scenario to run.
    #[arg(long)]
    scenario: Option<String>,
    /// Seconds of faults under load.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// With `--all`: the least time of faults of one scenario.
    #[arg(long, default_value_t = 6)]
    min_seconds: u64,
    /// Seed of the fault schedule (which member each round hits).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How long each fault is held before it is healed, milliseconds.
    #[arg(long, default_value_t = 2_000)]
    hold_ms: u64,
    /// Calm between a healing and the next fault, milliseconds.
    #[arg(long, default_value_t = 1_000)]
    calm_ms: u64,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let cli = Cli::parse();
    if cli.list {
        for s in scenario::ALL {
            println!("{:<28} {}", s.name, s.fault);
            if let Some(why) = scenario::open_violation(s.name) {
                println!("{:<28} open: {why}", "");
            }
        }
        return;
    }
    let (runs, seconds): (Vec<&'static Scenario>, u64) = match (&cli.scenario, cli.all) {
        (Some(name), false) => match scenario::find(name) {
            Some(s) => (vec![s], cli.seconds),
            None => {
                eprintln!("no scenario {name:?}; `chaos/run --list` names them");
                std::process::exit(2);
            }
        },
        (None, true) => {
            let runs: Vec<&'static Scenario> = scenario::ALL
                .iter()
                .filter(|s| {
                    let open = scenario::open_violation(s.name);
                    if let (Some(why), false) = (open, cli.with_open) {
                        eprintln!("== {}: left out, open violation: {why}", s.name);
                    }
                    cli.with_open || open.is_none()
                })
                .collect();
            let each = (cli.seconds / runs.len() as u64).max(cli.min_seconds);
            (runs, each)
        }
        _ => {
            eprintln!("give --scenario NAME, --all or --list");
            std::process::exit(2);
        }
    };
    let hold = Duration::from_millis(cli.hold_ms);
    let calm = Duration::from_millis(cli.calm_ms);
    println!("{}", Row::HEADER);
    let mut failed = 0;
    for (i, s) in runs.into_iter().enumerate() {
        eprintln!(
            "== {} ({} s of faults, seed {}): {}",
            s.name, seconds, cli.seed, s.fault
        );
        let seed = cli.seed.wrapping_add(i as u64);
        let task = tokio::spawn(async move { scenario::run(s, seconds, seed, hold, calm).await });
        let row = match task.await {
            Ok((row, sys)) => {
                // Stopping the processes checks their logs again; a panic
                // there is already in the row.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(sys)));
                row
            }
            Err(e) => {
                let mut row = Row::failed(s.name);
                row.verdict.violations.push(format!("harness: {e}"));
                row
            }
        };
        println!("{}", row.markdown());
        for v in &row.verdict.violations {
            eprintln!("   VIOLATION {v}");
        }
        eprintln!("   took {:.0} s", row.took.as_secs_f64());
        failed += usize::from(!row.ok());
    }
    if failed > 0 {
        eprintln!("{failed} scenario(s) broke an invariant");
        std::process::exit(1);
    }
}
