//! Partition index: exactness at full probe and rerank, recall at the
//! defaults, every metric, incremental adds, tombstones, persistence.

use rulake_datasets::ClusteredGaussian;
use rulake_index::{exact, BuildParams, Deadline, IndexError, PartitionIndex};
use rulake_types::{Metric, VectorId};

const DIM: usize = 32;

fn data(n: usize) -> (Vec<VectorId>, Vec<f32>, Vec<f32>) {
    let g = ClusteredGaussian::new(DIM, 20, 0.15, 3);
    let ids = (0..n as u64).map(VectorId::U64).collect();
    (ids, g.sample(n, 1), g.sample(50, 2))
}

fn build(metric: Metric, n: usize) -> (PartitionIndex, Vec<f32>, Vec<f32>) {
    let (ids, v, q) = data(n);
    let idx = PartitionIndex::build(DIM, metric, ids, v.clone(), BuildParams::default()).unwrap();
    (idx, v, q)
}

#[test]
fn full_probe_and_rerank_equal_an_exact_scan_for_every_metric() {
    for metric in [Metric::L2, Metric::Cosine, Metric::InnerProduct] {
        let (idx, v, q) = build(metric, 3000);
        for query in q.chunks(DIM).take(20) {
            let got = idx
                .search(query, 10, Some(idx.nlist()), Some(3000))
                .unwrap();
            let want = exact::topk(&v, DIM, metric, query, 10);
            let got_ids: Vec<u32> = got.iter().map(|x| x.0).collect();
            let want_ids: Vec<u32> = want.iter().map(|x| x.0).collect();
            assert_eq!(got_ids, want_ids, "{metric}");
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (g.1 - w.1).abs() <= 1e-4 * w.1.abs().max(1.0),
                    "{metric}: {} vs {}",
                    g.1,
                    w.1
                );
            }
            assert_eq!(got, idx.exact_search(query, 10).unwrap());
        }
    }
}

#[test]
fn recall_at_defaults_on_a_fixed_dataset() {
    let (idx, v, q) = build(Metric::L2, 20_000);
    let mut recall = 0.0;
    for query in q.chunks(DIM) {
        let got: Vec<u32> = idx
            .search(query, 10, None, None)
            .unwrap()
            .iter()
            .map(|x| x.0)
            .collect();
        let want: Vec<u32> = exact::topk(&v, DIM, Metric::L2, query, 10)
            .iter()
            .map(|x| x.0)
            .collect();
        recall += exact::recall(&got, &want);
    }
    let recall = recall / 50.0;
    assert!(recall >= 0.95, "recall@10 at defaults {recall}");
}

#[test]
fn incremental_adds_are_searchable_and_tracked_as_drift() {
    let (ids, v, q) = data(4000);
    let mut idx = PartitionIndex::build(
        DIM,
        Metric::L2,
        ids[..3000].to_vec(),
        v[..3000 * DIM].to_vec(),
        BuildParams::default(),
    )
    .unwrap();
    assert!(!idx.drift().needs_retrain());
    idx.add(ids[3000..].to_vec(), v[3000 * DIM..].to_vec())
        .unwrap();
    assert_eq!(idx.len(), 4000);
    let d = idx.drift();
    assert!((d.added_fraction - 1000.0 / 3000.0).abs() < 1e-9);
    assert!(
        d.residual_ratio > 0.5 && d.residual_ratio < 1.5,
        "same distribution: {d:?}"
    );
    for query in q.chunks(DIM).take(10) {
        let got = idx.search(query, 5, Some(idx.nlist()), Some(4000)).unwrap();
        assert_eq!(got, exact::topk(&v, DIM, Metric::L2, query, 5));
    }
    // Far-away additions are drift.
    let far: Vec<f32> = (0..100 * DIM).map(|i| 50.0 + i as f32 * 1e-3).collect();
    idx.add((10_000..10_100).map(VectorId::U64).collect(), far)
        .unwrap();
    assert!(idx.drift().needs_retrain());
    assert!(matches!(
        idx.add(vec![VectorId::U64(1)], vec![0.0; 3]),
        Err(IndexError::Dimension { .. })
    ));
}

#[test]
fn tombstoned_rows_never_come_back() {
    let (mut idx, _, q) = build(Metric::L2, 2000);
    let query = &q[..DIM];
    let before = idx.search(query, 5, None, None).unwrap();
    let hidden: std::collections::HashSet<VectorId> =
        before[..2].iter().map(|(p, _)| idx.ids().get(*p)).collect();
    assert_eq!(idx.tombstone(&hidden), 2);
    assert_eq!(idx.tombstone(&hidden), 0, "idempotent");
    let after = idx.search(query, 5, None, None).unwrap();
    assert!(after
        .iter()
        .all(|(p, _)| !hidden.contains(&idx.ids().get(*p))));
    assert_eq!(after[0], before[2]);
    assert_eq!(idx.live_len(), 1998);
}

