//! Request bodies of the write endpoints, checked the way the real API checks them: its
//! 400 messages come from a JSON Schema validator (`'target_type' is a required property`,
//! research notes §5), so the simulator words them the same and the mirror's error
//! handling meets realistic text.

use serde_json::{Map, Value};

/// Why a write was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(super) enum WriteError {
    /// 400: the body breaks the endpoint's schema or refers to something that doesn't exist.
    #[error("{0}")]
    Invalid(String),
    /// 404: the path names no record.
    #[error("{0}")]
    NotFound(String),
}

impl WriteError {
    pub fn status(&self) -> u16 {
        match self {
            WriteError::Invalid(_) => 400,
            WriteError::NotFound(_) => 404,
        }
    }
}

pub(super) fn invalid(message: impl Into<String>) -> WriteError {
    WriteError::Invalid(message.into())
}

/// What a body field must hold. `Null…` variants also accept `null` (which then clears the
/// field on an update).
#[derive(Clone, Copy, Debug)]
pub(super) enum Ty {
    Str,
    NullStr,
    Int,
    NullInt,
    Bool,
    NullBool,
    /// A string with an `@`, 4–255 characters.
    Email,
    /// `YYYY-MM-DD` or null.
    NullDate,
    /// One of these strings.
    Enum(&'static [&'static str]),
    Object,
    /// An array of strings.
    StrArray,
}

/// The body as a JSON object: an empty body is an empty object (a DELETE or a PATCH that
/// changes nothing), anything else must parse to an object.
pub(super) fn parse_body(bytes: &[u8]) -> Result<Map<String, Value>, WriteError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(invalid(format!("{} is not of type 'object'", repr(&other)))),
        Err(e) => Err(invalid(format!("Failed to decode JSON object: {e}"))),
    }
}

/// The first of `names` missing from `body` (a `null` counts as present, as in JSON Schema).
pub(super) fn require(body: &Map<String, Value>, names: &[&str]) -> Result<(), WriteError> {
    match names.iter().find(|n| !body.contains_key(**n)) {
        Some(missing) => Err(invalid(format!("'{missing}' is a required property"))),
        None => Ok(()),
    }
}

/// `body[name]` checked against `ty`: `None` when absent, else the value to store
/// (currencies and such normalized by the callers).
pub(super) fn field(body: &Map<String, Value>, name: &str, ty: Ty) -> Result<Option<Value>, WriteError> {
    let Some(v) = body.get(name) else { return Ok(None) };
    check(v, ty).map(|()| Some(v.clone()))
}

fn check(v: &Value, ty: Ty) -> Result<(), WriteError> {
    let wrong = |types: &str| Err(invalid(format!("{} is not of type {types}", repr(v))));
    match (ty, v) {
        (Ty::NullStr | Ty::NullInt | Ty::NullBool | Ty::NullDate, Value::Null) => Ok(()),
        (Ty::Str, Value::String(_)) | (Ty::NullStr, Value::String(_)) => Ok(()),
        (Ty::Str, _) => wrong("'string'"),
        (Ty::NullStr, _) => wrong("'string', 'null'"),
        (Ty::Int | Ty::NullInt, v) if v.as_i64().is_some() => Ok(()),
        (Ty::Int, _) => wrong("'integer'"),
        (Ty::NullInt, _) => wrong("'integer', 'null'"),
        (Ty::Bool | Ty::NullBool, Value::Bool(_)) => Ok(()),
        (Ty::Bool, _) => wrong("'boolean'"),
        (Ty::NullBool, _) => wrong("'boolean', 'null'"),
        (Ty::Email, Value::String(s)) if s.chars().count() < 4 => Err(invalid(format!("{} is too short", repr(v)))),
        (Ty::Email, Value::String(s)) if s.chars().count() > 255 => Err(invalid(format!("{} is too long", repr(v)))),
        (Ty::Email, Value::String(s)) if is_email(s) => Ok(()),
        (Ty::Email, Value::String(_)) => Err(invalid(format!("{} is not a 'email'", repr(v)))),
        (Ty::Email, _) => wrong("'string'"),
        (Ty::NullDate, Value::String(s)) if chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok() => Ok(()),
        (Ty::NullDate, Value::String(_)) => Err(invalid(format!("{} is not a 'date'", repr(v)))),
        (Ty::NullDate, _) => wrong("'string', 'null'"),
        (Ty::Enum(choices), Value::String(s)) if choices.contains(&s.as_str()) => Ok(()),
        (Ty::Enum(choices), _) => {
            let listed: Vec<String> = choices.iter().map(|c| repr(&Value::from(*c))).collect();
            Err(invalid(format!("{} is not one of [{}]", repr(v), listed.join(", "))))
        }
        (Ty::Object, Value::Object(_)) => Ok(()),
        (Ty::Object, _) => wrong("'object'"),
        (Ty::StrArray, Value::Array(items)) => items.iter().try_for_each(|i| check(i, Ty::Str)),
        (Ty::StrArray, _) => wrong("'array'"),
    }
}

