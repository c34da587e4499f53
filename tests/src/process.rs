//! RuLake processes under test: one way to start, signal, stop and reap
//! them, with their output kept.
//!
//! Every child writes stdout and stderr to its own log file. When a test
//! is done with a child (stopped, killed, or dropped at the end of the
//! test) the log is read, and a line from Rust's panic handler fails the
//! test: a role that panicked in a background task while the test's own
//! checks passed is still a bug. A graceful stop (SIGTERM) must also end
//! with exit status 0. When the test fails for another reason, the end of
//! every child's log is printed, so the failure comes with the processes'
//! own account.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The `rulake` command line under test.
///
/// `RULAKE_BIN` names a binary (an image's, say). Otherwise it is
/// `rulake-under-test`, which cargo builds for this crate's integration
/// tests from the same library call as the `rulake` binary, with the
/// tests' feature set, next to the test executables' `deps/` directory: so
/// in any run that builds this crate's tests (`cargo nextest run
/// --workspace`, or `-p rulake-tests -p rulake-chaos`) it matches the
/// sources.
pub fn rulake_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("RULAKE_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    let name = format!("rulake-under-test{}", std::env::consts::EXE_SUFFIX);
    // A workspace binary (`chaos-run`) sits beside it in <target>/<profile>.
    let beside = exe.with_file_name(&name);
    if beside.exists() {
        return beside;
    }
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executables live in <target>/<profile>/deps");
    let bin = dir.join(name);
    assert!(
        bin.exists(),
        "{} is not built: run the tests with `cargo nextest run --workspace` \
         (or add `-p rulake-tests`), or set RULAKE_BIN",
        bin.display()
    );
    bin
}

/// A `rulake` command with the tests' log level.
pub fn rulake() -> Command {
    rulake_in(None)
}

/// Run the `rulake` command line with `args` as a user would: against the
/// server at `addr` when one is given (`RULAKE_ADDR`), with `env` set and no
/// ambient credential or backtrace setting. Returns whether it succeeded,
/// and its output (standard output, then standard error).
pub fn cli(addr: Option<&str>, env: &[(&str, &str)], args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new(rulake_bin());
    cmd.args(args)
        .env_remove("RULAKE_API_KEY")
        .env_remove("RULAKE_TOKEN_FILE")
        .env_remove("RUST_BACKTRACE");
    if let Some(addr) = addr {
        cmd.env("RULAKE_ADDR", format!("http://{addr}"));
    }
    cmd.envs(env.iter().copied());
    let out = cmd.output().expect("run rulake");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// [`rulake`] run inside network namespace `netns` (`ip netns exec`) when
/// one is given, as a process on a host of its own.
pub fn rulake_in(netns: Option<&str>) -> Command {
    let mut c = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(rulake_bin());
            c
        }
        None => Command::new(rulake_bin()),
    };
    c.env("RULAKE_LOG", "warn");
    // Tests keep their lakes in temporary directories: that is the prefix
    // sources may use (each role still fences off its own files).
    c.env("RULAKE_SOURCE_ALLOW", temp_lakes());
    // Roles refuse plaintext internal ports unless told; the tests that
    // want mutual TLS give the certificate flags, which take precedence.
    c.env("RULAKE_CLUSTER_INSECURE", "true");
    c
}

/// The source prefix of test lakes: the system's temporary directory as a
/// `file://` URL, symlinks resolved.
pub fn temp_lakes() -> String {
    let tmp = std::env::temp_dir();
    let tmp = tmp.canonicalize().unwrap_or(tmp);
    format!("file://{}/", tmp.display())
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a loopback port")
}

/// `127.0.0.1:<free port>`.
pub fn free_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// Wait until something accepts TCP connections on `addr`.
pub fn wait_listening(addr: &str, what: &str) {
    let start = Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{what} did not listen on {addr} within 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Send `sig` (e.g. `STOP`, `TERM`) with the shell's built-in `kill`, which
/// every POSIX `sh` has (a fresh Debian has no `/bin/kill` without procps).
pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("sh")
        .args(["-c", &format!("kill -s {sig} {pid}")])
        .status()
        .expect("run sh")
        .success();
    assert!(ok, "kill -s {sig} {pid} failed");
}

