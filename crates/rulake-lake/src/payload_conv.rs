//! Arrow columns to payload values ([`rulake_types::Value`]): which Arrow
//! types a payload column may have and what each becomes.
//!
//! Integers of every width become `int` (an unsigned value beyond
//! `i64::MAX` is refused with its row), floats of every width `float`,
//! the three string layouts `string`, timestamps of any unit and zone
//! `timestamp` (microseconds, UTC), `date32`/`date64` `date`, and lists of
//! strings `list<string>`. A dictionary-encoded column (what a pandas
//! `category` becomes) is its values' type. A column of any other type is
//! refused with the types it could have had, when the partition is first
//! loaded.

use crate::error::{LakeError, Location, Result};
use arrow_array::{cast::AsArray, types::*, Array, ArrayRef};
use arrow_schema::{DataType, TimeUnit};
use rulake_types::{Column, ColumnType, Value};

pub(crate) const PAYLOAD_TYPES: &str =
    "an integer, float, string, boolean, timestamp, date or list of strings column";

/// The payload type an Arrow type maps to (`None`: not a payload type).
pub(crate) fn payload_type(t: &DataType) -> Option<ColumnType> {
    Some(match t {
        DataType::Boolean => ColumnType::Bool,
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => ColumnType::Int,
        DataType::Float16 | DataType::Float32 | DataType::Float64 => ColumnType::Float,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => ColumnType::String,
        DataType::Timestamp(_, _) => ColumnType::Timestamp,
        DataType::Date32 | DataType::Date64 => ColumnType::Date,
        DataType::Dictionary(_, values) => return payload_type(values),
        DataType::List(f) | DataType::LargeList(f)
            if matches!(
                f.data_type(),
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            ) =>
        {
            ColumnType::StringList
        }
        _ => return None,
    })
}

/// Refuse a payload column whose type RuLake cannot keep.
pub(crate) fn check_type(t: &DataType, at: &Location, column: &str) -> Result<ColumnType> {
    payload_type(t).ok_or_else(|| LakeError::ColumnType {
        at: at.clone(),
        column: column.to_owned(),
        found: t.to_string(),
        expected: PAYLOAD_TYPES,
    })
}

/// One Arrow array as a payload column called `name`.
pub(crate) fn column_from_array(
    array: &ArrayRef,
    at: &Location,
    name: &str,
    row_base: usize,
) -> Result<Column> {
    let ty = check_type(array.data_type(), at, name)?;
    let n = array.len();
    if let Some(dict) = array.as_any_dictionary_opt() {
        // Each distinct value converted once, then looked up per row.
        let distinct = column_from_array(dict.values(), at, name, 0)?.values;
        let keys = dict.normalized_keys();
        let values = (0..n)
            .map(|row| {
                if array.is_null(row) {
                    return Value::Null;
                }
                distinct.get(keys[row]).cloned().unwrap_or(Value::Null)
            })
            .collect();
        return Ok(Column {
            name: name.to_owned(),
            ty: Some(ty),
            values,
        });
    }
    let mut values = Vec::with_capacity(n);
    for row in 0..n {
        values.push(if array.is_null(row) {
            Value::Null
        } else {
            value_at(array, row, at, name, row_base)?
        });
    }
    Ok(Column {
        name: name.to_owned(),
        ty: Some(ty),
        values,
    })
}

