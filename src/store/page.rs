//! Writing one page of API records: rows, events, quarantine, progress and (at the end of a
//! window) the cursor, all in one transaction, so a crash anywhere loses nothing and a
//! retry duplicates nothing.

use std::{collections::HashMap, sync::OnceLock};

use serde_json::{json, value::RawValue, Value};
use sqlx::{types::Json, Postgres, Transaction};

use super::{state::CursorAdvance, Store, StoreError};
use crate::{
    diff::{self, EventSource, NewEvent},
    object::{ColumnType, ObjectKind},
    record::{Record, Rejected, MAX_RECORD_BYTES},
};

/// One page's worth of changes to apply.
pub struct PageWrite<'a> {
    pub kind: ObjectKind,
    pub records: Vec<Record>,
    pub rejected: &'a [Rejected],
    pub source: EventSource,
    pub emit_events: bool,
    /// The `sync_runs` row whose counters this page adds to.
    pub run_id: Option<i64>,
    /// Set on the last page of a window: the cursor moves in the same transaction.
    pub advance: Option<CursorAdvance>,
    /// The lease this write is made under; checked first, so a fenced-off writer changes
    /// nothing.
    pub lease: Option<&'a super::Lease>,
}

/// What a page changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PageOutcome {
    pub records: u64,
    pub rows_written: u64,
    pub events_written: u64,
    pub quarantined: u64,
}

impl Store {
    /// Applies one page in one transaction: locks the stored rows for the page's keys,
    /// diffs them against the records, upserts only what changed (one statement), inserts
    /// the resulting events (one statement), files rejected records in `quarantine`, and
    /// records progress.
    pub async fn write_page(&self, page: PageWrite<'_>) -> Result<PageOutcome, StoreError> {
        let mut tx = self.pool().begin().await?;
        let outcome = write_page_in(&mut tx, page).await?;
        tx.commit().await?;
        Ok(outcome)
    }
}

/// [`Store::write_page`] inside a caller's transaction (write-back marks its request done in
/// the same one).
pub async fn write_page_in(tx: &mut Transaction<'_, Postgres>, page: PageWrite<'_>) -> Result<PageOutcome, StoreError> {
    let kind = page.kind;
    if let Some(lease) = page.lease {
        super::fence(tx, lease).await?;
    }
    let records = dedupe(page.records);
    let keys: Vec<&str> = records.iter().map(|r| r.key.as_str()).collect();

    // `vanished`: marked deleted by a key scan (not archived); seeing it again restores it.
    let stored: HashMap<String, (Json<Value>, bool)> = if keys.is_empty() {
        HashMap::new()
    } else {
        sqlx::query_as::<_, (String, Json<Value>, bool)>(&format!(
            "SELECT key, raw, (deleted_at IS NOT NULL AND NOT archived) FROM {} WHERE key = ANY($1) FOR UPDATE",
            kind.table()
        ))
        .bind(&keys)
        .fetch_all(&mut **tx)
        .await?
        .into_iter()
        .map(|(key, raw, vanished)| (key, (raw, vanished)))
        .collect()
    };

    let mut changed = Vec::new();
    let mut events: Vec<NewEvent> = Vec::new();
    for record in &records {
        let (old, vanished) = match stored.get(&record.key) {
            Some((raw, vanished)) => (Some(&raw.0), *vanished),
            None => (None, false),
        };
        if old == Some(&record.raw) && !vanished {
            continue;
        }
        if page.emit_events {
            let occurred = record.updated_ms.or(record.created_ms).unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
            events.extend(diff::diff(kind, old, &record.raw, &record.text, occurred, page.source));
            if vanished {
                events.push(diff::reappeared(kind, &record.raw, &record.text, occurred, page.source));
            }
        }
        changed.push(row_json(record));
    }

    let rows_written = changed.len();
    if !changed.is_empty() {
        sqlx::query(upsert_sql(kind)).bind(Json(&changed)).execute(&mut **tx).await?;
    }
    if !page.rejected.is_empty() {
        quarantine(tx, kind, page.rejected).await?;
    }
    if !keys.is_empty() {
        sqlx::query("DELETE FROM quarantine WHERE object = $1 AND fingerprint = ANY($2)")
            .bind(kind.table())
            .bind(&keys)
            .execute(&mut **tx)
            .await?;
    }
    let outcome = PageOutcome {
        records: (records.len() + page.rejected.len()) as u64,
        rows_written: rows_written as u64,
        events_written: events.len() as u64,
        quarantined: page.rejected.len() as u64,
    };
    // Events last: the insert takes the events lock (see the migration), held until commit.
    if !events.is_empty() {
        insert_events(tx, &events).await?;
    }
    if let Some(run_id) = page.run_id {
        sqlx::query(
            "UPDATE sync_runs SET pages = pages + 1, records_read = records_read + $2, rows_written = rows_written + $3, \
             events_written = events_written + $4 WHERE id = $1",
        )
        .bind(run_id)
        .bind(outcome.records as i32)
        .bind(outcome.rows_written as i32)
        .bind(outcome.events_written as i32)
        .execute(&mut **tx)
        .await?;
    }
    if let Some(advance) = page.advance {
        super::state::advance_in(tx, kind, &advance).await?;
    }
    Ok(outcome)
}

