//! Records to ingest ([`Record`]), and records read from text: one JSON
//! object or one CSV row per line, as `rulake ingest` reads `.jsonl` and
//! `.csv` files.
//!
//! Why here and not in the binary: the parsers take input from users'
//! files, so they are fuzzed, and a fuzz target can only call a library.
//!
//! Why CSV needs the collection's declarations and JSON does not: a JSON
//! value says what it is (a number, a string, a list), a CSV field is
//! only text, so a CSV file with payload columns has a header naming its
//! fields and each declared column's text is read in the declared type
//! (`year:int`), with the line number in any error, before anything is
//! sent.

use crate::{proto, Id};
use proto::value::Kind;
use rulake_types::{ColumnType, Declared};
use std::collections::BTreeMap;

/// One record to ingest: its id, its vector and its payload values by
/// column name (columns left out are null).
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// The id.
    pub id: Id,
    /// The vector.
    pub vector: Vec<f32>,
    /// Payload values by column name.
    pub columns: BTreeMap<String, proto::Value>,
}

impl From<(Id, Vec<f32>)> for Record {
    fn from((id, vector): (Id, Vec<f32>)) -> Self {
        Record {
            id,
            vector,
            columns: BTreeMap::new(),
        }
    }
}

/// Why a line is not a record.
#[derive(Debug, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct RecordError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub reason: String,
}

fn err(line: usize, reason: impl Into<String>) -> RecordError {
    RecordError {
        line,
        reason: reason.into(),
    }
}

fn value(kind: Kind) -> proto::Value {
    proto::Value { kind: Some(kind) }
}

/// A JSON value as a payload value: null, a boolean, an integer (that
/// fits 64 signed bits), a float, a string or a list of strings.
/// Timestamps and dates travel as strings; the server reads them in the
/// column's declared type.
fn json_value(v: serde_json::Value) -> Result<proto::Value, String> {
    use serde_json::Value as J;
    Ok(value(match v {
        J::Null => Kind::NullValue(true),
        J::Bool(b) => Kind::BoolValue(b),
        J::Number(x) => match (x.as_i64(), x.as_f64()) {
            (Some(i), _) => Kind::IntValue(i),
            (None, Some(_)) if x.is_u64() => {
                return Err(format!("{x} does not fit a 64-bit signed integer"))
            }
            (None, Some(f)) => Kind::FloatValue(f),
            (None, None) => return Err(format!("{x} is not a number RuLake keeps")),
        },
        J::String(s) => Kind::StringValue(s),
        J::Array(items) => Kind::StringList(proto::StringList {
            values: items
                .into_iter()
                .map(|i| match i {
                    J::String(s) => Ok(s),
                    other => Err(format!("a list holds {other}; lists hold strings only")),
                })
                .collect::<Result<_, _>>()?,
        }),
        J::Object(_) => return Err("an object is not a payload value".into()),
    }))
}

/// A JSON Lines record, `{"id": 7, "vector": [0.1, 0.2], "lang": "en"}`
/// (the id a number or a string), at line `n`: every key but `id` and
/// `vector` is a payload column.
pub fn json_record(line: &str, n: usize) -> Result<Record, RecordError> {
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| err(n, e.to_string()))?;
    let serde_json::Value::Object(mut fields) = v else {
        return Err(err(n, "a record is a JSON object"));
    };
    let id = match fields.remove("id") {
        Some(serde_json::Value::Number(x)) => Id::Num(
            x.as_u64()
                .ok_or_else(|| err(n, format!("id {x} is not an unsigned integer")))?,
        ),
        Some(serde_json::Value::String(s)) => Id::Str(s),
        _ => return Err(err(n, "\"id\" (number or string) is required")),
    };
    let vector = fields
        .remove("vector")
        .and_then(|x| match x {
            serde_json::Value::Array(a) => Some(a),
            _ => None,
        })
        .ok_or_else(|| err(n, "\"vector\" (an array of numbers) is required"))?
        .iter()
        .map(|x| x.as_f64().map(|f| f as f32))
        .collect::<Option<Vec<f32>>>()
        .ok_or_else(|| err(n, "\"vector\" holds a value that is not a number"))?;
    let columns = fields
        .into_iter()
        .map(|(k, v)| {
            let v = json_value(v).map_err(|e| err(n, format!("{k:?}: {e}")))?;
            Ok((k, v))
        })
        .collect::<Result<_, RecordError>>()?;
    Ok(Record {
        id,
        vector,
        columns,
    })
}

