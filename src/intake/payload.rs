//! What a PartnerStack webhook body says, read defensively: its event name (current dotted
//! `deal.updated` or legacy `partnership_created`), which object type it is about, and, for a
//! training completion, the completion's fields. Pure: no I/O, every rule tested here.
//!
//! Object webhooks are only hints: nothing of their body is stored as data, so a forged or
//! stale one can cause at most an extra read. Training completions exist nowhere else, so
//! their fields are taken from the body, accepting missing and extra fields (their shape is
//! known only from a connector's field list: an id, a name, a partnership block, a company
//! key, a completed-at in epoch milliseconds).

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::{object::ObjectKind, store::CompletionFacts};

/// What a webhook asks of the mirror.
#[derive(Clone, Debug, PartialEq)]
pub enum Webhook {
    /// Something about this object type changed: read it from the API.
    Hint(ObjectKind),
    Training(Completion),
    /// An event name the mirror does not use (`agreement.accepted`, or none at all).
    Unknown,
}

/// A course or a learning path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum TrainingKind {
    Course,
    LearningPath,
}

impl TrainingKind {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// The event type the mirror writes.
    pub fn event_type(self) -> &'static str {
        match self {
            TrainingKind::Course => "training.course_completed",
            TrainingKind::LearningPath => "training.learning_path_completed",
        }
    }
}

/// One training completion as far as the body tells it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Completion {
    pub kind: Option<TrainingKind>,
    pub facts: CompletionFacts,
}

impl Completion {
    /// What identifies the completion across PartnerStack's repeated deliveries: the kind,
    /// the course or path, the partner and the moment; `None` when too little of it is known
    /// (the caller then identifies it by its whole body).
    pub fn identity(&self) -> Option<String> {
        let f = &self.facts;
        let who = f.partnership_key.as_ref().or(f.partner_key.as_ref()).or(f.partner_email.as_ref())?;
        let item = f.item_id.as_ref().or(f.item_name.as_ref())?;
        let when = f.completed_at?.timestamp_millis();
        Some(format!("{}|{item}|{who}|{when}", self.kind.map_or("?", TrainingKind::as_str)))
    }
}

/// The event name of a body: `event`, `event_type` or `type` at the top level.
pub fn event_name(body: &Value) -> Option<String> {
    ["event", "event_type", "type"].iter().find_map(|f| body.get(*f).and_then(Value::as_str)).map(|s| s.trim().to_ascii_lowercase())
}

/// Classifies a body.
pub fn read(body: &Value) -> Webhook {
    let Some(name) = event_name(body) else { return Webhook::Unknown };
    match subject(&name) {
        Some(Subject::Object(kind)) => Webhook::Hint(kind),
        Some(Subject::Training(kind)) => Webhook::Training(completion(kind, body)),
        None => Webhook::Unknown,
    }
}

/// The partner team a team or member webhook names, if it names one: the record's
/// `team_key` (a member) or `team.key`, under `data` (current style) or at the top level
/// (legacy style); for a team's own events (`partner_team.updated`), its `key`.
pub fn team_key(body: &Value) -> Option<String> {
    let fields = body.get("data").filter(|d| d.is_object()).unwrap_or(body);
    let own = event_name(body).is_some_and(|n| n.replace('.', "_").starts_with("partner_team") && !n.contains("member"));
    fields
        .get("team_key")
        .and_then(text)
        .or_else(|| fields.get("team").and_then(|t| t.get("key")).and_then(text))
        .or_else(|| own.then(|| fields.get("key").and_then(text)).flatten())
}

enum Subject {
    Object(ObjectKind),
    Training(TrainingKind),
}

