//! The write-back queue's SQL: claiming with `FOR UPDATE SKIP LOCKED` under a lease, and
//! finishing a request in the same transaction that updates the mirror.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{types::Json, FromRow, Postgres, Transaction};

use super::{
    page::write_page_in,
    reconcile::mark_gone_in,
    request::{Claim, ClaimedRow},
    PageWrite, Store, StoreError,
};
use crate::{diff::EventSource, object::ObjectKind, record::Record};

/// What a succeeded request changes in the mirror.
#[derive(Debug)]
pub struct Success<'a> {
    /// Records as the API now shows them, checked, to upsert with `write_back` events.
    pub records: Vec<(ObjectKind, Record)>,
    /// A record the API no longer returns after a delete: marked deleted.
    pub gone: Option<(ObjectKind, &'a str)>,
    /// Deal attachments, content included.
    pub files: &'a [DealFile],
    /// What goes in `write_queue.result`.
    pub result: &'a Value,
}

/// One deal attachment as the API listed it, with its downloaded content.
#[derive(Debug)]
pub struct DealFile {
    pub deal_key: String,
    /// `{key, name, field_key}` as listed.
    pub file: Value,
    pub content: Option<Vec<u8>>,
    pub content_type: Option<String>,
}

/// Why an attempt failed, and when to try again.
#[derive(Clone, Debug)]
pub struct FailedAttempt<'a> {
    pub delay: Duration,
    pub error: &'a str,
    pub http_status: Option<u16>,
    pub outcome_unknown: bool,
}

/// One row of `queue list`.
#[derive(Clone, Debug, FromRow)]
pub struct QueueRow {
    pub id: i64,
    pub operation: String,
    pub object_type: String,
    pub object_key: Option<String>,
    pub status: String,
    pub attempts: i32,
    pub run_after: DateTime<Utc>,
    pub last_error: Option<String>,
    pub http_status: Option<i32>,
}

