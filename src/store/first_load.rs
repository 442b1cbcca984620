//! A first load's pages, their rows written by binary `COPY`: the object's table was empty
//! when the backfill began, so there are no stored rows to look up, lock or diff against,
//! and the rows go in as one `COPY`, which inserts in batches. Everything else is as in
//! [`write_page_in`](super::page::write_page_in): one transaction per page holding the lease
//! fence, rows, events, quarantine, run counters and cursor.
//!
//! The `created` events are not copied. Event writers take one lock, held until commit, so
//! that ids follow commit order (see the migration); during a first load that lock is the
//! bottleneck. The events go in last, by one `INSERT … SELECT` that reads each event's `data`
//! from the row just copied (the record's JSON crosses the wire and is parsed once) and adds
//! the page to its run's counters in the same statement, so the lock is held for that
//! statement and the commit, with no other round trip in between.
//!
//! A row that exists after all (a write-back or a resumed load got there first, or the API
//! listed a record twice) makes the `COPY` fail on the primary key; the page is then
//! written the ordinary way, which diffs it, and the caller stops trying `COPY`.

use std::sync::OnceLock;

use serde_json::Value;
use sqlx::{Postgres, Transaction};

use super::{
    copy::{CopyRows, OutOfRange},
    page::{self, PageOutcome, PageWrite},
    Store, StoreError,
};
use crate::{
    diff::{self, EventSource},
    object::{ColumnType, ObjectKind},
    record::Record,
};

/// How a first load's page was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FirstLoadWrite {
    /// By `COPY`.
    Copied(PageOutcome),
    /// The ordinary way, `COPY` having been refused: later pages should not try again.
    Upserted(PageOutcome),
}

impl FirstLoadWrite {
    pub fn outcome(&self) -> PageOutcome {
        match self {
            FirstLoadWrite::Copied(o) | FirstLoadWrite::Upserted(o) => *o,
        }
    }
}

impl Store {
    /// True when the object's table has no row: a backfill may then load it by `COPY`.
    pub async fn holds_no_rows(&self, kind: ObjectKind) -> Result<bool, StoreError> {
        Ok(sqlx::query_scalar(&format!("SELECT NOT EXISTS (SELECT 1 FROM {})", kind.table())).fetch_one(self.pool()).await?)
    }

    /// Writes one page of a first load into a table that was empty when the load began
    /// (see the module's documentation); the page is written whatever happens to the `COPY`.
    pub async fn write_first_load_page(&self, mut page: PageWrite<'_>) -> Result<FirstLoadWrite, StoreError> {
        let records = page::dedupe(std::mem::take(&mut page.records));
        match self.copy_page(&page, &records).await? {
            Some(outcome) => Ok(FirstLoadWrite::Copied(outcome)),
            None => {
                tracing::debug!(object = %page.kind, "a first load's page could not be copied (it met stored rows, or is no backfill's); written the ordinary way");
                Ok(FirstLoadWrite::Upserted(self.write_page(PageWrite { records, ..page }).await?))
            }
        }
    }

