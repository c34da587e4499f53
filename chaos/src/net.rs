//! Hosts of their own on one machine, so a scenario can cut, slow or drop
//! the link between two processes.
//!
//! Every process gets a network namespace with one interface on a bridge
//! in the host's namespace, and an address of its own on a private /24.
//! The scenario's clients stay in the host's namespace and reach every
//! process through the bridge, so a fault between two members never hides
//! the clients' view of it. Faults are iptables rules and `tc tbf` queues
//! inside the namespaces (this kernel has no `netem`):
//!
//! - a cut from A to B drops A's packets to B and B's packets from A, so a
//!   one-way cut is possible (over TCP it stalls both directions of every
//!   connection, as a real one-way fault does);
//! - a slow link is a token bucket on both ends of a host's interface;
//! - a lossy link drops a share of a host's packets at random.
//!
//! Needs root (namespaces, iptables). Everything made is removed on drop.

use rulake_tests::Hosts;
use std::collections::BTreeMap;
use std::process::Command;
use std::sync::{Arc, Mutex};

/// The port every process listens on inside its own namespace.
const PORT: u16 = 7000;

/// The private network and its hosts.
pub struct Net {
    tag: String,
    subnet: u8,
    hosts: Mutex<BTreeMap<String, Host>>,
}

#[derive(Clone, Debug)]
struct Host {
    ns: String,
    ip: String,
    veth: String,
}

impl Net {
    /// A bridge with no hosts yet. Fails when namespaces cannot be made
    /// (not root, no `ip`).
    pub fn create() -> anyhow::Result<Arc<Net>> {
        let pid = std::process::id();
        let net = Net {
            tag: format!("rl{}", pid % 100_000),
            subnet: (pid % 200) as u8 + 20,
            hosts: Mutex::default(),
        };
        let br = net.bridge();
        // A stale bridge of an earlier run with the same tag goes first.
        let _ = quiet(&["ip", "link", "del", &br]);
        sh(&["ip", "link", "add", &br, "type", "bridge"])?;
        sh(&[
            "ip",
            "addr",
            "add",
            &format!("{}.1/24", net.prefix()),
            "dev",
            &br,
        ])?;
        sh(&["ip", "link", "set", &br, "up"])?;
        // Docker's bridge filtering drops forwarded frames by default.
        sh(&[
            "iptables", "-I", "FORWARD", "-i", &br, "-o", &br, "-j", "ACCEPT",
        ])?;
        Ok(Arc::new(net))
    }

    fn bridge(&self) -> String {
        format!("{}br", self.tag)
    }

    fn prefix(&self) -> String {
        format!("10.77.{}", self.subnet)
    }

    /// The host of process `name`, made on first use.
    fn host(&self, name: &str) -> anyhow::Result<Host> {
        let mut hosts = self.hosts.lock().unwrap();
        if let Some(h) = hosts.get(name) {
            return Ok(h.clone());
        }
        let i = hosts.len() + 10;
        let h = Host {
            ns: format!("{}-h{i}", self.tag),
            ip: format!("{}.{i}", self.prefix()),
            veth: format!("{}h{i}", self.tag),
        };
        let _ = quiet(&["ip", "netns", "del", &h.ns]);
        sh(&["ip", "netns", "add", &h.ns])?;
        sh(&[
            "ip", "link", "add", &h.veth, "type", "veth", "peer", "name", "eth0", "netns", &h.ns,
        ])?;
        sh(&["ip", "link", "set", &h.veth, "master", &self.bridge(), "up"])?;
        in_ns(
            &h.ns,
            &["ip", "addr", "add", &format!("{}/24", h.ip), "dev", "eth0"],
        )?;
        in_ns(&h.ns, &["ip", "link", "set", "eth0", "up"])?;
        in_ns(&h.ns, &["ip", "link", "set", "lo", "up"])?;
        hosts.insert(name.to_owned(), h.clone());
        Ok(h)
    }

    /// The processes that have a host, by name.
    pub fn names(&self) -> Vec<String> {
        self.hosts.lock().unwrap().keys().cloned().collect()
    }

    fn named(&self, name: &str) -> Host {
        self.hosts.lock().unwrap()[name].clone()
    }

