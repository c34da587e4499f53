//! The catalog state machine in process: every command applies, and every
//! invalid command is rejected with the matching error and changes nothing.

use rulake_catalog::{
    Applied, Assignment, Catalog, CollectionChanges, CollectionRecord, Command, CommandError,
    NodeRecord, SourceKind, SourceRecord,
};
use rulake_types::{Consistency, Metric};
use std::collections::BTreeMap;
use std::time::Duration;

fn parquet(name: &str) -> Command {
    Command::CreateSource(SourceRecord {
        name: name.into(),
        kind: SourceKind::Parquet {
            url: "file:///lake/emb/".into(),
            id_column: "id".into(),
            vector_column: "emb".into(),
        },
        options: Default::default(),
    })
}

fn managed(name: &str, prefix: &str) -> Command {
    Command::CreateSource(SourceRecord {
        name: name.into(),
        kind: SourceKind::Managed {
            prefix: prefix.into(),
        },
        options: Default::default(),
    })
}

fn coll(name: &str, source: &str) -> Command {
    let mut c = CollectionRecord::new(name, source, 8);
    c.partitions = 4;
    c.metric = Metric::Cosine;
    Command::CreateCollection(c)
}

/// A catalog with sources `s` (parquet) and `m` (managed), collections
/// `a`, `b` over `s`, alias `live → a`, nodes 1 and 2.
fn base() -> Catalog {
    let mut cat = Catalog::default();
    for cmd in [
        parquet("s"),
        managed("m", "file:///lake/managed/m/"),
        coll("a", "s"),
        coll("b", "s"),
        Command::CreateAlias {
            alias: "live".into(),
            collection: "a".into(),
        },
        Command::RegisterNode(NodeRecord {
            id: 1,
            addr: "10.0.0.1:7000".into(),
            capacity_bytes: 0,
            draining: false,
        }),
        Command::RegisterNode(NodeRecord {
            id: 2,
            addr: "10.0.0.2:7000".into(),
            capacity_bytes: 0,
            draining: false,
        }),
    ] {
        cat.apply(cmd).expect("base command applies");
    }
    cat
}

/// Apply `cmd` and require it to fail as `check` says, leaving the catalog unchanged.
fn rejects(cat: &Catalog, cmd: Command, check: impl Fn(&CommandError) -> bool) {
    assert!(
        cat.validate(&cmd).is_err(),
        "validate accepted an invalid command: {cmd:?}"
    );
    let mut c = cat.clone();
    let err = c.apply(cmd.clone()).expect_err("invalid command applied");
    assert!(check(&err), "{cmd:?} failed with the wrong error: {err:?}");
    assert!(!err.to_string().is_empty());
    assert_eq!(&c, cat, "a rejected command changed the catalog: {cmd:?}");
}

