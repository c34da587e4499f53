use super::*;
use rulake_types::IcebergSqlCatalog;

fn parquet(url: &str) -> SourceKind {
    SourceKind::Parquet {
        url: url.into(),
        id_column: "id".into(),
        vector_column: "v".into(),
    }
}

fn no_options() -> BTreeMap<String, String> {
    BTreeMap::new()
}

fn lake_policy() -> SourcePolicy {
    SourcePolicy::new()
        .allow(
            "s3://lake/",
            BTreeMap::from([("aws_endpoint".into(), "http://minio:9000".into())]),
        )
        .unwrap()
        .allow("file:///data/lake", no_options())
        .unwrap()
        .fence("file:///data/lake/rulake-data")
        .unwrap()
}

fn verdict(policy: &SourcePolicy, url: &str) -> &'static str {
    match policy.admit(&parquet(url), &no_options()) {
        Ok(_) => "admitted",
        Err(LakeError::Denied { .. }) => "denied",
        Err(LakeError::InvalidUrl { .. } | LakeError::Invalid(_)) => "invalid",
        Err(e) => panic!("unexpected {e}"),
    }
}

#[test]
fn prefixes_match_whole_segments() {
    let p = lake_policy();
    assert_eq!(verdict(&p, "s3://lake/t/part-0.parquet"), "admitted");
    assert_eq!(verdict(&p, "s3a://lake/t/"), "admitted");
    assert_eq!(verdict(&p, "S3://LAKE/t/"), "admitted");
    assert_eq!(verdict(&p, "s3://lakehouse/t/"), "denied");
    assert_eq!(verdict(&p, "s3://other/t/"), "denied");
    assert_eq!(verdict(&p, "file:///data/lake/t/"), "admitted");
    assert_eq!(verdict(&p, "/data/lake/t/"), "admitted");
    assert_eq!(verdict(&p, "file:///data/lakehouse/"), "denied");
    assert_eq!(verdict(&p, "file:///etc/shadow"), "denied");
    assert_eq!(verdict(&p, "gs://lake/t/"), "denied");
    assert_eq!(verdict(&p, "https://lake/t/"), "denied");
    assert_eq!(verdict(&SourcePolicy::new(), "s3://lake/t/"), "denied");
}

#[test]
fn ambiguous_spellings_are_refused_not_interpreted() {
    let p = lake_policy();
    for url in [
        "file:///data/lake/../../etc/shadow",
        "file:///data/lake/%2e%2e/%2e%2e/etc/shadow",
        "file:///data/lake/t/%2Fetc",
        "file:///data/lake/./t",
        "s3://lake/t/../../other/x",
        "s3://lake/t/%2E%2E/x",
        "s3://user:secret@lake/t/",
        "s3://lake/t/?x=1",
        "s3://lake/t/#frag",
        "file:///data/lake/t\\..\\x",
        "s3:///no-bucket/",
    ] {
        assert_eq!(verdict(&p, url), "invalid", "{url}");
    }
}

#[test]
fn the_servers_own_files_are_never_a_source() {
    let p = lake_policy();
    assert_eq!(
        verdict(&p, "file:///data/lake/rulake-data/managed/teamb/"),
        "denied"
    );
    assert_eq!(verdict(&p, "file:///data/lake/rulake-data"), "denied");
    // A source that contains the data directory would list it too.
    assert_eq!(verdict(&p, "file:///data/lake/"), "denied");
    assert_eq!(verdict(&p, "file:///data/lake/*.parquet"), "denied");
    assert_eq!(verdict(&p, "file:///data/lake/t/*.parquet"), "admitted");
}

#[test]
fn fences_hold_through_symlinks() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let lake = root.join("lake");
    let data = root.join("data");
    std::fs::create_dir_all(lake.join("t")).unwrap();
    std::fs::create_dir_all(data.join("managed")).unwrap();
    std::fs::write(data.join("managed/secret.parquet"), b"x").unwrap();
    std::os::unix::fs::symlink(&data, lake.join("t/link")).unwrap();
    let p = SourcePolicy::new()
        .allow(lake.to_str().unwrap(), no_options())
        .unwrap()
        .fence_path(&data)
        .unwrap();
    let through_link = format!("file://{}/t/link/managed/secret.parquet", lake.display());
    assert!(!p.permits(&through_link));
    assert!(p.permits(&format!("file://{}/t/x.parquet", lake.display())));
    assert!(!p.permits(&format!("file://{}/managed/secret.parquet", data.display())));
}

