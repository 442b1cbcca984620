//! Marking records deleted after a complete key scan, behind a safety brake.

use std::collections::HashSet;

use sqlx::{types::Json, Postgres, Transaction};

use super::{page::insert_events, Store, StoreError};
use crate::{
    diff::{self, EventSource},
    object::ObjectKind,
};

/// What a reconcile did (or refused to do).
#[derive(Clone, Debug, PartialEq)]
pub enum ReconcileOutcome {
    /// These rows were marked deleted (and evented).
    Deleted { keys: Vec<String>, live: i64 },
    /// More than the allowed share would have gone: nothing was marked. The caller records
    /// why in `sync_state`.
    Refused { would_delete: i64, live: i64, max_share: f64 },
}

/// Deletions a key scan always carries out, whatever their share: the brake is there for
/// an API that suddenly hides many records, and a handful of real deletions in a small
/// account would otherwise need an operator.
pub const ALWAYS_ALLOWED: i64 = 10;

impl Store {
    /// Marks deleted every live row created at or before `scanned_until` whose key the
    /// complete scan did not see, unless that is more than `max_share` of the live rows and
    /// more than [`ALWAYS_ALLOWED`] rows.
    /// One transaction: the rows, their `<object>.deleted` events and `sync_state`.
    pub async fn mark_vanished(
        &self,
        kind: ObjectKind,
        seen: &HashSet<String>,
        scanned_until_ms: i64,
        max_share: f64,
        lease: Option<&super::Lease>,
    ) -> Result<ReconcileOutcome, StoreError> {
        let seen: Vec<&str> = seen.iter().map(String::as_str).collect();
        let mut tx = self.pool().begin().await?;
        if let Some(lease) = lease {
            super::lease::fence_in(&mut tx, lease).await?;
        }
        let table = kind.table();
        let live: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table} WHERE deleted_at IS NULL")).fetch_one(&mut *tx).await?;
        let vanished: Vec<(String, Json<serde_json::Value>)> = sqlx::query_as(&format!(
            "SELECT key, raw FROM {table} WHERE deleted_at IS NULL \
               AND (created_at IS NULL OR created_at <= epoch_ms_to_timestamptz($2)) \
               AND NOT (key = ANY($1)) ORDER BY key FOR UPDATE"
        ))
        .bind(&seen)
        .bind(scanned_until_ms)
        .fetch_all(&mut *tx)
        .await?;

        let would_delete = vanished.len() as i64;
        if would_delete > ALWAYS_ALLOWED && would_delete as f64 > max_share * live as f64 {
            tx.commit().await?;
            return Ok(ReconcileOutcome::Refused { would_delete, live, max_share });
        }

        let keys: Vec<String> = vanished.iter().map(|(k, _)| k.clone()).collect();
        if !keys.is_empty() {
            sqlx::query(&format!("UPDATE {table} SET deleted_at = now(), synced_at = now() WHERE key = ANY($1)"))
                .bind(&keys)
                .execute(&mut *tx)
                .await?;
            let now = chrono::Utc::now().timestamp_millis();
            let events: Vec<_> = vanished.iter().map(|(_, raw)| diff::vanished(kind, &raw.0, now)).collect();
            insert_events(&mut tx, &events).await?;
        }
        sqlx::query(
            "INSERT INTO sync_state (object, last_reconcile_at) VALUES ($1, now()) \
             ON CONFLICT (object) DO UPDATE SET last_reconcile_at = now(), updated_at = now()",
        )
        .bind(table)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(ReconcileOutcome::Deleted { keys, live })
    }
}

/// Marks one row deleted (the API answers 404 for it now) with its `<object>.deleted` event,
/// inside the caller's transaction. `false`: no live row had that key.
pub async fn mark_gone_in(
    tx: &mut Transaction<'_, Postgres>,
    kind: ObjectKind,
    key: &str,
    source: EventSource,
) -> Result<bool, StoreError> {
    let old: Option<Json<serde_json::Value>> = sqlx::query_scalar(&format!(
        "UPDATE {} SET deleted_at = now(), synced_at = now() WHERE key = $1 AND deleted_at IS NULL RETURNING raw",
        kind.table()
    ))
    .bind(key)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(old) = old else { return Ok(false) };
    let mut event = diff::vanished(kind, &old.0, chrono::Utc::now().timestamp_millis());
    event.source = source;
    insert_events(tx, &[event]).await?;
    Ok(true)
}