#[test]
fn valid_commands_apply() {
    let mut cat = base();
    assert_eq!(cat.resolve("live").map(|c| c.name.as_str()), Some("a"));
    cat.apply(Command::AlterCollection {
        name: "a".into(),
        changes: CollectionChanges {
            replication: Some(3),
            consistency: Some(Consistency::Fresh),
            rerank: Some(5),
            nprobe: Some(7),
        },
    })
    .unwrap();
    let a = &cat.collections["a"];
    assert_eq!(
        (a.replication, a.consistency, a.rerank, a.nprobe),
        (3, Consistency::Fresh, 5, Some(7))
    );

    cat.apply(Command::CreateAlias {
        alias: "old".into(),
        collection: "b".into(),
    })
    .unwrap();
    let switches = BTreeMap::from([("live".into(), "b".into()), ("old".into(), "a".into())]);
    cat.apply(Command::SwitchAliases { switches }).unwrap();
    assert_eq!(cat.aliases["live"], "b");
    assert_eq!(cat.aliases["old"], "a");

    let r = cat
        .apply(Command::AddTombstones {
            collection: "a".into(),
            ids: vec!["1".into(), "2".into(), "2".into()],
        })
        .unwrap();
    assert_eq!(r, Applied::Count { changed: 2 });
    let r = cat
        .apply(Command::RemoveTombstones {
            collection: "a".into(),
            ids: vec!["1".into(), "9".into()],
        })
        .unwrap();
    assert_eq!(r, Applied::Count { changed: 1 });
    assert_eq!(cat.tombstones["a"].len(), 1);

    let a1 = Assignment {
        epoch: 1,
        partitions: BTreeMap::from([("a/0".into(), vec![1, 2]), ("a/3".into(), vec![2])]),
        handoff: BTreeMap::new(),
    };
    assert_eq!(
        cat.apply(Command::SetAssignment(a1)).unwrap(),
        Applied::Epoch { epoch: 1 }
    );

    for (seq, expected) in [(1, Some(1)), (2, None)] {
        let r = cat
            .apply(Command::CommitManaged {
                source: "m".into(),
                expected_seq: expected,
                files: vec![format!("part-{seq}.parquet")],
            })
            .unwrap();
        assert_eq!(r, Applied::Committed { seq });
    }
    assert_eq!(cat.managed_seq("m"), 2);

    cat.apply(Command::DeleteAlias {
        alias: "old".into(),
    })
    .unwrap();
    cat.apply(Command::DropCollection { name: "a".into() })
        .unwrap();
    assert!(!cat.tombstones.contains_key("a"));
    assert!(
        cat.assignment.partitions.is_empty(),
        "a's placement dropped with it"
    );
    cat.apply(Command::DeregisterNode { id: 1 }).unwrap();
    cat.apply(Command::DropSource { name: "m".into() }).unwrap();
    assert!(!cat.managed.contains_key("m"));
}

#[test]
fn invalid_sources_are_rejected() {
    let cat = base();
    use CommandError as E;
    rejects(&cat, parquet(""), |e| matches!(e, E::InvalidName { .. }));
    rejects(&cat, parquet("bad name"), |e| {
        matches!(e, E::InvalidName { .. })
    });
    rejects(&cat, parquet(&"x".repeat(200)), |e| {
        matches!(e, E::InvalidName { .. })
    });
    rejects(&cat, parquet("s"), |e| matches!(e, E::AlreadyExists { .. }));
    let empty_url = Command::CreateSource(SourceRecord {
        name: "t".into(),
        kind: SourceKind::Delta {
            url: " ".into(),
            id_column: "id".into(),
            vector_column: "v".into(),
            version: None,
        },
        options: Default::default(),
    });
    rejects(&cat, empty_url, |e| {
        matches!(e, E::InvalidField { field: "url", .. })
    });
    let same_cols = Command::CreateSource(SourceRecord {
        name: "t".into(),
        kind: SourceKind::Parquet {
            url: "file:///x".into(),
            id_column: "v".into(),
            vector_column: "v".into(),
        },
        options: Default::default(),
    });
    rejects(&cat, same_cols, |e| matches!(e, E::InvalidField { .. }));
    rejects(&cat, managed("m2", "file:///lake/managed/"), |e| {
        matches!(e, E::Conflict(_))
    });
    rejects(
        &cat,
        Command::DropSource {
            name: "nope".into(),
        },
        |e| matches!(e, E::NotFound { .. }),
    );
    rejects(&cat, Command::DropSource { name: "s".into() }, |e| {
        matches!(e, E::InUse { .. })
    });
}

