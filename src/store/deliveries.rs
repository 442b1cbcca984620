//! Webhook deliveries: each delivery's row (position, state, lease), the events it reads, and
//! its dead letters. Every write of a delivering daemon is fenced by the epoch its lease was
//! granted at, so a daemon that lost the lease (paused, partitioned) cannot move a position
//! or file a dead letter after another took over.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::FromRow;

use super::{like_pattern, EventRow, Store, StoreError, EVENT_COLUMNS};

/// The right to deliver one delivery's events, as granted at `epoch`.
#[derive(Clone, Debug)]
pub struct DeliveryLease {
    pub name: String,
    pub holder: String,
    pub epoch: i64,
    pub ttl: Duration,
}

/// What asking for a delivery's lease gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeliveryClaim {
    /// Ours, from `position` on; `holding`: the delivery was holding at an event.
    Granted { epoch: i64, position: i64, holding: bool },
    /// Another live daemon delivers it.
    Busy { holder: String },
    /// Turned off (410 Gone, or by hand); `delivery enable` turns it back on.
    Disabled { reason: String },
}

/// A dead letter, as sent again after `delivery retry`.
#[derive(Clone, Debug, FromRow)]
pub struct DeadLetter {
    pub event_id: i64,
    pub event_type: String,
    pub object_type: String,
    pub object_key: String,
    pub body: String,
    pub attempts: i32,
}

/// What a delivery gave up on, to keep.
#[derive(Clone, Debug)]
pub struct GiveUp<'a> {
    pub event_id: i64,
    pub event_type: &'a str,
    pub object_type: &'a str,
    pub object_key: &'a str,
    pub body: &'a str,
    pub attempts: u32,
    pub last_error: &'a str,
    pub http_status: Option<u16>,
}

/// What has happened since the last checkpoint, written with the position.
#[derive(Clone, Debug, Default)]
pub struct Checkpoint {
    pub position: i64,
    /// A webhook was accepted since the last checkpoint.
    pub sent: bool,
    /// The latest failed attempt since the last checkpoint.
    pub error: Option<String>,
}

/// One delivery as `status` and `delivery list` show it.
/// One dead letter as `delivery dead-letters` lists it.
#[derive(Clone, Debug, FromRow)]
pub struct DeadLetterLine {
    pub event_id: i64,
    pub event_type: String,
    pub object_type: String,
    pub object_key: String,
    pub attempts: i32,
    pub http_status: Option<i32>,
    pub last_error: String,
    pub dead_at: DateTime<Utc>,
    pub requeued_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, FromRow)]
pub struct DeliveryLine {
    pub name: String,
    pub state: String,
    pub state_reason: Option<String>,
    pub position: i64,
    /// Events after the position, matching or not.
    pub lag_events: i64,
    /// Seconds since the oldest event after the position was detected (0: caught up).
    pub lag_seconds: f64,
    pub dead_letters: i64,
    pub requeued: i64,
    /// The daemon holding the lease now, if any.
    pub holder: Option<String>,
    pub last_sent_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

/// The part of every fenced write that checks the lease: holder and epoch, which a takeover
/// changes; a lease past its expiry that nobody took over still holds.
const FENCE: &str = "name = $1 AND holder = $2 AND epoch = $3";

fn lost(lease: &DeliveryLease) -> StoreError {
    StoreError::LostDelivery { delivery: lease.name.clone() }
}

impl Store {
    /// Creates the delivery's row on first sight: from the last event written so far
    /// (`from_now`), or from the beginning. An existing row is left as it is.
    pub async fn ensure_delivery(&self, name: &str, from_now: bool) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO deliveries (name, position) \
             SELECT $1, CASE WHEN $2 THEN (SELECT coalesce(max(id), 0) FROM events) ELSE 0 END \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(from_now)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Takes the delivery's lease if it is free, lapsed, or already ours, unless the delivery
    /// is disabled. A new holder gets a new epoch.
    pub async fn claim_delivery(&self, name: &str, holder: &str, ttl: Duration) -> Result<DeliveryClaim, StoreError> {
        let granted: Option<(i64, i64, String)> = sqlx::query_as(
            "UPDATE deliveries SET \
                 epoch = CASE WHEN holder = $2 AND lease_expires_at > now() THEN epoch ELSE epoch + 1 END, \
                 holder = $2, lease_expires_at = now() + make_interval(secs => $3) \
             WHERE name = $1 AND state <> 'disabled' \
               AND (holder IS NULL OR holder = $2 OR lease_expires_at IS NULL OR lease_expires_at <= now()) \
             RETURNING epoch, position, state",
        )
        .bind(name)
        .bind(holder)
        .bind(ttl.as_secs_f64())
        .fetch_optional(self.pool())
        .await?;
        if let Some((epoch, position, state)) = granted {
            return Ok(DeliveryClaim::Granted { epoch, position, holding: state == "holding" });
        }
        let (state, reason, holder): (String, Option<String>, Option<String>) =
            sqlx::query_as("SELECT state, state_reason, holder FROM deliveries WHERE name = $1").bind(name).fetch_one(self.pool()).await?;
        Ok(if state == "disabled" {
            DeliveryClaim::Disabled { reason: reason.unwrap_or_else(|| "disabled".into()) }
        } else {
            DeliveryClaim::Busy { holder: holder.unwrap_or_default() }
        })
    }

