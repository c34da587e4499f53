//! Bounded work per source: what a client or a hostile lake can make a
//! source read or match is capped, at open or before the bytes are
//! fetched, and the caps hold at their edges. (Issue 23, "bounded work".)

use rulake_lake::parquet::{MAX_GLOB_BYTES, MAX_GLOB_WILDCARDS};
use rulake_lake::reader::MAX_FOOTER_BYTES;
use rulake_lake::*;
use std::path::Path;

fn open_parquet(url: &str) -> Result<ParquetSource> {
    ParquetSource::open(ParquetSourceConfig::new(url, "id", "vector"))
}

fn write_rows(path: &Path) {
    write_parquet_file(path, IdsRef::U64(&[1, 2]), &[0.5; 4], 2, 64).unwrap();
}

/// A sparse file of `len` bytes ending with `tail` (no disk used for the
/// zeros before it).
fn sparse_file(path: &Path, len: u64, tail: &[u8]) {
    use std::io::{Seek, SeekFrom, Write};
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut f = std::fs::File::create(path).unwrap();
    f.set_len(len).unwrap();
    f.seek(SeekFrom::Start(len - tail.len() as u64)).unwrap();
    f.write_all(tail).unwrap();
}

/// The glob of about a million `*` that crashed the server on every
/// restart is refused at open, with a short message naming the limit.
#[test]
fn glob_bomb_is_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("{}/{}", dir.path().display(), "*".repeat(1_000_000));
    let err = open_parquet(&url).unwrap_err();
    assert!(matches!(err, LakeError::InvalidUrl { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&format!("limit of {MAX_GLOB_BYTES} bytes")),
        "{text}"
    );
    assert!(
        text.len() < 2 * MAX_GLOB_BYTES + 200,
        "{} bytes",
        text.len()
    );
}

/// Exactly the limits open and list; one more byte or wildcard is refused.
#[tokio::test]
async fn glob_limits_at_their_edges() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().display().to_string();
    // 16 wildcards: 15 `?` and one `*` over a 15-character directory name.
    let name = "abcdefghijklmno";
    write_rows(&dir.path().join(name).join("part-0.parquet"));
    let glob = format!("{}/*.parquet", "?".repeat(15));
    assert_eq!(glob.matches(['*', '?', '[']).count(), MAX_GLOB_WILDCARDS);
    let src = open_parquet(&format!("{base}/{glob}")).unwrap();
    let listing = src.list_units().await.unwrap();
    assert_eq!(listing.units.len(), 1);
    let err = open_parquet(&format!("{base}/{glob}?")).unwrap_err();
    assert!(err.to_string().contains("17 wildcards"), "{err}");

    // 1024 bytes of glob: one wildcard and a long literal name.
    let long = format!("{}*", "x".repeat(MAX_GLOB_BYTES - 1));
    assert!(open_parquet(&format!("{base}/{long}")).is_ok());
    let err = open_parquet(&format!("{base}/{long}x")).unwrap_err();
    assert!(matches!(err, LakeError::InvalidUrl { .. }), "{err}");
    assert!(err.to_string().contains("1025 bytes"), "{err}");
}

/// A file whose last 8 bytes claim a footer just over the limit is refused
/// without fetching it; one claiming exactly the limit is read (and fails
/// as the garbage it is).
#[tokio::test]
async fn parquet_footer_over_the_limit_is_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.parquet");
    let len = MAX_FOOTER_BYTES + (1 << 20);
    let tail = |claim: u64| {
        let mut t = (claim as u32).to_le_bytes().to_vec();
        t.extend_from_slice(b"PAR1");
        t
    };
    sparse_file(&file, len, &tail(MAX_FOOTER_BYTES + 1));
    let src = open_parquet(dir.path().to_str().unwrap()).unwrap();
    let err = src.list_units().await.unwrap_err();
    match &err {
        LakeError::TooLarge {
            path,
            what,
            size,
            limit,
        } => {
            assert!(path.ends_with("big.parquet"), "{err}");
            assert_eq!(*what, "Parquet footer");
            assert_eq!(*size, MAX_FOOTER_BYTES + 1);
            assert_eq!(*limit, MAX_FOOTER_BYTES);
        }
        other => panic!("expected TooLarge, got {other}"),
    }
    let read = src
        .counters()
        .bytes
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        read <= 64 * 1024,
        "{read} bytes fetched for a refused footer"
    );

    sparse_file(&file, len, &tail(MAX_FOOTER_BYTES));
    let src = open_parquet(dir.path().to_str().unwrap()).unwrap();
    let err = src.list_units().await.unwrap_err();
    assert!(matches!(err, LakeError::Parquet { .. }), "{err}");
}

#[cfg(feature = "iceberg")]
mod iceberg {
    use super::*;
    use rulake_lake::iceberg::{MAX_AVRO_INFLATED_BYTES, MAX_METADATA_FILE_BYTES};
    use std::io::Write;

    /// A table directory whose `version-hint.text` names `v1.metadata.json`.
    fn table_with_hint(dir: &Path) -> std::path::PathBuf {
        let t = dir.join("t");
        std::fs::create_dir_all(t.join("metadata")).unwrap();
        std::fs::write(t.join("metadata/version-hint.text"), "1").unwrap();
        t
    }

    fn open(t: &Path) -> IcebergSource {
        IcebergSource::open(IcebergSourceConfig::new(
            t.to_str().unwrap(),
            "id",
            "vector",
        ))
        .unwrap()
    }

