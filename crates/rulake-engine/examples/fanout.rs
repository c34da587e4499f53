//! One collection split into P = 1, 2 and 4 partitions, searched one query
//! at a time in interleaved rounds: the fan-out's cost apart from the lake.
//!
//! A development aid for `perf record`. Usage: `fanout [n] [rounds] [P,...]`.
use rulake_datasets::ClusteredGaussian;
use rulake_engine::{CacheConfig, CollectionSpec, RuLake};
use rulake_lake::memory::MemorySource;
use rulake_types::{SearchParams, VectorId};
use std::time::Instant;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let rounds: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5);
    let fan: Vec<u32> = args
        .get(3)
        .map(|s| s.split(',').map(|p| p.parse().unwrap()).collect())
        .unwrap_or(vec![1, 2, 4]);
    let dim = 128;
    let g = ClusteredGaussian::new(dim, 100, 0.15, 7);
    let data = g.sample(n, 1);
    let queries: Vec<Vec<f32>> = g.sample(1000, 2).chunks(dim).map(|q| q.to_vec()).collect();
    let source = MemorySource::new("mem", dim);
    // Many segments, as a lake has many row groups, so every partition gets some.
    let per = n.div_ceil(64);
    for (s, chunk) in data.chunks(per * dim).enumerate() {
        source.add(
            chunk
                .chunks(dim)
                .enumerate()
                .map(|(i, v)| (VectorId::U64((s * per + i) as u64), v.to_vec())),
        )?;
    }
    let engine = RuLake::new(CacheConfig::default());
    engine.register_source("mem", source)?;
    for p in &fan {
        let name = format!("p{p}");
        engine.create_collection(CollectionSpec::new(&name, "mem", dim).partitions(*p))?;
        engine.refresh(&name).await?;
    }
    let params = SearchParams::k(10);
    for r in 0..rounds {
        for p in &fan {
            let name = format!("p{p}");
            let t = Instant::now();
            for q in &queries {
                engine.search(&name, q, params).await?;
            }
            let qps = queries.len() as f64 / t.elapsed().as_secs_f64();
            println!("round {r} P {p}: {qps:.0} q/s");
        }
    }
    Ok(())
}
