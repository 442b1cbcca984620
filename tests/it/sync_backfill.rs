//! The first pass copies everything; the second one changes nothing.

use partnerstack_mirror::sync::Reading;
use std::collections::HashMap;

use partnerstack_mirror::object::{ColumnType, ObjectKind};
use serde_json::Value;

use crate::support::{self, listed_kinds};

async fn mirrored(store: &partnerstack_mirror::store::Store, kind: ObjectKind) -> HashMap<String, Value> {
    let rows: Vec<(String, sqlx::types::Json<Value>)> =
        sqlx::query_as(&format!("SELECT key, raw FROM {}", kind.table())).fetch_all(store.pool()).await.unwrap();
    rows.into_iter().map(|(k, v)| (k, v.0)).collect()
}

#[tokio::test]
async fn backfill_copies_every_record_of_every_object_field_by_field() {
    let sim = support::simulator(1_500, |_| {}).await;
    let store = support::store().await;
    let syncer = support::syncer(&store, &sim, 50, support::settings());

    support::sync_all(&syncer).await;

    for kind in listed_kinds() {
        let expected: HashMap<String, Value> =
            sim.simulator.records(kind).into_iter().map(|r| (r["key"].as_str().unwrap().to_owned(), r)).collect();
        assert!(!expected.is_empty(), "the simulator serves some {kind}");
        let actual = mirrored(&store, kind).await;
        assert_eq!(actual.len(), expected.len(), "{kind}: row count");
        for (key, record) in &expected {
            assert_eq!(actual.get(key), Some(record), "{kind} {key}");
        }
    }
}

/// Every typed column holds exactly what its path in `raw` says, converted.
#[tokio::test]
async fn typed_columns_match_the_raw_record_exactly() {
    let sim = support::simulator(800, |_| {}).await;
    let store = support::store().await;
    let syncer = support::syncer(&store, &sim, 250, support::settings());
    support::sync_all(&syncer).await;

    for kind in listed_kinds() {
        let mut checks = vec![
            "created_at IS DISTINCT FROM epoch_ms_to_timestamptz((raw->>'created_at')::bigint)".to_owned(),
            "(extract(epoch FROM updated_at) * 1000)::bigint IS DISTINCT FROM (raw->>'updated_at')::bigint".to_owned(),
            "archived IS DISTINCT FROM coalesce((raw->>'archived')::boolean, false)".to_owned(),
        ];
        for c in kind.columns() {
            let path = format!("'{{{}}}'", c.path.join(","));
            let col = format!("\"{}\"", c.name);
            checks.push(match c.ty {
                ColumnType::Text => format!("{col} IS DISTINCT FROM raw #>> {path}"),
                ColumnType::BigInt => format!("{col} IS DISTINCT FROM (raw #>> {path})::bigint"),
                ColumnType::Bool => format!("{col} IS DISTINCT FROM (raw #>> {path})::boolean"),
                ColumnType::Date => format!("{col} IS DISTINCT FROM (raw #>> {path})::date"),
                ColumnType::Timestamp => format!("{col} IS DISTINCT FROM epoch_ms_to_timestamptz((raw #>> {path})::bigint)"),
                ColumnType::TextArray => format!(
                    "{col} IS DISTINCT FROM CASE WHEN jsonb_typeof(raw #> {path}) = 'array' \
                     THEN ARRAY(SELECT jsonb_array_elements_text(raw #> {path})) END"
                ),
            });
        }
        for check in checks {
            let bad: i64 =
                sqlx::query_scalar(&format!("SELECT count(*) FROM {} WHERE {check}", kind.table())).fetch_one(store.pool()).await.unwrap();
            assert_eq!(bad, 0, "{kind}: {check}");
        }
    }
}

