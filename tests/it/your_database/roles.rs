//! Roles (docs/your-database.md): readers read, consumers also consume events through the functions,
//! writers also queue and cancel write-backs, and nobody else gets anything. Each test
//! connects as the role and checks both what it may and what it may not do.

use partnerstack_mirror::store::{Roles, Store, StoreError};
use sqlx::PgConnection;

use super::{allowed, binary_as, refused, Scratch};
use crate::support;

/// A mirror in schema `ps` owned by its own role, synced, with `roles` granted.
async fn mirror_with(scratch: &Scratch, roles: &Roles) -> Store {
    let mirror = scratch.prepared_schema("ps").await;
    let store = scratch.store_as(&mirror, "ps").await;
    let sim = support::simulator(40, |_| {}).await;
    support::sync_all(&support::syncer(&store, &sim, 250, support::settings())).await;
    store.grant(roles).await.unwrap();
    store
}

async fn relations(conn: &mut PgConnection) -> Vec<String> {
    sqlx::query_scalar("SELECT relname::text FROM pg_class WHERE relnamespace = 'ps'::regnamespace AND relkind IN ('r', 'v') ORDER BY 1")
        .fetch_all(conn)
        .await
        .unwrap()
}

async fn a_deal(store: &Store) -> String {
    sqlx::query_scalar("SELECT key FROM deals ORDER BY key LIMIT 1").fetch_one(store.pool()).await.unwrap()
}

#[tokio::test]
async fn readers_read_every_table_and_view_and_write_nothing() {
    let scratch = Scratch::new().await;
    let reader = scratch.role("bi").await;
    let store = mirror_with(&scratch, &Roles { readers: vec![reader.clone()], ..Roles::default() }).await;
    let mut bi = scratch.connect_as(&reader).await;
    let all = relations(&mut scratch.dba().await).await;
    assert!(all.len() > 30, "{all:?}");
    for relation in &all {
        allowed(&mut bi, &format!("SELECT * FROM ps.{relation} LIMIT 1")).await;
    }
    let deal = a_deal(&store).await;
    refused(&mut bi, &format!("UPDATE ps.deals SET stage = 'won' WHERE key = '{deal}'")).await;
    refused(&mut bi, "INSERT INTO ps.write_queue (operation, object_type, object_key) VALUES ('refresh', 'deal', 'd')").await;
    refused(&mut bi, "SELECT * FROM ps.next_events('bi', 10)").await;
    refused(&mut bi, "SELECT ps.commit_events('bi', 1)").await;
    refused(&mut bi, "DELETE FROM ps.events").await;
    refused(&mut bi, "CREATE TABLE ps.mine (x int)").await;
}

#[tokio::test]
async fn consumers_read_and_move_their_position_only_through_commit_events() {
    let scratch = Scratch::new().await;
    let consumer = scratch.role("automation").await;
    let _store = mirror_with(&scratch, &Roles { consumers: vec![consumer.clone()], ..Roles::default() }).await;
    let mut app = scratch.connect_as(&consumer).await;
    let events: Vec<i64> = sqlx::query_scalar("SELECT id FROM ps.next_events('automation', 3)").fetch_all(&mut app).await.unwrap();
    assert_eq!(events.len(), 3);
    let position: i64 = sqlx::query_scalar("SELECT ps.commit_events('automation', $1)").bind(events[2]).fetch_one(&mut app).await.unwrap();
    assert_eq!(position, events[2]);
    let next: Vec<i64> = sqlx::query_scalar("SELECT id FROM ps.next_events('automation', 1)").fetch_all(&mut app).await.unwrap();
    assert!(next[0] > events[2], "the position moved");
    refused(&mut app, "UPDATE ps.event_consumers SET position = 0").await;
    refused(&mut app, "INSERT INTO ps.event_consumers (name, position) VALUES ('other', 1)").await;
    refused(&mut app, "INSERT INTO ps.write_queue (operation, object_type, object_key) VALUES ('refresh', 'deal', 'd')").await;
    allowed(&mut app, "SELECT count(*) FROM ps.deals_current").await;
}

#[tokio::test]
async fn writers_queue_and_cancel_write_backs_and_nothing_more() {
    let scratch = Scratch::new().await;
    let writer = scratch.role("crm").await;
    let store = mirror_with(&scratch, &Roles { writers: vec![writer.clone()], ..Roles::default() }).await;
    let deal = a_deal(&store).await;
    let mut crm = scratch.connect_as(&writer).await;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO ps.write_queue (operation, object_type, object_key, payload, idempotency_key) \
         VALUES ('update', 'deal', $1, '{\"stage\": \"won\"}', 'crm-1') RETURNING id",
    )
    .bind(&deal)
    .fetch_one(&mut crm)
    .await
    .unwrap();
    allowed(&mut crm, &format!("UPDATE ps.write_queue SET status = 'cancelled' WHERE id = {id} AND status = 'pending'")).await;
    let status: String = sqlx::query_scalar("SELECT status FROM ps.write_queue WHERE id = $1").bind(id).fetch_one(&mut crm).await.unwrap();
    assert_eq!(status, "cancelled");

    let other: i64 = sqlx::query_scalar(
        "INSERT INTO ps.write_queue (operation, object_type, object_key, payload) VALUES ('refresh', 'deal', $1, '{}') RETURNING id",
    )
    .bind(&deal)
    .fetch_one(&mut crm)
    .await
    .unwrap();
    refused(&mut crm, &format!("UPDATE ps.write_queue SET status = 'succeeded' WHERE id = {other}")).await;
    refused(&mut crm, &format!("UPDATE ps.write_queue SET status = 'pending' WHERE id = {id}")).await;
    refused(&mut crm, &format!("UPDATE ps.write_queue SET payload = '{{}}' WHERE id = {other}")).await;
    refused(
        &mut crm,
        "INSERT INTO ps.write_queue (operation, object_type, object_key, status) VALUES ('refresh', 'deal', 'd', 'succeeded')",
    )
    .await;
    refused(&mut crm, &format!("DELETE FROM ps.write_queue WHERE id = {other}")).await;
    refused(&mut crm, &format!("UPDATE ps.deals SET stage = 'won' WHERE key = '{deal}'")).await;
    allowed(&mut crm, "SELECT * FROM ps.next_events('crm', 1)").await;
    // The workers (the owner) still move requests along.
    sqlx::query("UPDATE write_queue SET status = 'running' WHERE id = $1").bind(other).execute(store.pool()).await.unwrap();
}

