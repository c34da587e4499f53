//! The client side of the `rulake` binary: `collections`, `alias`,
//! `ingest`, `search` and `stats` against a running server, through
//! `rulake-client`. Output is a plain table for people; errors are the
//! server's messages with their status code. Every command sends the
//! credential its flags name (`--api-key` / `RULAKE_API_KEY`, or
//! `--token-file`), so a server with `--auth-config` needs no
//! `--allow-anonymous` to be usable from the command line.

use anyhow::{bail, Context};
use futures::StreamExt;
use rulake_client::{proto, Client, Credentials, Id, Record};
use rulake_coordinator::wire::value_to;
use std::io::BufRead;
use std::path::PathBuf;

/// Where the server is, and who is calling.
#[derive(clap::Args, Clone)]
pub struct Conn {
    /// Server address.
    #[arg(long, default_value = "http://127.0.0.1:50051", env = "RULAKE_ADDR")]
    pub addr: String,
    /// API key to send (as `authorization: Bearer <key>`) to a server run
    /// with --auth-config. Prefer the environment variable: a flag shows in
    /// the process list.
    #[arg(long, env = "RULAKE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// File holding a bearer token (a JWT) to send instead of an API key;
    /// read again for every call, so a token refreshed in place is picked
    /// up. Takes precedence over --api-key and RULAKE_API_KEY.
    #[arg(long, env = "RULAKE_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
}

impl Conn {
    pub(crate) async fn client(&self) -> anyhow::Result<Client> {
        let credentials = Credentials::from_options(self.api_key.clone(), self.token_file.clone());
        Ok(Client::connect(&self.addr)
            .await?
            .with_credentials(credentials)?)
    }
}

/// `rulake collections ...`
#[derive(clap::Subcommand)]
pub enum Collections {
    /// Create a collection over a lake source, or a managed one.
    Create(Box<CreateArgs>),
    /// List collections.
    List(Conn),
    /// Show one collection (or the one an alias points at).
    Describe {
        /// Collection or alias.
        name: String,
        /// The server.
        #[command(flatten)]
        conn: Conn,
    },
    /// Drop a collection (and a managed collection's files).
    Drop {
        /// Collection.
        name: String,
        /// The server.
        #[command(flatten)]
        conn: Conn,
    },
}

/// `rulake collections create` options.
#[derive(clap::Args)]
pub struct CreateArgs {
    /// Collection name.
    pub name: String,
    /// Vector dimension.
    #[arg(long)]
    pub dim: u32,
    /// l2, cosine or ip.
    #[arg(long, default_value = "l2")]
    pub metric: String,
    /// parquet, delta, iceberg or managed.
    #[arg(long, default_value = "managed")]
    pub source: String,
    /// Source URL: Parquet prefix or glob, Delta table root, Iceberg metadata file.
    #[arg(long)]
    pub url: Option<String>,
    /// Id column of the source.
    #[arg(long, default_value = "id")]
    pub id_column: String,
    /// Vector column of the source.
    #[arg(long, default_value = "vector")]
    pub vector_column: String,
    /// Pin a Delta version or Iceberg snapshot (time travel).
    #[arg(long)]
    pub pin: Option<i64>,
    /// Iceberg: a SQL catalog to read the table from instead of --url
    /// (`sqlite:///path/catalog.db`, pyiceberg's SqlCatalog), with --iceberg-table.
    #[arg(long, requires = "iceberg_table")]
    pub iceberg_catalog: Option<String>,
    /// Iceberg: `namespace.table` in --iceberg-catalog.
    #[arg(long, requires = "iceberg_catalog")]
    pub iceberg_table: Option<String>,
    /// Iceberg: the SQL catalog's name (the name pyiceberg's SqlCatalog was given).
    #[arg(long, default_value = "default")]
    pub iceberg_catalog_name: String,
    /// Partitions.
    #[arg(long, default_value_t = 1)]
    pub partitions: u32,
    /// Replicas of each partition (on distinct shard nodes; a
    /// single-process server holds one).
    #[arg(long, default_value_t = 1)]
    pub replication: u32,
    /// `fresh`, or `eventual:<max staleness in ms>`.
    #[arg(long, default_value = "fresh")]
    pub consistency: String,
    /// Default rerank factor.
    #[arg(long)]
    pub rerank: Option<u32>,
    /// Default IVF lists probed (unset: what each partition calibrates
    /// for the target recall).
    #[arg(long)]
    pub nprobe: Option<u32>,
    /// Recall@10 the defaults aim for, in (0, 1] (server default 0.95).
    #[arg(long)]
    pub target_recall: Option<f32>,
    /// Scalar columns to keep beside the vectors, for `--filter` and
    /// `--output-columns`: `--payload-columns lang,year` for a lake table
    /// (its schema gives the types); a managed collection declares each
    /// type, `--payload-columns 'lang:string,year:int,tags:list<string>'`
    /// (bool, int, float, string, timestamp, date, list<string>).
    #[arg(long, value_delimiter = ',')]
    pub payload_columns: Vec<String>,
    /// Keep only the rows matching this filter, in `--filter`'s language
    /// (`--standing-filter 'lang = "en" and year >= 2024'`): files and row
    /// groups the lake's statistics rule out are never read.
    #[arg(long)]
    pub standing_filter: Option<String>,
    /// The server.
    #[command(flatten)]
    pub conn: Conn,
}

