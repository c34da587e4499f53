//! Arrow columns to RuLake rows, with every check a lake needs: ids of any
//! integer or string type, vectors as `fixed_size_list` or `list` of
//! float32/float64/float16, and a precise error for nulls, non-finite
//! components and wrong dimensions.

use crate::error::{LakeError, Location, Result};
use arrow_array::{
    cast::AsArray,
    types::{
        Float16Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type,
        UInt16Type, UInt32Type, UInt64Type, UInt8Type,
    },
    Array, ArrayRef, GenericListArray, OffsetSizeTrait,
};
use arrow_schema::DataType;
use rulake_types::VectorId;
use std::borrow::Cow;

pub(crate) const ID_TYPES: &str =
    "an integer (int8..int64, uint8..uint64) or string (utf8, large_utf8, utf8_view) column";
pub(crate) const VECTOR_TYPES: &str = "fixed_size_list or list of float32, float64 or float16";

/// True when RuLake can read this type as an id column.
pub(crate) fn id_type_ok(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
            | DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
    )
}

fn float_ok(t: &DataType) -> bool {
    matches!(t, DataType::Float32 | DataType::Float64 | DataType::Float16)
}

/// True when RuLake can read this type as a vector column.
pub(crate) fn vector_type_ok(t: &DataType) -> bool {
    match t {
        DataType::FixedSizeList(f, _) | DataType::List(f) | DataType::LargeList(f) => {
            float_ok(f.data_type())
        }
        _ => false,
    }
}

/// Fixed dimension declared by the schema, if the column is a fixed-size list.
pub(crate) fn declared_dim(t: &DataType) -> Option<usize> {
    match t {
        DataType::FixedSizeList(_, n) => Some(*n as usize),
        _ => None,
    }
}

/// Read an id column into owned ids.
pub(crate) fn ids_from_array(
    arr: &ArrayRef,
    at: &Location,
    column: &str,
    row_base: usize,
) -> Result<Vec<VectorId>> {
    if arr.null_count() > 0 {
        let row = (0..arr.len()).find(|&i| arr.is_null(i)).unwrap_or(0);
        return Err(LakeError::Null {
            at: at.clone(),
            column: column.to_owned(),
            row: row_base + row,
        });
    }
    macro_rules! unsigned {
        ($t:ty) => {
            arr.as_primitive::<$t>()
                .values()
                .iter()
                .map(|v| VectorId::U64(*v as u64))
                .collect()
        };
    }
    macro_rules! signed {
        ($t:ty) => {{
            let mut out = Vec::with_capacity(arr.len());
            for (i, v) in arr.as_primitive::<$t>().values().iter().enumerate() {
                let v = *v as i64;
                if v < 0 {
                    return Err(LakeError::NegativeId {
                        at: at.clone(),
                        column: column.to_owned(),
                        row: row_base + i,
                        value: v,
                    });
                }
                out.push(VectorId::U64(v as u64));
            }
            out
        }};
    }
    Ok(match arr.data_type() {
        DataType::UInt8 => unsigned!(UInt8Type),
        DataType::UInt16 => unsigned!(UInt16Type),
        DataType::UInt32 => unsigned!(UInt32Type),
        DataType::UInt64 => unsigned!(UInt64Type),
        DataType::Int8 => signed!(Int8Type),
        DataType::Int16 => signed!(Int16Type),
        DataType::Int32 => signed!(Int32Type),
        DataType::Int64 => signed!(Int64Type),
        DataType::Utf8 => arr
            .as_string::<i32>()
            .iter()
            .map(|s| VectorId::Str(s.unwrap_or_default().to_owned()))
            .collect(),
        DataType::LargeUtf8 => arr
            .as_string::<i64>()
            .iter()
            .map(|s| VectorId::Str(s.unwrap_or_default().to_owned()))
            .collect(),
        DataType::Utf8View => arr
            .as_string_view()
            .iter()
            .map(|s| VectorId::Str(s.unwrap_or_default().to_owned()))
            .collect(),
        other => {
            return Err(LakeError::ColumnType {
                at: at.clone(),
                column: column.to_owned(),
                found: other.to_string(),
                expected: ID_TYPES,
            })
        }
    })
}

/// A float child array as f32: borrowed when it already is (no copy of a
/// batch's floats on the way to the index), converted otherwise.
fn floats(values: &ArrayRef) -> Option<Cow<'_, [f32]>> {
    Some(match values.data_type() {
        DataType::Float32 => Cow::Borrowed(values.as_primitive::<Float32Type>().values()),
        DataType::Float64 => values
            .as_primitive::<Float64Type>()
            .values()
            .iter()
            .map(|v| *v as f32)
            .collect::<Vec<_>>()
            .into(),
        DataType::Float16 => values
            .as_primitive::<Float16Type>()
            .values()
            .iter()
            .map(|v| v.to_f32())
            .collect::<Vec<_>>()
            .into(),
        _ => return None,
    })
}

/// A variable-size list column's values and each row's `[start, end)` in
/// them, for either offset width.
fn list_rows<O: OffsetSizeTrait>(l: &GenericListArray<O>) -> (ArrayRef, Vec<(usize, usize)>) {
    let o = l.value_offsets();
    (
        l.values().clone(),
        o.windows(2)
            .map(|w| (w[0].as_usize(), w[1].as_usize()))
            .collect(),
    )
}

/// Append a vector column's rows to `out`, checking nulls, dimension and
/// finiteness row by row.
pub(crate) fn vectors_from_array(
    arr: &ArrayRef,
    dim: usize,
    at: &Location,
    column: &str,
    row_base: usize,
    out: &mut Vec<f32>,
) -> Result<()> {
    let type_err = || LakeError::ColumnType {
        at: at.clone(),
        column: column.to_owned(),
        found: arr.data_type().to_string(),
        expected: VECTOR_TYPES,
    };
    // (values, per-row [start, end) into values)
    let (values, ranges): (ArrayRef, Vec<(usize, usize)>) = match arr.data_type() {
        DataType::FixedSizeList(_, n) => {
            let l = arr.as_fixed_size_list();
            let n = *n as usize;
            let off = l.offset() * n;
            (
                l.values().clone(),
                (0..l.len())
                    .map(|i| (off + i * n, off + (i + 1) * n))
                    .collect(),
            )
        }
        DataType::List(_) => list_rows(arr.as_list::<i32>()),
        DataType::LargeList(_) => list_rows(arr.as_list::<i64>()),
        _ => return Err(type_err()),
    };
    let flat = floats(&values).ok_or_else(type_err)?;
    let child_nulls = values.null_count() > 0;
    out.reserve(ranges.len() * dim);
    for (i, (s, e)) in ranges.into_iter().enumerate() {
        let row = row_base + i;
        let null = |_: ()| LakeError::Null {
            at: at.clone(),
            column: column.to_owned(),
            row,
        };
        if arr.is_null(i) {
            return Err(null(()));
        }
        if e - s != dim {
            return Err(LakeError::Dimension {
                at: at.clone(),
                column: column.to_owned(),
                row,
                found: e - s,
                expected: dim,
            });
        }
        if child_nulls && (s..e).any(|j| values.is_null(j)) {
            return Err(null(()));
        }
        let v = &flat[s..e];
        if let Some((position, value)) = v.iter().enumerate().find(|(_, x)| !x.is_finite()) {
            return Err(LakeError::NonFinite {
                at: at.clone(),
                column: column.to_owned(),
                row,
                position,
                value: value.to_string(),
            });
        }
        out.extend_from_slice(v);
    }
    Ok(())
}
