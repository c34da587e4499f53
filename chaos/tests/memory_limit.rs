//! A shard pod under the memory limit the operator gives it, as a
//! container (`rulake_chaos::cluster`, cgroup limit from the pod's
//! `resources.limits.memory`, no swap): it loads a collection of a
//! million vectors, is asked for a partition that can never fit its cache
//! budget, then for a second collection that fits only by evicting part
//! of the first; all while a search load runs against the first.
//!
//! What must hold: the shard is never OOM-killed and never restarted; the
//! partition too large is refused with an error naming the budget; the
//! second collection loads by evicting least-recently-used partitions of
//! the first (docs/engine.md, "The cache"); and every search of the first
//! collection answers. The figures (load times, the container's peak
//! memory against its limit, the shard's own accounting) are printed for
//! docs/operations.md.
//!
//! Needs a Docker Engine. Without one it is skipped, except under
//! `CI=true`, where a missing engine is a failure.

mod support;

use rulake_chaos::cluster::docker::{container_name, docker};
use rulake_chaos::cluster::{kubelet, lifecycle, Manifest};
use rulake_operator::k8s::apimachinery::pkg::api::resource::Quantity;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use support::{build_image, cli, engine_available, leftovers, repo, spawn_kubelet, Load, IMAGE};

const DIM: usize = 32;
/// The shard's cache budget: the first collection (about 210 MB as the
/// cache counts it) fits, the two together do not.
const CACHE: &str = "320Mi";
/// Rows a file.
const FILE_ROWS: u64 = 100_000;

/// Row `id`'s vector: scattered values (a multiplicative hash of row and
/// dimension), since the memory a partition takes does not depend on
/// their shape.
fn vector_of(id: u64) -> Vec<f32> {
    (0..DIM as u64)
        .map(|d| {
            let h = (id.wrapping_mul(0x9e37_79b9) ^ d.wrapping_mul(0x85eb_ca6b)) % 10_007;
            h as f32 / 10_007.0
        })
        .collect()
}

/// Row `id`'s vector as the command line takes it.
fn query_of(id: u64) -> String {
    let v: Vec<String> = vector_of(id).iter().map(f32::to_string).collect();
    v.join(",")
}

