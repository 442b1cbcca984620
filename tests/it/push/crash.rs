//! Exactly once across SIGKILL: the real daemon, running a push, is killed after the push
//! queued its requests and before any was sent, and while a create was at the API without
//! its answer; a second daemon finishes the work, and each change reached the API once.

use partnerstack_simulator::Fault;

use super::{bad_input::toml_push, *};

/// The real daemon with `push`, `workers` write-back workers and short leases.
fn daemon(sim: &RunningSimulator, store: &Store, push: &str, workers: usize) -> tokio::process::Child {
    support::daemon(
        sim,
        store,
        &[
            ("PSM_PUSH", push.to_owned()),
            ("PSM_QUEUE__WORKERS", workers.to_string()),
            ("PSM_QUEUE__LEASE", "2s".into()),
            ("PSM_QUEUE__LOOKUP_GRACE", "0s".into()),
        ],
    )
}

/// Push requests by status.
async fn statuses(store: &Store, push: &str) -> Vec<String> {
    queued(store, push).await.into_iter().map(|(.., status)| status).collect()
}

/// Waits until every request of `push` succeeded and a run after the last of them found
/// nothing to do (the daemon's next run saw them land).
async fn settled(store: &Store, push: &str) {
    support::eventually("the push's requests to land and a later run to find nothing to do", PATIENCE, || async {
        let done: bool = sqlx::query_scalar(
            "SELECT NOT EXISTS (SELECT 1 FROM write_queue WHERE idempotency_key LIKE 'push:' || $1 || ':%' AND status <> 'succeeded') \
                AND EXISTS (SELECT 1 FROM push_runs r WHERE r.push = $1 AND r.outcome = 'unchanged' AND r.in_flight = 0 AND r.changes = 0 \
                              AND r.started_at > (SELECT max(finished_at) FROM write_queue WHERE idempotency_key LIKE 'push:' || $1 || ':%'))",
        )
        .bind(push)
        .fetch_one(store.pool())
        .await
        .unwrap();
        done
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_killed_between_queuing_and_sending_leaves_each_change_sent_once() {
    let (sim, store, _) = mirrored(300).await;
    let schema = store.schema().to_owned();
    let push = toml_push(&[
        ("name", "tiers"),
        ("object", "partnerships"),
        ("query", &format!("SELECT key, ARRAY['tier:' || CASE WHEN claimed THEN 'gold' ELSE 'silver' END] AS tags FROM {schema}.partnerships WHERE deleted_at IS NULL")),
        ("manage_tags", "tier:*"),
        ("max_changes", "100000"),
        ("interval", "300ms"),
    ]);
    let live: i64 = sqlx::query_scalar("SELECT count(*) FROM partnerships WHERE deleted_at IS NULL").fetch_one(store.pool()).await.unwrap();

    // The first daemon has no workers: its push queues, and nothing is sent.
    let mut first = daemon(&sim, &store, &push, 0);
    support::eventually("the first daemon's push to queue its requests", PATIENCE, || async {
        statuses(&store, "tiers").await.len() as i64 == live
    })
    .await;
    first.kill().await.unwrap();
    assert!(writes(&sim).iter().all(|(_, path)| !path.ends_with("/tags")), "nothing was sent before the kill");

    let mut second = daemon(&sim, &store, &push, 1);
    settled(&store, "tiers").await;
    second.kill().await.unwrap();

    assert_eq!(statuses(&store, "tiers").await.len() as i64, live, "no change was queued twice");
    let mut sent: Vec<String> = writes(&sim).into_iter().filter(|(_, path)| path.ends_with("/tags")).map(|(_, path)| path).collect();
    sent.sort();
    let before = sent.len();
    sent.dedup();
    assert_eq!((before, sent.len() as i64), (sent.len(), live), "each partnership's tags were sent once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_killed_while_its_create_waits_for_the_answer_leaves_exactly_one_transaction() {
    let (sim, store, _) = mirrored(300).await;
    let billing = format!("{}_billing", store.schema());
    let customer: String = sqlx::query_scalar("SELECT customer_key FROM customers WHERE customer_key IS NOT NULL ORDER BY key LIMIT 1")
        .fetch_one(store.pool())
        .await
        .unwrap();
    execute(
        &store,
        &format!(
            "CREATE TABLE {billing} (number text, customer text, cents bigint);
             INSERT INTO {billing} VALUES ('inv-killed-1', '{customer}', 4200);"
        ),
    )
    .await;
    let push = toml_push(&[
        ("name", "invoices"),
        ("object", "transactions"),
        ("query", &format!("SELECT number AS key, customer AS customer_external_key, cents AS amount, 'USD' AS currency FROM {billing}")),
        ("interval", "300ms"),
    ]);
    // The create lands at the API, and its answer never comes back.
    sim.simulator.inject(Fault::ApplyThenHang, 1);

    let mut first = daemon(&sim, &store, &push, 1);
    support::eventually_paced("the first daemon to send the create", PATIENCE, Duration::from_millis(10), || async {
        writes(&sim).iter().any(|(method, _)| method == "POST").then_some(())
    })
    .await;
    first.kill().await.unwrap();

    let mut second = daemon(&sim, &store, &push, 1);
    settled(&store, "invoices").await;
    second.kill().await.unwrap();

    let posts = writes(&sim).into_iter().filter(|(method, _)| method == "POST").count();
    assert_eq!(posts, 1, "the create was sent once");
    let at_api = sim.simulator.records(ObjectKind::Transaction).into_iter().filter(|t| t["key"] == "inv-killed-1").count();
    assert_eq!(at_api, 1, "exactly one transaction");
    let requests: Vec<(String, i32)> =
        sqlx::query_as("SELECT status, attempts FROM write_queue WHERE idempotency_key LIKE 'push:invoices:%'")
            .fetch_all(store.pool())
            .await
            .unwrap();
    assert_eq!(requests, [("succeeded".to_owned(), 2)], "one request: sent, then looked up and found by the second daemon");
    let mirrored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM transactions WHERE key = 'inv-killed-1'").fetch_one(store.pool()).await.unwrap();
    assert_eq!(mirrored, 1);
}