/// `rulake alias ...`
#[derive(clap::Subcommand)]
pub enum Alias {
    /// Point a new alias at a collection.
    Create {
        /// Alias.
        alias: String,
        /// Collection.
        collection: String,
        /// The server.
        #[command(flatten)]
        conn: Conn,
    },
    /// Remove an alias.
    Delete {
        /// Alias.
        alias: String,
        /// The server.
        #[command(flatten)]
        conn: Conn,
    },
    /// Re-point aliases atomically: `rulake alias switch live=v2 staging=v3`.
    Switch {
        /// `alias=collection` pairs.
        #[arg(required = true)]
        pairs: Vec<String>,
        /// The server.
        #[command(flatten)]
        conn: Conn,
    },
    /// List aliases.
    List(Conn),
}

/// `rulake ingest` options.
#[derive(clap::Args)]
pub struct IngestArgs {
    /// A Parquet (`.parquet`), JSON Lines (`.jsonl`, `{"id": .., "vector": [..],
    /// "lang": ..}`) or CSV (`.csv`, `id,v0,v1,...`; with payload columns a
    /// header names the id, each column, and the vector's fields) file. The
    /// collection's payload columns are read from it, null where absent.
    pub file: PathBuf,
    /// Managed collection to write.
    #[arg(long)]
    pub collection: String,
    /// Records per message.
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    /// Id column (Parquet) or field (a CSV header).
    #[arg(long, default_value = "id")]
    pub id_column: String,
    /// Vector column (Parquet).
    #[arg(long, default_value = "vector")]
    pub vector_column: String,
    /// The server.
    #[command(flatten)]
    pub conn: Conn,
}

/// `rulake search` options.
#[derive(clap::Args)]
pub struct SearchArgs {
    /// Collection or alias.
    #[arg(long)]
    pub collection: String,
    /// The query, comma-separated: `--vector 0.1,0.2,0.3`.
    #[arg(long, allow_hyphen_values = true)]
    pub vector: String,
    /// Neighbours wanted.
    #[arg(short, long, default_value_t = 10)]
    pub k: u32,
    /// IVF lists probed (default: the collection's).
    #[arg(long)]
    pub nprobe: Option<u32>,
    /// Rerank factor (default: the collection's).
    #[arg(long)]
    pub rerank: Option<u32>,
    /// Only rows matching this filter over the collection's payload
    /// columns: `--filter 'lang = "en" and year >= 2024'` (see
    /// docs/api.md, "Filters").
    #[arg(long)]
    pub filter: Option<String>,
    /// Payload columns to print with each hit: `--output-columns title,year`.
    #[arg(long, value_delimiter = ',')]
    pub output_columns: Vec<String>,
    /// `table` (default) or `json`: one JSON object with the hits (ids,
    /// distances, columns).
    #[arg(long, default_value = "table")]
    pub format: String,
    /// The server.
    #[command(flatten)]
    pub conn: Conn,
}