#[test]
fn bad_queries_are_rejected() {
    let (idx, _, _) = build(Metric::L2, 500);
    assert!(matches!(
        idx.search(&[0.0; 3], 5, None, None),
        Err(IndexError::Dimension { .. })
    ));
    let mut q = vec![0.0; DIM];
    q[7] = f32::NAN;
    assert!(matches!(
        idx.search(&q, 5, None, None),
        Err(IndexError::NonFiniteQuery(7))
    ));
    assert!(matches!(
        idx.search(&[0.0; DIM], 0, None, None),
        Err(IndexError::ZeroK)
    ));
}

#[test]
fn persisted_partitions_load_identically_and_damage_is_detected() {
    let (_, v, q) = data(3000);
    let ids: Vec<VectorId> = (0..3000u64)
        .map(|i| {
            if i % 2 == 0 {
                VectorId::U64(u64::MAX - i)
            } else {
                VectorId::Str(format!("doc-é-{i}"))
            }
        })
        .collect();
    let mut idx =
        PartitionIndex::build(DIM, Metric::Cosine, ids.clone(), v, BuildParams::default()).unwrap();
    idx.tombstone(&[ids[5].clone()].into_iter().collect());
    let mut bytes = Vec::new();
    idx.write_to(&mut bytes).unwrap();
    let back = PartitionIndex::read_from(&bytes[..], bytes.len() as u64).unwrap();
    assert_eq!(back.ids(), idx.ids());
    assert_eq!(back.ids().get(0), VectorId::U64(u64::MAX));
    assert_eq!(back.ids().get(1), VectorId::Str("doc-é-1".into()));
    for query in q.chunks(DIM) {
        assert_eq!(
            back.search(query, 10, None, None).unwrap(),
            idx.search(query, 10, None, None).unwrap()
        );
    }
    let mut damaged = bytes.clone();
    damaged[bytes.len() / 2] ^= 0x40;
    assert!(matches!(
        PartitionIndex::read_from(&damaged[..], damaged.len() as u64),
        Err(IndexError::Corrupt(_))
    ));
    assert!(matches!(
        PartitionIndex::read_from(&bytes[..bytes.len() - 9], bytes.len() as u64),
        Err(IndexError::Corrupt(_))
    ));
    assert!(matches!(
        PartitionIndex::read_from(&b"not a partition"[..], 15),
        Err(IndexError::Corrupt(_))
    ));
}

#[test]
fn non_power_of_two_dimensions_and_tiny_partitions() {
    let g = ClusteredGaussian::new(100, 5, 0.2, 9);
    let v = g.sample(300, 1);
    let ids = (0..300u64).map(VectorId::U64).collect();
    let idx =
        PartitionIndex::build(100, Metric::L2, ids, v.clone(), BuildParams::default()).unwrap();
    let q = g.sample(1, 2);
    assert_eq!(
        idx.search(&q, 3, Some(idx.nlist()), Some(100)).unwrap(),
        exact::topk(&v, 100, Metric::L2, &q, 3)
    );
    let one = PartitionIndex::build(
        2,
        Metric::L2,
        vec![VectorId::U64(7)],
        vec![1.0, 2.0],
        BuildParams::default(),
    )
    .unwrap();
    assert_eq!(
        one.search(&[0.0, 0.0], 10, None, None).unwrap(),
        vec![(0, 5.0)]
    );
    let empty =
        PartitionIndex::build(2, Metric::L2, vec![], vec![], BuildParams::default()).unwrap();
    assert!(empty
        .search(&[0.0, 0.0], 10, None, None)
        .unwrap()
        .is_empty());
}

/// The exact rerank stops on a bound derived from the 8-bit codes; if that
/// bound were ever too tight, a true neighbour would be skipped. With every
/// list probed and every row a candidate, the answer must be the exact one,
/// for both rotations (Hadamard at D = 64, dense at D = 48) and every metric.
#[test]
fn refinement_bound_never_skips_a_true_neighbour() {
    for dim in [64usize, 48] {
        let g = ClusteredGaussian::new(dim, 10, 0.3, 11);
        let n = 2000;
        let v = g.sample(n, 1);
        let q = g.sample(100, 2);
        for metric in [Metric::L2, Metric::Cosine, Metric::InnerProduct] {
            let ids = (0..n as u64).map(VectorId::U64).collect();
            let idx =
                PartitionIndex::build(dim, metric, ids, v.clone(), BuildParams::default()).unwrap();
            for query in q.chunks(dim) {
                let got = idx.search(query, 20, Some(idx.nlist()), Some(n)).unwrap();
                let want = idx.exact_search(query, 20).unwrap();
                assert_eq!(got, want, "{metric} at D = {dim}");
            }
        }
    }
}