#[test]
fn invalid_collections_are_rejected() {
    let cat = base();
    use CommandError as E;
    let with = |f: fn(&mut CollectionRecord)| {
        let mut c = CollectionRecord::new("c", "s", 8);
        f(&mut c);
        Command::CreateCollection(c)
    };
    rejects(&cat, with(|c| c.dim = 0), |e| {
        matches!(e, E::InvalidField { field: "dim", .. })
    });
    rejects(&cat, with(|c| c.dim = 1 << 20), |e| {
        matches!(e, E::InvalidField { field: "dim", .. })
    });
    rejects(&cat, with(|c| c.partitions = 0), |e| {
        matches!(
            e,
            E::InvalidField {
                field: "partitions",
                ..
            }
        )
    });
    rejects(&cat, with(|c| c.partitions = 5000), |e| {
        matches!(
            e,
            E::InvalidField {
                field: "partitions",
                ..
            }
        )
    });
    rejects(&cat, with(|c| c.replication = 0), |e| {
        matches!(
            e,
            E::InvalidField {
                field: "replication",
                ..
            }
        )
    });
    rejects(&cat, with(|c| c.rerank = 0), |e| {
        matches!(
            e,
            E::InvalidField {
                field: "rerank",
                ..
            }
        )
    });
    rejects(
        &cat,
        with(|c| {
            c.consistency = Consistency::Eventual {
                max_staleness: Duration::ZERO,
            }
        }),
        |e| matches!(e, E::InvalidField { .. }),
    );
    rejects(&cat, with(|c| c.source = "nope".into()), |e| {
        matches!(e, E::NotFound { what: "source", .. })
    });
    rejects(&cat, with(|c| c.name = "a".into()), |e| {
        matches!(e, E::AlreadyExists { .. })
    });
    rejects(&cat, with(|c| c.name = "live".into()), |e| {
        matches!(e, E::Conflict(_))
    });
    rejects(&cat, with(|c| c.name = "a/b".into()), |e| {
        matches!(e, E::InvalidName { .. })
    });

    let alter = |name: &str, changes: CollectionChanges| Command::AlterCollection {
        name: name.into(),
        changes,
    };
    rejects(&cat, alter("nope", CollectionChanges::default()), |e| {
        matches!(e, E::NotFound { .. })
    });
    rejects(&cat, alter("a", CollectionChanges::default()), |e| {
        matches!(
            e,
            E::InvalidField {
                field: "changes",
                ..
            }
        )
    });
    let bad_rep = CollectionChanges {
        replication: Some(99),
        ..Default::default()
    };
    rejects(&cat, alter("a", bad_rep), |e| {
        matches!(
            e,
            E::InvalidField {
                field: "replication",
                ..
            }
        )
    });
    let bad_rerank = CollectionChanges {
        rerank: Some(0),
        ..Default::default()
    };
    rejects(&cat, alter("a", bad_rerank), |e| {
        matches!(
            e,
            E::InvalidField {
                field: "rerank",
                ..
            }
        )
    });
    rejects(
        &cat,
        Command::DropCollection {
            name: "nope".into(),
        },
        |e| matches!(e, E::NotFound { .. }),
    );
    rejects(&cat, Command::DropCollection { name: "a".into() }, |e| {
        matches!(e, E::InUse { .. })
    });
}

#[test]
fn invalid_aliases_are_rejected() {
    let cat = base();
    use CommandError as E;
    let create = |alias: &str, collection: &str| Command::CreateAlias {
        alias: alias.into(),
        collection: collection.into(),
    };
    rejects(&cat, create("x", "nope"), |e| {
        matches!(e, E::NotFound { .. })
    });
    rejects(&cat, create("live", "b"), |e| {
        matches!(e, E::AlreadyExists { .. })
    });
    rejects(&cat, create("b", "a"), |e| matches!(e, E::Conflict(_)));
    rejects(&cat, create("", "a"), |e| {
        matches!(e, E::InvalidName { .. })
    });
    rejects(&cat, Command::DeleteAlias { alias: "x".into() }, |e| {
        matches!(e, E::NotFound { .. })
    });
    let switch = |pairs: &[(&str, &str)]| Command::SwitchAliases {
        switches: pairs
            .iter()
            .map(|(a, c)| (a.to_string(), c.to_string()))
            .collect(),
    };
    rejects(&cat, switch(&[]), |e| matches!(e, E::InvalidField { .. }));
    rejects(&cat, switch(&[("nope", "a")]), |e| {
        matches!(e, E::NotFound { what: "alias", .. })
    });
    // Atomic: one bad target rejects the whole switch.
    rejects(&cat, switch(&[("live", "b"), ("live2", "a")]), |e| {
        matches!(e, E::NotFound { .. })
    });
    rejects(&cat, switch(&[("live", "nope")]), |e| {
        matches!(
            e,
            E::NotFound {
                what: "collection",
                ..
            }
        )
    });
}

