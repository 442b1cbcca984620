//! What an operator reads when the configuration is wrong: the key as the TOML file spells it
//! (`sync.lookback`, `delivery[crm].timeout`), the reason, and where the value came from (the
//! file, or the environment variable). figment's own messages say `"default.sync.lookback"` or
//! `"SYNC.LOOKBACK" in PSM_ environment variable(s)`, and quote the value they reject, which
//! for a secret is the secret; so its errors are taken apart and said again here, and a value
//! is quoted only where no secret can be.

use std::path::PathBuf;

use figment::{
    error::{Actual, Kind},
    value::Value,
    Figment, Metadata, Source,
};

use super::{ConfigError, Origin};

/// The keys whose values are secret; `*` stands for a delivery's index. A key on the way to one
/// (`partnerstack`, written whole as `PSM_PARTNERSTACK='{…}'`) may hold it too.
const SECRET_KEYS: [&[&str]; 4] =
    [&["database", "url"], &["partnerstack", "private_key"], &["webhooks", "token"], &["delivery", "*", "secret"]];

/// figment's first error, said as [`ConfigError`] (serde stops at the first one anyway).
pub(super) fn figment_error(figment: &Figment, error: figment::Error) -> ConfigError {
    let mut path = error.path.clone();
    if let Kind::MissingField(field) = &error.kind {
        path.push(field.to_string());
    }
    let origin = origin_of(figment, &path).or_else(|| error.metadata.as_ref().map(origin_from)).unwrap_or(Origin::Unknown);
    if path.is_empty() {
        // Not a key's value but the source itself: a file that is not TOML, or unreadable.
        return ConfigError::Unreadable { origin, reason: source_reason(&error.kind) };
    }
    let reason = if may_hold_secret(&path) { secret_reason(&error.kind) } else { reason(&error.kind) };
    ConfigError::Invalid { key: display_key(figment, &path), reason, origin }
}

/// A validation error, told where its key's value came from.
pub(super) fn with_origin(figment: &Figment, error: ConfigError) -> ConfigError {
    match error {
        ConfigError::Invalid { key, reason, origin: Origin::Unknown } => {
            let origin = origin_of(figment, &figment_path(figment, &key)).unwrap_or(Origin::Unknown);
            ConfigError::Invalid { key, reason, origin }
        }
        other => other,
    }
}

fn may_hold_secret(path: &[String]) -> bool {
    SECRET_KEYS.iter().any(|secret| path.len() <= secret.len() && path.iter().zip(secret.iter()).all(|(p, s)| *s == "*" || p == s))
}

/// The reason, quoting the rejected value where figment does (it helps, and none is secret).
fn reason(kind: &Kind) -> String {
    match kind {
        Kind::InvalidType(actual, expected) | Kind::InvalidValue(actual, expected) => {
            format!("expected {}, found {actual}", plain(expected))
        }
        Kind::UnknownField(_, expected) => format!("unknown key; expected {}", one_of(expected)),
        Kind::UnknownVariant(found, expected) => format!("expected {}, found `{found}`", one_of(expected)),
        Kind::MissingField(_) => "is required".to_owned(),
        other => other.to_string(),
    }
}

/// The reason without the value: the kind of thing written, never what it said.
fn secret_reason(kind: &Kind) -> String {
    match kind {
        Kind::InvalidType(actual, expected) | Kind::InvalidValue(actual, expected) => {
            format!("expected {}, found {} (the value is not shown)", plain(expected), what(actual))
        }
        Kind::UnknownField(_, expected) => format!("unknown key; expected {}", one_of(expected)),
        Kind::UnknownVariant(_, expected) => format!("expected {}", one_of(expected)),
        Kind::MissingField(_) => "is required".to_owned(),
        Kind::InvalidLength(_, expected) => format!("expected {expected}"),
        Kind::DuplicateField(field) => format!("`{field}` is written twice"),
        _ => "is not valid (the value is not shown)".to_owned(),
    }
}

/// What serde expected, in the file's words rather than Rust's (`usize`, `struct RawSync`).
fn plain(expected: &str) -> &str {
    match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number",
        "i8" | "i16" | "i32" | "i64" | "isize" => "an integer",
        "f32" | "f64" => "a number",
        "a boolean" | "bool" => "a boolean (true or false)",
        "a sequence" => "a list",
        e if e.starts_with("struct ") => "a table",
        e => e,
    }
}

/// What a rejected value was, without its content.
fn what(actual: &Actual) -> &'static str {
    match actual {
        Actual::Bool(_) => "a boolean",
        Actual::Unsigned(_) | Actual::Signed(_) | Actual::Float(_) => "a number",
        Actual::Char(_) | Actual::Str(_) => "text",
        Actual::Bytes(_) => "bytes",
        Actual::Seq => "a list",
        Actual::Map => "a table",
        Actual::Unit | Actual::Option => "nothing",
        _ => "something else",
    }
}