#[test]
fn a_split_collection_shares_out_the_work_of_one_index() {
    use rulake_index::{default_nlist, default_nprobe, split_search};
    // One partition: the parameters pass through (defaults resolved).
    let nl = default_nlist(1_000_000);
    assert_eq!(
        split_search(1_000_000, 1_000_000, nl, None, 40),
        (default_nprobe(nl), 40)
    );
    assert_eq!(split_search(1_000_000, 1_000_000, nl, Some(3), 7), (3, 7));
    // Four equal partitions probe the same fraction of their (smaller)
    // lists, so about the same number of rows in total, and keep a quarter
    // of the pool each.
    let part_nl = default_nlist(250_000);
    let (np, rr) = split_search(1_000_000, 250_000, part_nl, None, 40);
    assert_eq!(rr, 10);
    let whole = default_nprobe(nl) as f64 / nl as f64 * 1_000_000.0;
    let split = 4.0 * np as f64 / part_nl as f64 * 250_000.0;
    assert!(split >= whole && split <= 1.2 * whole, "{split} vs {whole}");
    // Exhaustive requests stay exhaustive.
    assert_eq!(
        split_search(1_000_000, 250_000, part_nl, Some(1 << 20), 1 << 20),
        (part_nl, 1 << 18)
    );
}

#[test]
fn a_shared_kth_bound_changes_no_merged_answer() {
    use rulake_index::SharedKth;
    // Three partitions of one collection, every metric (inner product has
    // negative distances): searching them with one shared bound, in turn,
    // merges to exactly what searching each alone merges to.
    let g = ClusteredGaussian::new(DIM, 10, 0.2, 5);
    for metric in [Metric::L2, Metric::Cosine, Metric::InnerProduct] {
        let parts: Vec<PartitionIndex> = (0..3u64)
            .map(|p| {
                let v = g.sample(700, 10 + p);
                let ids = (0..700).map(|i| VectorId::U64(p * 1000 + i)).collect();
                PartitionIndex::build(DIM, metric, ids, v, BuildParams::default()).unwrap()
            })
            .collect();
        let mut saved = 0usize;
        for q in g.sample(30, 77).chunks(DIM) {
            let merged = |shared: Option<&SharedKth>| {
                let mut all: Vec<(u64, f32)> = Vec::new();
                let mut rows = 0;
                for (p, idx) in parts.iter().enumerate() {
                    let hits = idx
                        .search_shared(q, 10, Some(4), Some(20), &[], shared)
                        .unwrap();
                    rows += hits.len();
                    all.extend(
                        hits.into_iter()
                            .map(|(pos, d)| (p as u64 * 1000 + pos as u64, d)),
                    );
                }
                all.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
                all.truncate(10);
                (all, rows)
            };
            let (alone, alone_rows) = merged(None);
            let bound = SharedKth::new(10);
            let (shared, shared_rows) = merged(Some(&bound));
            assert_eq!(alone, shared, "{metric:?}");
            saved += alone_rows - shared_rows;
        }
        // Later partitions stop early: the bound did prune something.
        assert!(saved > 0, "{metric:?}: the bound pruned nothing");
    }
}

/// The fuzz target's seed (`fuzz/seeds/index_persist/small`) is a real
/// partition file of the current format, so fuzzing starts from inputs that
/// reach every section. After a format change, `RULAKE_WRITE_FUZZ_SEEDS=1`
/// rewrites it.
#[test]
fn the_fuzz_seed_is_a_current_partition_file() {
    let dim = 4;
    let g = ClusteredGaussian::new(dim, 2, 0.2, 9);
    let ids: Vec<VectorId> = (0..40u64)
        .map(|i| {
            if i % 3 == 0 {
                VectorId::Str(format!("d{i}"))
            } else {
                VectorId::U64(i)
            }
        })
        .collect();
    let mut idx = PartitionIndex::build(
        dim,
        Metric::L2,
        ids.clone(),
        g.sample(40, 1),
        BuildParams::default(),
    )
    .unwrap();
    idx.tombstone(&[ids[1].clone()].into_iter().collect());
    // The target's first byte chooses its mode: 0 reads the rest as is.
    let mut bytes = vec![0u8];
    idx.write_to(&mut bytes).unwrap();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/seeds/index_persist/small");
    if std::env::var_os("RULAKE_WRITE_FUZZ_SEEDS").is_some() {
        std::fs::write(&path, &bytes).unwrap();
    }
    let seed = std::fs::read(&path).expect("the committed seed");
    let back = PartitionIndex::read_from(&seed[1..], seed.len() as u64 - 1).unwrap();
    assert_eq!(back.ids().len(), 40);
}

/// A search past its deadline stops with `DeadlineExceeded`; before it
/// (or with none) it answers exactly what `search` does, however large
/// `nprobe` and `rerank` are.
#[test]
fn a_search_past_its_deadline_stops() {
    use std::time::{Duration, Instant};
    let (idx, _, q) = build(Metric::L2, 3000);
    let q = &q[..DIM];
    let huge = Some(u32::MAX as usize);
    let past = Deadline::at(Instant::now() - Duration::from_millis(1));
    assert!(matches!(
        idx.search_within(q, 10, huge, huge, &[], None, past),
        Err(IndexError::DeadlineExceeded)
    ));
    let later = Deadline::at(Instant::now() + Duration::from_secs(600));
    let want = idx.search(q, 10, huge, huge).unwrap();
    assert_eq!(
        idx.search_within(q, 10, huge, huge, &[], None, later)
            .unwrap(),
        want
    );
    assert_eq!(
        idx.search_within(q, 10, huge, huge, &[], None, Deadline::NONE)
            .unwrap(),
        want
    );
}
