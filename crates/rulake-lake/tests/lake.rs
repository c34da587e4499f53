//! Lake sources against real Parquet files: local files and an
//! S3-compatible server started by the test itself.

use ::parquet::arrow::ArrowWriter;
use ::parquet::file::properties::WriterProperties;
use arrow_array::{
    builder::{FixedSizeListBuilder, Float16Builder, Float32Builder, Float64Builder, ListBuilder},
    ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray, StringViewArray, UInt64Array,
};
use arrow_schema::{Field, Schema};
use futures::TryStreamExt;
use rulake_lake::*;
use rulake_types::VectorId;
use std::path::Path;
use std::sync::Arc;

fn write_batch(path: &Path, batch: RecordBatch, rg_rows: usize) {
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(rg_rows))
        .build();
    let f = std::fs::File::create(path).unwrap();
    let mut w = ArrowWriter::try_new(f, batch.schema(), Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

fn batch_of(ids: ArrayRef, vectors: ArrayRef) -> RecordBatch {
    let schema = Schema::new(vec![
        Field::new("id", ids.data_type().clone(), true),
        Field::new("vector", vectors.data_type().clone(), true),
    ]);
    RecordBatch::try_new(Arc::new(schema), vec![ids, vectors]).unwrap()
}

fn rows(n: usize, dim: usize) -> Vec<Vec<f32>> {
    (0..n)
        .map(|i| (0..dim).map(|d| (i * dim + d) as f32 * 0.5).collect())
        .collect()
}

async fn read_source(src: &dyn Source, dim: usize) -> Result<RowBatch> {
    let listing = src.list_units().await?;
    read_all(src, &listing, dim).await
}

fn source(dir: &Path) -> ParquetSource {
    ParquetSource::open(ParquetSourceConfig::new(
        dir.to_str().unwrap(),
        "id",
        "vector",
    ))
    .unwrap()
}

#[tokio::test]
async fn reads_every_supported_vector_and_id_type() {
    let dir = tempfile::tempdir().unwrap();
    let data = rows(10, 4);
    // fixed_size_list<f32>, u64 ids
    write_parquet_file(
        &dir.path().join("a.parquet"),
        IdsRef::U64(&(0..10).collect::<Vec<u64>>()),
        &data.concat(),
        4,
        3,
    )
    .unwrap();
    // list<f64>, int64 ids
    let mut lb = ListBuilder::new(Float64Builder::new());
    for r in &data {
        lb.values()
            .append_slice(&r.iter().map(|x| *x as f64).collect::<Vec<_>>());
        lb.append(true);
    }
    write_batch(
        &dir.path().join("b.parquet"),
        batch_of(
            Arc::new(Int64Array::from_iter_values(10..20)),
            Arc::new(lb.finish()),
        ),
        100,
    );
    // fixed_size_list<f16>, int32 ids
    let mut fb = FixedSizeListBuilder::new(Float16Builder::new(), 4);
    for r in &data {
        for x in r {
            fb.values().append_value(half::f16::from_f32(*x));
        }
        fb.append(true);
    }
    write_batch(
        &dir.path().join("c.parquet"),
        batch_of(
            Arc::new(Int32Array::from_iter_values(20..30)),
            Arc::new(fb.finish()),
        ),
        100,
    );
    let src = source(dir.path());
    let listing = src.list_units().await.unwrap();
    // a.parquet has 10 rows in row groups of 3 → 4 units; b and c one each.
    assert_eq!(listing.units.len(), 6);
    assert_eq!(listing.rows(), 30);
    let all = read_all(&src, &listing, 4).await.unwrap();
    assert_eq!(all.len(), 30);
    for (i, id) in all.ids.iter().enumerate() {
        assert_eq!(id, &VectorId::U64(i as u64));
        assert_eq!(&all.vectors[i * 4..i * 4 + 4], &data[i % 10][..]);
    }
    assert_eq!(src.probe_dimension().await.unwrap(), 4);

    // string and string_view ids
    let dir2 = tempfile::tempdir().unwrap();
    let mut vb = FixedSizeListBuilder::new(Float32Builder::new(), 2);
    for i in 0..3 {
        vb.values().append_slice(&[i as f32, 1.0]);
        vb.append(true);
    }
    let vectors: ArrayRef = Arc::new(vb.finish());
    write_batch(
        &dir2.path().join("s.parquet"),
        batch_of(
            Arc::new(StringArray::from(vec!["a", "b", "c"])),
            vectors.clone(),
        ),
        100,
    );
    write_batch(
        &dir2.path().join("v.parquet"),
        batch_of(
            Arc::new(StringViewArray::from(vec!["x", "y", "z"])),
            vectors,
        ),
        100,
    );
    let got = read_source(&source(dir2.path()), 2).await.unwrap();
    let ids: Vec<String> = got.ids.iter().map(|i| i.to_string()).collect();
    assert_eq!(ids, ["a", "b", "c", "x", "y", "z"]);
    assert!(got.ids.iter().all(|i| matches!(i, VectorId::Str(_))));
}

#[tokio::test]
async fn generation_tracks_the_listing_and_globs_filter() {
    let dir = tempfile::tempdir().unwrap();
    let w = |name: &str, id: u64| {
        write_parquet_file(
            &dir.path().join(name),
            IdsRef::U64(&[id]),
            &[1.0, 2.0],
            2,
            10,
        )
        .unwrap()
    };
    w("a.parquet", 1);
    std::fs::write(dir.path().join("_SUCCESS"), b"").unwrap();
    let src = source(dir.path());
    let g1 = src.generation().await.unwrap();
    assert_eq!(
        g1,
        src.generation().await.unwrap(),
        "stable without changes"
    );
    w("b.parquet", 2);
    let g2 = src.generation().await.unwrap();
    assert_ne!(g1, g2, "a new file is a new generation");
    std::thread::sleep(std::time::Duration::from_millis(20));
    write_parquet_file(
        &dir.path().join("b.parquet"),
        IdsRef::U64(&[2, 3]),
        &[1.0, 2.0, 3.0, 4.0],
        2,
        10,
    )
    .unwrap();
    assert_ne!(
        g2,
        src.generation().await.unwrap(),
        "a rewritten file is a new generation"
    );

    let glob = format!("{}/b*.parquet", dir.path().display());
    let only_b = ParquetSource::open(ParquetSourceConfig::new(glob, "id", "vector")).unwrap();
    let got = read_source(&only_b, 2).await.unwrap();
    assert_eq!(got.ids, vec![VectorId::U64(2), VectorId::U64(3)]);

    let single = ParquetSource::open(ParquetSourceConfig::new(
        dir.path().join("a.parquet").to_str().unwrap(),
        "id",
        "vector",
    ))
    .unwrap();
    assert_eq!(
        read_source(&single, 2).await.unwrap().ids,
        vec![VectorId::U64(1)]
    );
}

async fn expect_err(dir: &Path, dim: usize) -> LakeError {
    match read_source(&source(dir), dim).await {
        Ok(b) => panic!("expected an error, read {} rows", b.len()),
        Err(e) => e,
    }
}

#[tokio::test]
async fn bad_inputs_get_errors_that_name_file_row_group_and_column() {
    // Wrong dimension.
    let dir = tempfile::tempdir().unwrap();
    write_parquet_file(
        &dir.path().join("d.parquet"),
        IdsRef::U64(&[1, 2]),
        &[1.0; 6],
        3,
        1,
    )
    .unwrap();
    let e = expect_err(dir.path(), 4).await;
    assert!(
        matches!(
            e,
            LakeError::Dimension {
                found: 3,
                expected: 4,
                ..
            }
        ),
        "{e}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("d.parquet") && msg.contains("row group 0") && msg.contains("\"vector\""),
        "{msg}"
    );

    // NaN, in the second row group.
    let dir = tempfile::tempdir().unwrap();
    write_parquet_file(
        &dir.path().join("n.parquet"),
        IdsRef::U64(&[1, 2]),
        &[1.0, 1.0, f32::NAN, 1.0],
        2,
        1,
    )
    .unwrap();
    let e = expect_err(dir.path(), 2).await;
    assert!(matches!(e, LakeError::NonFinite { position: 0, .. }), "{e}");
    assert!(e.to_string().contains("row group 1"), "{e}");

    // Null vector.
    let dir = tempfile::tempdir().unwrap();
    let mut vb = FixedSizeListBuilder::new(Float32Builder::new(), 2);
    vb.values().append_slice(&[1.0, 2.0]);
    vb.append(true);
    vb.values().append_slice(&[0.0, 0.0]);
    vb.append(false);
    write_batch(
        &dir.path().join("null.parquet"),
        batch_of(
            Arc::new(UInt64Array::from(vec![1, 2])),
            Arc::new(vb.finish()),
        ),
        10,
    );
    let e = expect_err(dir.path(), 2).await;
    assert!(matches!(e, LakeError::Null { row: 1, .. }), "{e}");

    // Vector column of the wrong type.
    let dir = tempfile::tempdir().unwrap();
    write_batch(
        &dir.path().join("t.parquet"),
        batch_of(
            Arc::new(UInt64Array::from(vec![1])),
            Arc::new(StringArray::from(vec!["1,2"])),
        ),
        10,
    );
    let e = expect_err(dir.path(), 2).await;
    assert!(matches!(e, LakeError::ColumnType { .. }), "{e}");
    assert!(e.to_string().contains("t.parquet"), "{e}");

    // Missing column.
    let dir = tempfile::tempdir().unwrap();
    write_parquet_file(
        &dir.path().join("m.parquet"),
        IdsRef::U64(&[1]),
        &[1.0],
        1,
        1,
    )
    .unwrap();
    let src = ParquetSource::open(ParquetSourceConfig::new(
        dir.path().to_str().unwrap(),
        "id",
        "embedding",
    ))
    .unwrap();
    let e = src.list_units().await.unwrap_err();
    assert!(
        matches!(e, LakeError::MissingColumn { .. }) && e.to_string().contains("vector"),
        "{e}"
    );

    // Negative id.
    let dir = tempfile::tempdir().unwrap();
    let mut vb = FixedSizeListBuilder::new(Float32Builder::new(), 1);
    vb.values().append_value(1.0);
    vb.append(true);
    write_batch(
        &dir.path().join("neg.parquet"),
        batch_of(Arc::new(Int64Array::from(vec![-5])), Arc::new(vb.finish())),
        10,
    );
    assert!(matches!(
        expect_err(dir.path(), 1).await,
        LakeError::NegativeId { value: -5, .. }
    ));

    // Empty file, non-Parquet file, truncated Parquet file.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("empty.parquet"), b"").unwrap();
    assert!(matches!(
        expect_err(dir.path(), 2).await,
        LakeError::EmptyFile { .. }
    ));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("text.parquet"), b"id,vector\n1,\"[1,2]\"\n").unwrap();
    let e = expect_err(dir.path(), 2).await;
    assert!(
        matches!(e, LakeError::Parquet { .. }) && e.to_string().contains("text.parquet"),
        "{e}"
    );
    let dir = tempfile::tempdir().unwrap();
    let bytes = encode_parquet(IdsRef::U64(&[1, 2, 3]), &[1.0; 6], 2, 10).unwrap();
    std::fs::write(dir.path().join("cut.parquet"), &bytes[..bytes.len() / 2]).unwrap();
    assert!(matches!(
        expect_err(dir.path(), 2).await,
        LakeError::Parquet { .. }
    ));
}

