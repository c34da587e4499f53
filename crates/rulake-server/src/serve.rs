//! `rulake serve`: every role in one process (a one-member meta group, the
//! engine and the coordinator) over one data directory, and the public API
//! on one port, with the standard gRPC health service (so load balancers
//! and Kubernetes probes need nothing RuLake-specific) and server
//! reflection (so `grpcurl` works without the proto files). Collections,
//! aliases, deletes and managed data survive a restart on the same data
//! directory. Stops cleanly on Ctrl-C or SIGTERM: in-flight calls finish,
//! new ones are refused.

use crate::shutdown::{Shutdown, GRACE};
use rulake_api::{router, Api, Limits};
use rulake_coordinator::{Embedded, EmbeddedConfig};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// `rulake serve` options.
#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:50051", env = "RULAKE_LISTEN")]
    pub listen: SocketAddr,
    /// Directory for the catalog, the persisted partition cache and
    /// managed collections' files.
    #[arg(long, default_value = "rulake-data", env = "RULAKE_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Where managed collections' Parquet files go (`file://`, `s3://`,
    /// ...); default: `managed/` under the data directory.
    #[arg(long, env = "RULAKE_MANAGED_URL")]
    pub managed_url: Option<String>,
    /// Cache budget in bytes; refused when it cannot fit the memory limit
    /// (default: a share of the cgroup's memory limit, else of the
    /// machine's memory; docs/operations.md, "Memory").
    #[arg(long, env = "RULAKE_CACHE_BYTES")]
    pub cache_bytes: Option<usize>,
    /// Metrics port and recall sampling.
    #[command(flatten)]
    pub observe: crate::observe::ObserveArgs,
    /// Most queries in one BatchSearch.
    #[arg(long, default_value_t = 1024)]
    pub max_batch: usize,
    /// PEM certificate chain: serve the API over TLS (with --tls-key).
    #[arg(long, env = "RULAKE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "RULAKE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA bundle: require client certificates it signed (mutual TLS).
    #[arg(long, env = "RULAKE_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// JSON file of API keys (hashed), JWT settings and grants (see
    /// docs/security.md); every public call then needs a credential.
    #[arg(long, env = "RULAKE_AUTH_CONFIG")]
    pub auth_config: Option<PathBuf>,
    /// Serve without authentication on a non-loopback address. Without
    /// --auth-config, only loopback listeners are allowed otherwise.
    #[arg(long, env = "RULAKE_ALLOW_ANONYMOUS")]
    pub allow_anonymous: bool,
    /// How often the TLS files are checked for a rotation.
    #[arg(long, default_value = "10", value_parser = parse_secs)]
    pub tls_reload: Duration,
    /// Largest gRPC message accepted or sent, in bytes.
    #[arg(long, default_value_t = rulake_api::MAX_MESSAGE_BYTES)]
    pub max_message_bytes: usize,
    /// Largest k a search may ask for.
    #[arg(long, default_value_t = rulake_engine::MAX_K)]
    pub max_k: usize,
    /// Upper bound on any request's run time; a client's own shorter
    /// deadline (grpc-timeout) applies first.
    #[arg(long, default_value = "30", value_parser = parse_secs)]
    pub request_timeout: Duration,
    /// Calls one client connection may have in flight; beyond it a call
    /// gets RESOURCE_EXHAUSTED at once (0: no limit).
    #[arg(long, default_value_t = rulake_api::limit::MAX_CONCURRENT_PER_CONNECTION)]
    pub max_concurrent_per_connection: usize,
    /// Records one Ingest stream may carry; beyond it the stream gets
    /// RESOURCE_EXHAUSTED and nothing of it is committed.
    #[arg(long, default_value_t = rulake_api::MAX_INGEST_RECORDS)]
    pub max_ingest_records: u64,
    /// Vector and id bytes one Ingest stream may carry (as for records).
    #[arg(long, default_value_t = rulake_api::MAX_INGEST_BYTES)]
    pub max_ingest_bytes: u64,
    /// Seconds after which a managed file no commit names (an ingest that
    /// crashed, or whose commit never applied) is deleted by the sweeper;
    /// must exceed the longest ingest.
    #[arg(long, default_value = "3600", value_parser = parse_secs, env = "RULAKE_MANAGED_SWEEP_GRACE")]
    pub managed_sweep_grace: Duration,
    /// Seconds between checks for managed collections due a compaction
    /// (tombstones at least 10% of the rows, or 64 files or more); 0
    /// compacts only on demand (`rulake compact`).
    #[arg(long, default_value = "300", value_parser = parse_secs_or_zero, env = "RULAKE_COMPACT_EVERY")]
    pub compact_every: Duration,
    /// Locations `CreateBackup` may write backups under (repeat, or
    /// comma-separate); none: backups are refused. Never inside this
    /// server's own files.
    #[arg(long, env = "RULAKE_BACKUP_ALLOW", value_delimiter = ',')]
    pub backup_allow: Vec<String>,
    /// Where sources may come from.
    #[command(flatten)]
    pub sources: crate::sources::SourceArgs,
    /// The audit log.
    #[command(flatten)]
    pub audit: crate::audit::AuditArgs,
}