impl Store {
    /// Takes the oldest request that is due: pending, or running with an expired lease (its
    /// worker died), and not held back by its record: a request waits while an earlier one
    /// touching the same record (`touches`, filled in at INSERT) is pending or any other one
    /// is running, so requests for one record are carried out in id order. Several workers
    /// and daemons claim concurrently without blocking. A create
    /// or convert taken over from a dead worker may already have reached the API, so it is
    /// marked with `outcome_unknown_since`.
    pub async fn claim(&self, worker: &str, lease: Duration) -> Result<Option<Claim>, StoreError> {
        let row: Option<ClaimedRow> = sqlx::query_as(
            "UPDATE write_queue q SET status = 'running', attempts = q.attempts + 1, locked_by = $1, \
                 locked_until = now() + make_interval(secs => $2), updated_at = now(), \
                 outcome_unknown_since = coalesce(q.outcome_unknown_since, \
                     CASE WHEN q.status = 'running' AND q.operation IN ('create', 'convert') THEN q.locked_until END) \
             WHERE q.id = (SELECT c.id FROM write_queue c \
                           WHERE ((c.status = 'pending' AND c.run_after <= now()) OR (c.status = 'running' AND c.locked_until < now())) \
                             AND NOT EXISTS (SELECT 1 FROM write_queue e \
                                             WHERE e.touches && c.touches AND e.status IN ('pending', 'running') AND e.id <> c.id \
                                               AND (e.status = 'running' OR e.id < c.id)) \
                           ORDER BY c.run_after, c.id FOR UPDATE SKIP LOCKED LIMIT 1) \
             RETURNING q.id, q.operation, q.object_type, q.object_key, q.payload, q.attempts, q.max_attempts, q.created_at, \
                       extract(epoch FROM now() - q.outcome_unknown_since)::float8 AS outcome_unknown_for",
        )
        .bind(worker)
        .bind(lease.as_secs_f64())
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(Claim::from))
    }

    /// Puts requests whose worker's lease expired (the worker died or hung) back to
    /// `pending`, as docs/write-back.md says they return: `queue list` and SQL then show them waiting, and
    /// the user may cancel them. A create or convert among them may already have reached the
    /// API, so it is marked with `outcome_unknown_since` and looked up before it is sent again.
    pub async fn release_expired(&self) -> Result<u64, StoreError> {
        let released = sqlx::query(
            "UPDATE write_queue SET status = 'pending', locked_by = NULL, locked_until = NULL, run_after = now(), \
                 outcome_unknown_since = coalesce(outcome_unknown_since, CASE WHEN operation IN ('create', 'convert') THEN locked_until END) \
             WHERE status = 'running' AND locked_until < now()",
        )
        .execute(self.pool())
        .await?
        .rows_affected();
        if released > 0 {
            tracing::warn!(released, "write-back requests whose worker's lease expired are pending again");
        }
        Ok(released)
    }

    /// Marks a request succeeded together with what its outcome changes in the mirror (rows,
    /// their `write_back` events, deal files), in one transaction. `false`: the request is no
    /// longer ours (its lease expired and another worker took it), and nothing was written.
    pub async fn succeed(&self, id: i64, worker: &str, success: Success<'_>) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await?;
        for (kind, record) in success.records {
            let page = PageWrite {
                kind,
                records: vec![record],
                rejected: &[],
                source: EventSource::WriteBack,
                emit_events: true,
                run_id: None,
                advance: None,
                lease: None,
            };
            write_page_in(&mut tx, page).await?;
        }
        if let Some((kind, key)) = success.gone {
            mark_gone_in(&mut tx, kind, key, EventSource::WriteBack).await?;
        }
        for file in success.files {
            upsert_deal_file_in(&mut tx, file).await?;
        }
        if !succeed_in(&mut tx, id, worker, success.result).await? {
            tx.rollback().await?;
            return Ok(false);
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Puts a request back for another attempt after `delay`. `outcome_unknown`: this attempt
    /// may have happened at the API (the earliest such moment is kept).
    pub async fn retry_later(&self, id: i64, worker: &str, attempt: &FailedAttempt<'_>) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE write_queue SET status = 'pending', run_after = now() + make_interval(secs => $3), locked_until = NULL, \
                 locked_by = NULL, last_error = $4, http_status = $5, outcome_unknown_since = coalesce(outcome_unknown_since, CASE WHEN $6 THEN now() END), updated_at = now() \
             WHERE id = $1 AND locked_by = $2 AND status = 'running'",
        )
        .bind(id)
        .bind(worker)
        .bind(attempt.delay.as_secs_f64())
        .bind(attempt.error)
        .bind(attempt.http_status.map(i32::from))
        .bind(attempt.outcome_unknown)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Extends the lease of a request this worker still holds. `false`: it is no longer ours.
    pub async fn renew_claim(&self, id: i64, worker: &str, lease: Duration) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE write_queue SET locked_until = now() + make_interval(secs => $3) WHERE id = $1 AND locked_by = $2 AND status = 'running'",
        )
        .bind(id)
        .bind(worker)
        .bind(lease.as_secs_f64())
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Puts a request back as pending without counting the attempt just claimed: the API
    /// rejected the credentials, which is no fault of the request.
    pub async fn release_uncharged(&self, id: i64, worker: &str, error: &str, http_status: Option<u16>) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE write_queue SET status = 'pending', attempts = greatest(attempts - 1, 0), locked_until = NULL, locked_by = NULL, \
                 last_error = $3, http_status = $4, updated_at = now() \
             WHERE id = $1 AND locked_by = $2 AND status = 'running'",
        )
        .bind(id)
        .bind(worker)
        .bind(error)
        .bind(http_status.map(i32::from))
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Gives up on a request, keeping the API's message.
    pub async fn fail(&self, id: i64, worker: &str, error: &str, http_status: Option<u16>) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE write_queue SET status = 'failed', finished_at = now(), locked_until = NULL, last_error = $3, \
                 http_status = $4, updated_at = now() \
             WHERE id = $1 AND locked_by = $2 AND status = 'running'",
        )
        .bind(id)
        .bind(worker)
        .bind(error)
        .bind(http_status.map(i32::from))
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// `queue add`: the same as a user's INSERT.
    pub async fn enqueue(
        &self,
        operation: &str,
        object_type: &str,
        object_key: Option<&str>,
        payload: &Value,
        idempotency_key: Option<&str>,
    ) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "INSERT INTO write_queue (operation, object_type, object_key, payload, idempotency_key) VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(operation)
        .bind(object_type)
        .bind(object_key)
        .bind(Json(payload))
        .bind(idempotency_key)
        .fetch_one(self.pool())
        .await?)
    }

    /// `queue list`: newest first.
    pub async fn list_queue(&self, status: Option<&str>, limit: i64) -> Result<Vec<QueueRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, operation, object_type, object_key, status, attempts, run_after, last_error, http_status FROM write_queue \
             WHERE $1::text IS NULL OR status = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(status)
        .bind(limit)
        .fetch_all(self.pool())
        .await?)
    }

    /// `queue retry`: a failed (or cancelled) request runs again, with fresh attempts.
    pub async fn requeue(&self, id: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE write_queue SET status = 'pending', attempts = 0, run_after = now(), finished_at = NULL, updated_at = now() \
             WHERE id = $1 AND status IN ('failed', 'cancelled')",
        )
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The request queued under `idempotency_key`, with its status.
    pub async fn request_by_idempotency_key(&self, idempotency_key: &str) -> Result<Option<(i64, String)>, StoreError> {
        Ok(sqlx::query_as("SELECT id, status FROM write_queue WHERE idempotency_key = $1")
            .bind(idempotency_key)
            .fetch_optional(self.pool())
            .await?)
    }

    /// A request's status, `None` when there is no such request (for messages that say why a
    /// command did nothing).
    pub async fn request_status(&self, id: i64) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar("SELECT status FROM write_queue WHERE id = $1").bind(id).fetch_optional(self.pool()).await?)
    }

    /// `queue cancel`: only a request that has not started can be cancelled.
    pub async fn cancel(&self, id: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            // The status trigger stamps updated_at and finished_at: a writer role may set status alone.
            "UPDATE write_queue SET status = 'cancelled' WHERE id = $1 AND status = 'pending'",
        )
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }
}