/// `files` Parquet files of [`FILE_ROWS`] rows under `<lake>/<dir>/`, ids
/// from `first_id`, readable by the pods' user.
fn write_files(lake: &Path, dir: &str, files: u64, first_id: u64) {
    use std::os::unix::fs::PermissionsExt;
    let at = lake.join(dir);
    std::fs::create_dir_all(&at).unwrap();
    for f in 0..files {
        let start = first_id + f * FILE_ROWS;
        let ids: Vec<u64> = (start..start + FILE_ROWS).collect();
        let flat: Vec<f32> = ids.iter().flat_map(|&i| vector_of(i)).collect();
        let file = at.join(format!("part-{f}.parquet"));
        rulake_lake::write_parquet_file(&file, rulake_lake::IdsRef::U64(&ids), &flat, DIM, 25_000)
            .unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    for p in [lake.to_path_buf(), at] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// Search `collection` until an answer comes from every partition, or
/// `within` passes; answers the seconds it took.
async fn wait_complete(
    address: &str,
    key: &str,
    collection: &str,
    vector: &str,
    within: Duration,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    loop {
        let args = [
            "search",
            "--collection",
            collection,
            "--vector",
            vector,
            "-k",
            "3",
        ];
        let last = match cli(address, key, &args) {
            Ok(a) if !a.contains("PARTIAL") => return Ok(started.elapsed().as_secs_f64()),
            Ok(a) => a,
            Err(e) => e,
        };
        anyhow::ensure!(
            started.elapsed() < within,
            "{collection} not answered in full within {within:?}: {last}"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

fn create(address: &str, key: &str, name: &str, url: &str, partitions: u32) -> anyhow::Result<()> {
    let partitions = partitions.to_string();
    let dim = DIM.to_string();
    cli(
        address,
        key,
        &[
            "collections",
            "create",
            name,
            "--source",
            "parquet",
            "--url",
            url,
            "--dim",
            &dim,
            "--partitions",
            &partitions,
            "--consistency",
            "eventual:60000",
        ],
    )
    .map_err(anyhow::Error::msg)?;
    Ok(())
}

/// The shard container's cgroup (v1 or v2) memory file `name`, in bytes,
/// read from inside the container.
fn cgroup_memory(container: &str, v1: &str, v2: &str) -> Option<u64> {
    let script = format!("cat /sys/fs/cgroup/memory/{v1} 2>/dev/null || cat /sys/fs/cgroup/{v2}");
    docker(&["exec", container, "/bin/sh", "-c", &script])
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_shard_under_its_memory_limit_refuses_or_evicts_and_is_never_killed() {
    if !engine_available() {
        eprintln!("no Docker Engine: skipped");
        return;
    }
    build_image();
    let lake = tempfile::tempdir().unwrap();
    let written = Instant::now();
    write_files(lake.path(), "a", 10, 0);
    write_files(lake.path(), "b", 7, 10 * FILE_ROWS);
    eprintln!(
        "lake: 1,700,000 × {DIM} written in {:.1} s",
        written.elapsed().as_secs_f64()
    );
    let text = std::fs::read_to_string(repo().join("docs/examples/quickstart.yaml")).unwrap();
    let mut manifest = Manifest::parse(&text).unwrap();
    // One shard, its memory only what the operator derives from the cache
    // budget (the quickstart's larger request would win otherwise).
    let shards = &mut manifest.cluster.spec.shards;
    shards.replicas = 1;
    shards.cache_memory = Quantity(CACHE.into());
    shards.resources = None;
    manifest.collections.clear();
    let key =
        String::from_utf8(manifest.secrets["quickstart-admin-key"]["api-key"].clone()).unwrap();
    let cluster = manifest.names().cluster;
    let shard = container_name(&cluster, &format!("{cluster}-shard-0"));
    let _ = lifecycle::down(&cluster);
    let opts = lifecycle::UpOptions {
        image: Some(IMAGE.into()),
        lake: Some(lake.path().to_path_buf()),
        ready_within: Duration::from_secs(240),
    };
    let up = lifecycle::up(manifest, &opts, spawn_kubelet).await;
    let result = async {
        let up = up?;
        let address = up.address.clone();
        let limit = cgroup_memory(&shard, "memory.limit_in_bytes", "memory.max")
            .ok_or_else(|| anyhow::anyhow!("no memory limit in the shard's cgroup"))?;
        eprintln!("shard {shard}: memory limit {} MiB", limit >> 20);
        anyhow::ensure!(
            limit < 1 << 30,
            "the shard runs without the operator's memory limit ({limit} bytes)"
        );
        let vector = query_of(0);

        create(&address, &key, "a", "file:///lake/a/*.parquet", 4)?;
        let took = wait_complete(&address, &key, "a", &vector, Duration::from_secs(600)).await?;
        eprintln!("a: 1,000,000 vectors in 4 partitions, answered in full after {took:.1} s");
        let (load, thread) = Load::start(&address, &key, "a", &vector);

        // One partition of 1.7 million rows: its estimate alone exceeds the
        // budget, so it is refused before anything is read.
        create(&address, &key, "whole", "file:///lake/*/*.parquet", 1)?;
        let refused = Instant::now();
        let answer = loop {
            let args = ["search", "--collection", "whole", "--vector", &vector];
            match cli(&address, &key, &args) {
                Err(e) if e.contains("budget") => break e,
                other => {
                    anyhow::ensure!(
                        refused.elapsed() < Duration::from_secs(120),
                        "the partition larger than the budget was not refused: {other:?}"
                    );
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        };
        eprintln!(
            "whole: refused: {}",
            answer.lines().last().unwrap_or_default()
        );

        // 700,000 rows more: they fit only by evicting part of `a`.
        create(&address, &key, "b", "file:///lake/b/*.parquet", 2)?;
        let b_query = query_of(10 * FILE_ROWS);
        let took = wait_complete(&address, &key, "b", &b_query, Duration::from_secs(600)).await?;
        eprintln!("b: 700,000 vectors in 2 partitions, answered in full after {took:.1} s");
        let stats = cli(&address, &key, &["stats"]).map_err(anyhow::Error::msg)?;
        eprintln!("{stats}");
        anyhow::ensure!(
            stats.contains("evictions") && !stats.contains("evictions 0 "),
            "b loaded without evicting any of a: {stats}"
        );
        // `a` answers again, its evicted partitions reloaded from disk.
        let took = wait_complete(&address, &key, "a", &vector, Duration::from_secs(600)).await?;
        eprintln!("a: answered in full again after {took:.1} s");
        load.stop.store(true, Ordering::SeqCst);
        thread.join().unwrap();
        let (answered, failed, partial) = load.counts();
        eprintln!(
            "searches of a meanwhile: {answered} answered, {failed} failed, {partial} partial"
        );
        let errors = load.errors.lock().unwrap();
        anyhow::ensure!(
            failed == 0 && answered > 0,
            "searches of a failed: {:?}",
            &errors[..errors.len().min(3)]
        );

        let peak = cgroup_memory(&shard, "memory.max_usage_in_bytes", "memory.peak");
        eprintln!(
            "shard peak memory (cgroup) {} MiB of a {} MiB limit",
            peak.map_or("?".into(), |p| (p >> 20).to_string()),
            limit >> 20
        );
        let oom = docker(&["inspect", "--format", "{{.State.OOMKilled}}", &shard])?;
        anyhow::ensure!(oom == "false", "the shard was OOM-killed");
        let status = kubelet::status(&up.state);
        let restarts = status[&format!("{cluster}-shard-0")].restarts;
        anyhow::ensure!(restarts == 0, "the shard restarted {restarts} times");
        Ok(())
    }
    .await;
    let removed = lifecycle::down(&cluster).unwrap();
    assert!(removed >= 5, "down removed {removed} objects");
    assert_eq!(leftovers(&cluster), 0, "down left something behind");
    result.unwrap();
}