    /// The page by `COPY`, in one transaction; `None` when the server refused it (nothing
    /// of it is kept).
    async fn copy_page(&self, page: &PageWrite<'_>, records: &[Record]) -> Result<Option<PageOutcome>, StoreError> {
        let kind = page.kind;
        // Outside a backfill, a first sight is news whose events depend on what the record
        // holds (see `diff::diff`): such pages go the ordinary way.
        if page.source != EventSource::Backfill {
            return Ok(None);
        }
        let Ok(rows) = encode_rows(kind, records) else { return Ok(None) };
        let events = if page.emit_events { FirstSights::of(kind, records) } else { FirstSights::default() };
        let outcome = PageOutcome {
            records: (records.len() + page.rejected.len()) as u64,
            rows_written: records.len() as u64,
            events_written: events.keys.len() as u64,
            quarantined: page.rejected.len() as u64,
        };

        let mut tx = self.pool().begin().await?;
        if let Some(lease) = page.lease {
            super::lease::fence_in(&mut tx, lease).await?;
        }
        if !records.is_empty() {
            match copy_in(&mut tx, copy_rows_sql(kind), rows).await {
                Err(StoreError::Database(sqlx::Error::Database(refused))) => {
                    tracing::debug!(object = %kind, error = %refused, "COPY refused");
                    return Ok(None);
                }
                other => {
                    other?;
                }
            }
        }
        if !page.rejected.is_empty() {
            page::quarantine(&mut tx, kind, page.rejected).await?;
        }
        let keys: Vec<&str> = records.iter().map(|r| r.key.as_str()).collect();
        page::clear_quarantine_in(&mut tx, kind, &keys).await?;
        // Events last: their statement takes the events lock, held until commit.
        match (events.keys.is_empty(), page.run_id) {
            (false, run_id) => insert_events_from_rows(&mut tx, kind, &events, run_id, &outcome).await?,
            (true, Some(run_id)) => page::count_in_run(&mut tx, run_id, &outcome).await?,
            (true, None) => {}
        }
        if let Some(advance) = &page.advance {
            super::state::advance_in(&mut tx, kind, advance).await?;
        }
        tx.commit().await?;
        Ok(Some(outcome))
    }
}

async fn copy_in(tx: &mut Transaction<'_, Postgres>, statement: &str, data: Vec<u8>) -> Result<u64, StoreError> {
    let mut copy = tx.copy_in_raw(statement).await?;
    if let Err(e) = copy.send(data).await {
        // The server may already have said why; `abort` reads its answer.
        let _ = copy.abort("sending failed").await;
        return Err(e.into());
    }
    Ok(copy.finish().await?)
}

/// The events of a backfill's first sight of a page's records ([`diff::first_sight`]), as
/// the arrays their statement binds: none of them carries changes, and their `data` is read
/// from the rows.
#[derive(Default)]
struct FirstSights<'a> {
    types: Vec<&'a str>,
    keys: Vec<&'a str>,
    occurred_ms: Vec<i64>,
}

impl<'a> FirstSights<'a> {
    fn of(kind: ObjectKind, records: &'a [Record]) -> FirstSights<'a> {
        let types = first_sight_types(kind);
        let mut events = FirstSights {
            types: Vec::with_capacity(records.len() * types.len()),
            keys: Vec::with_capacity(records.len() * types.len()),
            occurred_ms: Vec::with_capacity(records.len() * types.len()),
        };
        for r in records {
            let occurred = page::occurred_ms(r);
            for event_type in types {
                events.types.push(event_type);
                events.keys.push(&r.key);
                events.occurred_ms.push(occurred);
            }
        }
        events
    }
}

/// `<singular>.<suffix>` for each of the object's [`diff::first_sight`] events, built once.
fn first_sight_types(kind: ObjectKind) -> &'static [String] {
    static CACHE: OnceLock<Vec<(ObjectKind, Vec<String>)>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| {
        ObjectKind::ALL
            .into_iter()
            .map(|k| (k, diff::first_sight(k).iter().map(|suffix| format!("{}.{suffix}", k.singular())).collect()))
            .collect()
    });
    cache.iter().find(|(k, _)| *k == kind).map(|(_, types)| types.as_slice()).expect("every kind is in ALL")
}

