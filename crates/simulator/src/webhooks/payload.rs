//! Webhook bodies in the two styles PartnerStack's docs show (research notes §6.2).
//!
//! Current: `{"event": "deal.stage_updated", "data": <the record>}`, the record's exact
//! text as the API serves it. Legacy (v1): the record's fields flat at the top level plus
//! `"event": "deal_stage_updated"`; the legacy partnership sample also has an integer `id`
//! instead of the `key` and `"archived"` as a string, and a mirror must cope with both.

use std::sync::Arc;

use serde::Serialize;
use serde_json::{json, value::RawValue, Map, Value};

use crate::Resource;

use super::TrainingCompletion;

/// A body ready to send, shared by every subscription it goes to.
pub(super) struct Body {
    /// The name in the body's `event` field.
    pub event: String,
    pub text: Arc<str>,
}

/// The legacy spelling of a dotted event name: `deal.stage_updated` → `deal_stage_updated`.
pub(super) fn legacy_name(event: &str) -> String {
    event.replace('.', "_")
}

/// The body announcing `event` about a record whose API text is `record`.
pub(super) fn record(kind: Resource, event: &str, record: &RawValue, legacy: bool) -> Body {
    if !legacy {
        #[derive(Serialize)]
        struct Current<'a> {
            event: &'a str,
            data: &'a RawValue,
        }
        let text = serde_json::to_string(&Current { event, data: record }).expect("a body serializes");
        return Body { event: event.to_owned(), text: text.into() };
    }
    let mut fields: Map<String, Value> = serde_json::from_str(record.get()).unwrap_or_default();
    if kind == Resource::Partnership {
        legacy_partnership(&mut fields);
    }
    flat(fields, event)
}

/// The training completion's body.
pub(super) fn training(c: &TrainingCompletion, legacy: bool) -> Body {
    let data = json!({
        "id": c.id,
        "name": c.name,
        "partnership": {"key": c.partnership_key, "partner_key": c.partner_key, "email": c.email},
        "company_key": c.company_key,
        "completed_at": c.completed_at_ms,
    });
    let event = c.kind.event();
    if legacy {
        let Value::Object(fields) = data else { unreachable!("built as an object") };
        return flat(fields, event);
    }
    Body { event: event.to_owned(), text: json!({"event": event, "data": data}).to_string().into() }
}

/// `fields` plus the legacy `event` field.
fn flat(mut fields: Map<String, Value>, event: &str) -> Body {
    let name = legacy_name(event);
    fields.insert("event".into(), name.clone().into());
    Body { event: name, text: Value::Object(fields).to_string().into() }
}

/// The quirks of the legacy partnership sample: an integer `id`, no `key`, and
/// `"archived": "false"` as a string.
fn legacy_partnership(fields: &mut Map<String, Value>) {
    if let Some(Value::String(key)) = fields.remove("key") {
        fields.insert("id".into(), legacy_id(&key).into());
    }
    let archived = fields.get("archived").and_then(Value::as_bool).unwrap_or(false);
    fields.insert("archived".into(), archived.to_string().into());
}

/// A stable seven-digit integer for a key (FNV-1a): the internal id legacy payloads carry,
/// the same for the same record every time.
fn legacy_id(key: &str) -> u64 {
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    1_000_000 + hash % 9_000_000
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TrainingKind;

    fn parsed(body: &Body) -> Value {
        serde_json::from_str(&body.text).unwrap()
    }

    #[test]
    fn the_current_style_wraps_the_record_text_unchanged() {
        let raw = RawValue::from_string(r#"{"key":"deal_1","amount":5,"archived":false}"#.into()).unwrap();
        let body = record(Resource::Deal, "deal.stage_updated", &raw, false);
        assert_eq!(body.event, "deal.stage_updated");
        assert_eq!(&*body.text, r#"{"event":"deal.stage_updated","data":{"key":"deal_1","amount":5,"archived":false}}"#);
    }

    #[test]
    fn the_legacy_style_is_flat_and_partnerships_carry_the_sample_s_quirks() {
        let raw = RawValue::from_string(r#"{"key":"deal_1","amount":5,"archived":false}"#.into()).unwrap();
        let deal = record(Resource::Deal, "deal.stage_updated", &raw, true);
        assert_eq!(deal.event, "deal_stage_updated");
        assert_eq!(parsed(&deal), json!({"key": "deal_1", "amount": 5, "archived": false, "event": "deal_stage_updated"}));

        let raw = RawValue::from_string(r#"{"key":"part_1","partner_key":"ava","archived":true}"#.into()).unwrap();
        let p = parsed(&record(Resource::Partnership, "partnership.created", &raw, true));
        assert_eq!(p["event"], "partnership_created");
        assert!(p.get("key").is_none(), "{p}");
        assert_eq!(p["archived"], "true");
        assert_eq!(p["partner_key"], "ava");
        let id = p["id"].as_u64().expect("an integer id");
        assert!((1_000_000..10_000_000).contains(&id));
        assert_eq!(parsed(&record(Resource::Partnership, "partnership.updated", &raw, true))["id"], id, "the same id every time");
    }

    #[test]
    fn training_completions_have_the_connector_s_fields_in_both_styles() {
        let c = TrainingCompletion {
            kind: TrainingKind::LearningPath,
            id: "lp_1".into(),
            name: "Path".into(),
            partnership_key: Some("part_1".into()),
            partner_key: Some("ava".into()),
            email: None,
            company_key: Some("comp_1".into()),
            completed_at_ms: 1_700_000_000_000,
        };
        let data = json!({
            "id": "lp_1", "name": "Path", "partnership": {"key": "part_1", "partner_key": "ava", "email": null},
            "company_key": "comp_1", "completed_at": 1_700_000_000_000_i64,
        });
        assert_eq!(parsed(&training(&c, false)), json!({"event": "training.learning_path_completed", "data": data}));
        let mut flat = data.clone();
        flat["event"] = "training_learning_path_completed".into();
        assert_eq!(parsed(&training(&c, true)), flat);
    }
}
