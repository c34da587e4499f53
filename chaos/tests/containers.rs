//! The operator's pods as containers (`rulake_chaos::cluster`): the image
//! built from `dist/` on the base made from Debian's packages, the
//! quickstart manifest brought up, a collection over a lake on a shared
//! volume created through the operator's admin client and searched with
//! the `rulake` command line, a killed pod restarted by the kubelet, the
//! shards scaled up and down through the operator's drain-before-shrink
//! and admission steps, and every pod rolled to a second image build in
//! the operator's order, all under a query load that counts every failed
//! or partial answer; and `down` leaving nothing behind.
//!
//! Needs a Docker Engine. Without one it is skipped, except under
//! `CI=true`, where a missing engine is a failure.

mod support;

use rulake_chaos::cluster::docker::{docker, LABEL};
use rulake_chaos::cluster::{kubelet, lifecycle, ops, Manifest};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use support::{build_image, cli, engine_available, leftovers, repo, spawn_kubelet, Load, IMAGE};

/// The same binaries as [`IMAGE`] under another label: a second build to
/// roll to.
const IMAGE_B: &str = "rulake:chaos-test-b";
const DIM: usize = 32;

/// Four Parquet files of 32-dimensional vectors under `<lake>/vectors/`,
/// readable by the pods' user.
fn write_lake(lake: &Path) -> Vec<f32> {
    use std::os::unix::fs::PermissionsExt;
    let dir = lake.join("vectors");
    let mut first = Vec::new();
    for f in 0..4u64 {
        let ids: Vec<u64> = (f * 500..(f + 1) * 500).collect();
        let flat: Vec<f32> = ids
            .iter()
            .flat_map(|&i| (0..DIM).map(move |d| ((i * 31 + d as u64 * 17) % 101) as f32 / 101.0))
            .collect();
        if f == 0 {
            first = flat[..DIM].to_vec();
        }
        rulake_lake::write_parquet_file(
            &dir.join(format!("part-{f}.parquet")),
            rulake_lake::IdsRef::U64(&ids),
            &flat,
            DIM,
            250,
        )
        .unwrap();
    }
    for p in [lake.to_path_buf(), dir.clone()] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    for e in std::fs::read_dir(&dir).unwrap() {
        std::fs::set_permissions(e.unwrap().path(), std::fs::Permissions::from_mode(0o644))
            .unwrap();
    }
    first
}

