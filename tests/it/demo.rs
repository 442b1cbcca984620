//! The quick start's first command: `demo` brings up a simulator, a database and the
//! daemon, mirrors the account, carries out a write-back queued with a plain INSERT,
//! mirrors changes the simulator announces by webhook, and runs a push until it converges.

use std::{process::Stdio, time::Duration};

use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::Command,
};

use crate::support;

/// Waits until the query `sql` answers true (a failing query counts as false).
async fn wait_for(what: &str, pool: &sqlx::PgPool, sql: &str) {
    support::eventually(what, Duration::from_secs(120), || async {
        sqlx::query_scalar::<_, bool>(sql).fetch_one(pool).await.unwrap_or(false)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_mirrors_the_account_and_carries_out_a_queued_write() {
    // The test run's server when DATABASE_URL is set, in a schema of its own; otherwise the
    // demo starts its own private server, as on a fresh machine.
    let schema = format!("demo_{}", std::process::id());
    let mut command = Command::new(env!("CARGO_BIN_EXE_partnerstack-mirror"));
    command.args(["demo", "--records", "400", "--schema", &schema]).stderr(Stdio::piped()).stdout(Stdio::null()).kill_on_drop(true);
    let mut demo = command.spawn().expect("spawn the demo");
    let mut lines = BufReader::new(demo.stderr.take().unwrap()).lines();

    // The demo prints the psql command to look at the mirror; it names the database.
    let url = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains(" psql '") {
                return line.rsplit('\'').nth(1).unwrap().to_owned();
            }
        }
        panic!("the demo ended without printing how to connect");
    })
    .await
    .expect("the demo says how to connect");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .after_connect({
            let schema = schema.clone();
            move |conn, _| {
                let set = format!("SET search_path = \"{schema}\"");
                Box::pin(async move { sqlx::Executor::execute(conn, set.as_str()).await.map(drop) })
            }
        })
        .connect(&url)
        .await
        .unwrap();
    wait_for("the backfill", &pool, "SELECT (SELECT count(*) FROM deals) > 0 AND (SELECT count(*) FROM customers) > 0").await;

    let deal: String = sqlx::query_scalar(
        "INSERT INTO write_queue (operation, object_type, object_key, payload) \
         SELECT 'update', 'deal', key, '{\"stage\": \"Closed Won\"}' FROM deals WHERE NOT archived LIMIT 1 RETURNING object_key",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    // The demo's push queues requests of its own (with idempotency keys); this one was queued by hand.
    wait_for(
        "the write-back",
        &pool,
        "SELECT bool_and(status NOT IN ('pending', 'running')) FROM write_queue WHERE idempotency_key IS NULL",
    )
    .await;
    let (status, error): (String, Option<String>) =
        sqlx::query_as("SELECT status, last_error FROM write_queue WHERE idempotency_key IS NULL").fetch_one(&pool).await.unwrap();
    assert_eq!(status, "succeeded", "{error:?}");
    let stage: String = sqlx::query_scalar("SELECT stage FROM deals WHERE key = $1").bind(&deal).fetch_one(&pool).await.unwrap();
    assert_eq!(stage, "Closed Won");
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE source = 'write_back' AND object_key = $1")
        .bind(&deal)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(events >= 1, "the write-back wrote its event");
    // The simulator sends each of its changes to the daemon as a webhook (5 a second here).
    wait_for("a change to arrive by webhook", &pool, "SELECT count(*) > 0 FROM events WHERE source = 'webhook'").await;
    // The write-back's events went to the demo's receiver, which accepts only webhooks whose
    // signature checks out (anything else would be retried, then dead-lettered).
    wait_for(
        "the write-back's webhook to be accepted",
        &pool,
        "SELECT EXISTS (SELECT 1 FROM events e JOIN deliveries d ON d.name = 'demo' AND e.id <= d.position \
                        WHERE e.event_type LIKE 'deal.%' AND e.source = 'write_back') \
                AND (SELECT last_sent_at IS NOT NULL FROM deliveries WHERE name = 'demo') \
                AND NOT EXISTS (SELECT 1 FROM delivery_dead_letters)",
    )
    .await;
    // The push tags every partner with a tier, and its write-backs land in the mirror.
    wait_for(
        "the demo's push to tag the partners",
        &pool,
        "SELECT EXISTS (SELECT 1 FROM push_runs WHERE push = 'tiers' AND outcome = 'changed') \
            AND EXISTS (SELECT 1 FROM events WHERE source = 'write_back' AND event_type = 'partnership.tags_updated') \
            AND NOT EXISTS (SELECT 1 FROM write_queue WHERE idempotency_key LIKE 'push:tiers:%' AND status = 'failed')",
    )
    .await;
    pool.close().await;

    let pid = demo.id().unwrap().to_string();
    assert!(Command::new("kill").args(["-INT", &pid]).status().await.unwrap().success());
    let status = tokio::time::timeout(Duration::from_secs(60), demo.wait()).await.expect("the demo stops on Ctrl-C").unwrap();
    assert!(status.success(), "{status}");
    if std::env::var_os("DATABASE_URL").is_some() {
        let store = support::store().await;
        sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE")).execute(store.pool()).await.unwrap();
    }
}
