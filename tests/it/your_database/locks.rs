//! DDL among readers (docs/your-database.md): a long BI transaction must never make every other reader of a
//! table queue behind the mirror's DDL for longer than a few seconds. The DDL waits
//! `DDL_LOCK_TIMEOUT` (or, for a first load's index drop, a second) and gives up; the daemon
//! tries again later.

use std::time::Duration;

use partnerstack_mirror::{
    config::Config,
    object::ObjectKind,
    store::{Store, StoreError},
};
use sqlx::{Connection, PgConnection};

use crate::support;

/// How long another reader may be held up: the DDL's lock timeout and some room.
const HELD_UP_AT_MOST: Duration = Duration::from_secs(8);

/// A session of its own on the store's schema (a BI tool's).
async fn session(store: &Store) -> PgConnection {
    let mut conn = PgConnection::connect(&support::database_url()).await.unwrap();
    sqlx::raw_sql(&format!("SET search_path = {}", store.schema())).execute(&mut conn).await.unwrap();
    conn
}

/// Waits until some session waits for a lock on `relation`.
async fn until_someone_waits_for(store: &Store, relation: &str) {
    let relation = format!("{}.{relation}", store.schema());
    support::eventually_paced(&format!("a lock request waiting on {relation}"), Duration::from_secs(10), Duration::from_millis(5), || {
        let relation = relation.clone();
        async move {
            let waiting: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_locks WHERE relation = $1::regclass AND NOT granted)")
                .bind(relation)
                .fetch_one(store.pool())
                .await
                .unwrap();
            waiting.then_some(())
        }
    })
    .await
}

/// Another reader of `relation` finishes while the long transaction is still open.
async fn another_reader_gets_through(store: &Store, relation: &str) {
    let mut reader = session(store).await;
    let sql = format!("SELECT count(*) FROM {relation}");
    let read = sqlx::query(&sql).execute(&mut reader);
    tokio::time::timeout(HELD_UP_AT_MOST, read)
        .await
        .unwrap_or_else(|_| panic!("a reader of {relation} was queued behind the mirror's DDL for more than {HELD_UP_AT_MOST:?}"))
        .unwrap();
}

#[tokio::test]
async fn a_first_loads_index_drop_gives_way_to_a_long_reader_and_other_readers_of_deals_pass() {
    let store = support::store().await;
    let mut bi = session(&store).await;
    sqlx::raw_sql("BEGIN; SELECT count(*) FROM deals").execute(&mut bi).await.unwrap();
    let defer = tokio::spawn({
        let store = store.clone();
        async move { store.defer_indexes(ObjectKind::Deal).await }
    });
    until_someone_waits_for(&store, "deals").await;
    another_reader_gets_through(&store, "deals").await;
    assert_eq!(defer.await.unwrap().unwrap(), 0, "the load kept its indexes rather than wait");
    sqlx::raw_sql("COMMIT").execute(&mut bi).await.unwrap();
}

#[tokio::test]
async fn the_reporting_layer_gives_way_to_a_long_reader_of_a_view_and_applies_once_it_is_gone() {
    let store = support::store().await;
    // A new version's views, to be applied at the next start.
    sqlx::query("UPDATE reporting_layer SET fingerprint = 'an older version'").execute(store.pool()).await.unwrap();
    let mut bi = session(&store).await;
    sqlx::raw_sql("BEGIN; SELECT count(*) FROM deals_current").execute(&mut bi).await.unwrap();
    let migrate = tokio::spawn({
        let store = store.clone();
        async move { store.migrate().await }
    });
    until_someone_waits_for(&store, "deals_current").await;
    another_reader_gets_through(&store, "deals_current").await;
    let gave_up = migrate.await.unwrap();
    assert!(matches!(gave_up, Err(StoreError::LockBusy { .. })), "{gave_up:?}");
    let stale: bool =
        sqlx::query_scalar("SELECT fingerprint = 'an older version' FROM reporting_layer").fetch_one(store.pool()).await.unwrap();
    assert!(stale, "nothing of the layer was applied half-way");

    sqlx::raw_sql("COMMIT").execute(&mut bi).await.unwrap();
    store.migrate().await.unwrap();
    let stale: bool =
        sqlx::query_scalar("SELECT fingerprint = 'an older version' FROM reporting_layer").fetch_one(store.pool()).await.unwrap();
    assert!(!stale, "applied once the reader was gone");
}

#[tokio::test]
async fn a_start_tries_a_migration_again_after_a_long_transaction_held_its_table() {
    let store = support::store().await;
    sqlx::query("UPDATE reporting_layer SET fingerprint = 'an older version'").execute(store.pool()).await.unwrap();
    let config = Config::from_toml(&format!("[database]\nurl = \"{}\"\nschema = \"{}\"", support::database_url(), store.schema())).unwrap();
    let mut bi = session(&store).await;
    sqlx::raw_sql("BEGIN; SELECT count(*) FROM leads_current").execute(&mut bi).await.unwrap();
    let start = tokio::spawn({
        let store = store.clone();
        async move { partnerstack_mirror::daemon::migrate(&store, &config).await }
    });
    until_someone_waits_for(&store, "leads_current").await;
    // The first try gave up (nobody waits any more) while the reader is still there.
    support::eventually("the first try to give up", HELD_UP_AT_MOST, || async {
        let waiting: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_locks WHERE relation = 'leads_current'::regclass AND NOT granted)")
                .fetch_one(store.pool())
                .await
                .unwrap();
        !waiting
    })
    .await;
    assert!(!start.is_finished(), "the start waits to try again");
    sqlx::raw_sql("COMMIT").execute(&mut bi).await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), start).await.expect("the next try succeeds").unwrap().unwrap();
    let stale: bool =
        sqlx::query_scalar("SELECT fingerprint = 'an older version' FROM reporting_layer").fetch_one(store.pool()).await.unwrap();
    assert!(!stale);
}
