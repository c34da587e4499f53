//! Quick recall/throughput sweep of one partition (a development aid; the
//! reproducible figures come from `rulake-bench core`).
use rulake_datasets::ClusteredGaussian;
use rulake_index::{exact, BuildParams, PartitionIndex};
use rulake_types::{Metric, VectorId};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let dim = 128;
    let g = ClusteredGaussian::new(dim, 100, 0.15, 1);
    let data = g.sample(n, 1);
    let queries = g.sample(200, 2);
    let t = Instant::now();
    let ids = (0..n as u64).map(VectorId::U64).collect();
    let idx =
        PartitionIndex::build(dim, Metric::L2, ids, data.clone(), BuildParams::default()).unwrap();
    println!("build {:?} nlist {}", t.elapsed(), idx.nlist());
    let truth = exact::batch_topk(&data, dim, Metric::L2, &queries, 10);
    for nprobe in [4, 8, 16, 32, 64] {
        for rerank in [2, 5, 10, 20] {
            let t = Instant::now();
            let mut r = 0.0;
            for (qi, q) in queries.chunks(dim).enumerate() {
                let res = idx.search(q, 10, Some(nprobe), Some(rerank)).unwrap();
                let f: Vec<u32> = res.iter().map(|x| x.0).collect();
                let tr: Vec<u32> = truth[qi].iter().map(|x| x.0).collect();
                r += exact::recall(&f, &tr);
            }
            let el = t.elapsed().as_secs_f64();
            println!(
                "nprobe {nprobe:3} rerank {rerank:3} recall {:.3} qps {:.0}",
                r / 200.0,
                200.0 / el
            );
        }
    }
}