/// The object a name is about: the part before the dot (`deal.stage_updated`), or the
/// longest known prefix before an underscore (`partner_team_member_joined`).
fn subject(name: &str) -> Option<Subject> {
    let training = name.replace('.', "_");
    if training.starts_with("training_course") {
        return Some(Subject::Training(TrainingKind::Course));
    }
    if training.starts_with("training_learning_path") {
        return Some(Subject::Training(TrainingKind::LearningPath));
    }
    const OBJECTS: [(&str, ObjectKind); 12] = [
        ("partner_team_member", ObjectKind::PartnerTeamMember),
        ("partner_team", ObjectKind::PartnerTeamMember),
        ("team_member", ObjectKind::PartnerTeamMember),
        ("partnership", ObjectKind::Partnership),
        ("application", ObjectKind::Application),
        ("transaction", ObjectKind::Transaction),
        ("customer", ObjectKind::Customer),
        ("reward", ObjectKind::Reward),
        ("action", ObjectKind::Action),
        ("group", ObjectKind::Group),
        ("deal", ObjectKind::Deal),
        ("lead", ObjectKind::Lead),
    ];
    let object = name.split_once('.').map_or(name, |(object, _)| object);
    OBJECTS
        .iter()
        .find(|(prefix, _)| object == *prefix || (!name.contains('.') && name.starts_with(&format!("{prefix}_"))))
        .map(|(_, kind)| Subject::Object(*kind))
}

/// The completion's fields, wherever the body keeps them: under `data` (current style) or at
/// the top level (legacy style); ids may be numbers or strings.
fn completion(kind: TrainingKind, body: &Value) -> Completion {
    let fields = body.get("data").and_then(Value::as_object).or_else(|| body.as_object());
    let empty = Map::new();
    let fields = fields.unwrap_or(&empty);
    let partner = ["partnership", "partner"].iter().find_map(|f| fields.get(*f)).and_then(Value::as_object).unwrap_or(&empty);
    let item = ["course", "learning_path", "item"].iter().find_map(|f| fields.get(*f)).and_then(Value::as_object).unwrap_or(&empty);
    let facts = CompletionFacts {
        item_id: first_text(&[(fields, "id"), (fields, "course_id"), (fields, "learning_path_id"), (item, "id")]),
        item_name: first_text(&[
            (fields, "name"),
            (fields, "course_name"),
            (fields, "learning_path_name"),
            (fields, "title"),
            (item, "name"),
        ]),
        partnership_key: first_text(&[(partner, "key"), (fields, "partnership_key")]),
        partner_key: first_text(&[(partner, "partner_key"), (fields, "partner_key")]),
        partner_email: first_text(&[(partner, "email"), (fields, "email"), (fields, "partner_email")]),
        company_key: first_text(&[(fields, "company_key")]).or_else(|| fields.get("company").and_then(|c| c.get("key")).and_then(text)),
        completed_at: ["completed_at", "completedAt", "completed_on", "completion_date"]
            .iter()
            .find_map(|f| fields.get(*f))
            .and_then(moment),
    };
    Completion { kind: Some(kind), facts }
}

fn first_text(places: &[(&Map<String, Value>, &str)]) -> Option<String> {
    places.iter().find_map(|(map, field)| map.get(*field).and_then(text))
}

