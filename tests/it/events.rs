//! The consumer guarantee: reading `WHERE id > $last ORDER BY id` sees every event once,
//! in commit order, even while several transactions write events at once.

use std::{
    cell::{Cell, RefCell},
    collections::BTreeSet,
    time::Duration,
};

use partnerstack_mirror::{
    diff::{EventSource, NewEvent},
    store::{insert_events, Store},
};
use rand::Rng;
use serde_json::json;

use crate::support;

fn event(n: usize) -> NewEvent {
    NewEvent {
        event_type: "deal.updated".into(),
        object_type: "deal",
        object_key: format!("deal_{n}"),
        occurred_ms: 1_700_000_000_000,
        source: EventSource::Poll,
        changes: Some(json!({})),
        data: serde_json::value::to_raw_value(&json!({"key": format!("deal_{n}")})).unwrap(),
    }
}

/// Writers hold their transaction open for a random while after inserting, so later ids
/// would commit before earlier ones if ids were not handed out in commit order.
async fn writer(store: Store, writer: usize, transactions: usize) {
    for t in 0..transactions {
        let mut tx = store.pool().begin().await.unwrap();
        let events: Vec<NewEvent> = (0..3).map(|i| event(writer * 10_000 + t * 10 + i)).collect();
        insert_events(&mut tx, &events).await.unwrap();
        let pause = rand::thread_rng().gen_range(0..8);
        sqlx::query("SELECT pg_sleep($1)").bind(pause as f64 / 1000.0).execute(&mut *tx).await.unwrap();
        tx.commit().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_event_writers_never_let_a_reader_skip_an_id() {
    let store = support::store().await;
    let (writers, transactions) = (6, 25);
    let handles: Vec<_> = (0..writers).map(|w| tokio::spawn(writer(store.clone(), w, transactions))).collect();

    let expected = writers * transactions * 3;
    // The reader polls as fast as it can, to race the writers' commits.
    let (seen, last) = (RefCell::new(Vec::<i64>::new()), Cell::new(0_i64));
    support::eventually_paced("the reader to see every event", Duration::from_secs(60), Duration::ZERO, || async {
        let ids: Vec<i64> =
            sqlx::query_scalar("SELECT id FROM events WHERE id > $1 ORDER BY id").bind(last.get()).fetch_all(store.pool()).await.unwrap();
        if let Some(&max) = ids.last() {
            last.set(max);
        }
        let mut seen = seen.borrow_mut();
        seen.extend(ids);
        (seen.len() >= expected).then_some(())
    })
    .await;
    let seen = seen.into_inner();
    for h in handles {
        h.await.unwrap();
    }

    let all: Vec<i64> = sqlx::query_scalar("SELECT id FROM events ORDER BY id").fetch_all(store.pool()).await.unwrap();
    assert_eq!(seen, all, "the polling reader saw every id exactly once, in order");
    assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), expected);
}

#[tokio::test]
async fn listeners_are_notified_when_events_commit() {
    let store = support::store().await;
    let mut listener = sqlx::postgres::PgListener::connect_with(store.pool()).await.unwrap();
    listener.listen("partnerstack_events").await.unwrap();

    let mut tx = store.pool().begin().await.unwrap();
    insert_events(&mut tx, &[event(1), event(2)]).await.unwrap();
    tx.commit().await.unwrap();

    // Other tests share the database (each in its own schema): wait for ours.
    let ours = async { while listener.recv().await.unwrap().payload() != store.schema() {} };
    tokio::time::timeout(Duration::from_secs(10), ours).await.expect("notified in time");
}

fn tail_command(store: &Store, args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_partnerstack-mirror"));
    command
        .args(["--config", "/dev/null", "events", "tail"])
        .args(args)
        .env("DATABASE_URL", support::database_url())
        .env("PSM_DATABASE__SCHEMA", store.schema())
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true);
    command
}

