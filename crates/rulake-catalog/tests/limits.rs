//! The size limits of catalog commands at their edges: a name, id, URL,
//! identifier or option of exactly the limit is accepted, one byte more is
//! refused as INVALID_ARGUMENT naming the limit, and nothing changes.

use rulake_catalog::limits::{
    MAX_BATCH_BYTES, MAX_IDENT_LEN, MAX_ID_LEN, MAX_NAME_LEN, MAX_OPTIONS, MAX_OPTION_KEY_LEN,
    MAX_OPTION_VALUE_LEN, MAX_URL_LEN,
};
use rulake_catalog::model::batches;
use rulake_catalog::{
    Catalog, CollectionRecord, Command, CommandError, IcebergSqlCatalog, NodeRecord, RejectionKind,
    SourceKind, SourceRecord,
};
use std::collections::BTreeMap;
use tonic::Code;

fn parquet(name: &str, url: &str) -> SourceRecord {
    SourceRecord {
        name: name.into(),
        kind: SourceKind::Parquet {
            url: url.into(),
            id_column: "id".into(),
            vector_column: "emb".into(),
        },
        options: Default::default(),
    }
}

/// A catalog with source `s`, collection `c` over it, alias `live → c`.
fn base() -> Catalog {
    let mut cat = Catalog::default();
    for cmd in [
        Command::CreateSource(parquet("s", "file:///lake/emb/")),
        Command::CreateSource(SourceRecord {
            name: "m".into(),
            kind: SourceKind::Managed {
                prefix: "file:///lake/managed/m/".into(),
            },
            options: Default::default(),
        }),
        Command::CreateCollection(CollectionRecord::new("c", "s", 8)),
        Command::CreateAlias {
            alias: "live".into(),
            collection: "c".into(),
        },
    ] {
        cat.apply(cmd).expect("base");
    }
    cat
}

fn accepts(cat: &Catalog, cmd: Command) {
    let mut c = cat.clone();
    if let Err(e) = c.apply(cmd.clone()) {
        panic!("{} refused: {e}", cmd.name());
    }
}

/// Refused as INVALID_ARGUMENT, leaving the catalog as it was; returns the
/// message.
fn refuses(cat: &Catalog, cmd: Command) -> String {
    let mut c = cat.clone();
    let e = c
        .apply(cmd.clone())
        .expect_err(&format!("{} accepted", cmd.name()));
    assert_eq!(e.kind(), RejectionKind::Invalid, "{e}");
    assert_eq!(tonic::Status::from(&e).code(), Code::InvalidArgument);
    assert_eq!(&c, cat, "a refused command changed the catalog");
    let m = e.to_string();
    assert!(
        m.len() < 400,
        "the error echoes what it refuses: {} bytes",
        m.len()
    );
    m
}

fn tombstones(collection: &str, ids: Vec<String>) -> Command {
    Command::AddTombstones {
        collection: collection.into(),
        ids,
    }
}

#[test]
fn an_id_of_the_limit_is_a_tombstone_one_byte_more_is_not() {
    let cat = base();
    let at = format!("s:{}", "x".repeat(MAX_ID_LEN));
    let over = format!("s:{}", "x".repeat(MAX_ID_LEN + 1));
    // Multi-byte characters count in bytes.
    let wide = format!("s:{}", "é".repeat(MAX_ID_LEN / 2));
    let wide_over = format!("s:{}é", "é".repeat(MAX_ID_LEN / 2));
    accepts(&cat, tombstones("c", vec![at.clone(), wide]));
    let m = refuses(&cat, tombstones("c", vec!["s:ok".into(), over.clone()]));
    assert!(m.contains(&MAX_ID_LEN.to_string()), "names the limit: {m}");
    refuses(&cat, tombstones("c", vec![wide_over]));
    refuses(
        &cat,
        tombstones("c", vec![format!("s:{}", "x".repeat(5 << 20))]),
    );
    // A delete that removes tombstones is held to the same limit.
    let mut with = cat.clone();
    with.apply(tombstones("c", vec![at.clone()])).expect("add");
    accepts(
        &with,
        Command::RemoveTombstones {
            collection: "c".into(),
            ids: vec![at],
        },
    );
    refuses(
        &with,
        Command::RemoveTombstones {
            collection: "c".into(),
            ids: vec![over],
        },
    );
}

