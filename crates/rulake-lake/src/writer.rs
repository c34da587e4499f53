//! Writing vectors as Parquet: the layout RuLake reads best (an id column
//! and a `fixed_size_list<float32>` vector column, row groups sized for
//! partitioning), with a managed collection's payload columns beside them.
//! Used by the managed source's ingest and compaction, `rulake demo`, the
//! benchmark and tests.

use crate::error::{LakeError, Result};
use arrow_array::{
    builder::{FixedSizeListBuilder, Float32Builder, ListBuilder, StringBuilder},
    ArrayRef, BooleanArray, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray, UInt64Array,
};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use rulake_types::{Column, ColumnType, Value};
use std::sync::Arc;

/// Ids to write, in one of the two id types RuLake serves.
#[derive(Clone, Copy, Debug)]
pub enum IdsRef<'a> {
    /// Unsigned integer ids.
    U64(&'a [u64]),
    /// String ids.
    Str(&'a [String]),
}

impl IdsRef<'_> {
    fn len(&self) -> usize {
        match self {
            IdsRef::U64(v) => v.len(),
            IdsRef::Str(v) => v.len(),
        }
    }
}

/// Column names used by files RuLake writes.
pub const ID_COLUMN: &str = "id";
/// Vector column name used by files RuLake writes.
pub const VECTOR_COLUMN: &str = "vector";

/// One payload column as an Arrow array of its declared type (nullable).
fn payload_array(c: &Column, rows: usize) -> Result<ArrayRef> {
    let bad = |v: &Value| {
        LakeError::Invalid(format!(
            "payload column {:?}: value {v} is not a {}",
            c.name,
            c.ty.map_or("typed column", ColumnType::as_str)
        ))
    };
    if c.values.len() != rows {
        return Err(LakeError::Invalid(format!(
            "payload column {:?} holds {} values for {rows} rows",
            c.name,
            c.values.len()
        )));
    }
    macro_rules! typed {
        ($array:ty, $variant:ident) => {
            c.values
                .iter()
                .map(|v| match v {
                    Value::Null => Ok(None),
                    Value::$variant(x) => Ok(Some(x.to_owned())),
                    other => Err(bad(other)),
                })
                .collect::<Result<$array>>()?
        };
    }
    Ok(match c.ty {
        Some(ColumnType::Bool) => Arc::new(typed!(BooleanArray, Bool)),
        Some(ColumnType::Int) => Arc::new(typed!(Int64Array, Int)),
        Some(ColumnType::Float) => Arc::new(typed!(Float64Array, Float)),
        Some(ColumnType::String) => Arc::new(typed!(StringArray, String)),
        Some(ColumnType::Date) => Arc::new(typed!(Date32Array, Date)),
        Some(ColumnType::Timestamp) => {
            Arc::new(typed!(TimestampMicrosecondArray, Timestamp).with_timezone("UTC"))
        }
        Some(ColumnType::StringList) => {
            let mut b = ListBuilder::new(StringBuilder::new());
            for v in &c.values {
                match v {
                    Value::Null => b.append(false),
                    Value::StringList(l) => {
                        for s in l {
                            b.values().append_value(s);
                        }
                        b.append(true);
                    }
                    other => return Err(bad(other)),
                }
            }
            Arc::new(b.finish())
        }
        None => {
            return Err(LakeError::Invalid(format!(
                "payload column {:?} has no declared type",
                c.name
            )))
        }
    })
}

