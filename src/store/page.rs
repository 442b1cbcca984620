//! Writing one page of API records: rows, events, quarantine, progress and (at the end of a
//! window) the cursor, all in one transaction, so a crash anywhere loses nothing and a
//! retry duplicates nothing.

use std::{collections::HashMap, sync::OnceLock};

use serde_json::{json, Value};
use sqlx::{types::Json, Postgres, Transaction};

use super::{epoch_ms_sql, state::CursorAdvance, Store, StoreError};
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
        super::lease::fence_in(tx, lease).await?;
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
        // The record's tree is needed to compare it with a stored one and for its events.
        let new = (old.is_some() || page.emit_events).then(|| record.value());
        if old.is_some() && old == new.as_ref() && !vanished {
            continue;
        }
        if let (true, Some(new)) = (page.emit_events, &new) {
            let occurred = occurred_ms(record);
            events.extend(diff::diff(kind, old, new, &record.text, occurred, page.source));
            if vanished {
                events.push(diff::reappeared(kind, new, &record.text, occurred, page.source));
            }
        }
        changed.push(record);
    }

    let rows_written = changed.len();
    if !changed.is_empty() {
        bind_rows(sqlx::query(upsert_sql(kind)), kind, &changed).execute(&mut **tx).await?;
    }
    if !page.rejected.is_empty() {
        quarantine(tx, kind, page.rejected).await?;
    }
    clear_quarantine_in(tx, kind, &keys).await?;
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
        count_in_run(tx, run_id, &outcome).await?;
    }
    if let Some(advance) = page.advance {
        super::state::advance_in(tx, kind, &advance).await?;
    }
    Ok(outcome)
}

/// Inserts events in the given order; their ids follow that order.
pub async fn insert_events(tx: &mut Transaction<'_, Postgres>, events: &[NewEvent]) -> Result<(), StoreError> {
    // One array per column, like the rows: only `changes` and `data` are parsed as JSON.
    sqlx::query(
        "INSERT INTO events (event_type, object_type, object_key, occurred_at, source, changes, data) \
         SELECT e.event_type, e.object_type, e.object_key, (timestamptz 'epoch' + e.occurred_ms * interval '1 millisecond'), \
                e.source, e.changes, e.data \
         FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::jsonb[], $7::jsonb[]) WITH ORDINALITY \
              AS e(event_type, object_type, object_key, occurred_ms, source, changes, data, ord) \
         ORDER BY e.ord",
    )
    .bind(events.iter().map(|e| e.event_type.as_str()).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.object_type).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.object_key.as_str()).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.occurred_ms).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.source.as_str()).collect::<Vec<_>>())
    .bind(events.iter().map(|e| e.changes.as_ref().map(Json)).collect::<Vec<_>>())
    .bind(events.iter().map(|e| Json(e.data.as_ref())).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A clean copy of a record ends its quarantine.
pub(super) async fn clear_quarantine_in(tx: &mut Transaction<'_, Postgres>, kind: ObjectKind, keys: &[&str]) -> Result<(), StoreError> {
    if !keys.is_empty() {
        sqlx::query("DELETE FROM quarantine WHERE object = $1 AND fingerprint = ANY($2)")
            .bind(kind.table())
            .bind(keys)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Adds one page's outcome to its run's counters.
pub(super) async fn count_in_run(tx: &mut Transaction<'_, Postgres>, run_id: i64, outcome: &PageOutcome) -> Result<(), StoreError> {
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
    Ok(())
}

/// When a record's change happened, for its events: its `updated_at`, else its
/// `created_at`, else now.
pub(super) fn occurred_ms(record: &Record) -> i64 {
    record.updated_ms.or(record.created_ms).unwrap_or_else(|| chrono::Utc::now().timestamp_millis())
}

pub(super) async fn quarantine(tx: &mut Transaction<'_, Postgres>, kind: ObjectKind, rejected: &[Rejected]) -> Result<(), StoreError> {
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
pub(super) fn dedupe(records: Vec<Record>) -> Vec<Record> {
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

/// Binds a page's rows as one array per column, in the order [`build_upsert`] unnests them:
/// the server then parses only each record's `raw` (as `jsonb`), and nothing has to be pulled
/// out of a JSON batch.
fn bind_rows<'q>(
    mut query: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    kind: ObjectKind,
    rows: &[&'q Record],
) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
    query = query
        .bind(rows.iter().map(|r| r.key.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.created_ms).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.updated_ms).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.archived).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| Json(r.text.as_ref())).collect::<Vec<_>>());
    for (i, column) in kind.columns().iter().enumerate() {
        let values = rows.iter().map(|r| Some(&r.columns[i]).filter(|v| !v.is_null()));
        query = match column.ty {
            ColumnType::Text | ColumnType::Date => query.bind(values.map(|v| v.and_then(Value::as_str)).collect::<Vec<_>>()),
            ColumnType::BigInt | ColumnType::Timestamp => query.bind(values.map(|v| v.and_then(Value::as_i64)).collect::<Vec<_>>()),
            ColumnType::Bool => query.bind(values.map(|v| v.and_then(Value::as_bool)).collect::<Vec<_>>()),
            ColumnType::TextArray => query.bind(values.map(|v| v.and_then(Value::as_array).map(|a| array_literal(a))).collect::<Vec<_>>()),
        };
    }
    query
}

/// A `text[]` literal (`{"a","b"}`) for one row's array column: arrays of arrays cannot be
/// unnested row by row, so each travels as text and is cast back in SQL.
fn array_literal(items: &[Value]) -> String {
    let quoted: Vec<String> =
        items.iter().filter_map(Value::as_str).map(|s| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))).collect();
    format!("{{{}}}", quoted.join(","))
}