#[test]
fn clients_set_only_harmless_options() {
    let p = lake_policy();
    let with = |k: &str, v: &str| BTreeMap::from([(k.to_owned(), v.to_owned())]);
    for key in [
        "aws_endpoint",
        "AWS_ENDPOINT",
        "aws_allow_http",
        "allow_http",
        "azure_federated_token_file",
        "azure_authority_host",
        "aws_access_key_id",
        "google_service_account",
        "aws_web_identity_token_file",
    ] {
        let err = p
            .admit(&parquet("s3://lake/t/"), &with(key, "x"))
            .unwrap_err();
        assert!(matches!(err, LakeError::Invalid(_)), "{key}: {err}");
    }
    let admitted = p
        .admit(&parquet("s3://lake/t/"), &with("aws_region", "eu-west-1"))
        .unwrap();
    assert_eq!(
        admitted.options,
        vec![
            ("aws_endpoint".to_owned(), "http://minio:9000".to_owned()),
            ("aws_region".to_owned(), "eu-west-1".to_owned()),
        ]
    );
}

#[test]
fn every_source_kind_is_held_to_the_policy() {
    let p = lake_policy();
    let delta = |url: &str| SourceKind::Delta {
        url: url.into(),
        id_column: "id".into(),
        vector_column: "v".into(),
        version: None,
    };
    let sql = |uri: &str| SourceKind::Iceberg {
        url: String::new(),
        id_column: "id".into(),
        vector_column: "v".into(),
        snapshot_id: None,
        sql_catalog: Some(IcebergSqlCatalog {
            uri: uri.into(),
            catalog: "c".into(),
            namespace: "ns".into(),
            table: "t".into(),
        }),
    };
    assert!(p.admit(&delta("s3://lake/d/"), &no_options()).is_ok());
    assert!(p.admit(&delta("s3://elsewhere/d/"), &no_options()).is_err());
    assert!(p
        .admit(&sql("sqlite:////data/lake/c.db"), &no_options())
        .is_ok());
    assert!(p.admit(&sql("/data/lake/c.db"), &no_options()).is_ok());
    assert!(p
        .admit(&sql("sqlite:////etc/rulake/auth.db"), &no_options())
        .is_err());
    assert!(p
        .admit(&sql("sqlite:////data/lake/c.db?mode=ro"), &no_options())
        .is_err());
    assert!(p.admit(&sql("sqlite:///:memory:"), &no_options()).is_err());
    let managed = SourceKind::Managed {
        prefix: "file:///data/lake/rulake-data/managed/x/".into(),
    };
    assert!(p.admit(&managed, &no_options()).is_ok());
}

#[test]
fn oversized_urls_are_refused_whole() {
    let p = lake_policy();
    let long = format!("s3://lake/{}", "é".repeat(MAX_URL_BYTES));
    assert_eq!(verdict(&p, &long), "invalid");
    let stars = format!("s3://lake/{}", "*".repeat(1_000_000));
    assert_eq!(verdict(&p, &stars), "invalid");
}

/// A segment is decoded as the object store decodes it: `&`, `=` and `+`
/// are characters of the name, so `lake&x` is not the directory `lake`
/// (found by the `source_url` fuzz target).
#[test]
fn segments_decode_as_the_store_reads_them() {
    let p = lake_policy();
    for url in [
        "file:///data/lake&x/a.parquet",
        "file:///data/lake=/a.parquet",
        "file:///data/lake+/a.parquet",
    ] {
        assert_eq!(verdict(&p, url), "denied", "{url}");
    }
    assert_eq!(verdict(&p, "file:///data/l%61ke/a.parquet"), "admitted");
}
