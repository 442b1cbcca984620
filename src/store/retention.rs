//! Pruning what has aged out: events past `events.retain` (never one an active consumer or
//! delivery has not passed), finished write-back requests past `queue.retain_finished`, and
//! `sync_runs` past `sync.retain_runs`. Each prune removes at most one small batch per
//! statement, so writers never wait on a long delete; the caller paces the batches.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::FromRow;

use super::{Store, StoreError};

/// One batch of events to remove: `[from, through]` by id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventBatch {
    pub from: i64,
    pub through: i64,
}

/// What keeps events from being pruned, and who no longer does.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Protection {
    /// Events after this id are kept: an active consumer or delivery has not passed them.
    pub keep_after: Option<i64>,
    /// The reader behind `keep_after`, e.g. `consumer crm`.
    pub kept_by: Option<String>,
    /// Readers inactive for longer than the retention whose position is behind the events
    /// that would go: they no longer protect anything.
    pub lapsed: Vec<String>,
}

#[derive(FromRow)]
struct Reader {
    what: String,
    position: i64,
    updated_at: DateTime<Utc>,
    active: bool,
}

/// What one table's prune did, for `status`.
#[derive(Clone, Debug, FromRow)]
pub struct PruneLine {
    pub target: String,
    pub last_run_at: DateTime<Utc>,
    pub last_removed: i64,
    pub total_removed: i64,
    pub note: Option<String>,
}

impl Store {
    /// Who protects events from a prune of everything older than `max_age`.
    pub async fn event_protection(&self, max_age: Duration) -> Result<Protection, StoreError> {
        let readers: Vec<Reader> = sqlx::query_as(
            "SELECT 'consumer ' || name AS what, position, updated_at, updated_at > now() - make_interval(secs => $1) AS active \
             FROM event_consumers \
             UNION ALL \
             SELECT 'delivery ' || name, position, updated_at, updated_at > now() - make_interval(secs => $1) FROM deliveries \
             ORDER BY 2",
        )
        .bind(max_age.as_secs_f64())
        .fetch_all(self.pool())
        .await?;
        let mut protection = Protection::default();
        if let Some(first) = readers.iter().find(|r| r.active) {
            protection.keep_after = Some(first.position);
            protection.kept_by = Some(first.what.clone());
        }
        protection.lapsed = readers
            .iter()
            .filter(|r| !r.active && protection.keep_after.is_none_or(|k| r.position < k))
            .map(|r| format!("{} (no commit since {} UTC)", r.what, r.updated_at.format("%Y-%m-%d %H:%M")))
            .collect();
        Ok(protection)
    }

    /// The next batch of at most `limit` events that are all older than `max_age` and not
    /// after `keep_after`: the oldest events, cut at the first one too young. Reads only
    /// `limit` rows of the primary key, however many events there are.
    pub async fn next_event_batch(&self, max_age: Duration, keep_after: Option<i64>, limit: i64) -> Result<Option<EventBatch>, StoreError> {
        let rows: Vec<(i64, bool)> = sqlx::query_as(
            "SELECT id, detected_at < now() - make_interval(secs => $1) FROM events \
             WHERE $2::bigint IS NULL OR id <= $2 ORDER BY id LIMIT $3",
        )
        .bind(max_age.as_secs_f64())
        .bind(keep_after)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        let old: Vec<i64> = rows.iter().take_while(|(_, old)| *old).map(|(id, _)| *id).collect();
        Ok(match (old.first(), old.last()) {
            (Some(&from), Some(&through)) => Some(EventBatch { from, through }),
            _ => None,
        })
    }

    /// Removes one batch of events; returns how many went.
    pub async fn remove_events(&self, batch: EventBatch) -> Result<u64, StoreError> {
        let done =
            sqlx::query("DELETE FROM events WHERE id BETWEEN $1 AND $2").bind(batch.from).bind(batch.through).execute(self.pool()).await?;
        Ok(done.rows_affected())
    }

    /// Removes at most `limit` finished write-back requests older than `max_age`.
    pub async fn prune_finished_requests(&self, max_age: Duration, limit: i64) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "DELETE FROM write_queue WHERE id IN (SELECT id FROM write_queue \
                 WHERE finished_at < now() - make_interval(secs => $1) ORDER BY finished_at LIMIT $2)",
        )
        .bind(max_age.as_secs_f64())
        .bind(limit)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }

    /// Removes at most `limit` finished `sync_runs` rows older than `max_age`.
    pub async fn prune_runs(&self, max_age: Duration, limit: i64) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "DELETE FROM sync_runs WHERE id IN (SELECT id FROM sync_runs \
                 WHERE started_at < now() - make_interval(secs => $1) AND outcome <> 'running' ORDER BY started_at LIMIT $2)",
        )
        .bind(max_age.as_secs_f64())
        .bind(limit)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }

    /// Records what a prune of `target` removed.
    pub async fn record_prune(&self, target: &str, removed: u64, note: Option<&str>) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO prunes (target, last_run_at, last_removed, total_removed, note) VALUES ($1, now(), $2, $2, $3) \
             ON CONFLICT (target) DO UPDATE SET last_run_at = now(), last_removed = excluded.last_removed, \
                 total_removed = prunes.total_removed + excluded.last_removed, note = excluded.note",
        )
        .bind(target)
        .bind(removed as i64)
        .bind(note)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// What each prune last did.
    pub async fn prunes(&self) -> Result<Vec<PruneLine>, StoreError> {
        Ok(sqlx::query_as("SELECT target, last_run_at, last_removed, total_removed, note FROM prunes ORDER BY target")
            .fetch_all(self.pool())
            .await?)
    }
}
