//! Writing vectors as Parquet: the layout RuLake reads best (an id column
//! and a `fixed_size_list<float32>` vector column, row groups sized for
//! partitioning). Used by `rulake demo`, the benchmark and tests, and later
//! by the managed source's ingest.

use crate::error::{LakeError, Result};
use arrow_array::{
    builder::{FixedSizeListBuilder, Float32Builder},
    ArrayRef, RecordBatch, StringArray, UInt64Array,
};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
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

fn batch(ids: IdsRef<'_>, vectors: &[f32], dim: usize) -> Result<RecordBatch> {
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
    let schema = Schema::new(vec![
        Field::new(ID_COLUMN, id_array.data_type().clone(), false),
        Field::new(VECTOR_COLUMN, vec_array.data_type().clone(), false),
    ]);
    RecordBatch::try_new(Arc::new(schema), vec![id_array, vec_array])
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
    let b = batch(ids, vectors, dim)?;
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