    /// Moves the position forward (never back), renews the lease and marks the delivery
    /// active for retention, in one fenced statement.
    pub async fn checkpoint_delivery(&self, lease: &DeliveryLease, checkpoint: &Checkpoint) -> Result<(), StoreError> {
        let done = sqlx::query(&format!(
            "UPDATE deliveries SET position = greatest(position, $4), lease_expires_at = now() + make_interval(secs => $5), \
                 updated_at = now(), last_sent_at = CASE WHEN $6 THEN now() ELSE last_sent_at END, \
                 last_error = coalesce($7, last_error), last_error_at = CASE WHEN $7 IS NULL THEN last_error_at ELSE now() END \
             WHERE {FENCE}"
        ))
        .bind(&lease.name)
        .bind(&lease.holder)
        .bind(lease.epoch)
        .bind(checkpoint.position)
        .bind(lease.ttl.as_secs_f64())
        .bind(checkpoint.sent)
        .bind(checkpoint.error.as_deref())
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(lost(lease));
        }
        Ok(())
    }

    /// Sets the state (`active`, `holding`, `disabled`) and why, fenced.
    pub async fn set_delivery_state(&self, lease: &DeliveryLease, state: &str, reason: Option<&str>) -> Result<(), StoreError> {
        let done = sqlx::query(&format!("UPDATE deliveries SET state = $4, state_reason = $5 WHERE {FENCE}"))
            .bind(&lease.name)
            .bind(&lease.holder)
            .bind(lease.epoch)
            .bind(state)
            .bind(reason)
            .execute(self.pool())
            .await?;
        if done.rows_affected() == 0 {
            return Err(lost(lease));
        }
        Ok(())
    }

    /// Gives the lease up at once (a clean stop, or a delivery just disabled).
    pub async fn release_delivery(&self, lease: &DeliveryLease) -> Result<(), StoreError> {
        sqlx::query(&format!("UPDATE deliveries SET lease_expires_at = now() WHERE {FENCE}"))
            .bind(&lease.name)
            .bind(&lease.holder)
            .bind(lease.epoch)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Up to `limit` events after `after` whose type matches one of `patterns`, in id order,
    /// and how far the read went: every event up to the returned id has been considered
    /// (ids are handed out in commit order, so none can appear below it later).
    pub async fn delivery_events(&self, after: i64, patterns: &[String], limit: i64) -> Result<(Vec<EventRow>, i64), StoreError> {
        let ceiling: i64 = sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM events").fetch_one(self.pool()).await?;
        if ceiling <= after {
            return Ok((Vec::new(), after));
        }
        let likes: Vec<String> = patterns.iter().map(|p| like_pattern(p)).collect();
        let rows: Vec<EventRow> = sqlx::query_as(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE id > $1 AND id <= $2 AND event_type LIKE ANY($3) ORDER BY id LIMIT $4"
        ))
        .bind(after)
        .bind(ceiling)
        .bind(&likes)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        let read_to = if rows.len() as i64 == limit { rows.last().map_or(ceiling, |r| r.id) } else { ceiling };
        Ok((rows, read_to))
    }