fn metric(m: &str) -> anyhow::Result<proto::Metric> {
    Ok(match m {
        "l2" => proto::Metric::L2,
        "cosine" => proto::Metric::Cosine,
        "ip" | "inner_product" => proto::Metric::InnerProduct,
        other => bail!("unknown metric {other:?}: l2, cosine or ip"),
    })
}

fn consistency(c: &str) -> anyhow::Result<proto::Consistency> {
    use proto::consistency::{Eventual, Fresh, Level};
    let level = match c.split_once(':') {
        None if c == "fresh" => Level::Fresh(Fresh {}),
        Some(("eventual", ms)) => Level::Eventual(Eventual {
            max_staleness_ms: ms
                .parse()
                .with_context(|| format!("{ms:?} is not a number of milliseconds"))?,
        }),
        _ => bail!("consistency {c:?}: fresh or eventual:<ms>"),
    };
    Ok(proto::Consistency { level: Some(level) })
}

fn source(a: &CreateArgs) -> anyhow::Result<proto::Source> {
    use proto::source::Kind;
    let url = || {
        a.url
            .clone()
            .with_context(|| format!("a {} source needs --url", a.source))
    };
    let kind = match a.source.as_str() {
        "parquet" => Kind::Parquet(proto::ParquetSource {
            url: url()?,
            id_column: a.id_column.clone(),
            vector_column: a.vector_column.clone(),
            options: Default::default(),
        }),
        "delta" => Kind::Delta(proto::DeltaSource {
            table_url: url()?,
            id_column: a.id_column.clone(),
            vector_column: a.vector_column.clone(),
            version: a.pin,
            options: Default::default(),
        }),
        "iceberg" => Kind::Iceberg(proto::IcebergSource {
            table: Some(match (&a.iceberg_catalog, &a.iceberg_table) {
                (Some(uri), Some(t)) => {
                    let (namespace, table) = t
                        .rsplit_once('.')
                        .with_context(|| format!("--iceberg-table {t:?}: namespace.table"))?;
                    proto::iceberg_source::Table::CatalogTable(
                        proto::iceberg_source::CatalogTable {
                            catalog: a.iceberg_catalog_name.clone(),
                            namespace: namespace.to_owned(),
                            table: table.to_owned(),
                            uri: uri.clone(),
                        },
                    )
                }
                _ => proto::iceberg_source::Table::MetadataLocation(url()?),
            }),
            id_column: a.id_column.clone(),
            vector_column: a.vector_column.clone(),
            snapshot_id: a.pin,
            options: Default::default(),
        }),
        "managed" => Kind::Managed(proto::ManagedSource {}),
        other => bail!("unknown source {other:?}: parquet, delta, iceberg or managed"),
    };
    Ok(proto::Source { kind: Some(kind) })
}

fn state(s: i32) -> &'static str {
    match proto::CollectionState::try_from(s) {
        Ok(proto::CollectionState::Loading) => "loading",
        Ok(proto::CollectionState::Ready) => "ready",
        Ok(proto::CollectionState::Degraded) => "degraded",
        Ok(proto::CollectionState::Failed) => "failed",
        _ => "unknown",
    }
}

fn print_infos(infos: &[proto::CollectionInfo]) {
    println!(
        "{:<24} {:>6} {:<7} {:>5} {:<9} {:>10}  {:<20} aliases",
        "name", "dim", "metric", "parts", "state", "vectors", "generation"
    );
    for i in infos {
        let s = i.spec.clone().unwrap_or_default();
        let m = match proto::Metric::try_from(s.metric) {
            Ok(proto::Metric::L2) => "l2",
            Ok(proto::Metric::Cosine) => "cosine",
            Ok(proto::Metric::InnerProduct) => "ip",
            _ => "?",
        };
        println!(
            "{:<24} {:>6} {:<7} {:>5} {:<9} {:>10}  {:<20} {}",
            s.name,
            s.dimension,
            m,
            format!("{}/{}", i.partitions_warm, s.partitions),
            state(i.state),
            i.vector_count,
            i.generation,
            i.aliases.join(",")
        );
        if !i.last_error.is_empty() {
            println!("  last error: {}", i.last_error);
        }
    }
}