    /// Drop every packet from `from` to `to` (process names).
    pub fn cut(&self, from: &str, to: &str) -> anyhow::Result<()> {
        let (a, b) = (self.named(from), self.named(to));
        in_ns(
            &a.ns,
            &["iptables", "-A", "OUTPUT", "-d", &b.ip, "-j", "DROP"],
        )?;
        in_ns(
            &b.ns,
            &["iptables", "-A", "INPUT", "-s", &a.ip, "-j", "DROP"],
        )
    }

    /// Cut both ways between every member of `left` and every member of
    /// `right`.
    pub fn split(&self, left: &[String], right: &[String]) -> anyhow::Result<()> {
        for l in left {
            for r in right {
                self.cut(l, r)?;
                self.cut(r, l)?;
            }
        }
        Ok(())
    }

    /// Limit `name`'s link to `kbit` kilobits per second each way.
    pub fn slow(&self, name: &str, kbit: u32) -> anyhow::Result<()> {
        let h = self.named(name);
        let rate = format!("{kbit}kbit");
        let tbf = ["tbf", "rate", &rate, "burst", "16kbit", "latency", "500ms"];
        let mut out = vec!["tc", "qdisc", "add", "dev", "eth0", "root"];
        out.extend(tbf);
        in_ns(&h.ns, &out)?;
        let mut inbound = vec!["tc", "qdisc", "add", "dev", &h.veth, "root"];
        inbound.extend(tbf);
        sh(&inbound)
    }

    /// Drop `percent` % of `name`'s packets each way, at random.
    pub fn lossy(&self, name: &str, percent: u32) -> anyhow::Result<()> {
        let h = self.named(name);
        let p = format!("{:.2}", percent as f64 / 100.0);
        for chain in ["INPUT", "OUTPUT"] {
            let random = ["-m", "statistic", "--mode", "random", "--probability", &p];
            let mut rule = vec!["iptables", "-A", chain];
            rule.extend(random);
            rule.extend(["-j", "DROP"]);
            in_ns(&h.ns, &rule)?;
        }
        Ok(())
    }

    /// Remove every fault: rules and queues on every host.
    pub fn heal(&self) {
        let hosts: Vec<Host> = self.hosts.lock().unwrap().values().cloned().collect();
        for h in hosts {
            let _ = in_ns(&h.ns, &["iptables", "-F"]);
            let _ = quiet(&[
                "ip", "netns", "exec", &h.ns, "tc", "qdisc", "del", "dev", "eth0", "root",
            ]);
            let _ = quiet(&["tc", "qdisc", "del", "dev", &h.veth, "root"]);
        }
    }
}

impl Hosts for Net {
    fn addr(&self, name: &str) -> String {
        let h = self
            .host(name)
            .unwrap_or_else(|e| panic!("a network namespace for {name}: {e:#}"));
        format!("{}:{PORT}", h.ip)
    }

    fn netns(&self, addr: &str) -> Option<String> {
        let ip = addr.rsplit_once(':').map_or(addr, |(ip, _)| ip);
        let hosts = self.hosts.lock().unwrap();
        hosts.values().find(|h| h.ip == ip).map(|h| h.ns.clone())
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let hosts: Vec<Host> = self.hosts.lock().unwrap().values().cloned().collect();
        for h in hosts {
            let _ = quiet(&["ip", "netns", "del", &h.ns]);
            let _ = quiet(&["ip", "link", "del", &h.veth]);
        }
        let br = self.bridge();
        let _ = quiet(&[
            "iptables", "-D", "FORWARD", "-i", &br, "-o", &br, "-j", "ACCEPT",
        ]);
        let _ = quiet(&["ip", "link", "del", &br]);
    }
}

fn in_ns(ns: &str, args: &[&str]) -> anyhow::Result<()> {
    let mut full = vec!["ip", "netns", "exec", ns];
    full.extend(args);
    sh(&full)
}

/// Run `args`; an error names the command and what it printed.
fn sh(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(args[0]).args(&args[1..]).output()?;
    if !out.status.success() {
        anyhow::bail!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Run `args`, ignoring how it went (clean-up of what may not exist).
fn quiet(args: &[&str]) -> std::io::Result<std::process::Output> {
    Command::new(args[0]).args(&args[1..]).output()
}
