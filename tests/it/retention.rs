//! Retention: old events go in small batches, but never one an active consumer or delivery
//! has not passed; finished write-back requests and old runs go too; `status` says what went.

use std::time::Duration;

use partnerstack_mirror::{
    config::Retention,
    diff::{EventSource, NewEvent},
    retention::{prune_once, RetentionSettings},
    store::{insert_events, Store},
};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::support;

const DAY: Duration = Duration::from_secs(86_400);

fn settings() -> RetentionSettings {
    RetentionSettings { events: Retention::Keep(90 * DAY), finished_requests: Retention::Keep(90 * DAY), runs: Retention::Keep(30 * DAY) }
}

/// `n` events, the first `old` of them detected 100 days ago.
async fn events(store: &Store, n: usize, old: i64) {
    let events: Vec<NewEvent> = (0..n)
        .map(|i| NewEvent {
            event_type: "deal.updated".into(),
            object_type: "deal",
            object_key: format!("deal_{i}"),
            occurred_ms: 1_700_000_000_000,
            source: EventSource::Poll,
            changes: None,
            data: serde_json::value::to_raw_value(&json!({"key": i})).unwrap(),
        })
        .collect();
    let mut tx = store.pool().begin().await.unwrap();
    insert_events(&mut tx, &events).await.unwrap();
    tx.commit().await.unwrap();
    sqlx::query("UPDATE events SET detected_at = now() - interval '100 days' WHERE id <= $1")
        .bind(old)
        .execute(store.pool())
        .await
        .unwrap();
}

async fn remaining(store: &Store) -> Vec<i64> {
    sqlx::query_scalar("SELECT id FROM events ORDER BY id").fetch_all(store.pool()).await.unwrap()
}

#[tokio::test]
async fn old_events_go_but_not_those_an_active_consumer_has_not_read() {
    let store = support::store().await;
    events(&store, 30, 20).await;
    store.commit_events("crm", 12).await.unwrap();
    prune_once(&store, settings(), &CancellationToken::new()).await.unwrap();
    assert_eq!(remaining(&store).await, (13..=30).collect::<Vec<_>>(), "old events crm has read went; the unread stayed");
    let report = store.status().await.unwrap().to_string();
    assert!(report.contains("pruned events: 12") && report.contains("consumer crm"), "{report}");

    // Once crm has read on, the rest of the old events go; young ones stay whatever it read.
    store.commit_events("crm", 30).await.unwrap();
    prune_once(&store, settings(), &CancellationToken::new()).await.unwrap();
    assert_eq!(remaining(&store).await, (21..=30).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_consumer_inactive_for_longer_than_the_retention_stops_protecting_and_is_reported() {
    let store = support::store().await;
    events(&store, 10, 6).await;
    store.commit_events("forgotten", 2).await.unwrap();
    sqlx::query("UPDATE event_consumers SET updated_at = now() - interval '120 days'").execute(store.pool()).await.unwrap();
    prune_once(&store, settings(), &CancellationToken::new()).await.unwrap();
    assert_eq!(remaining(&store).await, (7..=10).collect::<Vec<_>>());
    let note: Option<String> = sqlx::query_scalar("SELECT note FROM prunes WHERE target = 'events'").fetch_one(store.pool()).await.unwrap();
    assert!(note.unwrap_or_default().contains("consumer forgotten"), "the lapsed consumer is reported");
}

#[tokio::test]
async fn an_active_delivery_keeps_what_it_has_not_sent() {
    let store = support::store().await;
    events(&store, 10, 10).await;
    sqlx::query("INSERT INTO deliveries (name, position) VALUES ('crm-webhook', 4)").execute(store.pool()).await.unwrap();
    prune_once(&store, settings(), &CancellationToken::new()).await.unwrap();
    assert_eq!(remaining(&store).await, (5..=10).collect::<Vec<_>>());
}

#[tokio::test]
async fn forever_keeps_everything() {
    let store = support::store().await;
    events(&store, 5, 5).await;
    let keep_all = RetentionSettings { events: Retention::Forever, ..settings() };
    prune_once(&store, keep_all, &CancellationToken::new()).await.unwrap();
    assert_eq!(remaining(&store).await.len(), 5);
}

#[tokio::test]
async fn finished_requests_and_old_runs_go_and_open_ones_stay() {
    let store = support::store().await;
    sqlx::query(
        "INSERT INTO write_queue (operation, object_type, object_key, status, finished_at) VALUES \
         ('refresh', 'deal', 'a', 'succeeded', now() - interval '100 days'), \
         ('refresh', 'deal', 'b', 'failed', now() - interval '100 days'), \
         ('refresh', 'deal', 'c', 'succeeded', now() - interval '1 day'), \
         ('refresh', 'deal', 'd', 'pending', NULL)",
    )
    .execute(store.pool())
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO sync_runs (object, kind, started_at, outcome) VALUES \
         ('deals', 'poll', now() - interval '40 days', 'succeeded'), ('deals', 'poll', now(), 'succeeded')",
    )
    .execute(store.pool())
    .await
    .unwrap();
    prune_once(&store, settings(), &CancellationToken::new()).await.unwrap();
    let keys: Vec<String> =
        sqlx::query_scalar("SELECT object_key FROM write_queue ORDER BY object_key").fetch_all(store.pool()).await.unwrap();
    assert_eq!(keys, ["c", "d"]);
    let runs: i64 = sqlx::query_scalar("SELECT count(*) FROM sync_runs").fetch_one(store.pool()).await.unwrap();
    assert_eq!(runs, 1);
}