    /// Keeps an event the delivery gave up on, with the body it sent, fenced. A dead letter
    /// already kept for the event (a crash before the position moved past it) is updated.
    pub async fn dead_letter(&self, lease: &DeliveryLease, give_up: &GiveUp<'_>) -> Result<(), StoreError> {
        let done = sqlx::query(&format!(
            "INSERT INTO delivery_dead_letters \
                 (delivery, event_id, event_type, object_type, object_key, body, attempts, last_error, http_status) \
             SELECT $1, $4, $5, $6, $7, $8, $9, $10, $11 WHERE EXISTS (SELECT 1 FROM deliveries WHERE {FENCE}) \
             ON CONFLICT (delivery, event_id) DO UPDATE SET attempts = delivery_dead_letters.attempts + excluded.attempts, \
                 last_error = excluded.last_error, http_status = excluded.http_status, dead_at = now(), requeued_at = NULL"
        ))
        .bind(&lease.name)
        .bind(&lease.holder)
        .bind(lease.epoch)
        .bind(give_up.event_id)
        .bind(give_up.event_type)
        .bind(give_up.object_type)
        .bind(give_up.object_key)
        .bind(give_up.body)
        .bind(give_up.attempts as i32)
        .bind(give_up.last_error)
        .bind(give_up.http_status.map(i32::from))
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Err(lost(lease));
        }
        Ok(())
    }

    /// Dead letters `delivery retry` queued again, oldest first, leaving out `skip` (those
    /// already being sent).
    pub async fn requeued_dead_letters(&self, delivery: &str, skip: &[i64], limit: i64) -> Result<Vec<DeadLetter>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT event_id, event_type, object_type, object_key, body, attempts FROM delivery_dead_letters \
             WHERE delivery = $1 AND requeued_at IS NOT NULL AND NOT (event_id = ANY($2)) ORDER BY event_id LIMIT $3",
        )
        .bind(delivery)
        .bind(skip)
        .bind(limit)
        .fetch_all(self.pool())
        .await?)
    }

    /// A requeued dead letter was accepted: it goes, fenced.
    pub async fn dead_letter_delivered(&self, lease: &DeliveryLease, event_id: i64) -> Result<(), StoreError> {
        let done = sqlx::query(&format!(
            "DELETE FROM delivery_dead_letters WHERE delivery = $1 AND event_id = $4 \
               AND EXISTS (SELECT 1 FROM deliveries WHERE {FENCE})"
        ))
        .bind(&lease.name)
        .bind(&lease.holder)
        .bind(lease.epoch)
        .bind(event_id)
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 && !self.holds_delivery(lease).await? {
            return Err(lost(lease));
        }
        Ok(())
    }

    /// A requeued dead letter failed its attempts again: it waits for the next `delivery
    /// retry`, fenced.
    pub async fn dead_letter_failed_again(&self, lease: &DeliveryLease, give_up: &GiveUp<'_>) -> Result<(), StoreError> {
        self.dead_letter(lease, give_up).await
    }

    async fn holds_delivery(&self, lease: &DeliveryLease) -> Result<bool, StoreError> {
        let held: Option<i32> = sqlx::query_scalar(&format!("SELECT 1 FROM deliveries WHERE {FENCE}"))
            .bind(&lease.name)
            .bind(&lease.holder)
            .bind(lease.epoch)
            .fetch_optional(self.pool())
            .await?;
        Ok(held.is_some())
    }

    /// `delivery retry`: queues the delivery's dead letters (or one of them) to be sent
    /// again; returns how many.
    pub async fn requeue_dead_letters(&self, delivery: &str, event_id: Option<i64>) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE delivery_dead_letters SET requeued_at = now() \
             WHERE delivery = $1 AND ($2::bigint IS NULL OR event_id = $2) AND requeued_at IS NULL",
        )
        .bind(delivery)
        .bind(event_id)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }

    /// `delivery enable`: turns a disabled (or holding) delivery back to active. False: no
    /// such delivery.
    pub async fn enable_delivery(&self, delivery: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE deliveries SET state = 'active', state_reason = NULL WHERE name = $1")
            .bind(delivery)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Whether a daemon has ever started the delivery (it has a row).
    pub async fn has_delivery(&self, delivery: &str) -> Result<bool, StoreError> {
        Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM deliveries WHERE name = $1)").bind(delivery).fetch_one(self.pool()).await?)
    }

    /// A delivery's dead letters, oldest event first (at most `limit`).
    pub async fn dead_letter_lines(&self, delivery: &str, limit: i64) -> Result<Vec<DeadLetterLine>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT event_id, event_type, object_type, object_key, attempts, http_status, last_error, dead_at, requeued_at \
             FROM delivery_dead_letters WHERE delivery = $1 ORDER BY event_id LIMIT $2",
        )
        .bind(delivery)
        .bind(limit)
        .fetch_all(self.pool())
        .await?)
    }

    /// Every delivery with its lag and dead letters; the lag counts read the primary key
    /// from each position on.
    pub async fn deliveries(&self) -> Result<Vec<DeliveryLine>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT d.name, d.state, d.state_reason, d.position, \
                    (SELECT count(*) FROM events e WHERE e.id > d.position) AS lag_events, \
                    coalesce((SELECT extract(epoch FROM now() - e.detected_at)::float8 FROM events e WHERE e.id > d.position \
                              ORDER BY e.id LIMIT 1), 0) AS lag_seconds, \
                    (SELECT count(*) FROM delivery_dead_letters l WHERE l.delivery = d.name) AS dead_letters, \
                    (SELECT count(*) FROM delivery_dead_letters l WHERE l.delivery = d.name AND l.requeued_at IS NOT NULL) AS requeued, \
                    CASE WHEN d.lease_expires_at > now() THEN d.holder END AS holder, \
                    d.last_sent_at, d.last_error, d.last_error_at, d.updated_at \
             FROM deliveries d ORDER BY d.name",
        )
        .fetch_all(self.pool())
        .await?)
    }
}

