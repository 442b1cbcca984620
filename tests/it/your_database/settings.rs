//! Their settings, our sessions (docs/your-database.md): a DBA's role-level `statement_timeout`,
//! `lock_timeout` and `idle_in_transaction_session_timeout` do not cut the mirror's long work
//! short: its sessions set their own.

use std::{borrow::Cow, time::Duration};

use partnerstack_mirror::{
    config::Retention,
    retention::{prune_once, RetentionSettings},
    store::{Store, MIGRATOR},
};
use sqlx::{migrate::Migrator, Connection, PgConnection};
use tokio_util::sync::CancellationToken;

use super::Scratch;
use crate::support;

/// The mirror's role as a DBA of a managed service sets it up: short timeouts for everyone.
async fn strict_role(scratch: &Scratch) -> String {
    let mirror = scratch.prepared_schema("ps").await;
    sqlx::raw_sql(&format!(
        "ALTER ROLE {mirror} SET statement_timeout = '2s'; ALTER ROLE {mirror} SET lock_timeout = '1s'; \
         ALTER ROLE {mirror} SET idle_in_transaction_session_timeout = '5s'"
    ))
    .execute(&mut scratch.dba().await)
    .await
    .unwrap();
    mirror
}

#[tokio::test]
async fn the_mirrors_sessions_set_their_own_timeouts_over_the_roles() {
    let scratch = Scratch::new().await;
    let mirror = strict_role(&scratch).await;
    let mut plain = scratch.connect_as(&mirror).await;
    let (statement, lock, idle): (String, String, String) = sqlx::query_as(
        "SELECT current_setting('statement_timeout'), current_setting('lock_timeout'), current_setting('idle_in_transaction_session_timeout')",
    )
    .fetch_one(&mut plain)
    .await
    .unwrap();
    assert_eq!((statement.as_str(), lock.as_str(), idle.as_str()), ("2s", "1s", "5s"), "the role's settings apply to its sessions");

    let store = Store::connect_with_statement_timeout(&scratch.url_as(&mirror), "ps", 3, Some(Duration::from_secs(45))).await.unwrap();
    for _ in 0..3 {
        let mut conn = store.pool().acquire().await.unwrap();
        let (statement, lock, idle, path): (String, String, String, String) = sqlx::query_as(
            "SELECT current_setting('statement_timeout'), current_setting('lock_timeout'), \
                    current_setting('idle_in_transaction_session_timeout'), current_setting('search_path')",
        )
        .fetch_one(&mut *conn)
        .await
        .unwrap();
        assert_eq!((statement.as_str(), lock.as_str(), idle.as_str()), ("45s", "0", "0"));
        assert_eq!(path, "ps");
    }
    store.migrate().await.unwrap();
    // The migration's own settings stayed with the migration.
    let after: String = sqlx::query_scalar("SELECT current_setting('lock_timeout')").fetch_one(store.pool()).await.unwrap();
    assert_eq!(after, "0");
}

#[tokio::test]
async fn a_backfill_with_index_builds_retention_and_an_upgrade_complete_under_a_dbas_short_timeouts() {
    let scratch = Scratch::new().await;
    let mirror = strict_role(&scratch).await;
    // The mirror as the previous version left it: migrations up to 15.
    let previous = Migrator {
        migrations: Cow::Owned(MIGRATOR.iter().filter(|m| m.version <= 15).cloned().collect()),
        ignore_missing: false,
        locking: true,
        no_tx: false,
    };
    let mut conn = PgConnection::connect(&scratch.url_as(&mirror)).await.unwrap();
    // The previous version set its own timeouts for migrations too.
    sqlx::raw_sql("SET search_path = ps; SET statement_timeout = 0; SET lock_timeout = 0").execute(&mut conn).await.unwrap();
    previous.run(&mut conn).await.unwrap();
    conn.close().await.unwrap();

    let store = Store::connect(&scratch.url_as(&mirror), "ps", 6).await.unwrap();
    store.migrate().await.unwrap();
    assert!(store.migrations_current().await.unwrap());
    let sim = support::simulator(3_000, |_| {}).await;
    let syncer = support::syncer(&store, &sim, 250, support::settings());
    support::sync_all(&syncer).await;
    let deals: i64 = sqlx::query_scalar("SELECT count(*) FROM deals").fetch_one(store.pool()).await.unwrap();
    assert!(deals > 100);
    let deferred: i64 = sqlx::query_scalar("SELECT count(*) FROM deferred_indexes").fetch_one(store.pool()).await.unwrap();
    assert_eq!(deferred, 0, "every index the first load put off was built");
    assert_eq!(support::index_definitions(&store).await.len(), support::index_definitions(&support::store().await).await.len());

    let retention = RetentionSettings {
        events: Retention::Keep(Duration::from_millis(1)),
        finished_requests: Retention::Keep(Duration::from_millis(1)),
        runs: Retention::Keep(Duration::from_millis(1)),
    };
    prune_once(&store, retention, &CancellationToken::new()).await.unwrap();
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(store.pool()).await.unwrap();
    assert_eq!(events, 0, "retention pruned every event (no consumer keeps them)");
}