#[test]
fn invalid_tombstones_nodes_assignments_and_commits_are_rejected() {
    let cat = base();
    use CommandError as E;
    let add = |c: &str, ids: Vec<String>| Command::AddTombstones {
        collection: c.into(),
        ids,
    };
    rejects(&cat, add("nope", vec!["1".into()]), |e| {
        matches!(e, E::NotFound { .. })
    });
    rejects(&cat, add("a", vec![]), |e| {
        matches!(e, E::InvalidField { .. })
    });
    rejects(&cat, add("a", vec![String::new()]), |e| {
        matches!(e, E::InvalidField { .. })
    });
    rejects(&cat, add("a", vec!["1".into(); 100_001]), |e| {
        matches!(e, E::InvalidField { .. })
    });
    let remove = Command::RemoveTombstones {
        collection: "nope".into(),
        ids: vec!["1".into()],
    };
    rejects(&cat, remove, |e| matches!(e, E::NotFound { .. }));
    let remove_empty = Command::RemoveTombstones {
        collection: "a".into(),
        ids: vec![],
    };
    rejects(&cat, remove_empty, |e| matches!(e, E::InvalidField { .. }));

    let node = |id: u64, addr: &str| {
        Command::RegisterNode(NodeRecord {
            id,
            addr: addr.into(),
            capacity_bytes: 0,
            draining: false,
        })
    };
    rejects(&cat, node(0, "x:1"), |e| {
        matches!(e, E::InvalidField { .. })
    });
    rejects(&cat, node(3, ""), |e| matches!(e, E::InvalidField { .. }));
    // Registering again (a restart) updates the address and keeps the drain flag.
    let mut again = cat.clone();
    again
        .apply(Command::SetNodeDraining {
            id: 1,
            draining: true,
        })
        .unwrap();
    again.apply(node(1, "10.0.0.9:7000")).unwrap();
    assert_eq!(again.nodes[&1].addr, "10.0.0.9:7000");
    assert!(again.nodes[&1].draining);
    rejects(
        &cat,
        Command::SetNodeDraining {
            id: 9,
            draining: true,
        },
        |e| matches!(e, E::NotFound { .. }),
    );
    rejects(&cat, Command::DeregisterNode { id: 9 }, |e| {
        matches!(e, E::NotFound { .. })
    });

    let assign = |epoch: u64, pairs: &[(&str, Vec<u64>)]| {
        Command::SetAssignment(Assignment {
            epoch,
            partitions: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            handoff: BTreeMap::new(),
        })
    };
    rejects(&cat, assign(2, &[("a/0", vec![1])]), |e| {
        matches!(
            e,
            E::StaleEpoch {
                given: 2,
                expected: 1
            }
        )
    });
    rejects(&cat, assign(0, &[]), |e| matches!(e, E::StaleEpoch { .. }));
    rejects(&cat, assign(1, &[("a0", vec![1])]), |e| {
        matches!(e, E::InvalidField { .. })
    });
    rejects(&cat, assign(1, &[("nope/0", vec![1])]), |e| {
        matches!(e, E::NotFound { .. })
    });
    rejects(&cat, assign(1, &[("a/x", vec![1])]), |e| {
        matches!(e, E::InvalidField { .. })
    });
    rejects(&cat, assign(1, &[("a/4", vec![1])]), |e| {
        matches!(e, E::InvalidField { .. })
    });
    rejects(&cat, assign(1, &[("a/0", vec![])]), |e| {
        matches!(e, E::InvalidField { .. })
    });
    rejects(&cat, assign(1, &[("a/0", vec![1, 1])]), |e| {
        matches!(e, E::InvalidField { .. })
    });
    rejects(&cat, assign(1, &[("a/0", vec![7])]), |e| {
        matches!(e, E::NotFound { what: "node", .. })
    });
    let mut assigned = cat.clone();
    assigned
        .apply(Command::SetAssignment(Assignment {
            epoch: 1,
            partitions: BTreeMap::from([("a/0".into(), vec![1])]),
            handoff: BTreeMap::from([("a/1".into(), vec![2])]),
        }))
        .unwrap();
    rejects(&assigned, Command::DeregisterNode { id: 1 }, |e| {
        matches!(e, E::InUse { .. })
    });
    // A node still handing a partition off is in use too.
    rejects(&assigned, Command::DeregisterNode { id: 2 }, |e| {
        matches!(e, E::InUse { .. })
    });

    let commit = |source: &str, seq: Option<u64>, files: &[&str]| Command::CommitManaged {
        source: source.into(),
        expected_seq: seq,
        files: files.iter().map(|f| f.to_string()).collect(),
    };
    rejects(&cat, commit("nope", None, &["f"]), |e| {
        matches!(e, E::NotFound { .. })
    });
    rejects(&cat, commit("s", None, &["f"]), |e| {
        matches!(e, E::Conflict(_))
    });
    rejects(&cat, commit("m", None, &[]), |e| {
        matches!(e, E::InvalidField { .. })
    });
    rejects(&cat, commit("m", Some(2), &["f"]), |e| {
        matches!(
            e,
            E::StaleSequence {
                given: 2,
                expected: 1
            }
        )
    });
    rejects(&cat, commit("m", None, &["f", "f"]), |e| {
        matches!(e, E::Conflict(_))
    });
    let mut committed = cat.clone();
    committed.apply(commit("m", None, &["f"])).unwrap();
    rejects(&committed, commit("m", None, &["g", "f"]), |e| {
        matches!(e, E::Conflict(_))
    });
}

