//! Field checks shared by several commands. They look at the command alone,
//! never at the catalog, so the same name or range is judged the same way
//! whichever command carries it; the command functions add the checks that
//! need the current state.
//!
//! The size limits of [`crate::limits`] are kept here: every name, id, URL,
//! option and list a command carries is bounded, so no command can grow the
//! catalog's messages past what Raft and the catalog service carry, and an
//! error never echoes more than a short prefix of what it refuses.

use super::{SourceKind, SourceRecord, MAX_REPLICATION};
use crate::error::CommandError;
use crate::limits::{
    MAX_BATCH, MAX_BATCH_BYTES, MAX_IDENT_LEN, MAX_ID_LEN, MAX_NAME_LEN, MAX_OPTIONS,
    MAX_OPTION_KEY_LEN, MAX_OPTION_VALUE_LEN, MAX_URL_LEN,
};
use rulake_types::Consistency;
use std::collections::BTreeMap;

/// Characters of names and option keys.
fn ok_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

/// At most the first 64 characters of `s`, for an error message.
pub(crate) fn shown(s: &str) -> String {
    const SHOWN: usize = 64;
    match s.char_indices().nth(SHOWN) {
        None => s.to_owned(),
        Some((i, _)) => format!("{}... ({} bytes)", &s[..i], s.len()),
    }
}

pub(super) fn check_name(what: &'static str, name: &str) -> Result<(), CommandError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN || !name.chars().all(ok_char) {
        return Err(CommandError::InvalidName {
            what,
            name: shown(name),
        });
    }
    Ok(())
}

/// `value` is at most `max` bytes long.
fn check_len(field: &'static str, value: &str, max: usize) -> Result<(), CommandError> {
    if value.len() > max {
        return Err(CommandError::InvalidField {
            field,
            reason: format!("{} bytes; at most {max} bytes", value.len()),
        });
    }
    Ok(())
}

pub(super) fn check_url(field: &'static str, url: &str) -> Result<(), CommandError> {
    if url.trim().is_empty() {
        return Err(CommandError::InvalidField {
            field,
            reason: "must not be empty".into(),
        });
    }
    check_len(field, url, MAX_URL_LEN)
}

/// The length of `s` encoded as a JSON string, as `serde_json` writes it.
fn json_len(s: &str) -> usize {
    s.chars()
        .map(|c| match c {
            '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
            c if (c as u32) < 0x20 => 6,
            c => c.len_utf8(),
        })
        .sum::<usize>()
        + 2
}

/// What one item adds to a list's JSON encoding (its comma included).
fn item_bytes(s: &str) -> usize {
    json_len(s) + 1
}

/// The length of the id a tombstone names (`"s:<id>"` or `"n:<id>"`).
fn id_len(key: &str) -> usize {
    key.strip_prefix("s:")
        .or_else(|| key.strip_prefix("n:"))
        .unwrap_or(key)
        .len()
}

/// A list of ids or files: not empty, no empty item, every item within
/// `item_ok`, at most [`MAX_BATCH`] items and [`MAX_BATCH_BYTES`] encoded.
fn check_list(
    field: &'static str,
    items: &[String],
    item_ok: impl Fn(&str) -> Result<(), String>,
) -> Result<(), CommandError> {
    let invalid = |reason: String| CommandError::InvalidField { field, reason };
    if items.is_empty() {
        return Err(invalid("must not be empty".into()));
    }
    if items.len() > MAX_BATCH {
        return Err(invalid(format!(
            "{} items, at most {MAX_BATCH} per command",
            items.len()
        )));
    }
    let mut bytes = 1;
    for s in items {
        if s.is_empty() {
            return Err(invalid("contains an empty string".into()));
        }
        item_ok(s).map_err(invalid)?;
        bytes += item_bytes(s);
    }
    if bytes > MAX_BATCH_BYTES {
        return Err(invalid(format!(
            "{bytes} bytes encoded, at most {MAX_BATCH_BYTES} per command (split the list)"
        )));
    }
    Ok(())
}

/// Tombstones: each names an id of at most [`MAX_ID_LEN`] bytes.
pub(super) fn check_ids(ids: &[String]) -> Result<(), CommandError> {
    check_list("ids", ids, |key| match id_len(key) {
        n if n > MAX_ID_LEN => Err(format!(
            "an id of {n} bytes ({}); ids are at most {MAX_ID_LEN} bytes",
            shown(key)
        )),
        _ => Ok(()),
    })
}

/// Files of a managed commit: each at most [`MAX_URL_LEN`] bytes.
pub(super) fn check_files(files: &[String]) -> Result<(), CommandError> {
    check_list("files", files, |f| match f.len() {
        n if n > MAX_URL_LEN => Err(format!(
            "a file name of {n} bytes ({}); at most {MAX_URL_LEN} bytes",
            shown(f)
        )),
        _ => Ok(()),
    })
}

