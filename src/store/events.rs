//! The events table as its readers see it: one event as compact JSON (what `events tail`
//! prints and a webhook delivery sends), and the named consumers of `next_events` /
//! `commit_events`.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::{types::Json, FromRow};

use super::{Store, StoreError};

/// One row of `events`.
#[derive(Clone, Debug, FromRow)]
pub struct EventRow {
    pub id: i64,
    pub event_type: String,
    pub object_type: String,
    pub object_key: String,
    pub occurred_at: DateTime<Utc>,
    pub detected_at: DateTime<Utc>,
    pub source: String,
    pub changes: Option<Json<Value>>,
    pub data: Option<Json<Value>>,
}

/// The columns of `events`, in order, for `SELECT`s that read [`EventRow`]s.
pub const EVENT_COLUMNS: &str = "id, event_type, object_type, object_key, occurred_at, detected_at, source, changes, data";

#[derive(Serialize)]
struct EventJson<'a> {
    id: i64,
    event_type: &'a str,
    object_type: &'a str,
    object_key: &'a str,
    occurred_at: String,
    detected_at: String,
    source: &'a str,
    changes: Option<&'a Value>,
    data: Option<&'a Value>,
}

impl EventRow {
    /// The event as one line of compact JSON with the columns of `events`; timestamps in
    /// RFC 3339, UTC.
    pub fn to_json(&self) -> String {
        let time = |t: &DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::AutoSi, true);
        serde_json::to_string(&EventJson {
            id: self.id,
            event_type: &self.event_type,
            object_type: &self.object_type,
            object_key: &self.object_key,
            occurred_at: time(&self.occurred_at),
            detected_at: time(&self.detected_at),
            source: &self.source,
            changes: self.changes.as_ref().map(|c| &c.0),
            data: self.data.as_ref().map(|d| &d.0),
        })
        .expect("an event always serializes")
    }
}

/// One consumer as `events consumers` lists it.
#[derive(Clone, Debug, FromRow)]
pub struct ConsumerLine {
    pub name: String,
    pub position: i64,
    /// Events after the position.
    pub lag: i64,
    /// Seconds since the oldest unread event was detected (`None`: caught up).
    pub oldest_unread_age_seconds: Option<f64>,
    pub updated_at: DateTime<Utc>,
}

impl Store {
    /// The consumer's committed position; `None` for a consumer never committed.
    pub async fn consumer_position(&self, name: &str) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar("SELECT position FROM event_consumers WHERE name = $1").bind(name).fetch_optional(self.pool()).await?)
    }

    /// Moves the consumer's position forward to `id` (never back); returns the position.
    pub async fn commit_events(&self, name: &str, id: i64) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT commit_events($1, $2)").bind(name).bind(id).fetch_one(self.pool()).await?)
    }

    /// Every consumer with its lag; the count reads the primary key from each position on.
    pub async fn consumers(&self) -> Result<Vec<ConsumerLine>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT c.name, c.position, c.updated_at, \
                    (SELECT count(*) FROM events e WHERE e.id > c.position) AS lag, \
                    (SELECT extract(epoch FROM now() - e.detected_at)::float8 FROM events e WHERE e.id > c.position ORDER BY e.id LIMIT 1) \
                        AS oldest_unread_age_seconds \
             FROM event_consumers c ORDER BY c.name",
        )
        .fetch_all(self.pool())
        .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_one_line_of_compact_json_with_the_columns_of_events() {
        let at = DateTime::parse_from_rfc3339("2026-11-27T10:00:00.5Z").unwrap().with_timezone(&Utc);
        let row = EventRow {
            id: 7,
            event_type: "deal.stage_updated".into(),
            object_type: "deal".into(),
            object_key: "deal_1".into(),
            occurred_at: at,
            detected_at: at,
            source: "poll".into(),
            changes: Some(Json(serde_json::json!({"stage": {"old": "a", "new": "b"}}))),
            data: None,
        };
        assert_eq!(
            row.to_json(),
            r#"{"id":7,"event_type":"deal.stage_updated","object_type":"deal","object_key":"deal_1","occurred_at":"2026-11-27T10:00:00.500Z","detected_at":"2026-11-27T10:00:00.500Z","source":"poll","changes":{"stage":{"new":"b","old":"a"}},"data":null}"#
        );
    }
}