/// Where the processes of a cluster run: each one's listen address and
/// network namespace. [`Loopback`] puts every process on the host's
/// loopback; a fault scenario gives each its own namespace so that links
/// between two processes can be cut.
pub trait Hosts: Send + Sync {
    /// A listen address for the process called `name` (`meta-1`,
    /// `shard-2`, `coordinator-1`).
    fn addr(&self, name: &str) -> String;
    /// The network namespace the process listening on `addr` runs in
    /// (`None`: the host's own).
    fn netns(&self, addr: &str) -> Option<String>;
}

/// Every process on loopback, each on a free port.
#[derive(Clone, Copy, Debug, Default)]
pub struct Loopback;

impl Hosts for Loopback {
    fn addr(&self, _name: &str) -> String {
        free_addr()
    }
    fn netns(&self, _addr: &str) -> Option<String> {
        None
    }
}

/// A child process with its output in a log file.
#[derive(Debug)]
pub struct Proc {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    /// Start `cmd` as `name`, its output appended to `log` (a restarted
    /// process keeps one log across its lives).
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Proc {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("open {}: {e}", log.display()));
        let err = out.try_clone().expect("clone log handle");
        let child = cmd
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        Proc {
            name: name.to_owned(),
            child: Some(child),
            log: log.to_owned(),
        }
    }

    /// Its process id (it must be running).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Whether it has been stopped or killed through this handle.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Its exit status if it has exited on its own (it is then reaped and
    /// no longer running); `None` while it runs.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        let status = self.child.as_mut()?.try_wait().ok()??;
        self.child = None;
        Some(status)
    }

    /// The log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Pause (SIGSTOP).
    pub fn pause(&self) {
        signal(self.pid(), "STOP");
    }

    /// Resume (SIGCONT).
    pub fn resume(&self) {
        signal(self.pid(), "CONT");
    }

    /// SIGKILL and reap; the log must show no panic.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = signal_quietly(c.id(), "CONT");
            let _ = c.kill();
            let _ = c.wait();
            self.assert_no_panic();
        }
    }

    /// SIGTERM, wait up to `grace` for a clean exit (status 0, no panic in
    /// the log); returns how long the stop took.
    pub fn stop(&mut self, grace: Duration) -> Duration {
        let Some(mut c) = self.child.take() else {
            return Duration::ZERO;
        };
        let start = Instant::now();
        signal(c.id(), "TERM");
        let status = wait_for(&mut c, grace);
        let took = start.elapsed();
        match status {
            Some(s) => {
                self.assert_no_panic();
                assert!(
                    s.success(),
                    "{} exited with {s} after SIGTERM; log:\n{}",
                    self.name,
                    self.tail(40)
                );
            }
            None => {
                let _ = c.kill();
                let _ = c.wait();
                panic!(
                    "{} did not exit within {grace:?} of SIGTERM; log:\n{}",
                    self.name,
                    self.tail(40)
                );
            }
        }
        took
    }

    /// Fail the test if the log holds a panic message.
    pub fn assert_no_panic(&self) {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        if let Some(line) = log.lines().find(|l| l.contains("panicked at")) {
            panic!("{} panicked: {line}\nlog:\n{}", self.name, self.tail(40));
        }
    }

    /// The last `n` lines of the log.
    pub fn tail(&self, n: usize) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

fn signal_quietly(pid: u32, sig: &str) -> std::io::Result<ExitStatus> {
    Command::new("sh")
        .args(["-c", &format!("kill -s {sig} {pid} 2>/dev/null")])
        .status()
}

fn wait_for(c: &mut Child, grace: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + grace;
    loop {
        if let Ok(Some(s)) = c.try_wait() {
            return Some(s);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(mut c) = self.child.take() {
                let _ = signal_quietly(c.id(), "CONT");
                let _ = c.kill();
                let _ = c.wait();
            }
            eprintln!(
                "--- {} (last lines of its log)\n{}",
                self.name,
                self.tail(30)
            );
        } else {
            self.kill();
        }
    }
}