#[tokio::test]
async fn public_gets_nothing_and_what_the_mirror_creates_later_is_readable_at_once() {
    let scratch = Scratch::new().await;
    let reader = scratch.role("bi").await;
    let stranger = scratch.role("stranger").await;
    let store = mirror_with(&scratch, &Roles { readers: vec![reader.clone()], ..Roles::default() }).await;
    let mut nobody = scratch.connect_as(&stranger).await;
    refused(&mut nobody, "SELECT count(*) FROM ps.deals").await;
    refused(&mut nobody, "SELECT count(*) FROM ps.deals_current").await;
    refused(&mut nobody, "SELECT * FROM ps.next_events('x', 1)").await;
    // A view the mirror makes after the grants (as a regenerated reporting view would be).
    sqlx::raw_sql("CREATE VIEW later_report AS SELECT key FROM deals").execute(store.pool()).await.unwrap();
    allowed(&mut scratch.connect_as(&reader).await, "SELECT * FROM ps.later_report LIMIT 1").await;
    refused(&mut nobody, "SELECT * FROM ps.later_report LIMIT 1").await;
}

#[tokio::test]
async fn a_role_moved_down_or_out_of_the_lists_loses_what_it_was_given() {
    let scratch = Scratch::new().await;
    let app = scratch.role("app").await;
    let store = mirror_with(&scratch, &Roles { writers: vec![app.clone()], ..Roles::default() }).await;
    allowed(
        &mut scratch.connect_as(&app).await,
        "INSERT INTO ps.write_queue (operation, object_type, object_key) VALUES ('refresh', 'deal', 'd')",
    )
    .await;

    store.grant(&Roles { readers: vec![app.clone()], ..Roles::default() }).await.unwrap();
    let mut conn = scratch.connect_as(&app).await;
    refused(&mut conn, "INSERT INTO ps.write_queue (operation, object_type, object_key) VALUES ('refresh', 'deal', 'd')").await;
    refused(&mut conn, "SELECT ps.commit_events('app', 1)").await;
    allowed(&mut conn, "SELECT count(*) FROM ps.deals").await;

    store.grant(&Roles::default()).await.unwrap();
    refused(&mut scratch.connect_as(&app).await, "SELECT count(*) FROM ps.deals").await;
    // Nor does a view made later reach it (its default privilege went too).
    sqlx::raw_sql("CREATE VIEW later_report AS SELECT key FROM deals").execute(store.pool()).await.unwrap();
    let granted: bool =
        sqlx::query_scalar("SELECT has_table_privilege($1, 'ps.later_report', 'SELECT')").bind(&app).fetch_one(store.pool()).await.unwrap();
    assert!(!granted);
}

#[tokio::test]
async fn a_role_that_does_not_exist_is_a_configuration_error_naming_it() {
    let scratch = Scratch::new().await;
    let mirror = scratch.prepared_schema("ps").await;
    let sim = support::simulator(10, |_| {}).await;
    let mut migrate = binary_as(&scratch, &mirror, "ps", &sim, &["migrate"]);
    migrate.env("PSM_DATABASE__READERS", "no_such_bi_role");
    let (code, stderr) = support::exit_and_stderr(&mut migrate).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("\"no_such_bi_role\"") && stderr.contains("does not know"), "{stderr}");
    let store = Store::connect(&scratch.url_as(&mirror), "ps", 2).await.unwrap();
    assert!(!store.holds_mirror().await.unwrap(), "nothing was migrated before the roles were checked");
    let err = store.check_roles(&Roles { writers: vec![mirror.clone()], ..Roles::default() }).await.unwrap_err();
    assert!(matches!(err, StoreError::OwnRole(_)), "the mirror's own role is refused: {err}");
}

#[tokio::test]
async fn a_writer_role_queues_and_cancels_from_the_command_line_as_from_sql() {
    let scratch = Scratch::new().await;
    let writer = scratch.role("crm").await;
    let store = mirror_with(&scratch, &Roles { writers: vec![writer.clone()], ..Roles::default() }).await;
    let deal = a_deal(&store).await;
    let sim = support::simulator(10, |_| {}).await;
    let mut add = binary_as(&scratch, &writer, "ps", &sim, &["queue", "add", "update", "deal", &deal, "--payload", r#"{"stage": "won"}"#]);
    support::succeeds(&mut add).await;
    let id: i64 = sqlx::query_scalar("SELECT max(id) FROM write_queue").fetch_one(store.pool()).await.unwrap();
    support::succeeds(&mut binary_as(&scratch, &writer, "ps", &sim, &["queue", "cancel", &id.to_string()])).await;
    let (status, finished): (String, bool) = sqlx::query_as("SELECT status, finished_at IS NOT NULL FROM write_queue WHERE id = $1")
        .bind(id)
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!((status.as_str(), finished), ("cancelled", true));
}