fn is_email(s: &str) -> bool {
    matches!(s.split_once('@'), Some((local, domain)) if !local.is_empty() && domain.contains('.') && !domain.contains('@'))
}

/// A required string (present, a string).
pub(super) fn text(body: &Map<String, Value>, name: &str) -> Result<String, WriteError> {
    require(body, &[name])?;
    let v = field(body, name, Ty::Str)?.unwrap_or_default();
    Ok(v.as_str().unwrap_or_default().to_owned())
}

/// An optional string: absent and `null` are both `None`.
pub(super) fn opt_text(body: &Map<String, Value>, name: &str) -> Result<Option<String>, WriteError> {
    Ok(field(body, name, Ty::NullStr)?.and_then(|v| v.as_str().map(str::to_owned)))
}

/// A string no longer than `max` characters, for the documented length limits.
pub(super) fn max_len(value: Option<&str>, max: usize) -> Result<(), WriteError> {
    match value {
        Some(s) if s.chars().count() > max => Err(invalid(format!("{} is too long", repr(&Value::from(s))))),
        _ => Ok(()),
    }
}

/// The `fields` present in `body`, each checked against its type: what a create takes
/// from the body, or what an update merges into the record.
pub(super) fn pick(body: &Map<String, Value>, fields: &[(&str, Ty)]) -> Result<Map<String, Value>, WriteError> {
    let mut picked = Map::new();
    for (name, ty) in fields {
        if let Some(v) = field(body, name, *ty)? {
            picked.insert((*name).to_owned(), v);
        }
    }
    Ok(picked)
}

/// Sets every one of `fields` on `record` from `picked`, `null` where the body had none:
/// a created record holds what it was given, not invented values.
pub(super) fn fill(record: &mut Value, picked: &Map<String, Value>, fields: &[(&str, Ty)]) {
    for (name, _) in fields {
        record[*name] = picked.get(*name).cloned().unwrap_or(Value::Null);
    }
}

/// A value the way Python prints it, as the real API's validator quotes offending values.
pub(super) fn repr(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'")),
        Value::Array(items) => format!("[{}]", items.iter().map(repr).collect::<Vec<_>>().join(", ")),
        Value::Object(map) => {
            let pairs: Vec<String> = map.iter().map(|(k, v)| format!("'{k}': {}", repr(v))).collect();
            format!("{{{}}}", pairs.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn messages_read_like_the_json_schema_errors_of_the_real_api() {
        let b = body(json!({"value": "1", "status": "won", "email": "nope", "close_date": "soon", "tags": ["a", 2]}));
        assert_eq!(require(&b, &["value", "target_type"]), Err(invalid("'target_type' is a required property")));
        assert_eq!(field(&b, "value", Ty::Int), Err(invalid("'1' is not of type 'integer'")));
        let status = field(&b, "status", Ty::Enum(&["open", "closed won"]));
        assert_eq!(status, Err(invalid("'won' is not one of ['open', 'closed won']")));
        assert_eq!(field(&b, "email", Ty::Email), Err(invalid("'nope' is not a 'email'")));
        assert_eq!(field(&b, "close_date", Ty::NullDate), Err(invalid("'soon' is not a 'date'")));
        assert_eq!(field(&b, "tags", Ty::StrArray), Err(invalid("2 is not of type 'string'")));
        assert_eq!(field(&b, "missing", Ty::Str), Ok(None));
        assert_eq!(parse_body(b"[1, true, null]"), Err(invalid("[1, True, None] is not of type 'object'")));
        assert_eq!(parse_body(b" "), Ok(Map::new()));
    }

    #[test]
    fn nullable_fields_take_null_and_required_ones_do_not() {
        let b = body(json!({"amount": null, "name": null}));
        assert_eq!(field(&b, "amount", Ty::NullInt), Ok(Some(Value::Null)));
        assert_eq!(field(&b, "amount", Ty::Int), Err(invalid("None is not of type 'integer'")));
        assert_eq!(opt_text(&b, "name"), Ok(None));
        assert_eq!(text(&b, "name"), Err(invalid("None is not of type 'string'")));
    }
}