/// One CSV field: its text, and whether it was quoted (a quoted empty
/// field is an empty string, an unquoted one is null).
#[derive(Debug, PartialEq)]
struct Field {
    text: String,
    quoted: bool,
}

/// Split one CSV line into fields: commas separate, a field in double
/// quotes may hold commas, and `""` inside quotes is one quote.
fn fields(line: &str) -> Result<Vec<Field>, String> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ' ' || *c == '\t') {
            chars.next();
        }
        let mut f = Field {
            text: String::new(),
            quoted: false,
        };
        if chars.peek() == Some(&'"') {
            chars.next();
            f.quoted = true;
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        f.text.push('"');
                    }
                    Some('"') => break,
                    Some(c) => f.text.push(c),
                    None => return Err("a quoted field is not closed".into()),
                }
            }
            while chars.peek().is_some_and(|c| *c == ' ' || *c == '\t') {
                chars.next();
            }
            if chars.peek().is_some_and(|c| *c != ',') {
                return Err("text after a quoted field".into());
            }
        } else {
            while let Some(c) = chars.peek().copied().filter(|c| *c != ',') {
                f.text.push(c);
                chars.next();
            }
            f.text = f.text.trim_end().to_owned();
        }
        out.push(f);
        if chars.next().is_none() {
            return Ok(out);
        }
    }
}

/// Where a CSV file keeps what: the id's field, the vector's fields in
/// order, and each payload column's field with its declared type.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CsvLayout {
    id: usize,
    vector: Vec<usize>,
    columns: Vec<(usize, String, ColumnType)>,
    width: Option<usize>,
}

impl CsvLayout {
    /// A file without a header: `id,v0,v1,...`, no payload columns.
    pub fn plain() -> Self {
        CsvLayout::default()
    }

    /// The layout a header line names: the field called `id_field` is the
    /// id, a field named like a `declared` column (with its type) holds
    /// that column, and every other field is a component of the vector,
    /// in order.
    pub fn from_header(
        line: &str,
        id_field: &str,
        declared: &[Declared],
    ) -> Result<Self, RecordError> {
        let names = fields(line).map_err(|e| err(1, e))?;
        let mut layout = CsvLayout {
            id: usize::MAX,
            width: Some(names.len()),
            ..CsvLayout::default()
        };
        for (i, f) in names.iter().enumerate() {
            let name = f.text.as_str();
            if name == id_field {
                if layout.id != usize::MAX {
                    return Err(err(1, format!("the header names {name:?} twice")));
                }
                layout.id = i;
            } else if let Some(d) = declared.iter().find(|d| d.name == name) {
                let ty =
                    d.ty.ok_or_else(|| err(1, format!("column {name:?} has no declared type")))?;
                if layout.columns.iter().any(|(_, n, _)| n == name) {
                    return Err(err(1, format!("the header names {name:?} twice")));
                }
                layout.columns.push((i, name.to_owned(), ty));
            } else {
                layout.vector.push(i);
            }
        }
        if layout.id == usize::MAX {
            return Err(err(1, format!("the header has no {id_field:?} field")));
        }
        Ok(layout)
    }

    /// The payload columns the layout reads.
    pub fn columns(&self) -> impl Iterator<Item = &str> {
        self.columns.iter().map(|(_, n, _)| n.as_str())
    }
}