impl Args {
    /// The files this role owns, fenced off from sources: its data
    /// directory, managed files, keys and auth config (plus `extra`).
    pub fn install_source_policy(&self, role: &str, extra: &[&PathBuf]) -> anyhow::Result<()> {
        self.with_own_files(extra, |own| self.sources.install(role, own))
    }

    /// Where `CreateBackup` may write: `--backup-allow`, minus this role's
    /// own files.
    pub fn backup_policy(&self, extra: &[&PathBuf]) -> anyhow::Result<rulake_lake::SourcePolicy> {
        self.with_own_files(extra, |own| {
            crate::sources::backup_policy(&self.backup_allow, own)
        })
    }

    /// Call `f` with this role's own files (see `install_source_policy`).
    fn with_own_files<T>(
        &self,
        extra: &[&PathBuf],
        f: impl FnOnce(&[crate::sources::Own<'_>]) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        // Made first so the fence also holds under its real path.
        std::fs::create_dir_all(&self.data_dir)?;
        let mut own = crate::sources::own_paths([
            Some(&self.data_dir),
            self.tls_cert.as_ref(),
            self.tls_key.as_ref(),
            self.tls_client_ca.as_ref(),
            self.auth_config.as_ref(),
        ]);
        own.extend(crate::sources::own_paths(extra.iter().copied().map(Some)));
        let audit_dir = self.audit.dir();
        own.extend(crate::sources::own_paths([audit_dir.as_ref()]));
        // The key files the auth config names (JWT secrets, JWKS), as it
        // names them now.
        let key_files: Vec<PathBuf> = self
            .auth_config
            .as_deref()
            .map(rulake_auth::AuthConfig::files)
            .unwrap_or_default();
        own.extend(crate::sources::own_paths(key_files.iter().map(Some)));
        if let Some(url) = &self.managed_url {
            own.push(crate::sources::Own::Url(url));
        }
        f(&own)
    }
}

pub(crate) fn parse_secs(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .filter(|v| *v > 0.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("{s:?} is not a positive number of seconds"))
}

/// A number of seconds that may be 0 (for "never").
fn parse_secs_or_zero(s: &str) -> Result<Duration, String> {
    match s.trim() {
        "0" => Ok(Duration::ZERO),
        other => parse_secs(other),
    }
}

/// Run `rulake serve` until `shutdown` fires.
pub async fn run(a: Args, shutdown: Shutdown) -> anyhow::Result<()> {
    check(&a)?;
    a.install_source_policy("serve", &[])?;
    let node = Embedded::start(EmbeddedConfig {
        data_dir: a.data_dir.clone(),
        cache_bytes: rulake_engine::memory::node_budget(a.cache_bytes)?,
        managed_root: a.managed_url.clone(),
    })
    .await?;
    let engine = std::sync::Arc::new(node.coordinator.engine().clone());
    let label = format!("data {}, catalog in-process", a.data_dir.display());
    serve_api(
        &a,
        node.coordinator.clone(),
        &engine,
        Some(&node.meta),
        "serve",
        &label,
        &shutdown,
    )
    .await?;
    shutdown.wait(GRACE).await;
    node.shutdown().await;
    eprintln!("rulake serve: stopped");
    Ok(())
}

/// The flag checks every role serving the public API shares.
pub fn check(a: &Args) -> anyhow::Result<()> {
    if a.auth_config.is_none() && !a.listen.ip().is_loopback() && !a.allow_anonymous {
        anyhow::bail!(
            "refusing to serve {} without authentication: give --auth-config, or --allow-anonymous to accept anyone",
            a.listen
        );
    }
    if a.max_k == 0 || a.max_k > rulake_engine::MAX_K {
        anyhow::bail!("--max-k must be between 1 and {}", rulake_engine::MAX_K);
    }
    Ok(())
}

/// Serve the public API over `coordinator` until `shutdown` fires: the
/// embedded server and the cluster's coordinator role differ only in the
/// coordinator they pass. Background tasks it starts (metrics endpoint,
/// housekeeping) run under `shutdown`; the caller waits for them.
pub async fn serve_api(
    a: &Args,
    coordinator: rulake_coordinator::Coordinator,
    engine: &std::sync::Arc<rulake_engine::RuLake>,
    meta: Option<&rulake_catalog::CatalogNode>,
    role: &str,
    label: &str,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    let (api, auth) = api_and_auth(a, &coordinator)?;
    let per_connection = rulake_api::per_connection_limit(api.limits());
    let metrics_layer =
        crate::observe::start(&a.observe, engine, meta, Some(&coordinator), shutdown).await?;
    // Files of ingests that never committed: swept a few times per grace
    // period (at most every 15 minutes).
    let grace = a.managed_sweep_grace;
    let every = (grace / 4).clamp(Duration::from_secs(1), Duration::from_secs(15 * 60));
    shutdown.spawn(
        "managed sweeper",
        coordinator.clone().run_sweeper(every, grace),
    );
    if !a.compact_every.is_zero() {
        shutdown.spawn(
            "compactor",
            coordinator
                .clone()
                .run_compactor(a.compact_every, Default::default()),
        );
    }
    let (health_reporter, health) = health_service().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(rulake_proto::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let collections = coordinator.catalog().collections.len();
    eprintln!(
        "rulake {role}: listening on {} ({label}, {collections} collections)",
        a.listen
    );
    let server = tonic::transport::Server::builder()
        // The handlers answer DEADLINE_EXCEEDED at the deadline; this is the
        // backstop for anything that does not return to them.
        .timeout(a.request_timeout + Duration::from_secs(1))
        .layer(metrics_layer)
        .layer(per_connection)
        .layer(tower::util::option_layer(auth))
        .layer(rulake_api::oversized_as_resource_exhausted())
        .add_routes(router(api))
        .add_service(health)
        .add_service(reflection);
    let tls = tls_acceptor(a, role)?;
    let _watch = tls.as_ref().map(|t| t.watch(a.tls_reload));
    let listener = tokio::net::TcpListener::bind(a.listen).await?;
    // On the signal: NOT_SERVING first (health watchers and load balancers
    // that check it move away), then stop accepting; calls in flight finish.
    let signalled = shutdown.signalled();
    let stop = async move {
        signalled.await;
        for name in SERVICES {
            health_reporter
                .set_service_status(name, tonic_health::ServingStatus::NotServing)
                .await;
        }
    };
    server
        .serve_with_incoming_shutdown(rulake_tls::incoming(listener, tls), stop)
        .await?;
    Ok(())
}

/// The API handlers over `coordinator` with the flags' limits, and the
/// authentication layer when `--auth-config` names one (read first, so a
/// bad file stops the role before anything starts; then re-read when it or
/// a key file it names changes, so keys rotate without a restart, a broken
/// new file keeping the previous one in force). The watch ends when the
/// server drops the layer.
fn api_and_auth(
    a: &Args,
    coordinator: &rulake_coordinator::Coordinator,
) -> anyhow::Result<(Api, Option<rulake_auth::AuthLayer>)> {
    let auth = match &a.auth_config {
        Some(path) => {
            let layer = rulake_auth::AuthLayer::from_file(path)?;
            drop(layer.watch(rulake_auth::RELOAD_INTERVAL));
            Some(layer)
        }
        None => None,
    };
    let audit = a.audit.open()?;
    let auth = match (auth, &audit) {
        (Some(layer), Some(log)) => Some(layer.with_audit(log.clone())),
        (auth, _) => auth,
    };
    let api = Api::new(
        coordinator.clone(),
        Limits {
            max_batch: a.max_batch,
            max_k: a.max_k,
            request_timeout: a.request_timeout,
            max_message_bytes: a.max_message_bytes,
            max_concurrent_per_connection: a.max_concurrent_per_connection,
            max_ingest_records: a.max_ingest_records,
            max_ingest_bytes: a.max_ingest_bytes,
            ..Limits::default()
        },
    );
    let api = match audit {
        Some(log) => api.with_audit(rulake_api::Audit::new(log, a.audit.audit_reads)),
        None => api,
    };
    let api = api.with_backup_policy(a.backup_policy(&[])?);
    Ok((api, auth))
}

/// The services the health service reports on ("" is the server).
const SERVICES: [&str; 5] = [
    "rulake.v1.CollectionService",
    "rulake.v1.SearchService",
    "rulake.v1.DataService",
    "rulake.v1.AdminService",
    "",
];

/// The standard gRPC health service, every public service (and the
/// server as a whole, "") reported as serving.
async fn health_service() -> (
    tonic_health::server::HealthReporter,
    tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
) {
    let (health_reporter, health) = tonic_health::server::health_reporter();
    for name in SERVICES {
        health_reporter
            .set_service_status(name, tonic_health::ServingStatus::Serving)
            .await;
    }
    (health_reporter, health)
}

/// With `--tls-cert` and `--tls-key`, the acceptor that serves TLS (and
/// requires client certificates with `--tls-client-ca`); `None` serves
/// plain TCP.
fn tls_acceptor(
    a: &Args,
    role: &str,
) -> anyhow::Result<Option<std::sync::Arc<rulake_tls::ReloadingAcceptor>>> {
    let (Some(cert), Some(key)) = (&a.tls_cert, &a.tls_key) else {
        return Ok(None);
    };
    let acceptor = rulake_tls::ReloadingAcceptor::new(rulake_tls::TlsFiles {
        cert: cert.clone(),
        key: key.clone(),
        client_ca: a.tls_client_ca.clone(),
    })?;
    eprintln!(
        "rulake {role}: TLS on{}",
        if a.tls_client_ca.is_some() {
            ", client certificates required"
        } else {
            ""
        }
    );
    Ok(Some(acceptor))
}