/// Split `items` (ids or files) into lists that each pass the checks of a
/// command: at most [`MAX_BATCH`] items and [`MAX_BATCH_BYTES`] encoded.
/// An item too long for any command still gets a list of its own, which
/// the command's check then refuses.
pub fn batches(items: Vec<String>) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut cur: Vec<String> = Vec::new();
    let mut bytes = 1;
    for s in items {
        let b = item_bytes(&s);
        if !cur.is_empty() && (cur.len() == MAX_BATCH || bytes + b > MAX_BATCH_BYTES) {
            out.push(std::mem::take(&mut cur));
            bytes = 1;
        }
        bytes += b;
        cur.push(s);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Object-store options: at most [`MAX_OPTIONS`], keys of 1 to
/// [`MAX_OPTION_KEY_LEN`] bytes from `[A-Za-z0-9_.-]`, values of at most
/// [`MAX_OPTION_VALUE_LEN`] bytes.
fn check_options(options: &BTreeMap<String, String>) -> Result<(), CommandError> {
    let invalid = |reason: String| CommandError::InvalidField {
        field: "options",
        reason,
    };
    if options.len() > MAX_OPTIONS {
        return Err(invalid(format!(
            "{} options, at most {MAX_OPTIONS}",
            options.len()
        )));
    }
    for (k, v) in options {
        if k.is_empty() || k.len() > MAX_OPTION_KEY_LEN || !k.chars().all(ok_char) {
            return Err(invalid(format!(
                "key {:?}: use 1 to {MAX_OPTION_KEY_LEN} characters from [A-Za-z0-9_.-]",
                shown(k)
            )));
        }
        if v.len() > MAX_OPTION_VALUE_LEN {
            return Err(invalid(format!(
                "value of {k:?} is {} bytes, at most {MAX_OPTION_VALUE_LEN}",
                v.len()
            )));
        }
    }
    Ok(())
}

/// Every string of a source description within its limit: URLs and
/// prefixes [`MAX_URL_LEN`], identifiers [`MAX_IDENT_LEN`].
fn check_source_lengths(kind: &SourceKind) -> Result<(), CommandError> {
    /// A field's name and its value.
    type Fields<'a> = Vec<(&'static str, &'a str)>;
    let (urls, idents): (Fields<'_>, Fields<'_>) = match kind {
        SourceKind::Parquet {
            url,
            id_column,
            vector_column,
        }
        | SourceKind::Delta {
            url,
            id_column,
            vector_column,
            ..
        } => (
            vec![("url", url.as_str())],
            vec![
                ("id_column", id_column.as_str()),
                ("vector_column", vector_column.as_str()),
            ],
        ),
        SourceKind::Iceberg {
            url,
            id_column,
            vector_column,
            sql_catalog,
            ..
        } => {
            let mut urls = vec![("url", url.as_str())];
            let mut idents = vec![
                ("id_column", id_column.as_str()),
                ("vector_column", vector_column.as_str()),
            ];
            if let Some(c) = sql_catalog {
                urls.push(("sql_catalog.uri", c.uri.as_str()));
                idents.extend([
                    ("sql_catalog.catalog", c.catalog.as_str()),
                    ("sql_catalog.namespace", c.namespace.as_str()),
                    ("sql_catalog.table", c.table.as_str()),
                ]);
            }
            (urls, idents)
        }
        SourceKind::Managed { prefix } => (vec![("prefix", prefix.as_str())], Vec::new()),
    };
    for (field, v) in urls {
        check_len(field, v, MAX_URL_LEN)?;
    }
    for (field, v) in idents {
        check_len(field, v, MAX_IDENT_LEN)?;
    }
    Ok(())
}

/// A source as a whole: its name, the fields its kind needs (and, for
/// Parquet, distinct id and vector columns), every length, its options.
pub(super) fn check_source(src: &SourceRecord) -> Result<(), CommandError> {
    check_name("source", &src.name)?;
    check_source_lengths(&src.kind)?;
    src.kind
        .validate()
        .map_err(|e| CommandError::InvalidField {
            field: e.field,
            reason: e.reason,
        })?;
    check_options(&src.options)
}

pub(super) fn check_consistency(c: &Consistency) -> Result<(), CommandError> {
    if let Consistency::Eventual { max_staleness } = c {
        if max_staleness.is_zero() {
            return Err(CommandError::InvalidField {
                field: "consistency.max_staleness",
                reason: "must be positive (use fresh for zero staleness)".into(),
            });
        }
    }
    Ok(())
}

pub(super) fn check_replication(r: u32) -> Result<(), CommandError> {
    if r == 0 || r > MAX_REPLICATION {
        return Err(CommandError::InvalidField {
            field: "replication",
            reason: format!("{r}; must be in 1..={MAX_REPLICATION}"),
        });
    }
    Ok(())
}

pub(super) fn check_rerank(r: u32) -> Result<(), CommandError> {
    if r == 0 || r > 1000 {
        return Err(CommandError::InvalidField {
            field: "rerank",
            reason: format!("{r}; must be in 1..=1000"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_len_is_what_serde_json_writes() {
        for s in [
            "plain",
            "quote\" back\\ nl\n cr\r tab\t bs\u{8} ff\u{c}",
            "ctl\u{0}\u{1f}\u{7f}",
            "wide é 漢 🦀",
        ] {
            let json = serde_json::to_string(s).expect("encode");
            assert_eq!(json_len(s), json.len(), "{s:?}");
        }
    }

    #[test]
    fn batches_pass_the_list_check_and_keep_every_item() {
        let long = "x".repeat(MAX_ID_LEN);
        let ids: Vec<String> = (0..3000)
            .map(|i| format!("s:{i}{}", &long[..MAX_ID_LEN - 5]))
            .chain((0..150_000).map(|i| format!("n:{i}")))
            .collect();
        let lists = batches(ids.clone());
        assert!(lists.len() > 3, "{}", lists.len());
        for l in &lists {
            check_ids(l).expect("each list is a valid command");
        }
        assert_eq!(lists.concat(), ids);
    }

    #[test]
    fn errors_show_a_short_prefix_only() {
        let e = check_name("collection", &"x".repeat(1 << 20)).expect_err("too long");
        assert!(e.to_string().len() < 300, "{}", e.to_string().len());
        let e = check_ids(&[format!("s:{}", "y".repeat(5 << 20))]).expect_err("too long");
        assert!(e.to_string().len() < 300, "{}", e.to_string().len());
    }
}