#[tokio::test(flavor = "multi_thread")]
async fn the_quickstart_runs_as_containers_and_answers() {
    if !engine_available() {
        eprintln!("no Docker Engine: skipped");
        return;
    }
    build_image();
    let size = docker(&["image", "ls", IMAGE, "--format", "{{.Size}}"]).unwrap();
    eprintln!("image {IMAGE}: {size}");
    let lake = tempfile::tempdir().unwrap();
    let query = write_lake(lake.path());
    let text = std::fs::read_to_string(repo().join("docs/examples/quickstart.yaml")).unwrap();
    let mut manifest = Manifest::parse(&text).unwrap();
    // Two replicas of every partition: a shard that restarts or drains
    // leaves the other to answer.
    manifest.collections[0].spec.replication_factor = 2;
    let key =
        String::from_utf8(manifest.secrets["quickstart-admin-key"]["api-key"].clone()).unwrap();
    let cluster = manifest.names().cluster;
    let _ = lifecycle::down(&cluster);
    let opts = lifecycle::UpOptions {
        image: Some(IMAGE.into()),
        lake: Some(lake.path().to_path_buf()),
        ready_within: Duration::from_secs(240),
    };
    let started = Instant::now();
    let up = lifecycle::up(manifest, &opts, spawn_kubelet).await;
    let result = async {
        let mut up = up?;
        eprintln!("ready after {:.1} s at {}", up.ready_after, up.address);
        let list = cli(&up.address, &key, &["collections", "list"]).map_err(anyhow::Error::msg)?;
        anyhow::ensure!(list.contains("vectors"), "collections list: {list}");
        let vector = query
            .iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(",");
        // The collection loads in the background: retry until every
        // partition answers.
        let deadline = Instant::now() + Duration::from_secs(120);
        let answer = loop {
            match cli(
                &up.address,
                &key,
                &[
                    "search",
                    "--collection",
                    "vectors",
                    "--vector",
                    &vector,
                    "-k",
                    "3",
                ],
            ) {
                Ok(a) if !a.contains("PARTIAL") => break a,
                Ok(_) if Instant::now() < deadline => {
                    eprintln!("search answered from part of the partitions: loading");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                Err(e) if Instant::now() < deadline => {
                    eprintln!("search not yet: {}", e.lines().last().unwrap_or(""));
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
                Ok(a) => anyhow::bail!("only partial answers within 120 s: {a}"),
                Err(e) => anyhow::bail!("search: {e}"),
            }
        };
        eprintln!(
            "first answer {:.1} s after up began:\n{answer}",
            started.elapsed().as_secs_f64()
        );
        // Id 0's own vector: it is its nearest neighbour.
        let top = answer.lines().find_map(|l| {
            l.split_whitespace()
                .collect::<Vec<_>>()
                .get(..2)
                .filter(|w| w[0] == "1")
                .map(|w| w[1].to_string())
        });
        anyhow::ensure!(
            top.as_deref() == Some("0"),
            "id 0's own vector is its nearest: {answer}"
        );
        // A killed shard pod is started again by the kubelet.
        let shard = "rulake-quickstart-quickstart-shard-1";
        docker(&["kill", shard])?;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let status = kubelet::status(&up.state);
            let s = &status["quickstart-shard-1"];
            if s.restarts >= 1 && s.ready {
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "shard not back: {status:?}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        scale_and_roll(&mut up, &key, &vector).await
    }
    .await;
    let removed = lifecycle::down(&cluster).unwrap();
    let _ = docker(&["image", "rm", IMAGE_B]);
    assert!(removed >= 7, "down removed {removed} objects");
    assert_eq!(leftovers(&cluster), 0, "down left something behind");
    result.unwrap();
}

/// Under a query load: shards 2 → 3 → 2 through the operator's steps, then
/// every pod rolled to [`IMAGE_B`] in the operator's order. No query may
/// fail or answer in part, and every deleted pod must exit 0 (a shard
/// drained, not killed).
async fn scale_and_roll(up: &mut lifecycle::Up, key: &str, vector: &str) -> anyhow::Result<()> {
    let within = Duration::from_secs(180);
    // Every partition warm on both replicas after the kill above.
    wait_complete(&up.address, key, vector).await?;
    let (load, thread) = Load::start(&up.address, key, "vectors", vector);
    let started = Instant::now();
    let outcome = async {
        ops::scale_shards(up, 3, within).await?;
        eprintln!("scaled to 3 shards after {:.1} s", started.elapsed().as_secs_f64());
        let stopped = ops::scale_shards(up, 2, within).await?;
        eprintln!("scaled back to 2 after {:.1} s", started.elapsed().as_secs_f64());
        anyhow::ensure!(
            stopped.iter().all(|s| s.exit_code == 0),
            "a drained shard did not exit cleanly: {stopped:?}"
        );
        let before = load.counts();
        let dockerfile = format!("FROM {IMAGE}\nLABEL io.rulake.build=b\n");
        let mut build = Command::new("docker")
            .args(["build", "--quiet", "--tag", IMAGE_B, "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()?;
        use std::io::Write;
        build.stdin.take().unwrap().write_all(dockerfile.as_bytes())?;
        anyhow::ensure!(build.wait()?.success(), "docker build {IMAGE_B} failed");
        let service = load.address.clone();
        let mut moved = |address: &str| *service.lock().unwrap() = address.to_string();
        let roll_start = Instant::now();
        let replaced = ops::roll(up, IMAGE_B, within, &mut moved).await?;
        let after = load.counts();
        eprintln!(
            "rolled {} pods to {IMAGE_B} in {:.1} s; queries during the roll: {} answered, {} failed, {} partial",
            replaced.len(),
            roll_start.elapsed().as_secs_f64(),
            after.0 - before.0,
            after.1 - before.1,
            after.2 - before.2
        );
        for r in &replaced {
            eprintln!(
                "  {}: stopped in {:.1} s (exit {}), replacement ready after {:.1} s",
                r.pod,
                r.stopped.took.as_secs_f64(),
                r.stopped.exit_code,
                r.seconds
            );
        }
        anyhow::ensure!(
            replaced.iter().all(|r| r.stopped.exit_code == 0),
            "a pod did not stop cleanly"
        );
        // A shard drains on SIGTERM: it gives coordinators a second to
        // route around it before it stops.
        anyhow::ensure!(
            replaced
                .iter()
                .filter(|r| r.pod.contains("-shard-"))
                .all(|r| r.stopped.took >= Duration::from_secs(1)),
            "a shard stopped without draining: {replaced:?}"
        );
        for c in docker(&["ps", "-q", "--filter", &format!("label={LABEL}={}", up.cluster)])?.lines() {
            let image = docker(&["inspect", "--format", "{{.Config.Image}}", c])?;
            anyhow::ensure!(image == IMAGE_B, "{c} still runs {image}");
        }
        Ok(())
    }
    .await;
    load.stop.store(true, Ordering::SeqCst);
    thread.join().unwrap();
    let (ok, failed, partial) = load.counts();
    eprintln!("query load: {ok} answered, {failed} failed, {partial} partial");
    outcome?;
    let errors = load.errors.lock().unwrap();
    anyhow::ensure!(ok > 20, "only {ok} queries ran");
    anyhow::ensure!(
        errors.is_empty(),
        "{} queries failed or answered in part; first: {:?}",
        errors.len(),
        &errors[..errors.len().min(3)]
    );
    Ok(())
}

/// Until a search answers from every partition.
async fn wait_complete(address: &str, key: &str, vector: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let args = [
            "search",
            "--collection",
            "vectors",
            "--vector",
            vector,
            "-k",
            "3",
        ];
        match cli(address, key, &args) {
            Ok(a) if !a.contains("PARTIAL") => return Ok(()),
            r if Instant::now() > deadline => anyhow::bail!("no complete answer: {r:?}"),
            _ => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
}
