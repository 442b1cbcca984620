//! One API record, checked and ready to store: its key, timestamps, archived flag, raw JSON
//! and the values of its typed columns.
//!
//! Everything PostgreSQL would reject is caught here, per record, so that one bad record
//! goes to `quarantine` with a clear reason instead of failing the whole page's statement.

use serde_json::{value::RawValue, Value};

use crate::object::{ColumnType, ObjectKind};

/// The largest record we store. Bigger ones are almost certainly broken, and one of them
/// would otherwise bloat every page statement and event that carries it.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;

/// Why a record cannot be stored.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RecordError {
    #[error("record is not valid JSON: {0}")]
    NotJson(String),
    #[error("record is not a JSON object")]
    NotAnObject,
    #[error("record has no `key` (or an empty one)")]
    MissingKey,
    #[error("field `{field}` contains a NUL character, which PostgreSQL cannot store")]
    NulCharacter { field: String },
    #[error("record is {bytes} bytes, over the {limit}-byte limit")]
    TooLarge { bytes: usize, limit: usize },
    #[error("field `{field}` must be {expected}, found {found}")]
    WrongType { field: String, expected: &'static str, found: String },
}

/// A record that passed every check. It keeps its JSON as text only, not as a parsed tree:
/// a first load never needs the tree again, and a page's records are in memory several at
/// once (a tree is a few times the size of its text); a diff parses the text again.
#[derive(Debug, Clone)]
pub struct Record {
    pub key: String,
    pub created_ms: Option<i64>,
    pub updated_ms: Option<i64>,
    pub archived: bool,
    /// The record's exact JSON text: written into the row and the events as is, so a page's
    /// payloads never clone or re-serialize it.
    pub text: Box<RawValue>,
    /// The values of the object's typed columns, in [`ObjectKind::columns`] order, normalized
    /// for their column type (timestamps stay epoch milliseconds; the SQL converts them).
    /// Pages bind them as one array per column.
    pub columns: Vec<Value>,
}

impl Record {
    /// The record's JSON, parsed again (it parsed when it was checked).
    pub fn value(&self) -> Value {
        serde_json::from_str(self.text.get()).expect("a checked record's text is JSON")
    }

    /// The value of the typed column `name` (`None` when the object has no such column).
    pub fn column(&self, kind: ObjectKind, name: &str) -> Option<&Value> {
        kind.columns().iter().position(|c| c.name == name).map(|i| &self.columns[i])
    }
}

/// A record that failed a check, kept verbatim for the `quarantine` table.
#[derive(Debug, Clone)]
pub struct Rejected {
    pub key: Option<String>,
    pub raw: String,
    pub error: RecordError,
}

/// Checks one raw item of a page, which becomes the record's text.
pub fn check(kind: ObjectKind, raw: Box<RawValue>) -> Result<Record, Rejected> {
    let reject = |raw: &RawValue, key: Option<String>, error| Rejected { key, raw: raw.get().replace('\0', "\\u0000"), error };
    let text = raw.get();
    if text.len() > MAX_RECORD_BYTES {
        let key = key_hint(text);
        return Err(reject(&raw, key, RecordError::TooLarge { bytes: text.len(), limit: MAX_RECORD_BYTES }));
    }
    let value: Value = match serde_json::from_str(text) {
        Ok(value) => value,
        Err(e) => return Err(reject(&raw, None, RecordError::NotJson(e.to_string()))),
    };
    match fields(kind, &value, Some(text)) {
        Ok(fields) => Ok(fields.with_text(raw)),
        Err((key, error)) => Err(reject(&raw, key, error)),
    }
}

/// Checks an already parsed record (write-back results, single GETs).
pub fn from_value(kind: ObjectKind, value: Value) -> Result<Record, (Option<String>, RecordError)> {
    let fields = fields(kind, &value, None)?;
    let text = serde_json::value::to_raw_value(&value).map_err(|e| (Some(fields.key.clone()), RecordError::NotJson(e.to_string())))?;
    Ok(fields.with_text(text))
}

/// What a check takes out of a record.
struct Fields {
    key: String,
    created_ms: Option<i64>,
    updated_ms: Option<i64>,
    archived: bool,
    columns: Vec<Value>,
}