/// A CSV field as a value of column type `ty`: an unquoted empty field is
/// null; lists are `|`-separated (`news|sport`).
fn csv_value(f: &Field, ty: ColumnType) -> Result<proto::Value, String> {
    let t = f.text.as_str();
    if t.is_empty() && !f.quoted {
        return Ok(value(Kind::NullValue(true)));
    }
    let bad = || format!("{t:?} is not a {ty}");
    Ok(value(match ty {
        ColumnType::Bool => match t.to_ascii_lowercase().as_str() {
            "true" | "1" => Kind::BoolValue(true),
            "false" | "0" => Kind::BoolValue(false),
            _ => return Err(bad()),
        },
        ColumnType::Int => Kind::IntValue(t.parse().map_err(|_| bad())?),
        ColumnType::Float => Kind::FloatValue(t.parse().map_err(|_| bad())?),
        ColumnType::String => Kind::StringValue(t.to_owned()),
        ColumnType::Timestamp => {
            Kind::TimestampMicros(rulake_types::payload::parse_instant(t).ok_or_else(bad)?)
        }
        ColumnType::Date => Kind::DateDays(
            rulake_types::payload::parse_date(t)
                .and_then(|d| i32::try_from(d).ok())
                .ok_or_else(bad)?,
        ),
        ColumnType::StringList => Kind::StringList(proto::StringList {
            values: t.split('|').map(str::to_owned).collect(),
        }),
    }))
}

