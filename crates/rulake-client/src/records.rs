//! Records from text: one JSON object or one CSV row per line, as
//! `rulake ingest` reads `.jsonl` and `.csv` files.
//!
//! Why here and not in the binary: the parser takes input from users'
//! files, so it is fuzzed, and a fuzz target can only call a library.

use crate::Id;

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

/// A JSON Lines record, `{"id": 7, "vector": [0.1, 0.2]}` (the id a
/// number or a string), at line `n`.
pub fn json_record(line: &str, n: usize) -> Result<(Id, Vec<f32>), RecordError> {
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| err(n, e.to_string()))?;
    let id = match v.get("id") {
        Some(serde_json::Value::Number(x)) => Id::Num(
            x.as_u64()
                .ok_or_else(|| err(n, format!("id {x} is not an unsigned integer")))?,
        ),
        Some(serde_json::Value::String(s)) => Id::Str(s.clone()),
        _ => return Err(err(n, "\"id\" (number or string) is required")),
    };
    let vector = v
        .get("vector")
        .and_then(|x| x.as_array())
        .ok_or_else(|| err(n, "\"vector\" (an array of numbers) is required"))?
        .iter()
        .map(|x| x.as_f64().map(|f| f as f32))
        .collect::<Option<Vec<f32>>>()
        .ok_or_else(|| err(n, "\"vector\" holds a value that is not a number"))?;
    Ok((id, vector))
}

/// A CSV record, `id,x1,x2,...` (an id that does not parse as an unsigned
/// integer is a string id), at line `n`.
pub fn csv_record(line: &str, n: usize) -> Result<(Id, Vec<f32>), RecordError> {
    let mut fields = line.split(',').map(str::trim);
    let id = fields.next().unwrap_or_default();
    let id = match id.parse::<u64>() {
        Ok(x) => Id::Num(x),
        Err(_) if !id.is_empty() => Id::Str(id.trim_matches('"').to_owned()),
        Err(_) => return Err(err(n, "empty id")),
    };
    let vector = fields
        .map(|f| f.parse::<f32>())
        .collect::<Result<Vec<f32>, _>>()
        .map_err(|e| err(n, e.to_string()))?;
    Ok((id, vector))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_csv_records() {
        let (id, v) = json_record(r#"{"id": 7, "vector": [1, 2.5]}"#, 1).unwrap();
        assert_eq!((id, v), (Id::Num(7), vec![1.0, 2.5]));
        let (id, _) = json_record(r#"{"id": "a", "vector": []}"#, 1).unwrap();
        assert_eq!(id, Id::Str("a".into()));
        assert_eq!(
            json_record(r#"{"id": -1, "vector": []}"#, 3)
                .unwrap_err()
                .line,
            3
        );
        assert!(json_record(r#"{"id": 1, "vector": ["x"]}"#, 1).is_err());
        assert!(json_record("[", 1).is_err());
        let (id, v) = csv_record("12, 0.5 ,1e3", 1).unwrap();
        assert_eq!((id, v), (Id::Num(12), vec![0.5, 1000.0]));
        assert_eq!(csv_record("\"doc\",1", 1).unwrap().0, Id::Str("doc".into()));
        assert!(csv_record(",1", 1).is_err());
        assert!(csv_record("1,x", 1).is_err());
    }
}
