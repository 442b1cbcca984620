//! How values may be written. Environment variables are text and TOML has types, so a key
//! must not care which: where text is expected, any scalar is taken as the text it was
//! written as (a private key of digits, `name = 1`); where a list is expected, one string or
//! a comma-separated string is a list too (`PSM_SYNC__OBJECTS=deals,leads`); where a number
//! is expected, text that reads as one is that number.
//!
//! Used with `#[serde(deserialize_with = "…")]` on the raw configuration's fields. The text
//! functions reject only tables and lists, and their errors never quote a value, so they
//! serve secrets as well.

use std::{fmt, path::PathBuf};

use secrecy::SecretString;
use serde::{
    de::{self, SeqAccess, Visitor},
    Deserialize, Deserializer,
};

/// Text written as a string, a number, a boolean or a character.
struct Text(String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TextVisitor).map(Text)
    }
}

struct TextVisitor;

impl Visitor<'_> for TextVisitor {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("text (a string, number or boolean)")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
        Ok(v)
    }
    fn visit_char<E: de::Error>(self, v: char) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<String, E> {
        Ok(v.to_string())
    }
    /// Written as `f32` so `0.1` reads back as `0.1`, not as its widened `f64`.
    fn visit_f32<E: de::Error>(self, v: f32) -> Result<String, E> {
        Ok(v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        Ok(v.to_string())
    }
}

/// A required text key.
pub(super) fn text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Text::deserialize(deserializer).map(|t| t.0)
}

/// An optional text key.
pub(super) fn optional_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    Option::<Text>::deserialize(deserializer).map(|t| t.map(|t| t.0))
}

/// An optional secret: the text goes straight into a [`SecretString`].
pub(super) fn optional_secret<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<SecretString>, D::Error> {
    optional_text(deserializer).map(|t| t.map(SecretString::from))
}

/// An optional file path.
pub(super) fn optional_path<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<PathBuf>, D::Error> {
    optional_text(deserializer).map(|t| t.map(PathBuf::from))
}

/// A list of text: a sequence, or one string holding `a`, `a,b` or `[a, b]` (quotes around
/// the items allowed), as the environment can only say it.
pub(super) fn list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    deserializer.deserialize_any(ListVisitor)
}

struct ListVisitor;

impl<'de> Visitor<'de> for ListVisitor {
    type Value = Vec<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list, e.g. [\"a\", \"b\"], or a comma-separated string, e.g. \"a,b\"")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(Text(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(items)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<String>, E> {
        Ok(split_list(v))
    }
}

/// `a`, `a,b`, `[a, b]`, `["a", "b"]` → `[a, b]`; blank items are dropped, so `""` is `[]`.
fn split_list(written: &str) -> Vec<String> {
    let trimmed = written.trim();
    let inner = trimmed.strip_prefix('[').and_then(|t| t.strip_suffix(']')).unwrap_or(trimmed);
    inner.split(',').map(|item| unquote(item.trim()).trim()).filter(|item| !item.is_empty()).map(str::to_owned).collect()
}

fn unquote(item: &str) -> &str {
    ['"', '\''].iter().find_map(|q| item.strip_prefix(*q).and_then(|i| i.strip_suffix(*q))).unwrap_or(item)
}

/// A required number, written as one or as text (`"0.5"` from the environment). Parsed as
/// `f64` directly, so `0.1` stays `0.1`.
pub(super) fn number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    deserializer.deserialize_any(NumberVisitor)
}

/// An optional number, as [`number`].
pub(super) fn optional_number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<f64>, D::Error> {
    struct Number(f64);
    impl<'de> Deserialize<'de> for Number {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            number(deserializer).map(Number)
        }
    }
    Option::<Number>::deserialize(deserializer).map(|n| n.map(|n| n.0))
}

struct NumberVisitor;

impl Visitor<'_> for NumberVisitor {
    type Value = f64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number")
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
        Ok(v as f64)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
        Ok(v as f64)
    }
    /// Through its decimal text: `0.1f32` is `0.1`, not `0.10000000149…`.
    fn visit_f32<E: de::Error>(self, v: f32) -> Result<f64, E> {
        Ok(v.to_string().parse().unwrap_or(f64::from(v)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
        Ok(v)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<f64, E> {
        v.trim().parse().map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
    }
}

#[cfg(test)]
mod tests {
    use super::split_list;

    #[test]
    fn one_item_a_comma_list_and_a_bracketed_list_are_all_lists() {
        assert_eq!(split_list("deals"), ["deals"]);
        assert_eq!(split_list("deals, leads"), ["deals", "leads"]);
        assert_eq!(split_list("[deals,leads]"), ["deals", "leads"]);
        assert_eq!(split_list("[\"deals\", 'leads']"), ["deals", "leads"]);
        assert!(split_list("").is_empty() && split_list("[]").is_empty() && split_list(" , ").is_empty());
    }
}