fn value_at(array: &ArrayRef, row: usize, at: &Location, name: &str, base: usize) -> Result<Value> {
    Ok(match array.data_type() {
        DataType::Boolean => Value::Bool(array.as_boolean().value(row)),
        DataType::Int8 => Value::Int(array.as_primitive::<Int8Type>().value(row) as i64),
        DataType::Int16 => Value::Int(array.as_primitive::<Int16Type>().value(row) as i64),
        DataType::Int32 => Value::Int(array.as_primitive::<Int32Type>().value(row) as i64),
        DataType::Int64 => Value::Int(array.as_primitive::<Int64Type>().value(row)),
        DataType::UInt8 => Value::Int(array.as_primitive::<UInt8Type>().value(row) as i64),
        DataType::UInt16 => Value::Int(array.as_primitive::<UInt16Type>().value(row) as i64),
        DataType::UInt32 => Value::Int(array.as_primitive::<UInt32Type>().value(row) as i64),
        DataType::UInt64 => {
            let v = array.as_primitive::<UInt64Type>().value(row);
            Value::Int(i64::try_from(v).map_err(|_| {
                LakeError::Invalid(format!(
                    "{at}: payload column {name:?} row {}: {v} does not fit a 64-bit signed integer",
                    base + row
                ))
            })?)
        }
        DataType::Float16 => Value::Float(array.as_primitive::<Float16Type>().value(row).to_f64()),
        DataType::Float32 => Value::Float(array.as_primitive::<Float32Type>().value(row) as f64),
        DataType::Float64 => Value::Float(array.as_primitive::<Float64Type>().value(row)),
        DataType::Utf8 => Value::String(array.as_string::<i32>().value(row).to_owned()),
        DataType::LargeUtf8 => Value::String(array.as_string::<i64>().value(row).to_owned()),
        DataType::Utf8View => Value::String(array.as_string_view().value(row).to_owned()),
        DataType::Timestamp(unit, _) => {
            let v = match unit {
                TimeUnit::Second => array
                    .as_primitive::<TimestampSecondType>()
                    .value(row)
                    .saturating_mul(1_000_000),
                TimeUnit::Millisecond => array
                    .as_primitive::<TimestampMillisecondType>()
                    .value(row)
                    .saturating_mul(1_000),
                TimeUnit::Microsecond => {
                    array.as_primitive::<TimestampMicrosecondType>().value(row)
                }
                TimeUnit::Nanosecond => {
                    array.as_primitive::<TimestampNanosecondType>().value(row) / 1_000
                }
            };
            Value::Timestamp(v)
        }
        DataType::Date32 => Value::Date(array.as_primitive::<Date32Type>().value(row)),
        DataType::Date64 => {
            Value::Date((array.as_primitive::<Date64Type>().value(row) / 86_400_000) as i32)
        }
        DataType::List(_) => strings(array.as_list::<i32>().value(row)),
        DataType::LargeList(_) => strings(array.as_list::<i64>().value(row)),
        t => {
            return Err(LakeError::ColumnType {
                at: at.clone(),
                column: name.to_owned(),
                found: t.to_string(),
                expected: PAYLOAD_TYPES,
            })
        }
    })
}

/// A list's string elements (null elements are left out).
fn strings(list: ArrayRef) -> Value {
    let n = list.len();
    let get = |i: usize| -> Option<String> {
        if list.is_null(i) {
            return None;
        }
        Some(match list.data_type() {
            DataType::Utf8 => list.as_string::<i32>().value(i).to_owned(),
            DataType::LargeUtf8 => list.as_string::<i64>().value(i).to_owned(),
            _ => list.as_string_view().value(i).to_owned(),
        })
    };
    Value::StringList((0..n).filter_map(get).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{DictionaryArray, Int32Array, StringArray};
    use std::sync::Arc;

    /// A dictionary-encoded string column (a pandas `category`) is a
    /// string column: each row its value, nulls kept.
    #[test]
    fn a_dictionary_column_reads_as_its_values() {
        let keys = Int32Array::from(vec![Some(1), None, Some(0), Some(1)]);
        let values = Arc::new(StringArray::from(vec!["de", "en"]));
        let dict: ArrayRef = Arc::new(DictionaryArray::try_new(keys, values).unwrap());
        assert_eq!(payload_type(dict.data_type()), Some(ColumnType::String));
        let at = Location {
            object: "f.parquet".into(),
            row_group: None,
        };
        let c = column_from_array(&dict, &at, "lang", 0).unwrap();
        assert_eq!(c.ty, Some(ColumnType::String));
        assert_eq!(
            c.values,
            vec![
                Value::String("en".into()),
                Value::Null,
                Value::String("de".into()),
                Value::String("en".into()),
            ]
        );
    }
}