/// Run `rulake collections ...`.
pub async fn collections(cmd: Collections) -> anyhow::Result<()> {
    match cmd {
        Collections::Create(a) => {
            let spec = proto::CollectionSpec {
                name: a.name.clone(),
                source: Some(source(&a)?),
                dimension: a.dim,
                metric: metric(&a.metric)? as i32,
                partitions: a.partitions,
                replication_factor: a.replication,
                consistency: Some(consistency(&a.consistency)?),
                rerank: a.rerank,
                nprobe: a.nprobe,
                target_recall: a.target_recall,
                payload_columns: a.payload_columns.clone(),
                standing_filter: match &a.standing_filter {
                    // Checked here too, so a typo is pointed at before
                    // anything is sent.
                    Some(text) => {
                        rulake_types::filter::parse(text)
                            .map_err(|e| anyhow::anyhow!("--standing-filter: {e}"))?;
                        text.clone()
                    }
                    None => String::new(),
                },
            };
            let info = a.conn.client().await?.create_collection(spec).await?;
            print_infos(&[info]);
        }
        Collections::List(conn) => print_infos(&conn.client().await?.list_collections().await?),
        Collections::Describe { name, conn } => {
            let info = conn.client().await?.describe_collection(&name).await?;
            print_infos(std::slice::from_ref(&info));
            let s = info.spec.unwrap_or_default();
            println!(
                "source: {:?}\nconsistency: {:?}\nrerank: {:?}  nprobe: {:?}  target recall: {:?}  replication: {}\npayload columns: {}\nstanding filter: {}",
                s.source.and_then(|s| s.kind),
                s.consistency.and_then(|c| c.level),
                s.rerank,
                s.nprobe,
                s.target_recall,
                s.replication_factor,
                s.payload_columns.join(", "),
                if s.standing_filter.is_empty() {
                    "none"
                } else {
                    &s.standing_filter
                }
            );
        }
        Collections::Drop { name, conn } => {
            conn.client().await?.drop_collection(&name).await?;
            println!("dropped {name}");
        }
    }
    Ok(())
}

/// Run `rulake alias ...`.
pub async fn alias(cmd: Alias) -> anyhow::Result<()> {
    match cmd {
        Alias::Create {
            alias,
            collection,
            conn,
        } => {
            conn.client()
                .await?
                .create_alias(&alias, &collection)
                .await?;
            println!("{alias} -> {collection}");
        }
        Alias::Delete { alias, conn } => {
            conn.client().await?.delete_alias(&alias).await?;
            println!("deleted {alias}");
        }
        Alias::Switch { pairs, conn } => {
            let parsed: Vec<(&str, &str)> = pairs
                .iter()
                .map(|p| {
                    p.split_once('=')
                        .with_context(|| format!("{p:?} is not alias=collection"))
                })
                .collect::<anyhow::Result<_>>()?;
            conn.client().await?.switch_aliases(&parsed).await?;
            for (a, c) in parsed {
                println!("{a} -> {c}");
            }
        }
        Alias::List(conn) => {
            for a in conn.client().await?.list_aliases().await? {
                println!("{} -> {}", a.alias, a.collection);
            }
        }
    }
    Ok(())
}

type Records = futures::stream::BoxStream<'static, Result<Record, String>>;

