//! A reader for Avro object container files, just enough for Iceberg's
//! manifest lists and manifests.
//!
//! Why our own: the Avro crates that exist bring a derive stack and a second
//! set of serde helpers for what are, for RuLake, a handful of small files
//! per snapshot read with their writer's own schema. The container format is
//! small and fully specified (header, schema JSON, sync-delimited blocks,
//! zig-zag varints), and decoding it generically against the embedded
//! writer schema means Iceberg v1 and v2 manifests read the same way: fields
//! are looked up by name afterwards, missing ones take Iceberg's defaults.

use std::collections::HashMap;

/// A decoded Avro datum.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    Long(i64),
    Double(f64),
    Bytes(Vec<u8>),
    Str(String),
    Record(Vec<(String, Value)>),
    Array(Vec<Value>),
    Map(Vec<(String, Value)>),
}

impl Value {
    /// A record field by name (`None` for non-records and absent fields).
    pub(crate) fn get(&self, name: &str) -> Option<&Value> {
        match self {
            Value::Record(fields) => fields.iter().find(|(n, _)| n == name).map(|(_, v)| v),
            _ => None,
        }
    }
    pub(crate) fn as_long(&self) -> Option<i64> {
        match self {
            Value::Long(v) => Some(*v),
            _ => None,
        }
    }
    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// A writer schema, resolved (named references replaced by their shape).
#[derive(Clone, Debug)]
enum Schema {
    Null,
    Bool,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    Str,
    Record(Vec<(String, Schema)>),
    Enum(Vec<String>),
    Array(Box<Schema>),
    Map(Box<Schema>),
    Union(Vec<Schema>),
    Fixed(usize),
}

fn parse_schema(
    j: &serde_json::Value,
    names: &mut HashMap<String, Schema>,
) -> Result<Schema, String> {
    use serde_json::Value as J;
    match j {
        J::String(s) => match s.as_str() {
            "null" => Ok(Schema::Null),
            "boolean" => Ok(Schema::Bool),
            "int" => Ok(Schema::Int),
            "long" => Ok(Schema::Long),
            "float" => Ok(Schema::Float),
            "double" => Ok(Schema::Double),
            "bytes" => Ok(Schema::Bytes),
            "string" => Ok(Schema::Str),
            other => names
                .get(other)
                .or_else(|| names.get(other.rsplit('.').next().unwrap_or(other)))
                .cloned()
                .ok_or_else(|| format!("unknown Avro type {other:?}")),
        },
        J::Array(branches) => Ok(Schema::Union(
            branches
                .iter()
                .map(|b| parse_schema(b, names))
                .collect::<Result<_, _>>()?,
        )),
        J::Object(o) => {
            let ty = o
                .get("type")
                .ok_or_else(|| "Avro schema object without \"type\"".to_owned())?;
            let name = o.get("name").and_then(|n| n.as_str()).map(str::to_owned);
            let s = match ty.as_str() {
                Some("record") | Some("error") => {
                    let fields = o
                        .get("fields")
                        .and_then(|f| f.as_array())
                        .ok_or_else(|| "Avro record without fields".to_owned())?;
                    let mut out = Vec::with_capacity(fields.len());
                    for f in fields {
                        let fname = f
                            .get("name")
                            .and_then(|n| n.as_str())
                            .ok_or_else(|| "Avro field without a name".to_owned())?;
                        let ft = f
                            .get("type")
                            .ok_or_else(|| format!("Avro field {fname:?} without a type"))?;
                        out.push((fname.to_owned(), parse_schema(ft, names)?));
                    }
                    Schema::Record(out)
                }
                Some("enum") => Schema::Enum(
                    o.get("symbols")
                        .and_then(|s| s.as_array())
                        .map(|a| {
                            a.iter()
                                .map(|s| s.as_str().unwrap_or_default().to_owned())
                                .collect()
                        })
                        .unwrap_or_default(),
                ),
                Some("array") => Schema::Array(Box::new(parse_schema(
                    o.get("items").ok_or("Avro array without items")?,
                    names,
                )?)),
                Some("map") => Schema::Map(Box::new(parse_schema(
                    o.get("values").ok_or("Avro map without values")?,
                    names,
                )?)),
                Some("fixed") => Schema::Fixed(
                    o.get("size")
                        .and_then(|s| s.as_u64())
                        .ok_or("Avro fixed without size")? as usize,
                ),
                // A primitive with attributes (logicalType and the like).
                _ => parse_schema(ty, names)?,
            };
            if let Some(n) = name {
                let short = n.rsplit('.').next().unwrap_or(&n).to_owned();
                names.insert(n, s.clone());
                names.insert(short, s.clone());
            }
            Ok(s)
        }
        other => Err(format!("invalid Avro schema {other}")),
    }
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| format!("truncated Avro data at byte {}", self.pos))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn long(&mut self) -> Result<i64, String> {
        let mut v: u64 = 0;
        let mut shift = 0;
        loop {
            let b = self.take(1)?[0];
            if shift >= 64 {
                return Err(format!("Avro varint too long at byte {}", self.pos));
            }
            v |= u64::from(b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                break;
            }
        }
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }

    fn len(&mut self) -> Result<usize, String> {
        let n = self.long()?;
        usize::try_from(n).map_err(|_| format!("negative Avro length {n}"))
    }

    fn bytes(&mut self) -> Result<Vec<u8>, String> {
        let n = self.len()?;
        Ok(self.take(n)?.to_vec())
    }

    fn string(&mut self) -> Result<String, String> {
        String::from_utf8(self.bytes()?).map_err(|_| "Avro string is not UTF-8".to_owned())
    }

    /// Arrays and maps come in blocks; a negative count is followed by the
    /// block's byte size.
    fn block_count(&mut self) -> Result<usize, String> {
        let n = self.long()?;
        if n < 0 {
            self.long()?;
            Ok(n.unsigned_abs() as usize)
        } else {
            Ok(n as usize)
        }
    }

    fn value(&mut self, s: &Schema) -> Result<Value, String> {
        Ok(match s {
            Schema::Null => Value::Null,
            Schema::Bool => Value::Bool(self.take(1)?[0] != 0),
            Schema::Int | Schema::Long => Value::Long(self.long()?),
            Schema::Float => {
                let b = self.take(4)?;
                Value::Double(f32::from_le_bytes(b.try_into().expect("4 bytes")) as f64)
            }
            Schema::Double => {
                let b = self.take(8)?;
                Value::Double(f64::from_le_bytes(b.try_into().expect("8 bytes")))
            }
            Schema::Bytes => Value::Bytes(self.bytes()?),
            Schema::Str => Value::Str(self.string()?),
            Schema::Fixed(n) => Value::Bytes(self.take(*n)?.to_vec()),
            Schema::Enum(symbols) => {
                let i = self.len()?;
                Value::Str(
                    symbols
                        .get(i)
                        .cloned()
                        .ok_or_else(|| format!("Avro enum index {i} out of range"))?,
                )
            }
            Schema::Union(branches) => {
                let i = self.len()?;
                let b = branches
                    .get(i)
                    .ok_or_else(|| format!("Avro union branch {i} out of range"))?;
                self.value(b)?
            }
            Schema::Record(fields) => Value::Record(
                fields
                    .iter()
                    .map(|(n, fs)| Ok((n.clone(), self.value(fs)?)))
                    .collect::<Result<_, String>>()?,
            ),
            Schema::Array(items) => {
                zero_width_refused(items)?;
                let mut out = Vec::new();
                loop {
                    let n = self.block_count()?;
                    if n == 0 {
                        break;
                    }
                    for _ in 0..n {
                        out.push(self.value(items)?);
                    }
                }
                Value::Array(out)
            }
            Schema::Map(values) => {
                let mut out = Vec::new();
                loop {
                    let n = self.block_count()?;
                    if n == 0 {
                        break;
                    }
                    for _ in 0..n {
                        let k = self.string()?;
                        out.push((k, self.value(values)?));
                    }
                }
                Value::Map(out)
            }
        })
    }
}

