//! Payload columns: the scalar columns a collection keeps beside its
//! vectors, so searches can filter on them and return them.
//!
//! Why a handful of types and not Arrow's: the cache holds these values
//! per row position for as long as the partition is warm, the filter
//! compares them, and the API sends them back; none of that needs more
//! than integers, floats, strings, booleans, instants, dates and lists of
//! strings, and keeping the set small keeps the filter's typing rules
//! small. The lake maps every Arrow type it accepts onto one of these
//! (`rulake-lake`'s `arrow_conv`); anything else is refused when the
//! partition is first loaded, naming the column.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Most payload columns a collection may keep.
pub const MAX_PAYLOAD_COLUMNS: usize = 64;

/// The type of a payload column, as the lake's column type maps onto it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnType {
    /// Booleans.
    Bool,
    /// Signed and unsigned integers up to 64 bits (unsigned ones must fit an `i64`).
    Int,
    /// 16-, 32- and 64-bit floats.
    Float,
    /// UTF-8 strings.
    String,
    /// Instants, as microseconds since the Unix epoch (UTC).
    Timestamp,
    /// Calendar dates, as days since the Unix epoch.
    Date,
    /// Lists of UTF-8 strings (tags).
    StringList,
}

impl ColumnType {
    /// The name errors and the API use.
    pub fn as_str(self) -> &'static str {
        match self {
            ColumnType::Bool => "bool",
            ColumnType::Int => "int",
            ColumnType::Float => "float",
            ColumnType::String => "string",
            ColumnType::Timestamp => "timestamp",
            ColumnType::Date => "date",
            ColumnType::StringList => "list<string>",
        }
    }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One payload value (or a filter's literal).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Value {
    /// No value.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    String(String),
    /// Microseconds since the Unix epoch (UTC).
    Timestamp(i64),
    /// Days since the Unix epoch.
    Date(i32),
    /// A list of strings.
    StringList(Vec<String>),
}

impl Value {
    /// The column type a non-null value belongs to.
    pub fn column_type(&self) -> Option<ColumnType> {
        Some(match self {
            Value::Null => return None,
            Value::Bool(_) => ColumnType::Bool,
            Value::Int(_) => ColumnType::Int,
            Value::Float(_) => ColumnType::Float,
            Value::String(_) => ColumnType::String,
            Value::Timestamp(_) => ColumnType::Timestamp,
            Value::Date(_) => ColumnType::Date,
            Value::StringList(_) => ColumnType::StringList,
        })
    }

    /// Heap bytes beside the value itself.
    fn heap_bytes(&self) -> usize {
        match self {
            Value::String(s) => s.capacity(),
            Value::StringList(l) => {
                l.capacity() * std::mem::size_of::<String>()
                    + l.iter().map(String::capacity).sum::<usize>()
            }
            _ => 0,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::String(s) => write!(f, "{s:?}"),
            Value::Timestamp(t) => write!(f, "timestamp {t}µs"),
            Value::Date(d) => write!(f, "date {d}"),
            Value::StringList(l) => write!(f, "{l:?}"),
        }
    }
}

/// One payload column of a run of rows: its name, its type (`None` while
/// every value seen is null) and one value per row.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Column {
    /// Column name, as the collection names it.
    pub name: String,
    /// Type, known from the first file that holds the column.
    pub ty: Option<ColumnType>,
    /// One value per row position.
    pub values: Vec<Value>,
}

/// The payload columns of one partition, by row position: row `p` of every
/// column belongs to the index's row `p`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Payload {
    /// The columns, in the order the collection names them.
    pub columns: Vec<Column>,
}

impl Payload {
    /// An empty payload with the named columns.
    pub fn new(names: &[String]) -> Self {
        Payload {
            columns: names
                .iter()
                .map(|n| Column {
                    name: n.clone(),
                    ty: None,
                    values: Vec::new(),
                })
                .collect(),
        }
    }

    /// Column names, in order.
    pub fn names(&self) -> Vec<String> {
        self.columns.iter().map(|c| c.name.clone()).collect()
    }

    /// The column called `name`.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Rows held (every column holds as many).
    pub fn rows(&self) -> usize {
        self.columns.first().map_or(0, |c| c.values.len())
    }

    /// Append a batch's columns (the same names, in the same order). A
    /// column whose type differs from the rows before (an `int` year in
    /// one file, a `string` in the next) is refused, naming it.
    pub fn append(&mut self, batch: Vec<Column>) -> Result<(), String> {
        if batch.len() != self.columns.len() {
            return Err(format!(
                "{} payload columns read, {} expected",
                batch.len(),
                self.columns.len()
            ));
        }
        for (mine, theirs) in self.columns.iter_mut().zip(batch) {
            if mine.name != theirs.name {
                return Err(format!(
                    "payload column {:?} read where {:?} was expected",
                    theirs.name, mine.name
                ));
            }
            match (mine.ty, theirs.ty) {
                (Some(a), Some(b)) if a != b => {
                    return Err(format!(
                        "payload column {:?} is {a} in some files and {b} in others",
                        mine.name
                    ))
                }
                (None, t) => mine.ty = t,
                _ => {}
            }
            mine.values.extend(theirs.values);
        }
        Ok(())
    }

