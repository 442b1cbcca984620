//! The poison switch: records served broken in every way a mirror must survive (bad
//! input goes to quarantine, the rest of the page is stored).
//!
//! The stored record stays intact; only its serialized form in list pages is spoiled, so
//! curing it serves the clean copy again.

use serde_json::{value::RawValue, Value};

use crate::Resource;

/// How a poisoned record is served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Poison {
    /// A string with a NUL character (`\u0000`), which PostgreSQL text and jsonb reject.
    NulCharacter,
    /// A typed field with the wrong JSON type, e.g. `"amount": "12.5"`.
    WrongType,
    /// No `key` at all.
    MissingKey,
    /// `updated_at` that is not epoch milliseconds.
    BadTimestamp,
    /// A two-megabyte string.
    Huge,
}

/// The spoiled text of `raw`.
pub(super) fn spoil(kind: Resource, raw: &RawValue, poison: Poison) -> Box<RawValue> {
    let mut value: Value = serde_json::from_str(raw.get()).expect("stored records are JSON");
    let map = value.as_object_mut().expect("stored records are objects");
    match poison {
        Poison::NulCharacter => {
            map.insert("notes".into(), Value::String("half\u{0}way".into()));
        }
        Poison::WrongType => {
            let (field, wrong) = mistyped(kind);
            map.insert(field.to_owned(), wrong);
        }
        Poison::MissingKey => {
            map.remove("key");
        }
        Poison::BadTimestamp => {
            map.insert("updated_at".into(), Value::from("yesterday"));
        }
        Poison::Huge => {
            map.insert("notes".into(), Value::String("x".repeat(2 * 1024 * 1024)));
        }
    }
    serde_json::value::to_raw_value(&value).expect("a JSON value serializes")
}

/// A top-level field the API always sends as a number, a boolean or an epoch-millisecond
/// timestamp, with a value of the wrong JSON type for it (e.g. `"amount": "12.5"`).
fn mistyped(kind: Resource) -> (&'static str, Value) {
    match kind {
        Resource::Deal | Resource::Lead | Resource::Transaction | Resource::Reward => ("amount", Value::from("12.5")),
        Resource::Action => ("value", Value::from("12.5")),
        Resource::Customer => ("test", Value::from("maybe")),
        Resource::Application => ("approved", Value::from("maybe")),
        Resource::Group => ("default", Value::from("maybe")),
        Resource::Partnership | Resource::PartnerTeamMember => ("joined_at", Value::from("yesterday")),
    }
}

/// The key of a served record, if it has one (poisoned records are looked up by it).
pub(super) fn key_of(raw: &RawValue) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct KeyOnly {
        key: Option<String>,
    }
    serde_json::from_str::<KeyOnly>(raw.get()).ok()?.key
}