/// Items that take no bytes (null, empty records) would let a count of
/// 2^60 in a few bytes of input allocate without bound; Iceberg never
/// writes them.
fn zero_width_refused(s: &Schema) -> Result<(), String> {
    fn zero(s: &Schema) -> bool {
        match s {
            Schema::Null | Schema::Fixed(0) => true,
            Schema::Record(fields) => fields.iter().all(|(_, f)| zero(f)),
            _ => false,
        }
    }
    match zero(s) {
        true => Err("Avro items of zero width (null, empty record) are not supported".into()),
        false => Ok(()),
    }
}

/// Largest decompressed block: writers cut blocks at tens of KiB, and a
/// bound keeps a small compressed block from inflating without limit.
const MAX_BLOCK_BYTES: usize = 64 << 20;

fn decompress(codec: &str, block: &[u8]) -> Result<Vec<u8>, String> {
    let too_big = || format!("Avro block inflates past {MAX_BLOCK_BYTES} bytes");
    match codec {
        "null" => Ok(block.to_vec()),
        "deflate" => miniz_oxide::inflate::decompress_to_vec_with_limit(block, MAX_BLOCK_BYTES)
            .map_err(|e| match e.status {
                miniz_oxide::inflate::TINFLStatus::HasMoreOutput => too_big(),
                _ => format!("corrupt deflate block: {e:?}"),
            }),
        "snappy" => {
            // Raw snappy followed by a 4-byte CRC of the uncompressed data.
            let body = block
                .len()
                .checked_sub(4)
                .map(|n| &block[..n])
                .ok_or("truncated snappy block")?;
            if snap::raw::decompress_len(body).map_err(|e| e.to_string())? > MAX_BLOCK_BYTES {
                return Err(too_big());
            }
            snap::raw::Decoder::new()
                .decompress_vec(body)
                .map_err(|e| format!("corrupt snappy block: {e}"))
        }
        "zstandard" => {
            use std::io::Read;
            let mut out = Vec::new();
            zstd::stream::read::Decoder::new(block)
                .and_then(|d| d.take(MAX_BLOCK_BYTES as u64 + 1).read_to_end(&mut out))
                .map_err(|e| format!("corrupt zstandard block: {e}"))?;
            match out.len() > MAX_BLOCK_BYTES {
                true => Err(too_big()),
                false => Ok(out),
            }
        }
        other => Err(format!("unsupported Avro codec {other:?}")),
    }
}

/// A decoded container file: its metadata and every datum.
#[derive(Debug)]
pub(crate) struct AvroFile {
    /// Iceberg's header keys (`format-version`, `content`, ...).
    #[cfg_attr(not(test), allow(dead_code))]
    pub metadata: HashMap<String, Vec<u8>>,
    /// The data, in file order.
    pub records: Vec<Value>,
}