    /// Row `pos`'s values of the columns named in `names` (names the
    /// payload does not hold are left out).
    pub fn row(&self, pos: u32, names: &[String]) -> BTreeMap<String, Value> {
        names
            .iter()
            .filter_map(|n| {
                let c = self.column(n)?;
                Some((n.clone(), c.values.get(pos as usize)?.clone()))
            })
            .collect()
    }

    /// Heap bytes held, for the cache's budget.
    pub fn memory_bytes(&self) -> usize {
        self.columns
            .iter()
            .map(|c| {
                c.values.capacity() * std::mem::size_of::<Value>()
                    + c.values.iter().map(Value::heap_bytes).sum::<usize>()
                    + c.name.capacity()
            })
            .sum()
    }
}

/// Days since the Unix epoch of a proleptic Gregorian date (Howard
/// Hinnant's `days_from_civil`).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A date (`2024-01-31`) or an instant (`2024-01-31T12:00:00`, with an
/// optional fraction and `Z` or `±HH:MM`; no offset means UTC) as
/// microseconds since the Unix epoch.
pub fn parse_instant(s: &str) -> Option<i64> {
    let s = s.trim();
    let (date, time) = match s.find(['T', 't', ' ']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let days = parse_date(date)?;
    let mut micros = days * 86_400_000_000;
    if let Some(time) = time {
        let (clock, offset) = split_offset(time)?;
        let mut parts = clock.splitn(3, ':');
        let h: i64 = parts.next()?.parse().ok()?;
        let m: i64 = parts.next()?.parse().ok()?;
        let sec = parts.next().unwrap_or("0");
        let (whole, frac) = sec.split_once('.').unwrap_or((sec, ""));
        let whole: i64 = whole.parse().ok()?;
        if h > 23 || m > 59 || whole > 60 || frac.len() > 9 {
            return None;
        }
        let frac_micros = if frac.is_empty() {
            0
        } else {
            let digits: String = frac.chars().chain("000000".chars()).take(6).collect();
            digits.parse::<i64>().ok()?
        };
        micros += ((h * 60 + m) * 60 + whole) * 1_000_000 + frac_micros - offset * 60_000_000;
    }
    Some(micros)
}

/// Split `12:00:00+02:00` into the clock and the offset in minutes.
fn split_offset(time: &str) -> Option<(&str, i64)> {
    if let Some(clock) = time.strip_suffix(['Z', 'z']) {
        return Some((clock, 0));
    }
    match time.rfind(['+', '-']) {
        Some(i) => {
            let sign = if time.as_bytes()[i] == b'-' { -1 } else { 1 };
            let (h, m) = time[i + 1..].split_once(':')?;
            let minutes = h.parse::<i64>().ok()? * 60 + m.parse::<i64>().ok()?;
            Some((&time[..i], sign * minutes))
        }
        None => Some((time, 0)),
    }
}

/// `YYYY-MM-DD` as days since the Unix epoch.
pub fn parse_date(s: &str) -> Option<i64> {
    let mut parts = s.trim().splitn(3, '-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: u32 = parts.next()?.parse().ok()?;
    let d: u32 = parts.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    Some(days_from_civil(y, m, d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_instants_parse() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("2024-03-01"), Some(19_783));
        assert_eq!(parse_date("2024-13-01"), None);
        assert_eq!(parse_instant("1970-01-02"), Some(86_400_000_000));
        assert_eq!(
            parse_instant("1970-01-01T01:00:00.5Z"),
            Some(3_600_000_000 + 500_000)
        );
        assert_eq!(
            parse_instant("1970-01-01T02:00:00+01:00"),
            Some(3_600_000_000)
        );
        assert_eq!(parse_instant("yesterday"), None);
    }

    #[test]
    fn appending_checks_names_and_types() {
        let mut p = Payload::new(&["year".into()]);
        let col = |ty, values| Column {
            name: "year".into(),
            ty,
            values,
        };
        p.append(vec![col(None, vec![Value::Null])]).unwrap();
        p.append(vec![col(Some(ColumnType::Int), vec![Value::Int(2024)])])
            .unwrap();
        assert_eq!(p.columns[0].ty, Some(ColumnType::Int));
        assert_eq!(p.rows(), 2);
        let e = p
            .append(vec![col(
                Some(ColumnType::String),
                vec![Value::String("x".into())],
            )])
            .unwrap_err();
        assert!(
            e.contains("\"year\"") && e.contains("int") && e.contains("string"),
            "{e}"
        );
        assert_eq!(p.row(1, &["year".into()])["year"], Value::Int(2024));
    }
}