/// `INSERT … SELECT FROM unnest(<one array per column>) … ON CONFLICT DO UPDATE`, built once per
/// object.
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
        epoch_ms_sql("r.created_at"),
        epoch_ms_sql("r.updated_at"),
        "coalesce(r.archived, false)".into(),
        format!("CASE WHEN r.archived THEN coalesce({}, now()) END", epoch_ms_sql("r.updated_at")),
        "r.raw".into(),
    ];
    selects.extend(typed.iter().map(|c| match c.ty {
        ColumnType::Timestamp => epoch_ms_sql(&format!("r.{}", quote(c.name))),
        ColumnType::Date => format!("r.{}::date", quote(c.name)),
        ColumnType::TextArray => format!("r.{}::text[]", quote(c.name)),
        _ => format!("r.{}", quote(c.name)),
    }));
    selects.push("now()".into());

    // `unnest` parameters and the names its columns take, in the order `bind_rows` binds them.
    let mut arrays: Vec<String> =
        ["text", "bigint", "bigint", "boolean", "jsonb"].iter().enumerate().map(|(i, t)| format!("${}::{t}[]", i + 1)).collect();
    let mut names: Vec<String> = ["key", "created_at", "updated_at", "archived", "raw"].map(String::from).to_vec();
    for c in typed {
        let ty = match c.ty {
            ColumnType::Timestamp | ColumnType::BigInt => "bigint",
            ColumnType::Bool => "boolean",
            ColumnType::Text | ColumnType::Date | ColumnType::TextArray => "text",
        };
        arrays.push(format!("${}::{ty}[]", arrays.len() + 1));
        names.push(quote(c.name));
    }

    let table = kind.table();
    let mut sets: Vec<String> =
        targets.iter().filter(|t| !matches!(t.as_str(), "key" | "deleted_at")).map(|t| format!("{t} = excluded.{t}")).collect();
    // Keep the first time a record was seen archived; clear it when restored.
    sets.push(format!("deleted_at = CASE WHEN excluded.archived THEN coalesce({table}.deleted_at, excluded.deleted_at) END"));

    format!(
        "INSERT INTO {table} ({targets}) SELECT {selects} FROM unnest({arrays}) AS r({names}) \
         ON CONFLICT (key) DO UPDATE SET {sets}",
        targets = targets.join(", "),
        selects = selects.join(", "),
        arrays = arrays.join(", "),
        names = names.join(", "),
        sets = sets.join(", "),
    )
}