fn batch(ids: IdsRef<'_>, vectors: &[f32], dim: usize, payload: &[Column]) -> Result<RecordBatch> {
    if dim == 0 || vectors.len() != ids.len() * dim {
        return Err(LakeError::Invalid(format!(
            "{} ids but {} values for dimension {dim}",
            ids.len(),
            vectors.len()
        )));
    }
    let id_array: ArrayRef = match ids {
        IdsRef::U64(v) => Arc::new(UInt64Array::from(v.to_vec())),
        IdsRef::Str(v) => Arc::new(StringArray::from_iter_values(v.iter())),
    };
    let mut vb = FixedSizeListBuilder::with_capacity(
        Float32Builder::with_capacity(vectors.len()),
        dim as i32,
        ids.len(),
    )
    .with_field(Field::new("item", DataType::Float32, false));
    for row in vectors.chunks_exact(dim) {
        vb.values().append_slice(row);
        vb.append(true);
    }
    let vec_array: ArrayRef = Arc::new(vb.finish());
    let mut fields = vec![
        Field::new(ID_COLUMN, id_array.data_type().clone(), false),
        Field::new(VECTOR_COLUMN, vec_array.data_type().clone(), false),
    ];
    let mut arrays = vec![id_array, vec_array];
    for c in payload {
        if c.name == ID_COLUMN || c.name == VECTOR_COLUMN {
            return Err(LakeError::Invalid(format!(
                "a payload column cannot be called {:?}: files RuLake writes use that name for the {}",
                c.name,
                if c.name == ID_COLUMN { "id" } else { "vector" }
            )));
        }
        let a = payload_array(c, ids.len())?;
        fields.push(Field::new(&c.name, a.data_type().clone(), true));
        arrays.push(a);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
        .map_err(|e| LakeError::Invalid(e.to_string()))
}

fn props(row_group_rows: usize) -> WriterProperties {
    WriterProperties::builder()
        .set_max_row_group_row_count(Some(row_group_rows.max(1)))
        .set_compression(Compression::SNAPPY)
        .build()
}

/// Encode rows as one Parquet file in memory.
pub fn encode_parquet(
    ids: IdsRef<'_>,
    vectors: &[f32],
    dim: usize,
    row_group_rows: usize,
) -> Result<Vec<u8>> {
    encode_parquet_with(ids, vectors, dim, &[], row_group_rows)
}

/// [`encode_parquet`] with payload columns beside the vectors, one value
/// per row each, written in their declared types ([`Column::ty`]).
pub fn encode_parquet_with(
    ids: IdsRef<'_>,
    vectors: &[f32],
    dim: usize,
    payload: &[Column],
    row_group_rows: usize,
) -> Result<Vec<u8>> {
    let b = batch(ids, vectors, dim, payload)?;
    let mut out = Vec::new();
    let mut w = ArrowWriter::try_new(&mut out, b.schema(), Some(props(row_group_rows)))
        .map_err(|e| LakeError::Invalid(e.to_string()))?;
    w.write(&b).map_err(|e| LakeError::Invalid(e.to_string()))?;
    w.close().map_err(|e| LakeError::Invalid(e.to_string()))?;
    Ok(out)
}

/// Write rows as one Parquet file on the local file system, atomically
/// (written beside the target, then renamed).
pub fn write_parquet_file(
    path: &std::path::Path,
    ids: IdsRef<'_>,
    vectors: &[f32],
    dim: usize,
    row_group_rows: usize,
) -> Result<()> {
    let bytes = encode_parquet(ids, vectors, dim, row_group_rows)?;
    let io = |source| LakeError::Io {
        path: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = path.with_extension("parquet.tmp");
    std::fs::write(&tmp, &bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Location;
    use crate::payload_conv::column_from_array;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    /// Every payload type written in its declared type reads back as the
    /// same values, nulls included; a value of another type is refused.
    #[test]
    fn payload_columns_round_trip_in_their_declared_types() {
        let col = |name: &str, ty, values| Column {
            name: name.into(),
            ty: Some(ty),
            values,
        };
        let payload = vec![
            col("ok", ColumnType::Bool, vec![Value::Bool(true), Value::Null]),
            col("year", ColumnType::Int, vec![Value::Null, Value::Int(-7)]),
            col(
                "score",
                ColumnType::Float,
                vec![Value::Float(0.5), Value::Null],
            ),
            col(
                "lang",
                ColumnType::String,
                vec![Value::String("en".into()), Value::Null],
            ),
            col(
                "at",
                ColumnType::Timestamp,
                vec![Value::Timestamp(1_500_000), Value::Null],
            ),
            col(
                "day",
                ColumnType::Date,
                vec![Value::Null, Value::Date(19_000)],
            ),
            col(
                "tags",
                ColumnType::StringList,
                vec![Value::StringList(vec!["a".into(), "b".into()]), Value::Null],
            ),
        ];
        let bytes = encode_parquet_with(IdsRef::U64(&[1, 2]), &[0.0; 4], 2, &payload, 16).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
            .unwrap()
            .build()
            .unwrap();
        let batch = reader.into_iter().next().unwrap().unwrap();
        let at = Location {
            object: "f".into(),
            row_group: None,
        };
        for c in &payload {
            let array = batch.column_by_name(&c.name).unwrap();
            let read = column_from_array(array, &at, &c.name, 0).unwrap();
            assert_eq!(&read, c, "{}", c.name);
        }
        let wrong = vec![col(
            "year",
            ColumnType::Int,
            vec![Value::String("x".into()), Value::Null],
        )];
        let e = encode_parquet_with(IdsRef::U64(&[1, 2]), &[0.0; 4], 2, &wrong, 16).unwrap_err();
        assert!(e.to_string().contains("\"year\""), "{e}");
        let named_id = vec![col("id", ColumnType::Int, vec![Value::Null, Value::Null])];
        assert!(encode_parquet_with(IdsRef::U64(&[1, 2]), &[0.0; 4], 2, &named_id, 16).is_err());
    }
}