/// Records of a Parquet file, read row group by row group (bounded memory),
/// with those of the payload columns `declared` that the file holds (the
/// others are null; one the file holds in a type RuLake cannot keep is an
/// error).
async fn parquet_records(a: &IngestArgs, declared: Vec<String>) -> anyhow::Result<(Records, u64)> {
    use rulake_lake::{ParquetSource, ParquetSourceConfig, Source};
    let path = a
        .file
        .canonicalize()
        .with_context(|| format!("{}", a.file.display()))?;
    let src = ParquetSource::open(ParquetSourceConfig::new(
        path.to_string_lossy(),
        &a.id_column,
        &a.vector_column,
    ))?;
    let mut names = Vec::new();
    for name in declared {
        match src.check_columns(std::slice::from_ref(&name)).await {
            Ok(()) => names.push(name),
            Err(rulake_lake::LakeError::MissingColumn { .. }) => {
                eprintln!("note: the file has no column {name:?}; it is null in every record")
            }
            Err(e) => return Err(e.into()),
        }
    }
    let dim = src.probe_dimension().await?;
    let listing = src.list_units().await?;
    let rows = listing.rows();
    let src = std::sync::Arc::new(src);
    let s = futures::stream::iter(listing.units)
        .flat_map(move |u| src.read_unit_columns(&u, dim, &names))
        .flat_map(move |batch| {
            let items: Vec<Result<Record, String>> = match batch {
                Ok(b) => {
                    let mut columns: Vec<_> = b
                        .payload
                        .into_iter()
                        .map(|c| (c.name, c.values.into_iter()))
                        .collect();
                    b.ids
                        .into_iter()
                        .zip(b.vectors.chunks(dim.max(1)))
                        .map(|(id, v)| {
                            let id = match id {
                                rulake_types::VectorId::U64(n) => Id::Num(n),
                                rulake_types::VectorId::Str(s) => Id::Str(s),
                            };
                            let values = columns
                                .iter_mut()
                                .filter_map(|(name, values)| {
                                    Some((name.clone(), value_to(values.next()?)))
                                })
                                .collect();
                            Ok(Record {
                                id,
                                vector: v.to_vec(),
                                columns: values,
                            })
                        })
                        .collect()
                }
                Err(e) => vec![Err(e.to_string())],
            };
            futures::stream::iter(items)
        });
    Ok((s.boxed(), rows))
}

/// Records of a line-oriented file (JSON Lines or CSV), read as they are
/// sent. JSON keys that are not `declared` payload columns are left out
/// (and named once on standard error); a CSV file with payload columns
/// has a header.
fn line_records(
    a: &IngestArgs,
    csv: bool,
    declared: Vec<rulake_types::Declared>,
) -> anyhow::Result<(Records, u64)> {
    use rulake_client::records::{csv_record, json_record, CsvLayout};
    let path = &a.file;
    let count = std::io::BufReader::new(std::fs::File::open(path)?)
        .lines()
        .count() as u64;
    let lines = std::io::BufReader::new(std::fs::File::open(path)?).lines();
    let id_field = a.id_column.clone();
    let mut layout: Option<CsvLayout> = None;
    let mut ignored = std::collections::BTreeSet::new();
    let records = lines.enumerate().filter_map(move |(i, line)| {
        let n = i + 1;
        let line = match line {
            Ok(l) => l,
            Err(e) => return Some(Err(format!("line {n}: {e}"))),
        };
        if line.trim().is_empty() {
            return None;
        }
        if !csv {
            let mut r = match json_record(&line, n) {
                Ok(r) => r,
                Err(e) => return Some(Err(e.to_string())),
            };
            r.columns.retain(|k, _| {
                let keep = declared.iter().any(|d| d.name == *k);
                if !keep && ignored.insert(k.clone()) {
                    eprintln!("note: key {k:?} (line {n}) is not a payload column of the collection; it is not ingested");
                }
                keep
            });
            return Some(Ok(r));
        }
        if layout.is_none() {
            let header = line
                .split(',')
                .nth(1)
                .is_some_and(|f| f.trim().parse::<f32>().is_err());
            let l = if header {
                CsvLayout::from_header(&line, &id_field, &declared)
            } else {
                Ok(CsvLayout::plain())
            };
            match l {
                Ok(l) => layout = Some(l),
                Err(e) => return Some(Err(e.to_string())),
            }
            if header {
                return None;
            }
        }
        let l = layout.as_ref().expect("set above");
        Some(csv_record(&line, n, l).map_err(|e| e.to_string()))
    });
    Ok((futures::stream::iter(records).boxed(), count))
}