/// A string, or a number written as one; empty strings count as missing.
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Epoch milliseconds (a number or a numeric string), or an RFC 3339 timestamp.
fn moment(v: &Value) -> Option<DateTime<Utc>> {
    let ms = match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => match s.trim().parse::<i64>() {
            Ok(ms) => Some(ms),
            Err(_) => return DateTime::parse_from_rfc3339(s.trim()).ok().map(|t| t.with_timezone(&Utc)),
        },
        _ => None,
    }?;
    DateTime::from_timestamp_millis(ms)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn current_and_legacy_names_point_at_the_same_object() {
        for (body, kind) in [
            (json!({"event": "partnership.created", "data": {"key": "part_1"}}), ObjectKind::Partnership),
            (json!({"event": "partnership_created", "partner_key": "jane", "id": 123, "archived": "false"}), ObjectKind::Partnership),
            (json!({"event": "partnership.tags_updated"}), ObjectKind::Partnership),
            (json!({"event": "customer_updated", "key": "crust_1"}), ObjectKind::Customer),
            (json!({"event": "deal.stage_updated"}), ObjectKind::Deal),
            (json!({"event": "lead_status_updated"}), ObjectKind::Lead),
            (json!({"event": "application_approved"}), ObjectKind::Application),
            (json!({"type": "Transaction.Created"}), ObjectKind::Transaction),
            (json!({"event": "partner_team_member_joined"}), ObjectKind::PartnerTeamMember),
        ] {
            assert_eq!(read(&body), Webhook::Hint(kind), "{body}");
        }
    }

    #[test]
    fn a_team_or_member_webhook_names_its_team_in_either_style() {
        let member = json!({"event": "partner_team.member_joined", "data": {"key": "mbr_1", "team_key": "stck_1"}});
        assert_eq!(team_key(&member).as_deref(), Some("stck_1"));
        let legacy = json!({"event": "partner_team_member_joined", "key": "mbr_1", "team_key": "stck_2"});
        assert_eq!(team_key(&legacy).as_deref(), Some("stck_2"));
        let team = json!({"event": "partner_team.updated", "data": {"key": "stck_3", "name": "Acme"}});
        assert_eq!(team_key(&team).as_deref(), Some("stck_3"));
        let nested = json!({"event": "partner_team.member_left", "data": {"key": "mbr_2", "team": {"key": "stck_4"}}});
        assert_eq!(team_key(&nested).as_deref(), Some("stck_4"));
        let unnamed = json!({"event": "partner_team.member_joined", "data": {"key": "mbr_3"}});
        assert_eq!(team_key(&unnamed), None, "a member's own key is no team's");
    }

    #[test]
    fn names_the_mirror_does_not_use_are_unknown() {
        assert_eq!(read(&json!({"event": "agreement.accepted"})), Webhook::Unknown);
        assert_eq!(read(&json!({"name": "deal.updated"})), Webhook::Unknown, "`name` is a field of records, not the event");
        assert_eq!(read(&json!({"data": {}})), Webhook::Unknown);
        assert_eq!(read(&json!(["deal.updated"])), Webhook::Unknown);
        assert_eq!(read(&json!({"event": "dealership_opened"})), Webhook::Unknown, "a prefix must end at a separator");
    }

    #[test]
    fn a_current_style_training_completion_is_read_from_data() {
        let body = json!({"event": "training.course_completed", "data": {
            "id": 42, "name": "Selling 101",
            "partnership": {"key": "part_1", "partner_key": "jane", "email": "jane@example.test"},
            "company_key": "comp_1", "completed_at": 1_700_000_000_000_i64, "extra": {"ignored": true}}});
        let Webhook::Training(c) = read(&body) else { panic!("a training completion") };
        assert_eq!(c.kind, Some(TrainingKind::Course));
        assert_eq!(c.facts.item_id.as_deref(), Some("42"));
        assert_eq!(c.facts.item_name.as_deref(), Some("Selling 101"));
        assert_eq!((c.facts.partnership_key.as_deref(), c.facts.partner_key.as_deref()), (Some("part_1"), Some("jane")));
        assert_eq!(c.facts.partner_email.as_deref(), Some("jane@example.test"));
        assert_eq!(c.facts.company_key.as_deref(), Some("comp_1"));
        assert_eq!(c.facts.completed_at.unwrap().timestamp_millis(), 1_700_000_000_000);
        assert_eq!(c.identity().as_deref(), Some("course|42|part_1|1700000000000"));
    }

    #[test]
    fn a_legacy_flat_learning_path_completion_with_missing_fields_is_accepted() {
        let body = json!({"event": "training_learning_path_completed", "name": "Onboarding", "partner_key": "sam",
                          "completed_at": "2026-11-01T10:00:00Z"});
        let Webhook::Training(c) = read(&body) else { panic!("a training completion") };
        assert_eq!(c.kind, Some(TrainingKind::LearningPath));
        assert_eq!(c.facts.item_id, None);
        assert_eq!(c.facts.partner_key.as_deref(), Some("sam"));
        assert_eq!(c.identity().as_deref(), Some("learning_path|Onboarding|sam|1793527200000"));
        let bare = read(&json!({"event": "training.course_completed"}));
        let Webhook::Training(c) = bare else { panic!("still a training completion") };
        assert_eq!(c.identity(), None, "too little to identify it: the caller falls back to the whole body");
    }
}