#[tokio::test]
async fn events_tail_prints_json_lines_after_an_id_filtered_by_type() {
    let store = support::store().await;
    let mut tx = store.pool().begin().await.unwrap();
    let mut lead = event(9);
    lead.event_type = "lead.approved".into();
    lead.object_type = "lead";
    insert_events(&mut tx, &[event(1), lead, event(2), event(3)]).await.unwrap();
    tx.commit().await.unwrap();

    let output = tail_command(&store, &["--after", "1", "--type", "deal.*"]).output().await.unwrap();
    assert!(output.status.success());
    let lines: Vec<serde_json::Value> =
        String::from_utf8(output.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let ids: Vec<i64> = lines.iter().map(|l| l["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, [3, 4], "after id 1, deal events only, in order");
    assert_eq!(lines[0]["event_type"], "deal.updated");
    assert_eq!(lines[0]["data"]["key"], "deal_2");
}

#[tokio::test]
async fn events_tail_follow_prints_new_events_as_they_commit() {
    use tokio::io::AsyncBufReadExt;
    let store = support::store().await;
    let mut child = tail_command(&store, &["--follow"]).spawn().unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();

    for n in 1..=3 {
        let mut tx = store.pool().begin().await.unwrap();
        insert_events(&mut tx, &[event(n)]).await.unwrap();
        tx.commit().await.unwrap();
        let line = tokio::time::timeout(Duration::from_secs(15), lines.next_line()).await.expect("printed in time").unwrap().unwrap();
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["object_key"], format!("deal_{n}"));
    }
    child.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_named_consumer_reading_next_events_while_writers_commit_misses_nothing() {
    let store = support::store().await;
    let (writers, transactions) = (6, 25);
    let handles: Vec<_> = (0..writers).map(|w| tokio::spawn(writer(store.clone(), w, transactions))).collect();

    let expected = writers * transactions * 3;
    // The consumer reads as fast as it can, to race the writers' commits.
    let seen = RefCell::new(Vec::<i64>::new());
    support::eventually_paced("the consumer to see every event", Duration::from_secs(60), Duration::ZERO, || async {
        let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM next_events('crm', 40)").fetch_all(store.pool()).await.unwrap();
        if let Some(&max) = ids.last() {
            let committed: i64 = sqlx::query_scalar("SELECT commit_events('crm', $1)").bind(max).fetch_one(store.pool()).await.unwrap();
            assert_eq!(committed, max);
        }
        assert!(ids.len() <= 40, "at most max events per call");
        let mut seen = seen.borrow_mut();
        seen.extend(ids);
        (seen.len() >= expected).then_some(())
    })
    .await;
    let seen = seen.into_inner();
    for h in handles {
        h.await.unwrap();
    }
    let all: Vec<i64> = sqlx::query_scalar("SELECT id FROM events ORDER BY id").fetch_all(store.pool()).await.unwrap();
    assert_eq!(seen, all, "every event exactly once, in id order");
}

#[tokio::test]
async fn a_consumers_position_only_moves_forward_and_is_created_on_first_use() {
    let store = support::store().await;
    let mut tx = store.pool().begin().await.unwrap();
    insert_events(&mut tx, &(1..=5).map(event).collect::<Vec<_>>()).await.unwrap();
    tx.commit().await.unwrap();

    let first: Vec<i64> = sqlx::query_scalar("SELECT id FROM next_events('new', 2)").fetch_all(store.pool()).await.unwrap();
    assert_eq!(first, [1, 2], "a consumer never seen starts at the beginning");
    assert_eq!(store.consumer_position("new").await.unwrap(), None, "reading does not create it");
    assert_eq!(store.commit_events("new", 4).await.unwrap(), 4);
    assert_eq!(store.commit_events("new", 2).await.unwrap(), 4, "a late commit does not move it back");
    let typo = store.commit_events("new", 50).await.expect_err("a position past the newest event");
    let said = partnerstack_mirror::telemetry::error_chain(&typo);
    assert!(said.contains("50 is past the newest event (5)"), "{said}");
    assert_eq!(store.consumer_position("new").await.unwrap(), Some(4), "the refused commit moved nothing");
    let rest: Vec<i64> = sqlx::query_scalar("SELECT id FROM next_events('new', 100)").fetch_all(store.pool()).await.unwrap();
    assert_eq!(rest, [5]);

    let consumers = store.consumers().await.unwrap();
    assert_eq!(consumers.len(), 1);
    assert_eq!((consumers[0].name.as_str(), consumers[0].position, consumers[0].lag), ("new", 4, 1));
    assert!(consumers[0].oldest_unread_age_seconds.is_some());
}

#[tokio::test]
async fn events_tail_with_a_consumer_resumes_where_it_left_off() {
    let store = support::store().await;
    let mut tx = store.pool().begin().await.unwrap();
    insert_events(&mut tx, &(1..=3).map(event).collect::<Vec<_>>()).await.unwrap();
    tx.commit().await.unwrap();

    let ids = |output: std::process::Output| -> Vec<i64> {
        assert!(output.status.success());
        String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["id"].as_i64().unwrap())
            .collect()
    };
    let output = tail_command(&store, &["--consumer", "ops"]).output().await.unwrap();
    let line = String::from_utf8_lossy(&output.stdout).lines().next().unwrap().to_owned();
    assert!(!line.contains(": ") && !line.contains(", "), "compact JSON: {line}");
    assert_eq!(ids(output), [1, 2, 3]);
    assert_eq!(store.consumer_position("ops").await.unwrap(), Some(3));

    let mut tx = store.pool().begin().await.unwrap();
    insert_events(&mut tx, &[event(4)]).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(ids(tail_command(&store, &["--consumer", "ops"]).output().await.unwrap()), [4], "resumes after its position");
    assert_eq!(ids(tail_command(&store, &["--consumer", "ops"]).output().await.unwrap()), Vec::<i64>::new());
}