#[test]
fn one_command_carries_a_bounded_list_and_batches_split_longer_ones() {
    let cat = base();
    // 1000 ids of the longest kind: more than one command may carry.
    let ids: Vec<String> = (0..1000)
        .map(|i| format!("s:{i:04}{}", "x".repeat(MAX_ID_LEN - 4)))
        .collect();
    let m = refuses(&cat, tombstones("c", ids.clone()));
    assert!(m.contains(&MAX_BATCH_BYTES.to_string()), "{m}");
    let lists = batches(ids.clone());
    assert!(lists.len() >= 2);
    let mut c = cat.clone();
    for l in lists {
        c.apply(tombstones("c", l)).expect("each batch applies");
    }
    assert_eq!(c.tombstones["c"].len(), ids.len());
}

#[test]
fn names_of_the_limit_are_accepted_one_byte_more_is_refused() {
    let cat = base();
    let at = "n".repeat(MAX_NAME_LEN);
    let over = "n".repeat(MAX_NAME_LEN + 1);
    accepts(&cat, Command::CreateSource(parquet(&at, "file:///lake/a/")));
    refuses(
        &cat,
        Command::CreateSource(parquet(&over, "file:///lake/a/")),
    );
    accepts(
        &cat,
        Command::CreateCollection(CollectionRecord::new(&at, "s", 8)),
    );
    refuses(
        &cat,
        Command::CreateCollection(CollectionRecord::new(&over, "s", 8)),
    );
    accepts(
        &cat,
        Command::CreateAlias {
            alias: at.clone(),
            collection: "c".into(),
        },
    );
    let m = refuses(
        &cat,
        Command::CreateAlias {
            alias: over.clone(),
            collection: "c".into(),
        },
    );
    assert!(
        m.contains(&MAX_NAME_LEN.to_string()),
        "names the limit: {m}"
    );
    for bad in ["a/b", "a b", "é", "a\0b", ""] {
        refuses(
            &cat,
            Command::CreateAlias {
                alias: bad.into(),
                collection: "c".into(),
            },
        );
    }
}

/// Every command that names an object checks the name before looking it
/// up, so a huge name is refused short instead of echoed by NOT_FOUND.
#[test]
fn every_name_a_command_carries_is_checked() {
    let cat = base();
    let huge = "h".repeat(1 << 20);
    let mut cmds = vec![
        Command::DropSource { name: huge.clone() },
        Command::DropCollection { name: huge.clone() },
        Command::AlterCollection {
            name: huge.clone(),
            changes: rulake_catalog::CollectionChanges {
                rerank: Some(10),
                ..Default::default()
            },
        },
        Command::CreateCollection(CollectionRecord::new("d", &huge, 8)),
        Command::CreateAlias {
            alias: "a2".into(),
            collection: huge.clone(),
        },
        Command::DeleteAlias {
            alias: huge.clone(),
        },
        Command::SwitchAliases {
            switches: BTreeMap::from([(huge.clone(), "c".into())]),
        },
        Command::SwitchAliases {
            switches: BTreeMap::from([("live".into(), huge.clone())]),
        },
        tombstones(&huge, vec!["s:1".into()]),
        Command::RemoveTombstones {
            collection: huge.clone(),
            ids: vec!["s:1".into()],
        },
        Command::CommitManaged {
            source: huge.clone(),
            expected_seq: None,
            files: vec!["f.parquet".into()],
        },
    ];
    for cmd in cmds.drain(..) {
        let name = cmd.name();
        let mut c = cat.clone();
        let e = c.apply(cmd).expect_err(name);
        assert!(
            matches!(e, CommandError::InvalidName { .. }),
            "{name}: {e:.100}"
        );
        assert!(e.to_string().len() < 400, "{name}: echoes the name");
    }
}