impl Fields {
    fn with_text(self, text: Box<RawValue>) -> Record {
        let Fields { key, created_ms, updated_ms, archived, columns } = self;
        Record { key, created_ms, updated_ms, archived, text, columns }
    }
}

/// Checks `value` (whose JSON text is `text`, when known) and takes out its fields.
fn fields(kind: ObjectKind, value: &Value, text: Option<&str>) -> Result<Fields, (Option<String>, RecordError)> {
    let Value::Object(map) = value else {
        return Err((None, RecordError::NotAnObject));
    };
    let key = match map.get("key") {
        Some(Value::String(k)) if !k.trim().is_empty() => k.clone(),
        Some(Value::String(_)) | None | Some(Value::Null) => return Err((None, RecordError::MissingKey)),
        Some(other) => return Err((None, RecordError::WrongType { field: "key".into(), expected: "a string", found: describe(other) })),
    };
    let fail = |error| (Some(key.clone()), error);
    // JSON text can only spell a NUL as the escape `\u0000`: without one, there is none to find.
    let may_hold_nul = text.is_none_or(|t| t.contains("\\u0000"));
    if let Some(field) = may_hold_nul.then(|| find_nul(value, "")).flatten() {
        return Err(fail(RecordError::NulCharacter { field }));
    }
    let created_ms = epoch_ms(map.get("created_at"), "created_at").map_err(fail)?;
    let updated_ms = epoch_ms(map.get("updated_at"), "updated_at").map_err(fail)?;
    let archived = flag(map.get("archived"), "archived").map_err(fail)?.unwrap_or(false);

    let mut columns = Vec::with_capacity(kind.columns().len());
    for column in kind.columns() {
        let joined;
        let field = match column.path {
            [one] => *one,
            path => {
                joined = path.join(".");
                &joined
            }
        };
        let found = lookup(value, column.path);
        columns.push(convert(column.ty, found, field).map_err(fail)?);
    }
    Ok(Fields { key, created_ms, updated_ms, archived, columns })
}

fn lookup<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, p| v.get(p))
}

fn convert(ty: ColumnType, found: Option<&Value>, field: &str) -> Result<Value, RecordError> {
    let wrong = |expected, v: &Value| RecordError::WrongType { field: field.to_owned(), expected, found: describe(v) };
    let Some(v) = found.filter(|v| !v.is_null()) else {
        return Ok(Value::Null);
    };
    Ok(match ty {
        ColumnType::Text => match v {
            Value::String(_) => v.clone(),
            // Numbers and booleans in a text field are unambiguous; keep their JSON spelling.
            Value::Number(n) => Value::String(n.to_string()),
            Value::Bool(b) => Value::String(b.to_string()),
            _ => return Err(wrong("a string", v)),
        },
        ColumnType::BigInt => match v.as_i64() {
            Some(i) => Value::from(i),
            None => return Err(wrong("an integer", v)),
        },
        ColumnType::Bool => match flag(Some(v), field)? {
            Some(b) => Value::Bool(b),
            None => Value::Null,
        },
        ColumnType::Timestamp => match epoch_ms(Some(v), field)? {
            Some(ms) => Value::from(ms),
            None => Value::Null,
        },
        ColumnType::Date => match v.as_str().map(|s| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")) {
            Some(Ok(d)) => Value::String(d.format("%Y-%m-%d").to_string()),
            _ => return Err(wrong("a date (YYYY-MM-DD)", v)),
        },
        ColumnType::TextArray => match v {
            Value::Array(items) if items.iter().all(Value::is_string) => v.clone(),
            _ => return Err(wrong("an array of strings", v)),
        },
    })
}

/// Epoch milliseconds within the range PostgreSQL's timestamptz holds (years 1..=294276 are
/// fine; we accept 1970 ± a few thousand years).
fn epoch_ms(v: Option<&Value>, field: &str) -> Result<Option<i64>, RecordError> {
    const LIMIT: i64 = 100_000_000_000_000; // about year 5138
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_i64() {
            Some(ms) if (-LIMIT..=LIMIT).contains(&ms) => Ok(Some(ms)),
            _ => Err(RecordError::WrongType { field: field.to_owned(), expected: "epoch milliseconds", found: describe(v) }),
        },
    }
}

/// Booleans, also the string forms the legacy webhooks used (`"archived": "false"`).
fn flag(v: Option<&Value>, field: &str) -> Result<Option<bool>, RecordError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(other) => Err(RecordError::WrongType { field: field.to_owned(), expected: "a boolean", found: describe(other) }),
    }
}