impl std::fmt::Display for DeliveryLine {
    /// One line for `status` (two when the delivery is holding or disabled).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let when = |t: &Option<DateTime<Utc>>| t.map_or_else(|| "-".to_owned(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string());
        write!(
            f,
            "delivery {}: {}, position {} ({} events behind{}), dead letters {}{}, last sent {}, {}",
            self.name,
            self.state,
            self.position,
            self.lag_events,
            if self.lag_events > 0 { format!(", oldest {:.0}s old", self.lag_seconds) } else { String::new() },
            self.dead_letters,
            if self.requeued > 0 { format!(" ({} requeued)", self.requeued) } else { String::new() },
            when(&self.last_sent_at),
            self.holder.as_deref().map_or_else(|| "no daemon delivering".to_owned(), |h| format!("delivered by {h}")),
        )?;
        if let Some(e) = &self.last_error {
            write!(f, "; last error at {}: {e}", when(&self.last_error_at))?;
        }
        if let Some(reason) = self.state_reason.as_deref().filter(|_| self.state != "active") {
            write!(f, "\n  {}: {reason}", self.state.to_uppercase())?;
        }
        Ok(())
    }
}

impl std::fmt::Display for DeadLetterLine {
    /// One line: the event, when it died, how often it was tried, and why it failed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "event {} {} {} {}: dead since {}, {} attempts, {}{}",
            self.event_id,
            self.event_type,
            self.object_type,
            self.object_key,
            self.dead_at.format("%Y-%m-%d %H:%M:%S"),
            self.attempts,
            self.http_status.map_or_else(|| "no HTTP status".to_owned(), |s| format!("HTTP {s}")),
            self.requeued_at.map_or_else(String::new, |t| format!(", queued again at {}", t.format("%Y-%m-%d %H:%M:%S"))),
        )?;
        write!(f, "; last error: {}", self.last_error)
    }
}
