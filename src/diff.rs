//! Turning "the row we had" and "the record the API returned" into change events.
//!
//! Pure functions: no I/O, so every event rule is tested here directly, and the store only
//! has to write what comes out.

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::{json, value::RawValue, Map, Value};

use crate::object::ObjectKind;

/// Where a change was noticed (`events.source`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, strum::IntoStaticStr)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum EventSource {
    /// The first load of an object: a snapshot, like a CDC tool's initial read.
    Backfill,
    Poll,
    Reconcile,
    WriteBack,
    /// A read the daemon made because a PartnerStack webhook said something changed, and
    /// training completions (which arrive only as webhooks).
    Webhook,
}

impl EventSource {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// One row for the `events` table (the id and `detected_at` come from the database).
#[derive(Clone, Debug, Serialize)]
pub struct NewEvent {
    pub event_type: String,
    pub object_type: &'static str,
    pub object_key: String,
    /// Epoch milliseconds: the record's `updated_at`, or the scan time for deletes.
    pub occurred_ms: i64,
    pub source: EventSource,
    pub changes: Option<Value>,
    /// The record's JSON text (after the change; before it, for deletes).
    pub data: Box<RawValue>,
}

fn text_of(v: &Value) -> Box<RawValue> {
    serde_json::value::to_raw_value(v).expect("a JSON value always serializes")
}

/// The events for one record: `old` is the stored raw JSON, `None` for a record never seen.
/// An unchanged record yields nothing.
/// `new_text` is `new`'s exact JSON text, used as the events' `data`.
pub fn diff(
    kind: ObjectKind,
    old: Option<&Value>,
    new: &Value,
    new_text: &RawValue,
    occurred_ms: i64,
    source: EventSource,
) -> Vec<NewEvent> {
    let key = new.get("key").and_then(Value::as_str).unwrap_or_default().to_owned();
    let event = |suffix: &str, changes: Option<Value>, data: Box<RawValue>| NewEvent {
        event_type: format!("{}.{suffix}", kind.singular()),
        object_type: kind.singular(),
        object_key: key.clone(),
        occurred_ms,
        source,
        changes,
        data,
    };
    let text = || new_text.to_owned();

    let Some(old) = old else {
        let mut events: Vec<NewEvent> = first_sight(kind).iter().map(|suffix| event(suffix, None, text())).collect();
        // First sight: the decisions the record already carries are news too (an application
        // PartnerStack approved before the next poll must still reach an automation waiting
        // for `application.approved`). A backfill is a snapshot, not news.
        if source != EventSource::Backfill {
            let seen = |field: &str| Some(json!({ field: {"old": null, "new": new.get(field)} }));
            if matches!(kind, ObjectKind::Application | ObjectKind::Lead) {
                match new.get("approved") {
                    Some(Value::Bool(true)) => events.push(event("approved", seen("approved"), text())),
                    Some(Value::Bool(false)) => events.push(event("declined", seen("approved"), text())),
                    _ => {}
                }
            }
            if is_archived(new) {
                events.push(event("deleted", seen("archived"), text()));
            }
        }
        return events;
    };
    if old == new {
        return Vec::new();
    }

    let changes = field_changes(old, new);
    let mut events = vec![event("updated", Some(Value::Object(changes.clone())), text())];
    let only = |fields: &[&str]| {
        let subset: Map<String, Value> =
            changes.iter().filter(|(k, _)| fields.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect();
        Some(Value::Object(subset))
    };
    let changed = |field: &str| changes.contains_key(field);

    match kind {
        ObjectKind::Deal if changed("stage") => events.push(event("stage_updated", only(&["stage"]), text())),
        ObjectKind::Lead => {
            if changed("approved") {
                match new.get("approved") {
                    Some(Value::Bool(true)) => events.push(event("approved", only(&["approved"]), text())),
                    Some(Value::Bool(false)) => events.push(event("declined", only(&["approved"]), text())),
                    _ => {}
                }
            }
            if changed("status") {
                events.push(event("status_updated", only(&["status"]), text()));
            }
        }
        ObjectKind::Partnership => {
            if group_key(old) != group_key(new) {
                events.push(event("group_updated", only(&["group", "group_key"]), text()));
            }
            let (before, after) = (tag_set(old), tag_set(new));
            if before != after {
                let mut c = only(&["tags"]).unwrap_or_default();
                c["tags_added"] = json!(after.difference(&before).collect::<Vec<_>>());
                c["tags_removed"] = json!(before.difference(&after).collect::<Vec<_>>());
                events.push(event("tags_updated", Some(c), text()));
            }
        }
        ObjectKind::Application if changed("approved") => match new.get("approved") {
            Some(Value::Bool(true)) => events.push(event("approved", only(&["approved"]), text())),
            Some(Value::Bool(false)) => events.push(event("declined", only(&["approved"]), text())),
            _ => {}
        },
        ObjectKind::Reward if changed("reward_status") => events.push(event("status_updated", only(&["reward_status"]), text())),
        _ => {}
    }

    match (is_archived(old), is_archived(new)) {
        (false, true) => events.push(event("deleted", only(&["archived"]), text_of(old))),
        (true, false) => events.push(event("restored", only(&["archived"]), text())),
        _ => {}
    }
    events
}

/// The events every first sight of a record makes, whatever it holds (their type after the
/// object's singular and a dot), in order. All a backfill's first sight makes: a snapshot is
/// not news.
pub fn first_sight(kind: ObjectKind) -> &'static [&'static str] {
    match kind {
        ObjectKind::PartnerTeamMember => &["created", "member_joined"],
        _ => &["created"],
    }
}

/// A record that vanished from a complete key scan.
pub fn vanished(kind: ObjectKind, old: &Value, scan_ms: i64) -> NewEvent {
    NewEvent {
        event_type: format!("{}.deleted", kind.singular()),
        object_type: kind.singular(),
        object_key: old.get("key").and_then(Value::as_str).unwrap_or_default().to_owned(),
        occurred_ms: scan_ms,
        source: EventSource::Reconcile,
        changes: None,
        data: text_of(old),
    }
}

/// A record marked deleted by a key scan that the API lists again.
pub fn reappeared(kind: ObjectKind, new: &Value, new_text: &RawValue, occurred_ms: i64, source: EventSource) -> NewEvent {
    NewEvent {
        event_type: format!("{}.restored", kind.singular()),
        object_type: kind.singular(),
        object_key: new.get("key").and_then(Value::as_str).unwrap_or_default().to_owned(),
        occurred_ms,
        source,
        changes: None,
        data: new_text.to_owned(),
    }
}

/// `{field: {"old": …, "new": …}}` for every top-level field that differs.
fn field_changes(old: &Value, new: &Value) -> Map<String, Value> {
    let empty = Map::new();
    let (o, n) = (old.as_object().unwrap_or(&empty), new.as_object().unwrap_or(&empty));
    let fields: BTreeSet<&String> = o.keys().chain(n.keys()).collect();
    fields
        .into_iter()
        .filter_map(|f| {
            let (a, b) = (o.get(f).unwrap_or(&Value::Null), n.get(f).unwrap_or(&Value::Null));
            (a != b).then(|| (f.clone(), json!({"old": a, "new": b})))
        })
        .collect()
}

fn group_key(v: &Value) -> Option<&Value> {
    v.get("group").and_then(|g| g.get("key")).or_else(|| v.get("group_key")).filter(|k| !k.is_null())
}

fn tag_set(v: &Value) -> BTreeSet<String> {
    v.get("tags").and_then(Value::as_array).map(|a| a.iter().filter_map(|t| t.as_str().map(str::to_owned)).collect()).unwrap_or_default()
}

fn is_archived(v: &Value) -> bool {
    match v.get("archived") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diff(kind: ObjectKind, old: Option<&Value>, new: &Value, occurred_ms: i64, source: EventSource) -> Vec<NewEvent> {
        super::diff(kind, old, new, &text_of(new), occurred_ms, source)
    }

    fn data(e: &NewEvent) -> Value {
        serde_json::from_str(e.data.get()).unwrap()
    }

    fn types(events: &[NewEvent]) -> Vec<&str> {
        events.iter().map(|e| e.event_type.as_str()).collect()
    }

    #[test]
    fn a_new_record_is_created_and_an_unchanged_one_is_silent() {
        let rec = json!({"key": "deal_1", "stage": "open"});
        assert_eq!(types(&diff(ObjectKind::Deal, None, &rec, 1, EventSource::Backfill)), ["deal.created"]);
        assert!(diff(ObjectKind::Deal, Some(&rec), &rec, 1, EventSource::Poll).is_empty());
    }

    #[test]
    fn a_stage_move_emits_updated_and_stage_updated_with_changes() {
        let old = json!({"key": "deal_1", "stage": "open", "updated_at": 1});
        let new = json!({"key": "deal_1", "stage": "won", "updated_at": 2});
        let events = diff(ObjectKind::Deal, Some(&old), &new, 2, EventSource::Poll);
        assert_eq!(types(&events), ["deal.updated", "deal.stage_updated"]);
        assert_eq!(events[0].changes.as_ref().unwrap()["stage"], json!({"old": "open", "new": "won"}));
        assert_eq!(events[1].changes, Some(json!({"stage": {"old": "open", "new": "won"}})));
        assert_eq!(data(&events[1]), new);
    }

    #[test]
    fn tag_changes_list_what_was_added_and_removed() {
        let old = json!({"key": "p", "tags": ["a", "b"]});
        let new = json!({"key": "p", "tags": ["b", "c"]});
        let events = diff(ObjectKind::Partnership, Some(&old), &new, 5, EventSource::Poll);
        assert_eq!(types(&events), ["partnership.updated", "partnership.tags_updated"]);
        let c = events[1].changes.as_ref().unwrap();
        assert_eq!(c["tags_added"], json!(["c"]));
        assert_eq!(c["tags_removed"], json!(["a"]));
    }

    #[test]
    fn reordered_tags_are_an_update_but_not_a_tag_change() {
        let old = json!({"key": "p", "tags": ["a", "b"]});
        let new = json!({"key": "p", "tags": ["b", "a"]});
        assert_eq!(types(&diff(ObjectKind::Partnership, Some(&old), &new, 5, EventSource::Poll)), ["partnership.updated"]);
    }

    #[test]
    fn group_moves_and_lead_decisions_have_their_own_events() {
        let old = json!({"key": "p", "group": {"key": "grup_1"}});
        let new = json!({"key": "p", "group": {"key": "grup_2"}});
        assert_eq!(
            types(&diff(ObjectKind::Partnership, Some(&old), &new, 1, EventSource::Poll)),
            ["partnership.updated", "partnership.group_updated"]
        );

        let old = json!({"key": "l", "approved": null, "status": "open"});
        let new = json!({"key": "l", "approved": true, "status": "closed won"});
        assert_eq!(
            types(&diff(ObjectKind::Lead, Some(&old), &new, 1, EventSource::Poll)),
            ["lead.updated", "lead.approved", "lead.status_updated"]
        );
        let newer = json!({"key": "l", "approved": false, "status": "closed won"});
        assert_eq!(types(&diff(ObjectKind::Lead, Some(&new), &newer, 1, EventSource::Poll)), ["lead.updated", "lead.declined"]);
    }

    #[test]
    fn archiving_deletes_with_the_record_before_and_unarchiving_restores() {
        let live = json!({"key": "c", "archived": false});
        let gone = json!({"key": "c", "archived": true});
        let events = diff(ObjectKind::Customer, Some(&live), &gone, 1, EventSource::Poll);
        assert_eq!(types(&events), ["customer.updated", "customer.deleted"]);
        assert_eq!(data(&events[1]), live);
        assert_eq!(types(&diff(ObjectKind::Customer, Some(&gone), &live, 1, EventSource::Poll)), ["customer.updated", "customer.restored"]);
    }

    #[test]
    fn rewards_and_applications_have_status_and_decision_events() {
        let old = json!({"key": "r", "reward_status": "hold"});
        let new = json!({"key": "r", "reward_status": "approved"});
        assert_eq!(types(&diff(ObjectKind::Reward, Some(&old), &new, 1, EventSource::Poll)), ["reward.updated", "reward.status_updated"]);
        let old = json!({"key": "a", "approved": null});
        let new = json!({"key": "a", "approved": false});
        assert_eq!(
            types(&diff(ObjectKind::Application, Some(&old), &new, 1, EventSource::Poll)),
            ["application.updated", "application.declined"]
        );
    }

    #[test]
    fn a_record_first_seen_by_a_poll_reports_the_decisions_it_already_carries() {
        let approved = json!({"key": "appl_1", "approved": true});
        let events = diff(ObjectKind::Application, None, &approved, 1, EventSource::Poll);
        assert_eq!(types(&events), ["application.created", "application.approved"]);
        assert_eq!(events[1].changes, Some(json!({"approved": {"old": null, "new": true}})));
        let declined = json!({"key": "lead_1", "approved": false, "status": "dead"});
        assert_eq!(types(&diff(ObjectKind::Lead, None, &declined, 1, EventSource::Poll)), ["lead.created", "lead.declined"]);
        let undecided = json!({"key": "appl_2", "approved": null});
        assert_eq!(types(&diff(ObjectKind::Application, None, &undecided, 1, EventSource::Poll)), ["application.created"]);
        let archived = json!({"key": "deal_1", "archived": true});
        let events = diff(ObjectKind::Deal, None, &archived, 1, EventSource::Poll);
        assert_eq!(types(&events), ["deal.created", "deal.deleted"]);
        assert_eq!(data(&events[1]), archived);
    }

    #[test]
    fn a_backfill_is_a_snapshot_with_created_events_only() {
        let approved = json!({"key": "appl_1", "approved": true, "archived": true});
        assert_eq!(types(&diff(ObjectKind::Application, None, &approved, 1, EventSource::Backfill)), ["application.created"]);
    }

    #[test]
    fn a_new_team_member_has_joined() {
        let m = json!({"key": "memb_1"});
        assert_eq!(
            types(&diff(ObjectKind::PartnerTeamMember, None, &m, 1, EventSource::Poll)),
            ["partner_team.created", "partner_team.member_joined"]
        );
    }
}