#[tokio::test]
async fn an_object_that_vanishes_after_listing_is_reported_as_such() {
    let dir = tempfile::tempdir().unwrap();
    write_parquet_file(
        &dir.path().join("gone.parquet"),
        IdsRef::U64(&[1]),
        &[1.0, 2.0],
        2,
        10,
    )
    .unwrap();
    let src = source(dir.path());
    let listing = src.list_units().await.unwrap();
    std::fs::remove_file(dir.path().join("gone.parquet")).unwrap();
    let e = src
        .read_unit(&listing.units[0], 2)
        .try_next()
        .await
        .unwrap_err();
    assert!(matches!(e, LakeError::Vanished { .. }), "{e}");
    assert!(e.to_string().contains("gone.parquet"), "{e}");
}

#[tokio::test]
async fn memory_source_add_upsert_delete() {
    let m = MemorySource::new("m", 2);
    m.add(vec![
        (VectorId::U64(1), vec![1.0, 1.0]),
        (VectorId::from("a"), vec![2.0, 2.0]),
    ])
    .unwrap();
    let l1 = m.list_units().await.unwrap();
    assert_eq!(l1.units.len(), 1);
    assert!(matches!(
        m.add(vec![(VectorId::U64(1), vec![0.0, 0.0])]),
        Err(LakeError::DuplicateId { .. })
    ));
    assert!(m
        .add(vec![(VectorId::U64(9), vec![f32::INFINITY, 0.0])])
        .is_err());
    assert!(m.add(vec![(VectorId::U64(9), vec![0.0])]).is_err());
    m.add(vec![(VectorId::U64(u64::MAX), vec![3.0, 3.0])])
        .unwrap();
    let l2 = m.list_units().await.unwrap();
    assert_ne!(l1.generation, l2.generation);
    assert_eq!(l2.units.len(), 2, "an add is a new unit");
    assert_eq!(
        l2.units[0], l1.units[0],
        "existing units untouched by an add"
    );
    m.upsert(vec![(VectorId::U64(1), vec![5.0, 5.0])]).unwrap();
    let l3 = m.list_units().await.unwrap();
    assert_ne!(
        l3.units[0].version, l1.units[0].version,
        "a replace rewrites its unit"
    );
    assert_eq!(m.delete(&[VectorId::from("a"), VectorId::from("zz")]), 1);
    let all = read_source(m.as_ref(), 2).await.unwrap();
    assert_eq!(all.ids, vec![VectorId::U64(1), VectorId::U64(u64::MAX)]);
    assert_eq!(all.vectors, vec![5.0, 5.0, 3.0, 3.0]);
}

