//! `fresh` under concurrency: queries share generation checks, and still
//! every query sees every write that landed before it arrived.

use rulake_datasets::ClusteredGaussian;
use rulake_engine::*;
use rulake_lake::{Listing, MemorySource, RowStream, Source, Unit};
use rulake_types::{Consistency, Generation, SearchParams, VectorId};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const DIM: usize = 16;

/// A lake whose generation check takes `delay` and reports what the lake
/// held when the check began (as a listing reports the objects there when
/// the request reached the store), counting the checks.
#[derive(Debug)]
struct SlowCheck {
    inner: Arc<MemorySource>,
    delay: Duration,
    checks: AtomicU64,
}

#[async_trait::async_trait]
impl Source for SlowCheck {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn generation(&self) -> rulake_lake::Result<Generation> {
        self.checks.fetch_add(1, Ordering::SeqCst);
        let seen = self.inner.generation().await;
        tokio::time::sleep(self.delay).await;
        seen
    }
    async fn list_units(&self) -> rulake_lake::Result<Listing> {
        self.inner.list_units().await
    }
    fn read_unit(&self, unit: &Unit, dim: usize) -> RowStream {
        self.inner.read_unit(unit, dim)
    }
}

/// Parameters that make every partition answer exactly.
fn exhaustive(k: usize) -> SearchParams {
    SearchParams {
        k,
        nprobe: Some(1 << 20),
        rerank: Some(1 << 20),
    }
}

/// An engine with a `fresh` collection "f" over 500 rows behind a lake
/// whose checks take `delay`.
async fn fresh_engine(delay: Duration) -> (RuLake, Arc<MemorySource>, Arc<SlowCheck>) {
    let e = RuLake::new(CacheConfig::default());
    let m = MemorySource::new("m", DIM);
    let v = ClusteredGaussian::new(DIM, 10, 0.2, 5).sample(500, 1);
    m.add(
        v.chunks(DIM)
            .enumerate()
            .map(|(i, x)| (VectorId::U64(i as u64), x.to_vec())),
    )
    .unwrap();
    let lake = Arc::new(SlowCheck {
        inner: m.clone(),
        delay,
        checks: AtomicU64::new(0),
    });
    e.register_source("m", lake.clone()).unwrap();
    e.create_collection(
        CollectionSpec::new("f", "m", DIM)
            .partitions(2)
            .consistency(Consistency::Fresh),
    )
    .unwrap();
    // The first query loads; checks are counted from here on.
    e.search("f", &[0.0; DIM], SearchParams::k(1))
        .await
        .unwrap();
    (e, m, lake)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_fresh_queries_share_one_check_per_window() {
    let (e, _m, lake) = fresh_engine(Duration::from_millis(200)).await;
    let before = lake.checks.load(Ordering::SeqCst);
    let queries: Vec<_> = (0..32)
        .map(|i| {
            let e = e.clone();
            tokio::spawn(async move {
                e.search("f", &[i as f32 * 0.01; DIM], SearchParams::k(3))
                    .await
            })
        })
        .collect();
    for q in queries {
        assert_eq!(q.await.unwrap().unwrap().hits.len(), 3);
    }
    let checks = lake.checks.load(Ordering::SeqCst) - before;
    // All 32 arrive within the first check's 200 ms: that check, and the
    // one after it for everyone who arrived while it ran.
    assert!(
        checks <= 2,
        "32 concurrent fresh queries made {checks} checks"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_is_visible_to_every_fresh_query_that_starts_after_it() {
    let (e, m, lake) = fresh_engine(Duration::from_millis(5)).await;
    // Readers keep a check in flight at every moment, so each write lands
    // while some check that began before it is still running.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..6)
        .map(|i| {
            let (e, stop) = (e.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    e.search("f", &[i as f32; DIM], SearchParams::k(1))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    let start = lake.checks.load(Ordering::SeqCst);
    for w in 0..40u64 {
        let at = vec![100.0 + w as f32; DIM];
        let id = VectorId::from(format!("w{w}").as_str());
        m.add(vec![(id.clone(), at.clone())]).unwrap();
        let r = e.search("f", &at, exhaustive(1)).await.unwrap();
        assert_eq!(r.hits[0].id, id, "write {w} missed by a query after it");
        assert_eq!(r.hits[0].distance, 0.0);
    }
    stop.store(true, Ordering::SeqCst);
    for r in readers {
        r.await.unwrap();
    }
    assert!(
        lake.checks.load(Ordering::SeqCst) - start >= 40,
        "every write was followed by a check"
    );
}