/// Marks a request succeeded inside the transaction that also wrote its result into the
/// mirror. `false`: the request is no longer ours (its lease expired and another worker took
/// it): the caller must roll back.
async fn succeed_in(tx: &mut Transaction<'_, Postgres>, id: i64, worker: &str, result: &Value) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE write_queue SET status = 'succeeded', finished_at = now(), locked_until = NULL, result = $3, \
             http_status = 200, last_error = NULL, updated_at = now() \
         WHERE id = $1 AND locked_by = $2 AND status = 'running'",
    )
    .bind(id)
    .bind(worker)
    .bind(Json(result))
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Stores one deal attachment (content included).
async fn upsert_deal_file_in(tx: &mut Transaction<'_, Postgres>, file: &DealFile) -> Result<(), StoreError> {
    let content = file.content.as_deref();
    let (deal_key, content_type, file) = (&file.deal_key, file.content_type.as_deref(), &file.file);
    sqlx::query(
        "INSERT INTO deal_files (deal_key, file_key, name, field_key, content, content_type, size, fetched_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, now()) \
         ON CONFLICT (deal_key, file_key) DO UPDATE SET name = excluded.name, field_key = excluded.field_key, \
             content = excluded.content, content_type = excluded.content_type, size = excluded.size, fetched_at = now()",
    )
    .bind(deal_key)
    .bind(file.get("key").and_then(Value::as_str).unwrap_or_default())
    .bind(file.get("name").and_then(Value::as_str))
    .bind(file.get("field_key").and_then(Value::as_str))
    .bind(content)
    .bind(content_type)
    .bind(content.map(|c| c.len() as i64))
    .execute(&mut **tx)
    .await?;
    Ok(())
}