#[tokio::test]
async fn a_second_pass_reads_one_page_per_object_and_writes_nothing() {
    let sim = support::simulator(1_000, |_| {}).await;
    let store = support::store().await;
    let syncer = support::syncer(&store, &sim, 250, support::settings());
    support::sync_all(&syncer).await;
    let events_before = support::last_event_id(&store).await;
    let synced_before: Vec<(String, chrono::DateTime<chrono::Utc>)> =
        sqlx::query_as("SELECT key, synced_at FROM deals ORDER BY key").fetch_all(store.pool()).await.unwrap();

    let requests_before = syncer.api().requests_sent();
    let mut rows = 0;
    for kind in listed_kinds() {
        let report = syncer.sync_object(kind, Reading::Changes).await.unwrap();
        rows += report.totals.rows_written;
    }
    let requests = syncer.api().requests_sent() - requests_before;

    assert_eq!(rows, 0);
    assert_eq!(support::last_event_id(&store).await, events_before, "no event");
    // One request per listed object; team members are only walked by rescans.
    assert_eq!(requests, (ObjectKind::ALL.len() - 1) as u64);
    let synced_after: Vec<(String, chrono::DateTime<chrono::Utc>)> =
        sqlx::query_as("SELECT key, synced_at FROM deals ORDER BY key").fetch_all(store.pool()).await.unwrap();
    assert_eq!(synced_before, synced_after, "unchanged rows are not rewritten");
}

#[tokio::test]
async fn the_first_load_emits_created_events_marked_backfill_unless_switched_off() {
    let sim = support::simulator(400, |_| {}).await;
    let store = support::store().await;
    support::sync_all(&support::syncer(&store, &sim, 100, support::settings())).await;
    let (events, rows): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM events WHERE source = 'backfill' AND event_type = 'deal.created'), (SELECT count(*) FROM deals)",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(events, rows);
    assert!(rows > 0);

    let quiet = support::store().await;
    let settings = partnerstack_mirror::sync::SyncSettings { emit_backfill_events: false, ..support::settings() };
    support::sync_all(&support::syncer(&quiet, &sim, 100, settings)).await;
    assert_eq!(support::last_event_id(&quiet).await, 0);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM deals").fetch_one(quiet.pool()).await.unwrap();
    assert!(rows > 0);
}

#[tokio::test]
async fn every_typed_column_survives_the_trip_into_its_table() {
    use partnerstack_mirror::{diff::EventSource, record, store::PageWrite};
    let store = support::store().await;
    let sim = support::simulator(200, |_| {}).await;
    let mut partnership = sim.simulator.records(ObjectKind::Partnership)[0].clone();
    let awkward = ["quote \" inside", "back\\slash", "comma, too", "{braces}", "NULL", "", "ünïcödé"];
    partnership["tags"] = serde_json::json!(awkward);
    let mut deal = sim.simulator.records(ObjectKind::Deal)[0].clone();
    deal["close_date"] = "2024-02-29".into();
    deal["amount"] = 9_007_199_254_740_993_i64.into();
    for (kind, value) in [(ObjectKind::Partnership, partnership.clone()), (ObjectKind::Deal, deal.clone())] {
        let page = PageWrite {
            kind,
            records: vec![record::from_value(kind, value).unwrap()],
            rejected: &[],
            source: EventSource::Poll,
            emit_events: true,
            run_id: None,
            advance: None,
            lease: None,
        };
        store.write_page(page).await.unwrap();
    }
    let tags: Vec<String> = sqlx::query_scalar("SELECT tags FROM partnerships WHERE key = $1")
        .bind(partnership["key"].as_str())
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(tags, awkward);
    let (close_date, amount, raw): (String, i64, serde_json::Value) =
        sqlx::query_as("SELECT close_date::text, amount, raw FROM deals WHERE key = $1")
            .bind(deal["key"].as_str())
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert_eq!((close_date.as_str(), amount), ("2024-02-29", 9_007_199_254_740_993));
    assert_eq!(raw, deal, "raw is the record as the API sent it");
}
