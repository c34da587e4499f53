//! `rulake serve`: the public API on one port, with the standard gRPC
//! health service (so load balancers and Kubernetes probes need nothing
//! RuLake-specific) and server reflection (so `grpcurl` works without the
//! proto files). Stops cleanly on Ctrl-C or SIGTERM: in-flight calls finish,
//! new ones are refused.

use rulake_api::{router, Api, Limits};
use rulake_engine::{CacheConfig, RuLake};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// `rulake serve` options.
#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:50051", env = "RULAKE_LISTEN")]
    pub listen: SocketAddr,
    /// Directory for the persisted partition cache.
    #[arg(long, default_value = "rulake-data", env = "RULAKE_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Cache budget in bytes.
    #[arg(long, default_value_t = 4 << 30, env = "RULAKE_CACHE_BYTES")]
    pub cache_bytes: usize,
    /// Most queries in one BatchSearch.
    #[arg(long, default_value_t = 1024)]
    pub max_batch: usize,
    /// Upper bound on any request's run time; a client's own shorter
    /// deadline (grpc-timeout) applies first.
    #[arg(long, default_value = "30", value_parser = parse_secs)]
    pub request_timeout: Duration,
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .filter(|v| *v > 0.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("{s:?} is not a positive number of seconds"))
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    std::fs::create_dir_all(&a.data_dir)?;
    let engine = Arc::new(RuLake::new(CacheConfig {
        budget_bytes: a.cache_bytes,
        persist_dir: Some(a.data_dir.join("cache")),
    }));
    let api = Api::new(
        engine,
        Limits {
            max_batch: a.max_batch,
        },
    );
    let (health_reporter, health) = tonic_health::server::health_reporter();
    for name in [
        "rulake.v1.CollectionService",
        "rulake.v1.SearchService",
        "rulake.v1.DataService",
        "rulake.v1.AdminService",
        "",
    ] {
        health_reporter
            .set_service_status(name, tonic_health::ServingStatus::Serving)
            .await;
    }
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(rulake_proto::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    eprintln!("rulake serve: listening on {}", a.listen);
    tonic::transport::Server::builder()
        .timeout(a.request_timeout)
        .add_routes(router(api))
        .add_service(health)
        .add_service(reflection)
        .serve_with_shutdown(a.listen, shutdown())
        .await?;
    eprintln!("rulake serve: stopped");
    Ok(())
}

async fn shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let term = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