/// Run `rulake ingest`.
pub async fn ingest(a: IngestArgs) -> anyhow::Result<()> {
    let ext = a
        .file
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let client = a.conn.client().await?;
    // The collection's declared payload columns: which of the file's
    // columns to send, and (for CSV) in which types to read them. Should
    // the describe fail, ids and vectors still go, with a note.
    let declared: Vec<rulake_types::Declared> = match client
        .describe_collection(&a.collection)
        .await
    {
        Ok(info) => info
            .spec
            .map(|s| s.payload_columns)
            .unwrap_or_default()
            .iter()
            .map(|d| rulake_types::declared(d))
            .collect(),
        Err(e) => {
            eprintln!(
                "note: could not read the payload columns of {:?} ({e}); sending ids and vectors only",
                a.collection
            );
            Vec::new()
        }
    };
    let (records, total) = match ext.as_str() {
        "parquet" => parquet_records(&a, declared.into_iter().map(|d| d.name).collect()).await?,
        "jsonl" | "ndjson" => line_records(&a, false, declared)?,
        "csv" => line_records(&a, true, declared)?,
        other => bail!(
            "{}: unknown file type {other:?} (parquet, jsonl or csv)",
            a.file.display()
        ),
    };
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} records sent ({per_sec}, {elapsed})",
        )
        .expect("static template"),
    );
    let b = bar.clone();
    let start = std::time::Instant::now();
    let r = client
        .ingest_stream(&a.collection, records, a.batch, move |sent| {
            b.set_position(sent)
        })
        .await;
    bar.finish_and_clear();
    let r = r?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "ingested {} records into {} in {secs:.1} s ({:.0} records/s); generation {}",
        r.records,
        a.collection,
        r.records as f64 / secs.max(1e-9),
        r.generation
    );
    Ok(())
}

/// Run `rulake search`.
pub async fn search(a: SearchArgs) -> anyhow::Result<()> {
    let query = a
        .vector
        .split(',')
        .map(|x| x.trim().parse::<f32>())
        .collect::<Result<Vec<f32>, _>>()
        .context("--vector takes comma-separated numbers")?;
    let json = match a.format.as_str() {
        "table" => false,
        "json" => true,
        other => anyhow::bail!("--format {other:?}: expected table or json"),
    };
    let filter = a
        .filter
        .as_deref()
        .map(|text| {
            rulake_types::filter::parse(text)
                .map(|f| rulake_coordinator::wire::filter_to(&f))
                .with_context(|| format!("--filter {text:?}"))
        })
        .transpose()?;
    let client = a.conn.client().await?;
    let r = client
        .search_with(
            &a.collection,
            &query,
            proto::SearchParams {
                k: a.k,
                nprobe: a.nprobe,
                rerank: a.rerank,
                filter,
                output_columns: a.output_columns.clone(),
            },
        )
        .await?;
    if json {
        println!("{}", search_json(&r));
        return Ok(());
    }
    println!(
        "generation {}  partitions {}/{}{}",
        r.generation,
        r.partitions_answered,
        r.partitions_total,
        if r.partial { "  PARTIAL" } else { "" }
    );
    let mut header = format!("{:>4}  {:<24} {:<12}", "rank", "id", "distance");
    for c in &a.output_columns {
        header.push_str(&format!(" {c}"));
    }
    println!("{}", header.trim_end());
    for (i, h) in r.hits.iter().enumerate() {
        let id = Id::of(&h.id).map(|i| i.to_string()).unwrap_or_default();
        let mut line = format!("{:>4}  {:<24} {:<12}", i + 1, id, h.distance);
        for c in &a.output_columns {
            let v = h
                .columns
                .get(c)
                .map(value_json)
                .unwrap_or(serde_json::Value::Null);
            line.push_str(&format!(" {v}"));
        }
        println!("{}", line.trim_end());
    }
    Ok(())
}

/// A search's answer as the JSON `--format json` prints.
fn search_json(r: &proto::SearchResponse) -> serde_json::Value {
    let hits: Vec<serde_json::Value> = r
        .hits
        .iter()
        .map(|h| {
            let id = match h.id.as_ref().and_then(|i| i.id.as_ref()) {
                Some(proto::vector_id::Id::Num(n)) => serde_json::json!(n),
                Some(proto::vector_id::Id::Str(s)) => serde_json::json!(s),
                None => serde_json::Value::Null,
            };
            let columns: serde_json::Map<String, serde_json::Value> = h
                .columns
                .iter()
                .map(|(k, v)| (k.clone(), value_json(v)))
                .collect();
            serde_json::json!({"id": id, "distance": h.distance, "columns": columns})
        })
        .collect();
    serde_json::json!({
        "generation": r.generation,
        "partial": r.partial,
        "partitions_answered": r.partitions_answered,
        "partitions_total": r.partitions_total,
        "hits": hits,
    })
}