/// The first field (by path) whose key or string value holds a NUL character.
fn find_nul(v: &Value, path: &str) -> Option<String> {
    let here = |name: &str| {
        if path.is_empty() {
            name.to_owned()
        } else {
            format!("{path}.{name}")
        }
    };
    match v {
        Value::String(s) if s.contains('\0') => Some(if path.is_empty() { "(value)".into() } else { path.to_owned() }),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| find_nul(item, &here(&i.to_string()))),
        Value::Object(map) => {
            map.iter().find_map(
                |(k, item)| {
                    if k.contains('\0') {
                        Some(here(&k.replace('\0', "\\u0000")))
                    } else {
                        find_nul(item, &here(k))
                    }
                },
            )
        }
        _ => None,
    }
}

fn describe(v: &Value) -> String {
    let text = v.to_string();
    if text.len() > 60 {
        let cut = (0..=60).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
        format!("{}…", &text[..cut])
    } else {
        text
    }
}

/// The key of a record too large or too broken to parse, when a cheap look finds one.
fn key_hint(text: &str) -> Option<String> {
    let start = text.find("\"key\"")? + 5;
    let rest = text[start..].trim_start().strip_prefix(':')?.trim_start().strip_prefix('"')?;
    let end = rest.find('"')?;
    Some(rest[..end].to_owned()).filter(|k| !k.is_empty() && k.len() <= 255)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap()
    }

    #[test]
    fn a_clean_deal_becomes_typed_columns() {
        let r = check(
            ObjectKind::Deal,
            raw(r#"{"key":"deal_1","created_at":1700000000123,"updated_at":1700000000456,"amount":1250,"stage":"won","close_date":"2024-02-29","team":{"key":"stck_1"}}"#),
        )
        .unwrap();
        assert_eq!(r.key, "deal_1");
        assert_eq!(r.created_ms, Some(1_700_000_000_123));
        assert_eq!(r.column(ObjectKind::Deal, "amount").unwrap(), 1250);
        assert_eq!(r.column(ObjectKind::Deal, "team_key").unwrap(), "stck_1");
        assert_eq!(r.column(ObjectKind::Deal, "close_date").unwrap(), "2024-02-29");
        assert_eq!(r.column(ObjectKind::Deal, "customer_key"), Some(&Value::Null));
        assert_eq!(r.column(ObjectKind::Deal, "no_such_column"), None);
    }

    #[test]
    fn bad_records_are_rejected_with_the_field_named() {
        let cases = [
            (r#"{"key":"d","amount":"12.5"}"#, "field `amount` must be an integer"),
            (r#"{"amount":1}"#, "no `key`"),
            (r#"{"key":"  "}"#, "no `key`"),
            (r#"{"key":"d","stage":"a\u0000b"}"#, "field `stage` contains a NUL"),
            (r#"{"key":"d","created_at":"yesterday"}"#, "field `created_at` must be epoch milliseconds"),
            (r#"{"key":"d","close_date":"29/02/2024"}"#, "field `close_date` must be a date"),
            (r#"[1,2]"#, "not a JSON object"),
        ];
        for (text, expected) in cases {
            let err = check(ObjectKind::Deal, raw(text)).unwrap_err();
            assert!(err.error.to_string().contains(expected), "{text}: {}", err.error);
            assert!(!err.raw.contains('\0'));
        }
    }

    #[test]
    fn a_huge_record_is_rejected_with_its_key() {
        let big = format!(r#"{{"key":"deal_big","account_name":"{}"}}"#, "x".repeat(MAX_RECORD_BYTES));
        let err = check(ObjectKind::Deal, raw(&big)).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("deal_big"));
        assert!(matches!(err.error, RecordError::TooLarge { .. }));
    }

    #[test]
    fn archived_accepts_the_legacy_string_form() {
        let r = check(ObjectKind::Partnership, raw(r#"{"key":"p","archived":"true","tags":["a"]}"#)).unwrap();
        assert!(r.archived);
        let err = check(ObjectKind::Partnership, raw(r#"{"key":"p","tags":"a,b"}"#)).unwrap_err();
        assert!(err.error.to_string().contains("tags"));
    }
}
