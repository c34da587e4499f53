//! `rulake-operator`: runs the controllers, or (`search`) checks that a
//! collection answers, which the chart's `helm test` hook uses.
//!
//! `run` serves the metrics and probe port at once, then waits for the
//! leader Lease and reconciles only while it holds it; losing the Lease
//! exits the process (the kubelet restarts it as a candidate).

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};
use rulake_operator::admin::{AdminKey, AdminTls, Bearer, GrpcAdminFactory};
use rulake_operator::endpoints::Endpoints;
use rulake_operator::leader::{self, LeaseLock};
use rulake_operator::metrics::Metrics;
use rulake_proto::v1::{
    collection_service_client::CollectionServiceClient, search_service_client::SearchServiceClient,
    DescribeCollectionRequest, SearchParams, SearchRequest, Vector,
};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "rulake-operator",
    version,
    about = "RuLake's Kubernetes operator"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Deadline of admin calls (draining a shard waits for its partitions
    /// to warm elsewhere), seconds.
    #[arg(long, default_value_t = 300, env = "RULAKE_OPERATOR_ADMIN_TIMEOUT")]
    admin_timeout: u64,
    /// PEM CA bundle that signed clusters' API certificates: needed to
    /// manage clusters with `spec.tls`.
    #[arg(long, env = "RULAKE_OPERATOR_API_CA")]
    api_ca: Option<std::path::PathBuf>,
    /// PEM certificate the operator presents to clusters that require
    /// client certificates (with --api-key).
    #[arg(long, env = "RULAKE_OPERATOR_API_CERT", requires_all = ["api_key", "api_ca"])]
    api_cert: Option<std::path::PathBuf>,
    /// PEM private key of --api-cert.
    #[arg(long, env = "RULAKE_OPERATOR_API_KEY", requires = "api_cert")]
    api_key: Option<std::path::PathBuf>,
    /// Watch RuLake resources in this namespace only (the chart's
    /// namespaced mode, with a Role there instead of a ClusterRole);
    /// every namespace when unset.
    #[arg(long, env = "RULAKE_OPERATOR_WATCH_NAMESPACE")]
    watch_namespace: Option<String>,
    /// Address of the HTTP port serving /metrics, /healthz and /readyz.
    #[arg(
        long,
        default_value = "0.0.0.0:8080",
        env = "RULAKE_OPERATOR_METRICS_LISTEN"
    )]
    metrics_listen: SocketAddr,
    /// Name of the Lease the operator's replicas elect their leader with.
    #[arg(
        long,
        default_value = "rulake-operator",
        env = "RULAKE_OPERATOR_LEASE_NAME"
    )]
    lease_name: String,
    /// Namespace of that Lease: the operator's own (the chart passes it);
    /// the client's default namespace when unset.
    #[arg(long, env = "POD_NAMESPACE")]
    lease_namespace: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Reconcile RuLakeCluster and RuLakeCollection resources (the default).
    Run,
    /// Search a collection once and fail unless it answers with hits.
    Search {
        /// A RuLake gRPC endpoint, e.g. `http://rulake.default.svc:50051`.
        #[arg(long)]
        endpoint: String,
        /// The collection (or alias) to search.
        #[arg(long)]
        collection: String,
        /// Neighbours to ask for.
        #[arg(long, default_value_t = 10)]
        k: u32,
        /// API key sent as `authorization: Bearer <key>`; better given
        /// through the environment than on the command line.
        #[arg(long = "bearer", env = "RULAKE_API_KEY", hide_env_values = true)]
        key: Option<String>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,kube=warn".into()),
        )
        .init();
    let mut cli = Cli::parse();
    match cli.command.take().unwrap_or(Command::Run) {
        Command::Run => run(cli).await,
        Command::Search {
            endpoint,
            collection,
            k,
            key,
        } => search(endpoint, collection, k, key).await,
    }
}

/// Serves the metrics and probe port, then reconciles while this replica
/// holds the leader Lease.
async fn run(cli: Cli) -> anyhow::Result<()> {
    let client = kube::Client::try_default()
        .await
        .context("connecting to the Kubernetes API")?;
    let metrics = Arc::new(Metrics::default());
    let endpoints = Endpoints::new(metrics.clone());
    let listener = tokio::net::TcpListener::bind(cli.metrics_listen)
        .await
        .with_context(|| format!("binding {}", cli.metrics_listen))?;
    tokio::spawn(endpoints.clone().serve(listener, std::future::pending()));
    client
        .apiserver_version()
        .await
        .context("reaching the Kubernetes API")?;
    endpoints.set_ready(true);

    let admins = GrpcAdminFactory {
        timeout: Duration::from_secs(cli.admin_timeout),
        tls: cli.api_ca.map(|ca| AdminTls {
            ca,
            identity: cli.api_cert.zip(cli.api_key),
        }),
    };
    let namespace = cli.watch_namespace.filter(|ns| !ns.is_empty());
    match &namespace {
        Some(ns) => tracing::info!(namespace = %ns, "rulake-operator started"),
        None => tracing::info!("rulake-operator started, all namespaces"),
    }
    let lease_namespace = cli
        .lease_namespace
        .filter(|ns| !ns.is_empty())
        .unwrap_or_else(|| client.default_namespace().to_string());
    let identity = std::env::var("POD_NAME").unwrap_or_else(|_| {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "rulake-operator".into());
        format!("{host}-{}", std::process::id())
    });
    let mut lock = LeaseLock::new(client.clone(), &lease_namespace, &cli.lease_name, &identity);
    let work = || {
        let run = rulake_operator::controller::run_with_metrics;
        run(client, Arc::new(admins), namespace, metrics.clone())
    };
    leader::lead(&mut lock, &metrics, shutdown_signal(), work).await?;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM (while waiting for the Lease; the
/// controllers watch for the same signals themselves).
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => drop(term.recv().await),
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// Describes the collection for its dimension, searches with a constant
/// vector of that dimension and prints the hits.
async fn search(
    endpoint: String,
    collection: String,
    k: u32,
    key: Option<String>,
) -> anyhow::Result<()> {
    let channel = tonic::transport::Endpoint::from_shared(endpoint.clone())?
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .connect()
        .await
        .with_context(|| format!("connecting to {endpoint}"))?;
    let key = key
        .map(|k| AdminKey::new(k.as_bytes()))
        .transpose()
        .context("RULAKE_API_KEY")?;
    let bearer = Bearer::new(key);
    let info = CollectionServiceClient::with_interceptor(channel.clone(), bearer.clone())
        .describe_collection(DescribeCollectionRequest {
            name: collection.clone(),
        })
        .await
        .with_context(|| format!("describing {collection}"))?
        .into_inner()
        .info
        .context("describe returned no info")?;
    let dimension = info.spec.context("describe returned no spec")?.dimension as usize;
    let query = vec![1.0 / (dimension.max(1) as f32).sqrt(); dimension];
    let reply = SearchServiceClient::with_interceptor(channel, bearer)
        .search(SearchRequest {
            collection: collection.clone(),
            query: Some(Vector { values: query }),
            params: Some(SearchParams {
                k,
                ..Default::default()
            }),
        })
        .await
        .with_context(|| format!("searching {collection}"))?
        .into_inner();
    println!(
        "{collection}: {} hits from generation {} ({}/{} partitions answered)",
        reply.hits.len(),
        reply.generation,
        reply.partitions_answered,
        reply.partitions_total
    );
    if reply.hits.is_empty() {
        bail!("{collection} answered with no hits");
    }
    if reply.partial {
        bail!("{collection} answered from only some partitions");
    }
    Ok(())
}