/// A payload value as JSON: timestamps as RFC 3339 strings in UTC, dates
/// as `YYYY-MM-DD`.
fn value_json(v: &proto::Value) -> serde_json::Value {
    use proto::value::Kind;
    match &v.kind {
        None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
        Some(Kind::BoolValue(b)) => serde_json::json!(b),
        Some(Kind::IntValue(i)) => serde_json::json!(i),
        Some(Kind::FloatValue(x)) => serde_json::json!(x),
        Some(Kind::StringValue(s)) => serde_json::json!(s),
        Some(Kind::TimestampMicros(t)) => serde_json::json!(rfc3339(*t)),
        Some(Kind::DateDays(d)) => serde_json::json!(civil(*d as i64)),
        Some(Kind::StringList(l)) => serde_json::json!(l.values),
    }
}

/// `YYYY-MM-DD` of days since the Unix epoch (Hinnant's `civil_from_days`).
fn civil(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// An instant in microseconds since the Unix epoch as RFC 3339 (UTC).
fn rfc3339(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let (days, s) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let time = format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60);
    if frac == 0 {
        format!("{}T{time}Z", civil(days))
    } else {
        format!("{}T{time}.{frac:06}Z", civil(days))
    }
}

/// Run `rulake stats`.
pub async fn stats(conn: Conn) -> anyhow::Result<()> {
    let client = conn.client().await?;
    let cache = client.cache_stats().await?;
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    for (node, s) in &cache.nodes {
        println!(
            "node {node}: {} partitions, {:.1} of {:.1} MiB; hits {} misses {} evictions {} refused {}; builds {} ({} incremental, {:.1} s), disk loads {}, errors {}",
            s.partitions,
            mib(s.bytes),
            mib(s.budget_bytes),
            s.hits,
            s.misses,
            s.evictions,
            s.refused,
            s.builds,
            s.incremental_builds,
            s.build_seconds,
            s.disk_loads,
            s.errors
        );
        // Accounted against resident: the gap is what the cache's own
        // figure does not see (docs/operations.md, "Memory").
        println!(
            "  memory: accounted {:.1} MiB + loading {:.1} MiB; process resident {:.1} MiB ({}), peak {:.1} MiB",
            mib(s.bytes),
            mib(s.loading_bytes),
            mib(s.resident_bytes),
            if s.bytes > 0 {
                format!("{:.2}x accounted", s.resident_bytes as f64 / s.bytes as f64)
            } else {
                "nothing cached".to_owned()
            },
            mib(s.peak_resident_bytes)
        );
    }
    match client.cluster_status().await {
        Ok(st) => {
            println!(
                "meta: leader {} term {} commit {} applied {}; assignment epoch {}",
                st.leader_id, st.term, st.commit_index, st.applied_index, st.assignment_epoch
            );
            for m in st.members {
                println!(
                    "  member {} {} {}",
                    m.id,
                    m.address,
                    if m.voter { "voter" } else { "learner" }
                );
            }
            for s in st.shards {
                println!(
                    "  shard {} live {} partitions {}/{} warm",
                    s.id, s.live, s.partitions_warm, s.partitions_assigned
                );
            }
            if !st.routes.is_empty() {
                println!("routes at epoch {}:", st.routing_epoch);
                for r in st.routes {
                    println!(
                        "  {}/{} -> [{}] warm [{}]",
                        r.collection,
                        r.partition,
                        r.replicas.join(", "),
                        r.warm.join(", ")
                    );
                }
            }
        }
        Err(e) => println!("cluster status unavailable: {e}"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_print_as_rfc3339() {
        assert_eq!(civil(0), "1970-01-01");
        assert_eq!(civil(19_783), "2024-03-01");
        assert_eq!(
            rfc3339(86_400_000_000 + 3_600_000_000 + 5),
            "1970-01-02T01:00:00.000005Z"
        );
        let back = rulake_types::payload::parse_instant("2024-02-29T23:59:58Z").unwrap();
        assert_eq!(rfc3339(back), "2024-02-29T23:59:58Z");
    }
}