fn one_of(names: &[&str]) -> String {
    match names {
        [] => "none".to_owned(),
        [one] => format!("`{one}`"),
        many => format!("one of {}", many.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")),
    }
}

/// A TOML syntax error without the excerpt of the file the parser quotes beneath it (the
/// offending line may be `private_key = …`): `TOML parse error at line 3, column 15: …`.
fn source_reason(kind: &Kind) -> String {
    let Kind::Message(message) = kind else { return secret_reason(kind) };
    message.lines().map(str::trim).filter(|line| !line.is_empty() && !is_excerpt(line)).collect::<Vec<_>>().join(": ")
}

/// `|`, `3 | private_key = …`, `  |      ^`: the lines of an excerpt.
fn is_excerpt(line: &str) -> bool {
    line.trim_start_matches(|c: char| c.is_ascii_digit()).trim_start().starts_with('|')
}

/// `["delivery", "0", "timeout"]` → `delivery[crm].timeout` (by the entry's name where it
/// has a usable one, by its index otherwise), for every list of tables (`[[push]]` too);
/// other paths join with dots.
fn display_key(figment: &Figment, path: &[String]) -> String {
    match path {
        [list, index, rest @ ..] if super::keys::LISTS.contains(&list.as_str()) && index.parse::<usize>().is_ok() => {
            let label = entry_name(figment, list, index).unwrap_or_else(|| index.clone());
            std::iter::once(format!("{list}[{label}]")).chain(rest.iter().cloned()).collect::<Vec<_>>().join(".")
        }
        _ => path.join("."),
    }
}

fn entry_name(figment: &Figment, list: &str, index: &str) -> Option<String> {
    let root = figment.find_value("").ok()?;
    let name = find(&root, &[list.to_owned(), index.to_owned(), "name".to_owned()])?.as_str()?.to_owned();
    Some(name).filter(|n| !n.is_empty() && !n.chars().any(char::is_control))
}

/// The inverse of [`display_key`], for a validation error's key.
fn figment_path(figment: &Figment, key: &str) -> Vec<String> {
    for list in super::keys::LISTS {
        if let Some((label, field)) = key.strip_prefix(&format!("{list}[")).and_then(|rest| rest.rsplit_once("].")) {
            let index = entry_index(figment, list, label).unwrap_or_else(|| label.to_owned());
            return vec![(*list).to_owned(), index, field.to_owned()];
        }
    }
    key.split('.').map(str::to_owned).collect()
}

fn entry_index(figment: &Figment, list: &str, name: &str) -> Option<String> {
    let entries = figment.find_value(list).ok()?;
    let position = entries.as_array()?.iter().position(|d| d.find_ref("name").and_then(Value::as_str) == Some(name))?;
    Some(position.to_string())
}

/// Where the value at `path` (or the closest table above it that exists) came from.
fn origin_of(figment: &Figment, path: &[String]) -> Option<Origin> {
    let root = figment.find_value("").ok()?;
    (0..=path.len()).rev().find_map(|len| find(&root, &path[..len])).and_then(|v| figment.get_metadata(v.tag())).map(origin_from)
}

/// The value at `path`, through tables by key and arrays by index.
fn find<'v>(root: &'v Value, path: &[String]) -> Option<&'v Value> {
    path.iter().try_fold(root, |value, part| match value {
        Value::Dict(_, dict) => dict.get(part),
        Value::Array(_, items) => items.get(part.parse::<usize>().ok()?),
        _ => None,
    })
}

fn origin_from(metadata: &Metadata) -> Origin {
    match &metadata.source {
        Some(Source::File(path)) => Origin::File(PathBuf::from(path)),
        Some(Source::Custom(variable)) => Origin::Environment(variable.clone()),
        _ => Origin::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_excerpt_under_a_toml_syntax_error_is_left_out() {
        let message = "TOML parse error at line 2, column 15\n  |\n2 | private_key = 0123\n  |               ^\ninvalid number\n";
        assert_eq!(source_reason(&Kind::Message(message.into())), "TOML parse error at line 2, column 15: invalid number");
    }

    #[test]
    fn sections_on_the_way_to_a_secret_may_hold_it_and_other_keys_do_not() {
        let path = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        for secret in [&["partnerstack", "private_key"][..], &["partnerstack"], &[], &["delivery", "3", "secret"], &["delivery"]] {
            assert!(may_hold_secret(&path(secret)), "{secret:?}");
        }
        for plain in [&["partnerstack", "page_size"][..], &["delivery", "0", "url"], &["sync"]] {
            assert!(!may_hold_secret(&path(plain)), "{plain:?}");
        }
    }
}
