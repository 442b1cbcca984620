//! Bookkeeping: `sync_state` (where each object's polling stands) and `sync_runs` (one row
//! per pass).

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Row, Transaction};

use super::{Store, StoreError};
use crate::object::{ChangeFilter, ObjectKind};

/// Where one object's sync stands.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ObjectState {
    /// Epoch ms: every change at or before it has been read. `None` until the first
    /// backfill completes.
    pub cursor_ms: Option<i64>,
    pub backfill_completed_at: Option<DateTime<Utc>>,
    pub last_rescan_at: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    /// What the daemon's probe last found about `min_updated` on this object's list, and
    /// since when it has found that (transactions and rewards; see [`UpdatedFilter`]).
    pub updated_filter: Option<(UpdatedFilter, DateTime<Utc>)>,
}

/// Whether an object's list honours `min_updated` (docs/correctness.md, question 3), as the daemon's probe found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, strum::IntoStaticStr, strum::EnumString)]
#[strum(serialize_all = "lowercase")]
pub enum UpdatedFilter {
    Honoured,
    Ignored,
    /// The list was empty: nothing to tell by.
    Undetermined,
}

impl UpdatedFilter {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    fn parse(s: &str) -> Option<UpdatedFilter> {
        s.parse().ok()
    }
}

impl ObjectState {
    /// How polls find this object's changes now. An object the API is documented to list by
    /// created time only is polled by updated windows once the probe found `min_updated`
    /// honoured and a complete read (backfill, rescan, key scan) has ended since: updated
    /// windows go on from that read's cursor, where created windows polled after it would
    /// have moved the cursor past updates nobody read. (Passes of one object never overlap,
    /// so no created window runs between that read and the first updated one.)
    pub fn change_filter(&self, kind: ObjectKind) -> ChangeFilter {
        match (kind.change_filter(), self.updated_filter) {
            (ChangeFilter::CreatedOnly, Some((UpdatedFilter::Honoured, since))) if self.last_rescan_at.is_some_and(|at| at >= since) => {
                ChangeFilter::Updated
            }
            (filter, _) => filter,
        }
    }
}

/// How a window's completion moves the object's state.
#[derive(Clone, Debug, Default)]
pub struct CursorAdvance {
    pub cursor_ms: i64,
    pub window_start_ms: Option<i64>,
    pub window_end_ms: i64,
    pub backfill_completed: bool,
    /// A complete read (backfill, rescan, key scan) ends with this advance
    /// (`last_rescan_at`).
    pub rescan_completed: bool,
}

/// What kind of pass a `sync_runs` row records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, strum::IntoStaticStr)]
#[strum(serialize_all = "lowercase")]
pub enum RunKind {
    Backfill,
    Poll,
    Rescan,
    Reconcile,
}

impl RunKind {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// A finished run's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunTotals {
    pub pages: i32,
    pub records_read: i32,
    pub rows_written: i32,
    pub events_written: i32,
}

impl Store {
    /// When each object last had a successful pass of any kind (a poll, a rescan, a read a
    /// webhook asked for), by any daemon.
    pub async fn last_successes(&self) -> Result<std::collections::HashMap<ObjectKind, DateTime<Utc>>, StoreError> {
        let rows: Vec<(String, DateTime<Utc>)> =
            sqlx::query_as("SELECT object, last_success_at FROM sync_state WHERE last_success_at IS NOT NULL")
                .fetch_all(self.pool())
                .await?;
        Ok(rows.into_iter().filter_map(|(object, at)| Some((object.parse().ok()?, at))).collect())
    }

    /// The object's state (a fresh object has an empty one).
    pub async fn object_state(&self, kind: ObjectKind) -> Result<ObjectState, StoreError> {
        let row = sqlx::query(
            "SELECT (extract(epoch from cursor) * 1000)::bigint AS cursor_ms, backfill_completed_at, last_rescan_at, \
                    last_success_at, last_error, updated_filter, updated_filter_since \
             FROM sync_state WHERE object = $1",
        )
        .bind(kind.table())
        .fetch_optional(self.pool())
        .await?;
        Ok(match row {
            None => ObjectState::default(),
            Some(r) => ObjectState {
                cursor_ms: r.try_get("cursor_ms")?,
                backfill_completed_at: r.try_get("backfill_completed_at")?,
                last_rescan_at: r.try_get("last_rescan_at")?,
                last_success_at: r.try_get("last_success_at")?,
                last_error: r.try_get("last_error")?,
                updated_filter: r
                    .try_get::<Option<String>, _>("updated_filter")?
                    .as_deref()
                    .and_then(UpdatedFilter::parse)
                    .zip(r.try_get::<Option<DateTime<Utc>>, _>("updated_filter_since")?),
            },
        })
    }

