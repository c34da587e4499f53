//! Mutual TLS between cluster roles: the flags every internal endpoint and
//! every internal client shares, and what they turn into.
//!
//! One cluster CA signs every member's certificate. A member serves its
//! internal port (Raft and catalog on meta, `ShardService` on shards) only
//! to peers presenting a certificate that CA signed, and dials its peers
//! with its own certificate, checking theirs against the same CA. So a
//! process without a cluster certificate can neither join (register a
//! shard, heartbeat, vote) nor call an internal RPC. The files are checked
//! for rotation on an interval: new connections use the new certificates,
//! open ones finish on the old.
//!
//! Client-facing TLS is separate (`--tls-cert` on the public API): clients
//! are not cluster members.

use rulake_catalog::Transport;
use rulake_tls::{ClientTlsFiles, ReloadingAcceptor, ReloadingConnector, ServerConn, TlsFiles};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// `--cluster-ca`, `--cluster-cert`, `--cluster-key`: all three or none.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ClusterTlsArgs {
    /// PEM bundle of the cluster CA. With it (and --cluster-cert,
    /// --cluster-key), every connection between RuLake processes is mutual
    /// TLS and peers without a certificate this CA signed are refused.
    #[arg(
        long,
        env = "RULAKE_CLUSTER_CA",
        requires_all = ["cluster_cert", "cluster_key"]
    )]
    pub cluster_ca: Option<PathBuf>,
    /// PEM certificate chain of this process, signed by the cluster CA; its
    /// names must cover the address peers dial (--advertise or --listen).
    #[arg(long, env = "RULAKE_CLUSTER_CERT", requires = "cluster_ca")]
    pub cluster_cert: Option<PathBuf>,
    /// PEM private key of --cluster-cert.
    #[arg(long, env = "RULAKE_CLUSTER_KEY", requires = "cluster_ca")]
    pub cluster_key: Option<PathBuf>,
    /// How often the cluster TLS files are checked for a rotation, seconds.
    #[arg(long, default_value_t = 10.0)]
    pub cluster_tls_reload: f64,
    /// Development only (`rulake dev` passes it to its children): serve
    /// and dial the internal ports without TLS, so anyone who reaches them
    /// can read and write the catalog and scan the shards. Ignored when
    /// the TLS files are given.
    #[arg(long, env = "RULAKE_CLUSTER_INSECURE")]
    pub cluster_insecure: bool,
}

/// Mutual TLS between members, loaded and watched for rotation; the
/// watches stop when this is dropped.
pub struct ClusterTls {
    acceptor: Arc<ReloadingAcceptor>,
    connector: Arc<ReloadingConnector>,
    watches: [tokio::task::JoinHandle<()>; 2],
}

impl Drop for ClusterTls {
    fn drop(&mut self) {
        for w in &self.watches {
            w.abort();
        }
    }
}

impl ClusterTlsArgs {
    /// The configured mutual TLS, or `None` when the flags are unset. Files
    /// that do not make a valid configuration are an error: a process asked
    /// for TLS never falls back to plaintext.
    ///
    /// Without the files, a role refuses to start unless
    /// `--cluster-insecure` says plaintext is intended: the internal ports
    /// carry the catalog and every vector, so they are never open by
    /// accident.
    pub fn load(&self) -> anyhow::Result<Option<ClusterTls>> {
        let (Some(ca), Some(cert), Some(key)) =
            (&self.cluster_ca, &self.cluster_cert, &self.cluster_key)
        else {
            if !self.cluster_insecure {
                anyhow::bail!(
                    "the internal ports need mutual TLS: give --cluster-ca, --cluster-cert and --cluster-key (the operator makes them), or --cluster-insecure on a development machine"
                );
            }
            eprintln!("rulake: --cluster-insecure: internal ports without TLS (development only)");
            return Ok(None);
        };
        let acceptor = ReloadingAcceptor::new(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: Some(ca.clone()),
        })?;
        let connector = ReloadingConnector::new(ClientTlsFiles {
            ca: ca.clone(),
            identity: Some((cert.clone(), key.clone())),
        })?;
        let every = Duration::from_secs_f64(self.cluster_tls_reload.max(0.1));
        let watches = [acceptor.watch(every), connector.watch(every)];
        Ok(Some(ClusterTls {
            acceptor,
            connector,
            watches,
        }))
    }

    /// The files the flags name (never readable as a source).
    pub fn files(&self) -> Vec<&PathBuf> {
        [&self.cluster_ca, &self.cluster_cert, &self.cluster_key]
            .into_iter()
            .flatten()
            .collect()
    }

    /// The flags as arguments, for starting other processes with them.
    pub fn to_args(&self) -> Vec<String> {
        let mut v = Vec::new();
        for (flag, p) in [
            ("--cluster-ca", &self.cluster_ca),
            ("--cluster-cert", &self.cluster_cert),
            ("--cluster-key", &self.cluster_key),
        ] {
            if let Some(p) = p {
                v.push(flag.to_owned());
                v.push(p.display().to_string());
            }
        }
        if self.cluster_insecure {
            v.push("--cluster-insecure".into());
        }
        v
    }
}

/// Internal channels through `tls`: plaintext when it is `None`.
pub fn transport(tls: Option<&ClusterTls>) -> Transport {
    let plain = Transport::default();
    match tls {
        None => plain,
        Some(t) => {
            let connector = t.connector.connector();
            plain.with_connect(move |ep| ep.connect_with_connector_lazy(connector.clone()))
        }
    }
}

/// The connections an internal port accepts: only mutual-TLS peers when
/// `tls` is set.
pub fn incoming(
    listener: tokio::net::TcpListener,
    tls: Option<&ClusterTls>,
) -> Pin<Box<dyn futures::Stream<Item = std::io::Result<ServerConn>> + Send>> {
    rulake_tls::incoming(listener, tls.map(|t| t.acceptor.clone()))
}