/// A compaction swaps files in one step, at the expected sequence only,
/// and only files that are visible; a refused one changes nothing.
#[test]
fn a_compaction_replaces_visible_files_as_the_next_generation() {
    use CommandError as E;
    let mut cat = base();
    for files in [&["a", "b"][..], &["c"][..]] {
        cat.apply(Command::CommitManaged {
            source: "m".into(),
            expected_seq: None,
            files: files.iter().map(|f| f.to_string()).collect(),
        })
        .unwrap();
    }
    let compact_in =
        |source: &str, seq: u64, retired: &[&str], files: &[&str]| Command::CompactManaged {
            source: source.into(),
            expected_seq: seq,
            retired: retired.iter().map(|f| f.to_string()).collect(),
            files: files.iter().map(|f| f.to_string()).collect(),
        };
    let compact = |seq: u64, retired: &[&str], files: &[&str]| compact_in("m", seq, retired, files);
    rejects(&cat, compact(2, &["a"], &["d"]), |e| {
        matches!(
            e,
            E::StaleSequence {
                given: 2,
                expected: 3
            }
        )
    });
    rejects(&cat, compact(3, &[], &["d"]), |e| {
        matches!(e, E::InvalidField { .. })
    });
    rejects(&cat, compact(3, &["zz"], &["d"]), |e| {
        matches!(e, E::Conflict(_))
    });
    rejects(&cat, compact(3, &["a", "a"], &["d"]), |e| {
        matches!(e, E::Conflict(_))
    });
    rejects(&cat, compact(3, &["a"], &["c"]), |e| {
        matches!(e, E::Conflict(_))
    });
    rejects(&cat, compact_in("s", 1, &["a"], &["d"]), |e| {
        matches!(e, E::Conflict(_))
    });
    let mut s = cat.clone();

    let applied = s.apply(compact(3, &["a", "c"], &["d"])).unwrap();
    assert_eq!(applied, Applied::Committed { seq: 3 });
    assert_eq!(s.managed_seq("m"), 3);
    let visible: Vec<&str> = s.managed["m"]
        .iter()
        .flat_map(|c| c.files.iter().map(String::as_str))
        .collect();
    assert_eq!(visible, ["b", "d"]);
    // A retired file is gone for good; every row deleted leaves no file.
    rejects(&s, compact(4, &["a"], &[]), |e| matches!(e, E::Conflict(_)));
    s.apply(compact(4, &["b", "d"], &[])).unwrap();
    assert!(s.managed["m"].iter().all(|c| c.files.is_empty()));
    assert_eq!(s.managed_seq("m"), 4);
}

#[test]
fn commands_round_trip_through_json() {
    // Commands travel as JSON in the log and over the wire.
    let cmds = vec![
        parquet("s"),
        coll("a", "s"),
        Command::CommitManaged {
            source: "m".into(),
            expected_seq: Some(3),
            files: vec!["x".into()],
        },
    ];
    for c in cmds {
        let json = serde_json::to_string(&c).unwrap();
        let back: Command = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
    }
}