    #[tokio::test]
    async fn metadata_file_over_the_limit_is_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        let t = table_with_hint(dir.path());
        let md = t.join("metadata/v1.metadata.json");
        sparse_file(&md, MAX_METADATA_FILE_BYTES + 1, b"}");
        let err = open(&t).list_units().await.unwrap_err();
        match &err {
            LakeError::TooLarge { what, size, .. } => {
                assert_eq!(*what, "Iceberg metadata file");
                assert_eq!(*size, MAX_METADATA_FILE_BYTES + 1);
            }
            other => panic!("expected TooLarge, got {other}"),
        }
        // Exactly the limit is read, and is no JSON.
        sparse_file(&md, MAX_METADATA_FILE_BYTES, b"}");
        let err = open(&t).list_units().await.unwrap_err();
        assert!(matches!(err, LakeError::TableMetadata { .. }), "{err}");
    }

    fn long(out: &mut Vec<u8>, v: i64) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        while z >= 0x80 {
            out.push((z as u8 & 0x7f) | 0x80);
            z >>= 7;
        }
        out.push(z as u8);
    }

    /// An Avro container of one deflate block inflating to `inflated`
    /// zero bytes (about a thousandth of that on disk).
    fn deflate_bomb(inflated: u64) -> Vec<u8> {
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        let mut left = inflated;
        while left > 0 {
            let n = left.min(zeros.len() as u64) as usize;
            e.write_all(&zeros[..n]).unwrap();
            left -= n as u64;
        }
        let block = e.finish().unwrap();
        let sync = [0x5au8; 16];
        let mut out = b"Obj\x01".to_vec();
        long(&mut out, 1);
        let (k, v) = ("avro.codec", "deflate");
        long(&mut out, k.len() as i64);
        out.extend_from_slice(k.as_bytes());
        long(&mut out, v.len() as i64);
        out.extend_from_slice(v.as_bytes());
        long(&mut out, 0);
        out.extend_from_slice(&sync);
        long(&mut out, 1);
        long(&mut out, block.len() as i64);
        out.extend_from_slice(&block);
        out.extend_from_slice(&sync);
        out
    }

    /// Format-version 2 metadata with one snapshot whose manifest list is
    /// `list`.
    fn metadata_json(location: &Path, list: &Path) -> String {
        serde_json::json!({
            "format-version": 2,
            "table-uuid": "9c12d441-03fe-4693-9a96-a0705ddf69c1",
            "location": location.to_str().unwrap(),
            "last-sequence-number": 1,
            "last-updated-ms": 1_700_000_000_000i64,
            "last-column-id": 3,
            "current-schema-id": 0,
            "schemas": [{
                "type": "struct", "schema-id": 0,
                "fields": [
                    {"id": 1, "name": "id", "required": true, "type": "long"},
                    {"id": 2, "name": "vector", "required": true, "type": {
                        "type": "list", "element-id": 3, "element": "float",
                        "element-required": true}}
                ]
            }],
            "default-spec-id": 0,
            "partition-specs": [{"spec-id": 0, "fields": []}],
            "last-partition-id": 999,
            "default-sort-order-id": 0,
            "sort-orders": [{"order-id": 0, "fields": []}],
            "properties": {},
            "current-snapshot-id": 1,
            "snapshots": [{
                "snapshot-id": 1, "sequence-number": 1,
                "timestamp-ms": 1_700_000_000_000i64,
                "manifest-list": list.to_str().unwrap(),
                "summary": {"operation": "append"}, "schema-id": 0
            }],
            "snapshot-log": [], "metadata-log": []
        })
        .to_string()
    }

    /// A manifest list of half a MiB that inflates past the limit is
    /// refused before the Avro decoder sees it.
    #[tokio::test]
    async fn avro_deflate_bomb_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let t = table_with_hint(dir.path());
        let list = t.join("metadata/snap-1.avro");
        let bomb = deflate_bomb(MAX_AVRO_INFLATED_BYTES + (1 << 20));
        assert!(bomb.len() < 1 << 20, "{} bytes", bomb.len());
        std::fs::write(&list, &bomb).unwrap();
        std::fs::write(
            t.join("metadata/v1.metadata.json"),
            metadata_json(&t, &list),
        )
        .unwrap();
        let err = open(&t).list_units().await.unwrap_err();
        match &err {
            LakeError::TooLarge {
                path, what, size, ..
            } => {
                assert!(path.ends_with("snap-1.avro"), "{err}");
                assert_eq!(*what, "inflated Avro file");
                assert_eq!(*size, MAX_AVRO_INFLATED_BYTES + 1);
            }
            other => panic!("expected TooLarge, got {other}"),
        }
        // A small inflated block of garbage passes the bound and fails as
        // a manifest list the decoder cannot read.
        std::fs::write(&list, deflate_bomb(1000)).unwrap();
        let err = open(&t).list_units().await.unwrap_err();
        assert!(matches!(err, LakeError::TableMetadata { .. }), "{err}");
    }
}

#[cfg(feature = "delta")]
mod delta {
    use super::*;
    use rulake_lake::delta::MAX_LOG_FILE_BYTES;

    #[tokio::test]
    async fn log_file_over_the_limit_is_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("t");
        let commit = t.join("_delta_log").join(format!("{:020}.json", 0));
        sparse_file(&commit, MAX_LOG_FILE_BYTES + 1, b"\n");
        let src =
            DeltaSource::open(DeltaSourceConfig::new(t.to_str().unwrap(), "id", "vector")).unwrap();
        let err = src.list_units().await.unwrap_err();
        match &err {
            LakeError::TooLarge {
                path, what, size, ..
            } => {
                assert!(path.ends_with(".json"), "{err}");
                assert_eq!(*what, "Delta log file");
                assert_eq!(*size, MAX_LOG_FILE_BYTES + 1);
            }
            other => panic!("expected TooLarge, got {other}"),
        }
    }
}
