//! Payload columns as a collection declares them: `lang` or `lang:string`.
//!
//! Why a type can be written beside the name: a lake table states its
//! columns' types in its schema, so an external collection names its
//! columns and nothing more, but a managed collection's files are written
//! by RuLake from what clients send, and there is no schema to read until
//! the first ingest. Its columns are declared with their types at create
//! (`year:int`), every value an ingest sends is checked against them (and
//! converted where the conversion loses nothing: an integer into a float
//! column, an RFC 3339 string into a timestamp column), and every file
//! holds every column in that one type, so no load can find a column
//! that is `int` in one file and `string` in the next.

use crate::payload::{parse_date, parse_instant, ColumnType, Value};

/// Every type a declaration may name, as written.
pub const TYPE_NAMES: &str = "bool, int, float, string, timestamp, date, list<string>";

impl ColumnType {
    /// The type called `name` ([`ColumnType::as_str`]'s names).
    pub fn parse(name: &str) -> Option<ColumnType> {
        Some(match name.trim() {
            "bool" => ColumnType::Bool,
            "int" => ColumnType::Int,
            "float" => ColumnType::Float,
            "string" => ColumnType::String,
            "timestamp" => ColumnType::Timestamp,
            "date" => ColumnType::Date,
            "list<string>" => ColumnType::StringList,
            _ => return None,
        })
    }
}

/// One declared payload column: its name and, when declared, its type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Declared {
    /// The column's name.
    pub name: String,
    /// Its type, when the declaration names one.
    pub ty: Option<ColumnType>,
}

/// Read a declaration: `name:type` when the text after the last `:` is
/// a type name ([`TYPE_NAMES`]), otherwise the whole text is the name (so
/// a lake column whose own name holds a `:` can still be kept).
pub fn declared(text: &str) -> Declared {
    if let Some((name, ty)) = text.rsplit_once(':') {
        if let Some(ty) = ColumnType::parse(ty) {
            return Declared {
                name: name.to_owned(),
                ty: Some(ty),
            };
        }
    }
    Declared {
        name: text.to_owned(),
        ty: None,
    }
}

/// The names of `declarations`, types left off.
pub fn declared_names(declarations: &[String]) -> Vec<String> {
    declarations.iter().map(|d| declared(d).name).collect()
}

impl Value {
    /// This value as a value of column type `ty`, or why it cannot be:
    /// nulls fit every type, integers fit floats (exactly up to 2^53, as
    /// JSON numbers do), strings fit timestamps (RFC 3339, or a date for
    /// its midnight UTC) and dates (`YYYY-MM-DD`); nothing else converts.
    pub fn coerce(self, ty: ColumnType) -> Result<Value, String> {
        let found = self.column_type();
        match (self, ty) {
            (Value::Null, _) => Ok(Value::Null),
            (v, t) if found == Some(t) => Ok(v),
            (Value::Int(i), ColumnType::Float) => Ok(Value::Float(i as f64)),
            (Value::String(s), ColumnType::Timestamp) => parse_instant(&s)
                .map(Value::Timestamp)
                .ok_or_else(|| format!("{} is not an RFC 3339 instant", shown(&Value::String(s)))),
            (Value::String(s), ColumnType::Date) => parse_date(&s)
                .and_then(|d| i32::try_from(d).ok())
                .map(Value::Date)
                .ok_or_else(|| format!("{} is not a YYYY-MM-DD date", shown(&Value::String(s)))),
            (v, t) => Err(format!(
                "{} is a {}, the column is {t}",
                shown(&v),
                found.map_or("null", ColumnType::as_str)
            )),
        }
    }
}

/// A value as an error shows it: cut at 64 characters (it is a client's
/// text, of any length).
fn shown(v: &Value) -> String {
    let text = v.to_string();
    if text.chars().count() <= 64 {
        text
    } else {
        format!("{}…", text.chars().take(64).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declarations_read_a_type_only_when_it_is_one() {
        assert_eq!(
            declared("year:int"),
            Declared {
                name: "year".into(),
                ty: Some(ColumnType::Int)
            }
        );
        assert_eq!(
            declared("tags:list<string>").ty,
            Some(ColumnType::StringList)
        );
        assert_eq!(declared("lang").ty, None);
        // Not a type: the whole text is the lake column's name.
        assert_eq!(declared("ns:key").name, "ns:key");
        assert_eq!(declared("ns:key").ty, None);
        assert_eq!(declared("a:b:date").name, "a:b");
        assert_eq!(
            declared_names(&["a:int".into(), "b".into()]),
            vec!["a".to_owned(), "b".to_owned()]
        );
        for t in TYPE_NAMES.split(", ") {
            assert_eq!(ColumnType::parse(t).map(ColumnType::as_str), Some(t));
        }
    }

    #[test]
    fn values_convert_only_without_loss_of_meaning() {
        use ColumnType as T;
        assert_eq!(Value::Int(3).coerce(T::Float), Ok(Value::Float(3.0)));
        assert_eq!(Value::Null.coerce(T::Date), Ok(Value::Null));
        assert_eq!(
            Value::String("1970-01-02".into()).coerce(T::Date),
            Ok(Value::Date(1))
        );
        assert_eq!(
            Value::String("1970-01-01T00:00:01Z".into()).coerce(T::Timestamp),
            Ok(Value::Timestamp(1_000_000))
        );
        assert!(Value::String("soon".into()).coerce(T::Timestamp).is_err());
        assert!(Value::String("2024".into()).coerce(T::Int).is_err());
        assert!(Value::Float(1.5).coerce(T::Int).is_err());
        assert!(Value::Int(1).coerce(T::String).is_err());
        assert!(Value::Bool(true).coerce(T::Int).is_err());
        let e = Value::String("x".into()).coerce(T::Int).unwrap_err();
        assert!(e.contains("string") && e.contains("int"), "{e}");
        let e = Value::String("y".repeat(10_000))
            .coerce(T::Date)
            .unwrap_err();
        assert!(
            e.len() < 200,
            "the value is not echoed whole: {} bytes",
            e.len()
        );
    }
}