/// A CSV record laid out as `layout` says, at line `n` (an id that does
/// not parse as an unsigned integer is a string id).
pub fn csv_record(line: &str, n: usize, layout: &CsvLayout) -> Result<Record, RecordError> {
    let fields = fields(line).map_err(|e| err(n, e))?;
    if let Some(w) = layout.width.filter(|w| *w != fields.len()) {
        return Err(err(
            n,
            format!("{} fields; the header names {w}", fields.len()),
        ));
    }
    let id = &fields[layout.id].text;
    let id = match id.parse::<u64>() {
        Ok(x) => Id::Num(x),
        Err(_) if !id.is_empty() => Id::Str(id.clone()),
        Err(_) => return Err(err(n, "empty id")),
    };
    let vector_field = |f: &Field| f.text.parse::<f32>().map_err(|e| err(n, e.to_string()));
    let vector = if layout.width.is_some() {
        layout
            .vector
            .iter()
            .map(|i| vector_field(&fields[*i]))
            .collect::<Result<Vec<f32>, _>>()?
    } else {
        fields[1..]
            .iter()
            .map(vector_field)
            .collect::<Result<Vec<f32>, _>>()?
    };
    let columns = layout
        .columns
        .iter()
        .map(|(i, name, ty)| {
            let v = csv_value(&fields[*i], *ty).map_err(|e| err(n, format!("{name:?}: {e}")))?;
            Ok((name.clone(), v))
        })
        .collect::<Result<_, RecordError>>()?;
    Ok(Record {
        id,
        vector,
        columns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(i: i64) -> proto::Value {
        value(Kind::IntValue(i))
    }

    fn string(s: &str) -> proto::Value {
        value(Kind::StringValue(s.into()))
    }

    #[test]
    fn json_records_carry_every_other_key_as_a_column() {
        let r = json_record(r#"{"id": 7, "vector": [1, 2.5]}"#, 1).unwrap();
        assert_eq!((r.id, r.vector), (Id::Num(7), vec![1.0, 2.5]));
        assert!(r.columns.is_empty());
        let r = json_record(
            r#"{"id": "a", "vector": [], "lang": "en", "year": 2024, "score": 0.5, "tags": ["x"], "gone": null, "ok": true}"#,
            1,
        )
        .unwrap();
        assert_eq!(r.id, Id::Str("a".into()));
        assert_eq!(r.columns["lang"], string("en"));
        assert_eq!(r.columns["year"], int(2024));
        assert_eq!(r.columns["score"], value(Kind::FloatValue(0.5)));
        assert_eq!(
            r.columns["tags"],
            value(Kind::StringList(proto::StringList {
                values: vec!["x".into()]
            }))
        );
        assert_eq!(r.columns["gone"], value(Kind::NullValue(true)));
        assert_eq!(r.columns["ok"], value(Kind::BoolValue(true)));
        assert_eq!(
            json_record(r#"{"id": -1, "vector": []}"#, 3)
                .unwrap_err()
                .line,
            3
        );
        assert!(json_record(r#"{"id": 1, "vector": ["x"]}"#, 1).is_err());
        assert!(json_record("[", 1).is_err());
        assert!(json_record("[1]", 1).is_err());
        for bad in [r#""o": {}"#, r#""l": [1]"#, r#""u": 18446744073709551615"#] {
            let e = json_record(&format!(r#"{{"id": 1, "vector": [], {bad}}}"#), 2).unwrap_err();
            assert_eq!(e.line, 2, "{e}");
        }
    }

    #[test]
    fn csv_without_a_header_is_an_id_and_a_vector() {
        let plain = CsvLayout::plain();
        let r = csv_record("12, 0.5 ,1e3", 1, &plain).unwrap();
        assert_eq!((r.id, r.vector), (Id::Num(12), vec![0.5, 1000.0]));
        assert_eq!(
            csv_record("\"doc\",1", 1, &plain).unwrap().id,
            Id::Str("doc".into())
        );
        assert!(csv_record(",1", 1, &plain).is_err());
        assert!(csv_record("1,x", 1, &plain).is_err());
        assert!(csv_record("\"open,1", 1, &plain).is_err());
    }

    #[test]
    fn a_csv_header_places_the_id_the_vector_and_typed_columns() {
        let declared: Vec<Declared> = [
            "lang:string",
            "year:int",
            "at:timestamp",
            "tags:list<string>",
        ]
        .iter()
        .map(|d| rulake_types::declared(d))
        .collect();
        let layout =
            CsvLayout::from_header("v0,id,lang,v1,year,title,at,tags", "id", &declared).unwrap();
        assert_eq!(
            layout.columns().collect::<Vec<_>>(),
            ["lang", "year", "at", "tags"]
        );
        // `title` is not declared: it is read as a vector component.
        assert!(csv_record(r#"1,7,en,2,2024,x,,"#, 2, &layout).is_err());
        let r = csv_record(
            r#"1.5,7,"en, UK",2,2024,3,1970-01-01T00:00:01Z,news|sport"#,
            2,
            &layout,
        )
        .unwrap();
        assert_eq!(r.id, Id::Num(7));
        assert_eq!(r.vector, vec![1.5, 2.0, 3.0]);
        assert_eq!(r.columns["lang"], string("en, UK"));
        assert_eq!(r.columns["year"], int(2024));
        assert_eq!(r.columns["at"], value(Kind::TimestampMicros(1_000_000)));
        assert_eq!(
            r.columns["tags"],
            value(Kind::StringList(proto::StringList {
                values: vec!["news".into(), "sport".into()]
            }))
        );
        // Unquoted empty is null, quoted empty is the empty string.
        let r = csv_record(r#"1,7,"",2,,3,,"#, 3, &layout).unwrap();
        assert_eq!(r.columns["lang"], string(""));
        assert_eq!(r.columns["year"], value(Kind::NullValue(true)));
        let e = csv_record("1,7,en,2,twenty,3,,", 4, &layout).unwrap_err();
        assert!(e.line == 4 && e.reason.contains("year"), "{e}");
        let e = csv_record("1,7,en,2,2024,3", 5, &layout).unwrap_err();
        assert!(e.reason.contains("header"), "{e}");
        assert!(CsvLayout::from_header("v0,v1", "id", &declared).is_err());
        assert!(CsvLayout::from_header("id,lang,lang", "id", &declared).is_err());
        assert_eq!(
            fields(r#"a, "b ""q"" c" ,d"#).unwrap(),
            vec![
                Field {
                    text: "a".into(),
                    quoted: false
                },
                Field {
                    text: "b \"q\" c".into(),
                    quoted: true
                },
                Field {
                    text: "d".into(),
                    quoted: false
                },
            ]
        );
    }
}
