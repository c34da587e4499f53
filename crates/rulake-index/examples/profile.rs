//! Build (or load) one partition once and run a sweep of searches.
//!
//! A development aid for `perf record`, and the measuring half of
//! `crates/rulake-bench/py/target_cpu.py`, which runs it from builds with different
//! `target-cpu` settings. Throughput is also reported per CPU-second of the
//! searching thread, which a busy machine distorts less than wall time.
//!
//! Usage: `profile [n] [cache-dir] [nprobe x rerank,...] [repetitions]`;
//! set `PROFILE_TSV=1` for tab-separated rows.
use rulake_datasets::ClusteredGaussian;
use rulake_index::{exact, BuildParams, PartitionIndex};
use rulake_types::{Metric, VectorId};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args
        .get(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let cache = std::path::PathBuf::from(args.get(2).cloned().unwrap_or("profile-index".into()));
    let dim = 128;
    let g = ClusteredGaussian::new(dim, 100, 0.15, 7);
    let data = std::cell::OnceCell::new();
    let data = || data.get_or_init(|| g.sample(n, 1)).clone();
    let queries = g.sample(500, 2);
    let idx_path = cache.join(format!("n{n}.rlk"));
    let idx = if let Ok(f) = std::fs::File::open(&idx_path) {
        let size = f.metadata().unwrap().len();
        PartitionIndex::read_from(std::io::BufReader::new(f), size).unwrap()
    } else {
        let t = Instant::now();
        let ids = (0..n as u64).map(VectorId::U64).collect();
        let idx =
            PartitionIndex::build(dim, Metric::L2, ids, data(), BuildParams::default()).unwrap();
        eprintln!("build {:?}", t.elapsed());
        std::fs::create_dir_all(&cache).unwrap();
        idx.write_to(std::io::BufWriter::new(
            std::fs::File::create(&idx_path).unwrap(),
        ))
        .unwrap();
        idx
    };
    let truth_path = cache.join(format!("n{n}.truth"));
    let truth: Vec<Vec<u32>> = if let Ok(s) = std::fs::read_to_string(&truth_path) {
        s.lines()
            .map(|l| l.split(' ').map(|x| x.parse().unwrap()).collect())
            .collect()
    } else {
        let t = exact::batch_topk(&data(), dim, Metric::L2, &queries, 10)
            .into_iter()
            .map(|r| r.into_iter().map(|x| x.0).collect())
            .collect::<Vec<Vec<u32>>>();
        let text: Vec<String> = t
            .iter()
            .map(|r| {
                r.iter()
                    .map(|x| x.to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        std::fs::write(&truth_path, text.join("\n")).unwrap();
        t
    };
    eprintln!("nlist {}", idx.nlist());
    let sweep: Vec<(usize, usize)> = args
        .get(3)
        .map(|s| {
            s.split(',')
                .map(|p| {
                    let (a, b) = p.split_once('x').unwrap();
                    (a.parse().unwrap(), b.parse().unwrap())
                })
                .collect()
        })
        .unwrap_or(vec![(8, 10), (8, 20), (8, 40), (16, 20), (16, 40)]);
    let reps: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(1);
    for (nprobe, rerank) in sweep {
        let t = Instant::now();
        let c0 = cpu_ns();
        let mut r = 0.0;
        for _ in 0..reps {
            r = 0.0;
            for (qi, q) in queries.chunks(dim).enumerate() {
                let res = idx.search(q, 10, Some(nprobe), Some(rerank)).unwrap();
                let f: Vec<u32> = res.iter().map(|x| x.0).collect();
                r += exact::recall(&f, &truth[qi]);
            }
        }
        let el = t.elapsed().as_secs_f64();
        let cpu = (cpu_ns() - c0) as f64 / 1e9;
        let (recall, qps, cpu_qps) = (
            r / 500.0,
            (500 * reps) as f64 / el,
            (500 * reps) as f64 / cpu,
        );
        if std::env::var_os("PROFILE_TSV").is_some() {
            println!("{nprobe}\t{rerank}\t{recall:.4}\t{qps:.0}\t{cpu_qps:.0}");
        } else {
            println!(
                "nprobe {nprobe:3} rerank {rerank:3} recall {recall:.4} qps {qps:.0} (per cpu-second {cpu_qps:.0})"
            );
        }
    }
}

/// CPU time this thread has run, from the scheduler's accounting (so a
/// busy machine does not distort the comparison).
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}