fn source_with(kind: SourceKind) -> Command {
    Command::CreateSource(SourceRecord {
        name: "t".into(),
        kind,
        options: Default::default(),
    })
}

#[test]
fn urls_and_identifiers_of_the_limit_are_accepted_one_byte_more_is_refused() {
    let cat = base();
    let url = |len: usize| format!("s3://b/{}", "u".repeat(len - "s3://b/".len()));
    let ident = |len: usize| "k".repeat(len);
    let kinds = |u: usize, i: usize| {
        vec![
            SourceKind::Parquet {
                url: url(u),
                id_column: ident(i),
                vector_column: "v".into(),
            },
            SourceKind::Delta {
                url: url(u),
                id_column: ident(i),
                vector_column: "v".into(),
                version: None,
            },
            SourceKind::Iceberg {
                url: String::new(),
                id_column: "id".into(),
                vector_column: "v".into(),
                snapshot_id: None,
                sql_catalog: Some(IcebergSqlCatalog {
                    uri: url(u),
                    catalog: "c".into(),
                    namespace: "n".into(),
                    table: ident(i),
                }),
            },
            SourceKind::Managed { prefix: url(u) },
        ]
    };
    for kind in kinds(MAX_URL_LEN, MAX_IDENT_LEN) {
        accepts(&cat, source_with(kind));
    }
    for kind in kinds(MAX_URL_LEN + 1, MAX_IDENT_LEN) {
        let m = refuses(&cat, source_with(kind));
        assert!(m.contains(&MAX_URL_LEN.to_string()), "names the limit: {m}");
    }
    for kind in kinds(MAX_URL_LEN, MAX_IDENT_LEN + 1)
        .into_iter()
        .filter(|k| !matches!(k, SourceKind::Managed { .. }))
    {
        let m = refuses(&cat, source_with(kind));
        assert!(
            m.contains(&MAX_IDENT_LEN.to_string()),
            "names the limit: {m}"
        );
    }
    let node = |addr: String| {
        Command::RegisterNode(NodeRecord {
            id: 3,
            addr,
            capacity_bytes: 0,
            draining: false,
        })
    };
    accepts(&cat, node(url(MAX_URL_LEN)));
    refuses(&cat, node(url(MAX_URL_LEN + 1)));
    let commit = |file: String| Command::CommitManaged {
        source: "m".into(),
        expected_seq: None,
        files: vec![file],
    };
    accepts(&cat, commit("f".repeat(MAX_URL_LEN)));
    refuses(&cat, commit("f".repeat(MAX_URL_LEN + 1)));
}

#[test]
fn options_of_the_limits_are_accepted_one_more_is_refused() {
    let cat = base();
    let with = |options: BTreeMap<String, String>| {
        let mut s = parquet("t", "file:///lake/t/");
        s.options = options;
        Command::CreateSource(s)
    };
    let many = |n: usize| -> BTreeMap<String, String> {
        (0..n).map(|i| (format!("key_{i}"), "v".into())).collect()
    };
    accepts(&cat, with(many(MAX_OPTIONS)));
    let m = refuses(&cat, with(many(MAX_OPTIONS + 1)));
    assert!(m.contains(&MAX_OPTIONS.to_string()), "names the limit: {m}");

    let one = |k: String, v: String| with(BTreeMap::from([(k, v)]));
    accepts(&cat, one("k".repeat(MAX_OPTION_KEY_LEN), "v".into()));
    let m = refuses(&cat, one("k".repeat(MAX_OPTION_KEY_LEN + 1), "v".into()));
    assert!(m.contains(&MAX_OPTION_KEY_LEN.to_string()), "{m}");
    for bad in ["", "a key", "a/b", "k\n"] {
        refuses(&cat, one(bad.into(), "v".into()));
    }
    accepts(&cat, one("k".into(), "v".repeat(MAX_OPTION_VALUE_LEN)));
    let m = refuses(&cat, one("k".into(), "v".repeat(MAX_OPTION_VALUE_LEN + 1)));
    assert!(m.contains(&MAX_OPTION_VALUE_LEN.to_string()), "{m}");
}
