//! `rulake coordinator`: the public API over a cluster. It follows the
//! catalog, routes each query to one replica of every partition on the
//! shard nodes and merges their answers; it holds nothing durable.

use crate::cluster_tls::{self, ClusterTlsArgs};
use crate::shutdown::{Shutdown, GRACE};
use rulake_catalog::{CatalogClient, Follower};
use rulake_coordinator::{Coordinator, RouterConfig};
use std::sync::Arc;
use std::time::Duration;

/// `rulake coordinator` options: the public API's flags plus the cluster's.
#[derive(clap::Args)]
pub struct CoordinatorArgs {
    /// Meta members, `host:port,...`.
    #[arg(long, value_delimiter = ',', required = true, env = "RULAKE_META")]
    pub meta: Vec<String>,
    /// A shard request still running after this many milliseconds is
    /// duplicated on another replica.
    #[arg(long, default_value_t = 50)]
    pub hedge_ms: u64,
    /// Catalog poll interval, milliseconds.
    #[arg(long, default_value_t = 200)]
    pub poll_ms: u64,
    /// Mutual TLS towards the meta group and the shard nodes.
    #[command(flatten)]
    pub tls: ClusterTlsArgs,
    /// The public API's flags, as `rulake serve` takes them.
    #[command(flatten)]
    pub serve: crate::serve::Args,
}

/// Run a coordinator until `shutdown` fires.
pub async fn run(a: CoordinatorArgs, shutdown: Shutdown) -> anyhow::Result<()> {
    crate::serve::check(&a.serve)?;
    a.serve
        .install_source_policy("coordinator", &a.tls.files())?;
    let tls = a.tls.load()?;
    let transport = cluster_tls::transport(tls.as_ref());
    let meta = CatalogClient::with_transport(&a.meta, &transport)?;
    let follower = Follower::spawn(meta.clone(), Duration::from_millis(a.poll_ms.max(10)));
    if !follower.catch_up(1, Duration::from_secs(60)).await {
        anyhow::bail!("could not read the catalog from {}", a.meta.join(","));
    }
    let managed = match &a.serve.managed_url {
        Some(u) => u.clone(),
        None => {
            let dir = a.serve.data_dir.join("managed");
            std::fs::create_dir_all(&dir)?;
            format!("file://{}", std::fs::canonicalize(&dir)?.display())
        }
    };
    let router = RouterConfig {
        hedge_delay: Duration::from_millis(a.hedge_ms),
        request_timeout: a.serve.request_timeout,
        transport,
        ..RouterConfig::default()
    };
    let coord = Coordinator::open_remote(meta, follower, &managed, router).await?;
    if let Some(r) = coord.router() {
        r.refresh_status().await;
    }
    let engine = Arc::new(coord.engine().clone());
    let label = format!("meta {}, managed files at {managed}", a.meta.join(","));
    crate::serve::serve_api(
        &a.serve,
        coord,
        &engine,
        None,
        "coordinator",
        &label,
        &shutdown,
    )
    .await?;
    shutdown.wait(GRACE).await;
    eprintln!("rulake coordinator: stopped");
    Ok(())
}