/// Inserts a first load's events, their `data` taken from the rows just copied (every event
/// of a first sight carries the record as it now is), and counts the page in its run: one
/// statement, as it runs under the events lock (see the module's documentation).
async fn insert_events_from_rows(
    tx: &mut Transaction<'_, Postgres>,
    kind: ObjectKind,
    events: &FirstSights<'_>,
    run_id: Option<i64>,
    outcome: &PageOutcome,
) -> Result<(), StoreError> {
    sqlx::query(events_from_rows_sql(kind))
        .bind(run_id)
        .bind(outcome.records as i32)
        .bind(outcome.rows_written as i32)
        .bind(outcome.events_written as i32)
        .bind(EventSource::Backfill.as_str())
        .bind(&events.types)
        .bind(&events.keys)
        .bind(&events.occurred_ms)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The statement of [`insert_events_from_rows`], built once per object.
fn events_from_rows_sql(kind: ObjectKind) -> &'static str {
    static CACHE: OnceLock<Vec<(ObjectKind, String)>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| {
        ObjectKind::ALL
            .into_iter()
            .map(|k| {
                let sql = format!(
                    "WITH run AS (UPDATE sync_runs SET pages = pages + 1, records_read = records_read + $2, rows_written = rows_written + $3, \
                     events_written = events_written + $4 WHERE id = $1) INSERT INTO events (event_type, object_type, object_key, occurred_at, source, data) \
                     SELECT e.event_type, '{singular}', e.object_key, (timestamptz 'epoch' + e.occurred_ms * interval '1 millisecond'), $5, \
                            (SELECT r.raw FROM {table} r WHERE r.key = e.object_key) \
                     FROM unnest($6::text[], $7::text[], $8::bigint[]) WITH ORDINALITY AS e(event_type, object_key, occurred_ms, ord) \
                     ORDER BY e.ord",
                    singular = k.singular(),
                    table = k.table()
                );
                (k, sql)
            })
            .collect()
    });
    cache.iter().find(|(k, _)| *k == kind).map(|(_, sql)| sql.as_str()).expect("every kind is in ALL")
}

/// The rows as [`upsert_sql`](super::page) would store them: the same columns, the same
/// conversions, `first_synced_at` and `synced_at` left to their defaults.
fn encode_rows(kind: ObjectKind, records: &[Record]) -> Result<Vec<u8>, OutOfRange> {
    let typed = kind.columns();
    let mut out = CopyRows::new();
    let stamp = |out: &mut CopyRows, ms: Option<i64>| match ms {
        Some(ms) => out.timestamptz_ms(ms),
        None => {
            out.null();
            Ok(())
        }
    };
    for r in records {
        out.row(6 + typed.len());
        out.text(&r.key);
        stamp(&mut out, r.created_ms)?;
        stamp(&mut out, r.updated_ms)?;
        out.bool(r.archived);
        // Archived: deleted since its last update (or now, without one).
        stamp(&mut out, r.archived.then(|| r.updated_ms.unwrap_or_else(|| chrono::Utc::now().timestamp_millis())))?;
        out.jsonb(r.text.get());
        for (column, value) in typed.iter().zip(&r.columns) {
            let value = Some(value).filter(|v| !v.is_null());
            match column.ty {
                ColumnType::Text => match value.and_then(Value::as_str) {
                    Some(s) => out.text(s),
                    None => out.null(),
                },
                ColumnType::Date => match value.and_then(Value::as_str) {
                    None => out.null(),
                    Some(s) => out.date(chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| OutOfRange)?),
                },
                ColumnType::BigInt => match value.and_then(Value::as_i64) {
                    Some(v) => out.bigint(v),
                    None => out.null(),
                },
                ColumnType::Timestamp => stamp(&mut out, value.and_then(Value::as_i64))?,
                ColumnType::Bool => match value.and_then(Value::as_bool) {
                    Some(v) => out.bool(v),
                    None => out.null(),
                },
                ColumnType::TextArray => match value.and_then(Value::as_array) {
                    None => out.null(),
                    Some(items) => out.text_array(items.iter().filter_map(Value::as_str)),
                },
            }
        }
    }
    Ok(out.finish())
}

/// `COPY <table> (<the upsert's columns>) FROM STDIN (FORMAT binary)`, built once per object.
fn copy_rows_sql(kind: ObjectKind) -> &'static str {
    static CACHE: OnceLock<Vec<(ObjectKind, String)>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| {
        ObjectKind::ALL
            .into_iter()
            .map(|k| {
                let mut columns: Vec<String> =
                    ["key", "created_at", "updated_at", "archived", "deleted_at", "raw"].map(String::from).to_vec();
                columns.extend(k.columns().iter().map(|c| format!("\"{}\"", c.name)));
                (k, format!("COPY {} ({}) FROM STDIN (FORMAT binary)", k.table(), columns.join(", ")))
            })
            .collect()
    });
    cache.iter().find(|(k, _)| *k == kind).map(|(_, sql)| sql.as_str()).expect("every kind is in ALL")
}
