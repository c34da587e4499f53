//! `rulake-operator`: runs the controllers, or (`search`) checks that a
//! collection answers, which the chart's `helm test` hook uses.

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};
use rulake_operator::admin::{AdminKey, AdminTls, Bearer, GrpcAdminFactory};
use rulake_proto::v1::{
    collection_service_client::CollectionServiceClient, search_service_client::SearchServiceClient,
    DescribeCollectionRequest, SearchParams, SearchRequest, Vector,
};
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
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Run) {
        Command::Run => {
            let client = kube::Client::try_default()
                .await
                .context("connecting to the Kubernetes API")?;
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
            rulake_operator::controller::run(client, Arc::new(admins), namespace).await;
            Ok(())
        }
        Command::Search {
            endpoint,
            collection,
            k,
            key,
        } => search(endpoint, collection, k, key).await,
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