/// Decode an Avro object container file. The error says what is wrong; the
/// caller adds which file.
pub(crate) fn read_container(buf: &[u8]) -> Result<AvroFile, String> {
    let mut c = Cursor { buf, pos: 0 };
    if c.take(4).map_err(|_| "not an Avro file (too short)")? != b"Obj\x01" {
        return Err("not an Avro object container file (bad magic)".into());
    }
    let mut metadata = HashMap::new();
    loop {
        let n = c.block_count()?;
        if n == 0 {
            break;
        }
        for _ in 0..n {
            let k = c.string()?;
            metadata.insert(k, c.bytes()?);
        }
    }
    let sync: [u8; 16] = c.take(16)?.try_into().expect("16 bytes");
    let schema_json: serde_json::Value = serde_json::from_slice(
        metadata
            .get("avro.schema")
            .ok_or("Avro header has no avro.schema")?,
    )
    .map_err(|e| format!("Avro schema is not JSON: {e}"))?;
    let schema = parse_schema(&schema_json, &mut HashMap::new())?;
    zero_width_refused(&schema)?;
    let codec = metadata
        .get("avro.codec")
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .unwrap_or_else(|| "null".into());
    let mut records = Vec::new();
    while c.pos < buf.len() {
        let count = c.len()?;
        let size = c.len()?;
        let block = decompress(&codec, c.take(size)?)?;
        let mut bc = Cursor {
            buf: &block,
            pos: 0,
        };
        for _ in 0..count {
            records.push(bc.value(&schema)?);
        }
        if c.take(16)? != sync {
            return Err(format!("Avro sync marker mismatch at byte {}", c.pos - 16));
        }
    }
    Ok(AvroFile { metadata, records })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zz(v: i64, out: &mut Vec<u8>) {
        let mut u = ((v << 1) ^ (v >> 63)) as u64;
        loop {
            let b = (u & 0x7f) as u8;
            u >>= 7;
            if u == 0 {
                out.push(b);
                break;
            }
            out.push(b | 0x80);
        }
    }

    fn s(v: &str, out: &mut Vec<u8>) {
        zz(v.len() as i64, out);
        out.extend_from_slice(v.as_bytes());
    }

    /// A hand-assembled container: two records, one block, optional deflate.
    fn container(deflate: bool) -> Vec<u8> {
        let schema = r#"{"type":"record","name":"r","fields":[
            {"name":"path","type":"string"},
            {"name":"n","type":["null","long"]},
            {"name":"tags","type":{"type":"map","values":"int"}},
            {"name":"xs","type":{"type":"array","items":"r2_leaf"}}]}"#
            .replace("r2_leaf", "double");
        let mut out = b"Obj\x01".to_vec();
        zz(if deflate { 2 } else { 1 }, &mut out);
        s("avro.schema", &mut out);
        s(&schema, &mut out);
        if deflate {
            s("avro.codec", &mut out);
            s("deflate", &mut out);
        }
        zz(0, &mut out);
        let sync = [7u8; 16];
        out.extend_from_slice(&sync);
        let mut block = Vec::new();
        for (p, n) in [("a.parquet", Some(-3i64)), ("b.parquet", None)] {
            s(p, &mut block);
            match n {
                Some(v) => {
                    zz(1, &mut block);
                    zz(v, &mut block);
                }
                None => zz(0, &mut block),
            }
            zz(1, &mut block);
            s("k", &mut block);
            zz(300, &mut block);
            zz(0, &mut block);
            zz(-1, &mut block); // one item in a sized block
            zz(8, &mut block);
            block.extend_from_slice(&1.5f64.to_le_bytes());
            zz(0, &mut block);
        }
        let body = if deflate {
            miniz_oxide::deflate::compress_to_vec(&block, 6)
        } else {
            block
        };
        zz(2, &mut out);
        zz(body.len() as i64, &mut out);
        out.extend_from_slice(&body);
        out.extend_from_slice(&sync);
        out
    }

    #[test]
    fn decodes_records_with_unions_maps_and_arrays() {
        for deflate in [false, true] {
            let f = read_container(&container(deflate)).unwrap();
            assert_eq!(f.records.len(), 2);
            assert!(f.metadata.contains_key("avro.schema"));
            let r = &f.records[0];
            assert_eq!(r.get("path").unwrap().as_str(), Some("a.parquet"));
            assert_eq!(r.get("n").unwrap().as_long(), Some(-3));
            assert_eq!(
                r.get("tags"),
                Some(&Value::Map(vec![("k".into(), Value::Long(300))]))
            );
            assert_eq!(r.get("xs"), Some(&Value::Array(vec![Value::Double(1.5)])));
            assert_eq!(f.records[1].get("n"), Some(&Value::Null));
        }
    }

    #[test]
    fn corrupt_containers_are_errors_not_panics() {
        let good = container(true);
        assert!(read_container(b"PAR1").is_err());
        for cut in [3, 10, good.len() / 2, good.len() - 1] {
            assert!(read_container(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad_sync = good.clone();
        let n = bad_sync.len();
        bad_sync[n - 1] ^= 1;
        assert!(read_container(&bad_sync).unwrap_err().contains("sync"));
    }
}