/// Start an S3-compatible server (s3s-fs) on loopback over `root`.
async fn start_s3(root: &Path) -> std::net::SocketAddr {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto::Builder;
    let fs = s3s_fs::FileSystem::new(root).unwrap();
    let mut b = s3s::service::S3ServiceBuilder::new(fs);
    b.set_auth(s3s::auth::SimpleAuth::from_single(
        "rulake",
        "rulake-secret",
    ));
    let service = b.build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            let svc = service.clone();
            tokio::spawn(async move {
                let _ = Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(socket), svc)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parquet_over_s3_protocol() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("lake")).unwrap();
    let addr = start_s3(root.path()).await;
    let endpoint = format!("http://{addr}");
    let cfg = |url: &str| {
        ParquetSourceConfig::new(url, "id", "vector")
            .with_option("aws_endpoint", &endpoint)
            .with_option("aws_allow_http", "true")
            .with_option("aws_access_key_id", "rulake")
            .with_option("aws_secret_access_key", "rulake-secret")
            .with_option("aws_region", "us-east-1")
            .with_option("aws_virtual_hosted_style_request", "false")
    };
    // Upload through the S3 protocol itself.
    let store = rulake_lake::store::open_store(
        &url::Url::parse("s3://lake/emb").unwrap(),
        &cfg("s3://lake/emb").options,
        rulake_lake::io::LakeKind::Parquet,
    )
    .unwrap();
    use object_store::ObjectStoreExt;
    for f in 0..3u64 {
        let ids: Vec<u64> = (f * 100..f * 100 + 100).collect();
        let v: Vec<f32> = ids.iter().flat_map(|&i| [i as f32, -(i as f32)]).collect();
        let bytes = encode_parquet(IdsRef::U64(&ids), &v, 2, 40).unwrap();
        store
            .store
            .put(
                &object_store::path::Path::from(format!("emb/f{f}.parquet")),
                bytes.into(),
            )
            .await
            .unwrap();
    }
    let src = ParquetSource::open(cfg("s3://lake/emb")).unwrap();
    let io_before = rulake_lake::io::snapshot(rulake_lake::io::LakeKind::Parquet);
    let listing = src.list_units().await.unwrap();
    assert_eq!(listing.units.len(), 9, "3 files x 3 row groups");
    let all = read_all(&src, &listing, 2).await.unwrap();
    assert_eq!(all.len(), 300);
    // Reads over S3 reach the lake I/O metrics like local ones.
    let io_after = rulake_lake::io::snapshot(rulake_lake::io::LakeKind::Parquet);
    assert!(
        io_after.requests >= io_before.requests + 3 + 9,
        "{io_before:?} -> {io_after:?}"
    );
    assert!(
        io_after.bytes > io_before.bytes,
        "{io_before:?} -> {io_after:?}"
    );
    for (i, id) in all.ids.iter().enumerate() {
        assert_eq!(id, &VectorId::U64(i as u64));
        assert_eq!(all.vectors[2 * i], i as f32);
    }
    assert!(
        src.counters()
            .bytes
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );
    // Glob over S3 and generation change on a new object.
    let g = src.generation().await.unwrap();
    let only = ParquetSource::open(cfg("s3://lake/emb/f1*.parquet")).unwrap();
    assert_eq!(
        read_all(&only, &only.list_units().await.unwrap(), 2)
            .await
            .unwrap()
            .len(),
        100
    );
    let bytes = encode_parquet(IdsRef::U64(&[999]), &[1.0, 1.0], 2, 10).unwrap();
    store
        .store
        .put(
            &object_store::path::Path::from("emb/f9.parquet"),
            bytes.into(),
        )
        .await
        .unwrap();
    assert_ne!(g, src.generation().await.unwrap());
    // Wrong credentials are an error, not an empty lake.
    let bad = ParquetSource::open(
        ParquetSourceConfig::new("s3://lake/emb", "id", "vector")
            .with_option("aws_endpoint", &endpoint)
            .with_option("aws_allow_http", "true")
            .with_option("aws_access_key_id", "rulake")
            .with_option("aws_secret_access_key", "wrong")
            .with_option("aws_region", "us-east-1"),
    )
    .unwrap();
    assert!(bad.list_units().await.is_err());
}
