//! What the container tests share: the image made from this run's
//! binaries, the kubelet, the command line against the cluster's API, and
//! the check that `down` left nothing behind.

use rulake_chaos::cluster::docker::{docker, LABEL};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The image the tests run: the Dockerfile with this run's binaries.
pub const IMAGE: &str = "rulake:chaos-test";

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Whether a Docker Engine answers; without one the container tests are
/// skipped, except under `CI=true`, where that is a failure.
pub fn engine_available() -> bool {
    let ok = docker(&["version", "--format", "{{.Server.Version}}"]).is_ok();
    if !ok && std::env::var("CI").as_deref() == Ok("true") {
        panic!("no Docker Engine, and CI=true: the container tests must run");
    }
    ok
}

/// Untagged images (a build's first stage, an image whose tag moved on).
fn dangling() -> Vec<String> {
    docker(&["images", "-q", "--filter", "dangling=true"])
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// `rulake:chaos-test`: the Dockerfile with the binaries this test run
/// built, on `rulake-base:bookworm` (made first when missing). The
/// untagged images the build leaves (its build stage, the previous
/// `rulake:chaos-test`) are removed.
pub fn build_image() {
    let before = dangling();
    if docker(&["image", "inspect", "rulake-base:bookworm"]).is_err() {
        let st = Command::new("bash")
            .arg(repo().join("ci/base-image.sh"))
            .arg("--base-only")
            .status()
            .unwrap();
        assert!(st.success(), "ci/base-image.sh failed");
    }
    let ctx = tempfile::tempdir().unwrap();
    std::fs::copy(repo().join("Dockerfile"), ctx.path().join("Dockerfile")).unwrap();
    let dist = ctx.path().join("dist");
    std::fs::create_dir(&dist).unwrap();
    let rulake = rulake_tests::process::rulake_bin();
    std::fs::copy(&rulake, dist.join("rulake")).unwrap();
    let operator = rulake.with_file_name("rulake-operator");
    if operator.exists() {
        std::fs::copy(&operator, dist.join("rulake-operator")).unwrap();
    } else {
        // Only the `rulake` binary runs in these pods.
        std::fs::write(dist.join("rulake-operator"), "#!/bin/sh\nexit 1\n").unwrap();
    }
    let st = Command::new("docker")
        .args([
            "build",
            "--quiet",
            "--build-arg",
            "BINARIES=dist",
            "--build-arg",
            "BUILDER=rulake-base:bookworm",
            "--tag",
            IMAGE,
        ])
        .arg(ctx.path())
        .status()
        .unwrap();
    assert!(st.success(), "docker build failed");
    for id in dangling().iter().filter(|id| !before.contains(id)) {
        let _ = docker(&["image", "rm", id]);
    }
}

/// Run the `rulake` command line against the API at `address` with the
/// admin `key`: its standard output, or its standard error on failure.
pub fn cli(address: &str, key: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(rulake_tests::process::rulake_bin())
        .args(args)
        .args(["--addr", &format!("http://{address}")])
        .env("RULAKE_API_KEY", key)
        .env("RULAKE_LOG", "warn")
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Start the harness's kubelet over the cluster state in `state`,
/// logging to `<state>/kubelet.log`; answers its process id.
pub fn spawn_kubelet(state: &Path) -> anyhow::Result<u32> {
    let child = Command::new(env!("CARGO_BIN_EXE_cluster"))
        .arg("kubelet")
        .arg("--state")
        .arg(state)
        .stdout(std::fs::File::create(state.join("kubelet.log"))?)
        .stderr(std::process::Stdio::inherit())
        .spawn()?;
    Ok(child.id())
}

/// Containers, networks and volumes still labelled as `cluster`'s.
pub fn leftovers(cluster: &str) -> usize {
    let filter = format!("label={LABEL}={cluster}");
    ["ps -aq", "network ls -q", "volume ls -q"]
        .iter()
        .map(|verb| {
            let mut args: Vec<&str> = verb.split(' ').collect();
            args.extend(["--filter", &filter]);
            docker(&args)
                .unwrap()
                .lines()
                .filter(|l| !l.is_empty())
                .count()
        })
        .sum()
}

/// A query load through the command line: one search after another at
/// the client Service's current address, counting answers, failures and
/// partial answers.
pub struct Load {
    /// Where the searches go (moved when the client Service moves).
    pub address: Arc<Mutex<String>>,
    ok: AtomicU64,
    failed: AtomicU64,
    partial: AtomicU64,
    /// What failed or answered in part.
    pub errors: Mutex<Vec<String>>,
    /// Set to end the loop.
    pub stop: AtomicBool,
}

impl Load {
    /// Search `collection` for `vector` in a loop until `stop` is set.
    pub fn start(
        address: &str,
        key: &str,
        collection: &str,
        vector: &str,
    ) -> (Arc<Load>, std::thread::JoinHandle<()>) {
        let load = Arc::new(Load {
            address: Arc::new(Mutex::new(address.to_string())),
            ok: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            partial: AtomicU64::new(0),
            errors: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let (l, key, collection, vector) = (
            load.clone(),
            key.to_string(),
            collection.to_string(),
            vector.to_string(),
        );
        let thread = std::thread::spawn(move || {
            while !l.stop.load(Ordering::SeqCst) {
                let address = l.address.lock().unwrap().clone();
                let args = [
                    "search",
                    "--collection",
                    &collection,
                    "--vector",
                    &vector,
                    "-k",
                    "3",
                ];
                match cli(&address, &key, &args) {
                    Ok(a) if a.contains("PARTIAL") => {
                        l.partial.fetch_add(1, Ordering::SeqCst);
                        l.errors.lock().unwrap().push(format!("partial: {a}"));
                    }
                    Ok(_) => {
                        l.ok.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => {
                        l.failed.fetch_add(1, Ordering::SeqCst);
                        l.errors.lock().unwrap().push(e);
                    }
                }
            }
        });
        (load, thread)
    }

    /// (answered, failed, partial) so far.
    pub fn counts(&self) -> (u64, u64, u64) {
        (
            self.ok.load(Ordering::SeqCst),
            self.failed.load(Ordering::SeqCst),
            self.partial.load(Ordering::SeqCst),
        )
    }
}
