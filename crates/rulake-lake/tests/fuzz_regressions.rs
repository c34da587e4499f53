//! Inputs the fuzz targets (`fuzz/`) found to crash or exhaust memory,
//! kept as tests: each must now be a plain error.
#![cfg(feature = "iceberg")]

fn varint(n: i64) -> Vec<u8> {
    let mut v = ((n << 1) ^ (n >> 63)) as u64;
    let mut out = Vec::new();
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return out;
        }
        out.push(b | 0x80);
    }
}

fn string(b: &[u8]) -> Vec<u8> {
    let mut out = varint(b.len() as i64);
    out.extend_from_slice(b);
    out
}

/// An Avro container with `schema` and `codec` and one block.
fn container(schema: &str, codec: &str, count: i64, block: &[u8]) -> Vec<u8> {
    let sync = [7u8; 16];
    let mut f = b"Obj\x01".to_vec();
    f.extend(varint(2));
    f.extend(string(b"avro.schema"));
    f.extend(string(schema.as_bytes()));
    f.extend(string(b"avro.codec"));
    f.extend(string(codec.as_bytes()));
    f.extend(varint(0));
    f.extend(sync);
    f.extend(varint(count));
    f.extend(string(block));
    f.extend(sync);
    f
}

fn refused(file: &[u8], why: &str) {
    let e = rulake_lake::fuzz_avro_container(file).expect_err("refused");
    assert!(e.contains(why), "{e}");
}

/// 2^60 records of schema "null" in 83 bytes: out of memory before.
#[test]
fn avro_records_of_zero_width_are_refused() {
    refused(&container("\"null\"", "null", 1 << 60, b""), "zero width");
    refused(
        &container(
            r#"{"type": "record", "name": "r", "fields": []}"#,
            "null",
            1 << 60,
            b"",
        ),
        "zero width",
    );
}

/// An array of 2^60 nulls inside one record: out of memory before.
#[test]
fn avro_arrays_of_zero_width_are_refused() {
    let mut block = varint(1 << 60);
    block.extend(varint(0));
    refused(
        &container(r#"{"type": "array", "items": "null"}"#, "null", 1, &block),
        "zero width",
    );
}

/// Small compressed blocks that inflate past the block bound.
#[test]
fn avro_blocks_that_inflate_without_bound_are_refused() {
    let big = vec![0u8; (64 << 20) + 1];
    let deflated = miniz_oxide::deflate::compress_to_vec(&big, 9);
    assert!(deflated.len() < 1 << 20);
    refused(
        &container("\"bytes\"", "deflate", 1, &deflated),
        "inflates past",
    );
    // A snappy block declaring 4 GiB in 5 bytes (plus its CRC).
    let mut snappy = vec![0xff, 0xff, 0xff, 0xff, 0x0f];
    snappy.extend([0; 4]);
    refused(
        &container("\"bytes\"", "snappy", 1, &snappy),
        "inflates past",
    );
    // An ordinary compressed block still reads.
    let value = string(b"hello");
    let ok = container(
        "\"bytes\"",
        "deflate",
        1,
        &miniz_oxide::deflate::compress_to_vec(&value, 6),
    );
    rulake_lake::fuzz_avro_container(&ok).unwrap();
}