/// Inserts events in the given order; their ids follow that order.
pub async fn insert_events(tx: &mut Transaction<'_, Postgres>, events: &[NewEvent]) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO events (event_type, object_type, object_key, occurred_at, source, changes, data) \
         SELECT e.event_type, e.object_type, e.object_key, epoch_ms_to_timestamptz(e.occurred_ms), e.source, e.changes, e.data \
         FROM ROWS FROM (jsonb_to_recordset($1) AS (event_type text, object_type text, object_key text, occurred_ms bigint, \
              source text, changes jsonb, data jsonb)) WITH ORDINALITY \
              AS e(event_type, object_type, object_key, occurred_ms, source, changes, data, ord) \
         ORDER BY e.ord",
    )
    .bind(Json(events))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn quarantine(tx: &mut Transaction<'_, Postgres>, kind: ObjectKind, rejected: &[Rejected]) -> Result<(), StoreError> {
    let rows: Vec<Value> = rejected
        .iter()
        .map(|r| {
            let mut raw = r.raw.clone();
            if raw.len() > MAX_RECORD_BYTES {
                let cut = (0..=MAX_RECORD_BYTES).rev().find(|i| raw.is_char_boundary(*i)).unwrap_or(0);
                raw.truncate(cut);
                raw.push_str("…[truncated]");
            }
            json!({"key": r.key, "raw": raw, "error": r.error.to_string()})
        })
        .collect();
    sqlx::query(
        "INSERT INTO quarantine (object, key, fingerprint, raw, error) \
         SELECT $1, q.key, coalesce(q.key, md5(q.raw)), q.raw, q.error FROM jsonb_to_recordset($2) AS q(key text, raw text, error text) \
         ON CONFLICT (object, fingerprint) DO UPDATE SET raw = excluded.raw, error = excluded.error, \
             last_seen_at = now(), times_seen = quarantine.times_seen + 1",
    )
    .bind(kind.table())
    .bind(Json(Value::Array(rows)))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The API may list a record twice in one page when it changes mid-listing; the newest copy
/// wins (one row may not be upserted twice in one statement).
fn dedupe(records: Vec<Record>) -> Vec<Record> {
    let mut position: HashMap<String, usize> = HashMap::with_capacity(records.len());
    let mut out: Vec<Record> = Vec::with_capacity(records.len());
    for r in records {
        match position.get(&r.key) {
            Some(&i) if out[i].updated_ms >= r.updated_ms => {}
            Some(&i) => out[i] = r,
            None => {
                position.insert(r.key.clone(), out.len());
                out.push(r);
            }
        }
    }
    out
}

/// One element of the upsert's `jsonb_to_recordset` input. `raw` is the record's own text,
/// written as is: no tree is cloned or serialized again.
#[derive(serde::Serialize)]
struct RowOut<'a> {
    key: &'a str,
    created_at: Option<i64>,
    updated_at: Option<i64>,
    archived: bool,
    raw: &'a RawValue,
    #[serde(flatten)]
    columns: &'a serde_json::Map<String, Value>,
}

fn row_json(r: &Record) -> RowOut<'_> {
    RowOut { key: &r.key, created_at: r.created_ms, updated_at: r.updated_ms, archived: r.archived, raw: &r.text, columns: &r.columns }
}

/// `INSERT … SELECT FROM jsonb_to_recordset … ON CONFLICT DO UPDATE`, built once per object.
fn upsert_sql(kind: ObjectKind) -> &'static str {
    static CACHE: OnceLock<HashMap<ObjectKind, String>> = OnceLock::new();
    CACHE.get_or_init(|| ObjectKind::ALL.into_iter().map(|k| (k, build_upsert(k))).collect())[&kind].as_str()
}

fn build_upsert(kind: ObjectKind) -> String {
    let quote = |n: &str| format!("\"{n}\"");
    let typed = kind.columns();
    let mut targets =
        vec!["key", "created_at", "updated_at", "archived", "deleted_at", "raw"].into_iter().map(String::from).collect::<Vec<_>>();
    targets.extend(typed.iter().map(|c| quote(c.name)));
    targets.push("synced_at".into());

    let mut selects = vec![
        "r.key".to_owned(),
        "epoch_ms_to_timestamptz(r.created_at)".into(),
        "epoch_ms_to_timestamptz(r.updated_at)".into(),
        "coalesce(r.archived, false)".into(),
        "CASE WHEN r.archived THEN coalesce(epoch_ms_to_timestamptz(r.updated_at), now()) END".into(),
        "r.raw".into(),
    ];
    selects.extend(typed.iter().map(|c| match c.ty {
        ColumnType::Timestamp => format!("epoch_ms_to_timestamptz(r.{})", quote(c.name)),
        _ => format!("r.{}", quote(c.name)),
    }));
    selects.push("now()".into());

    let mut defs = vec!["key text", "created_at bigint", "updated_at bigint", "archived boolean", "raw jsonb"]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
    defs.extend(typed.iter().map(|c| {
        let ty = if c.ty == ColumnType::Timestamp { "bigint" } else { c.ty.sql() };
        format!("{} {ty}", quote(c.name))
    }));

    let table = kind.table();
    let mut sets: Vec<String> =
        targets.iter().filter(|t| !matches!(t.as_str(), "key" | "deleted_at")).map(|t| format!("{t} = excluded.{t}")).collect();
    // Keep the first time a record was seen archived; clear it when restored.
    sets.push(format!("deleted_at = CASE WHEN excluded.archived THEN coalesce({table}.deleted_at, excluded.deleted_at) END"));

    format!(
        "INSERT INTO {table} ({targets}) SELECT {selects} FROM jsonb_to_recordset($1) AS r({defs}) \
         ON CONFLICT (key) DO UPDATE SET {sets}",
        targets = targets.join(", "),
        selects = selects.join(", "),
        defs = defs.join(", "),
        sets = sets.join(", "),
    )
}