    /// Moves the cursor outside a page (a window that ended with an empty page was already
    /// written; parallel backfill windows finish here).
    pub async fn advance(&self, kind: ObjectKind, advance: &CursorAdvance, lease: Option<&super::Lease>) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        if let Some(lease) = lease {
            super::lease::fence_in(&mut tx, lease).await?;
        }
        advance_in(&mut tx, kind, advance).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Opens a `sync_runs` row.
    pub async fn start_run(&self, kind: ObjectKind, run: RunKind, window: Option<(i64, i64)>, holder: &str) -> Result<i64, StoreError> {
        let id = sqlx::query_scalar(
            "INSERT INTO sync_runs (object, kind, window_start, window_end, holder) \
             VALUES ($1, $2, epoch_ms_to_timestamptz($3), epoch_ms_to_timestamptz($4), $5) RETURNING id",
        )
        .bind(kind.table())
        .bind(run.as_str())
        .bind(window.map(|w| w.0))
        .bind(window.map(|w| w.1))
        .bind(holder)
        .fetch_one(self.pool())
        .await?;
        Ok(id)
    }

    /// Records what the probe found about `min_updated` on the object's list; returns what
    /// it had found before (`None`: never probed). `updated_filter_since` moves only when the
    /// answer changes.
    pub async fn record_updated_filter(&self, kind: ObjectKind, found: UpdatedFilter) -> Result<Option<UpdatedFilter>, StoreError> {
        let before: Option<Option<String>> = sqlx::query_scalar(
            "WITH before AS (SELECT updated_filter FROM sync_state WHERE object = $1 FOR UPDATE) \
             INSERT INTO sync_state AS s (object, updated_filter, updated_filter_since, updated_filter_probed_at) \
             VALUES ($1, $2, now(), now()) \
             ON CONFLICT (object) DO UPDATE SET updated_filter = $2, updated_filter_probed_at = now(), updated_at = now(), \
                 updated_filter_since = CASE WHEN s.updated_filter IS DISTINCT FROM $2 THEN now() ELSE s.updated_filter_since END \
             RETURNING (SELECT updated_filter FROM before)",
        )
        .bind(kind.table())
        .bind(found.as_str())
        .fetch_optional(self.pool())
        .await?;
        Ok(before.flatten().as_deref().and_then(UpdatedFilter::parse))
    }

    /// Closes a `sync_runs` row and records the outcome on the object's state.
    pub async fn finish_run(&self, kind: ObjectKind, run_id: i64, requests: u64, error: Option<&str>) -> Result<RunTotals, StoreError> {
        let mut tx = self.pool().begin().await?;
        let row = sqlx::query(
            "UPDATE sync_runs SET finished_at = now(), requests = $2, outcome = $3, error = $4 WHERE id = $1 \
             RETURNING pages, records_read, rows_written, events_written",
        )
        .bind(run_id)
        .bind(requests.min(i32::MAX as u64) as i32)
        .bind(if error.is_some() { "failed" } else { "succeeded" })
        .bind(error)
        .fetch_one(&mut *tx)
        .await?;
        match error {
            None => {
                sqlx::query(
                    "INSERT INTO sync_state (object, last_success_at, last_error) VALUES ($1, now(), NULL) \
                     ON CONFLICT (object) DO UPDATE SET last_success_at = now(), last_error = NULL, updated_at = now()",
                )
                .bind(kind.table())
                .execute(&mut *tx)
                .await?;
            }
            Some(message) => {
                sqlx::query(
                    "INSERT INTO sync_state (object, last_error, last_error_at) VALUES ($1, $2, now()) \
                     ON CONFLICT (object) DO UPDATE SET last_error = $2, last_error_at = now(), updated_at = now()",
                )
                .bind(kind.table())
                .bind(message)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(RunTotals {
            pages: row.try_get("pages")?,
            records_read: row.try_get("records_read")?,
            rows_written: row.try_get("rows_written")?,
            events_written: row.try_get("events_written")?,
        })
    }
}

/// The cursor never moves backwards, whatever the clock does.
pub(super) async fn advance_in(tx: &mut Transaction<'_, Postgres>, kind: ObjectKind, a: &CursorAdvance) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO sync_state AS s (object, cursor, window_start, window_end, backfill_completed_at, last_rescan_at) \
         VALUES ($1, epoch_ms_to_timestamptz($2), epoch_ms_to_timestamptz($3), epoch_ms_to_timestamptz($4), \
                 CASE WHEN $5 THEN now() END, CASE WHEN $6 THEN now() END) \
         ON CONFLICT (object) DO UPDATE SET \
             cursor = greatest(s.cursor, excluded.cursor), \
             window_start = excluded.window_start, window_end = excluded.window_end, \
             backfill_completed_at = coalesce(excluded.backfill_completed_at, s.backfill_completed_at), \
             last_rescan_at = coalesce(excluded.last_rescan_at, s.last_rescan_at), \
             updated_at = now()",
    )
    .bind(kind.table())
    .bind(a.cursor_ms)
    .bind(a.window_start_ms)
    .bind(a.window_end_ms)
    .bind(a.backfill_completed)
    .bind(a.rescan_completed)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
