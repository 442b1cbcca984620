//! Qualified names (docs/your-database.md): everything the README shows in SQL works schema-qualified from a
//! session whose `search_path` does not name the mirror's schema, and with two mirrors in one
//! database a call never reads or writes the other mirror's tables.

use partnerstack_mirror::{object::ObjectKind, store::Store};
use sqlx::PgConnection;

use super::Scratch;
use crate::support;

/// Rows of `table` in `schema`.
async fn count(conn: &mut PgConnection, schema: &str, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {schema}.{table}")).fetch_one(conn).await.unwrap()
}

/// Two mirrors of two different accounts, synced, in one database.
async fn two_mirrors(scratch: &Scratch) -> (Store, Store) {
    let mirror = scratch.role("mirror").await;
    sqlx::raw_sql(&format!("GRANT CREATE ON DATABASE {} TO {mirror}", scratch.database)).execute(&mut scratch.dba().await).await.unwrap();
    let mut stores = Vec::new();
    for (schema, seed) in [("crm_a", 3), ("crm_b", 4)] {
        let store = scratch.store_as(&mirror, schema).await;
        let sim = support::simulator(60, |c| c.seed = seed).await;
        support::sync_all(&support::syncer(&store, &sim, 250, support::settings())).await;
        stores.push(store);
    }
    let b = stores.pop().unwrap();
    (stores.pop().unwrap(), b)
}

#[tokio::test]
async fn the_readme_sql_works_schema_qualified_from_a_default_session_and_never_touches_the_other_mirror() {
    let scratch = Scratch::new().await;
    let (a, b) = two_mirrors(&scratch).await;
    // A BI tool's session: the server's default search_path, which names neither mirror. Then
    // one whose search_path names the OTHER mirror, the worst case for a function that follows it.
    for search_path in [None, Some("crm_b")] {
        let mut conn = scratch.connect_as("postgres").await;
        let default: String = sqlx::query_scalar("SHOW search_path").fetch_one(&mut conn).await.unwrap();
        assert!(!default.contains("crm_"), "a fresh session's search_path is the default: {default}");
        if let Some(path) = search_path {
            sqlx::raw_sql(&format!("SET search_path = {path}")).execute(&mut conn).await.unwrap();
        }
        let (b_queue, b_consumers, b_events) = (
            count(&mut conn, "crm_b", "write_queue").await,
            count(&mut conn, "crm_b", "event_consumers").await,
            count(&mut conn, "crm_b", "events").await,
        );

        // Queue a write-back, including a convert, whose trigger reads the lead's table.
        let lead: String = sqlx::query_scalar("SELECT key FROM crm_a.leads WHERE raw ->> 'external_key' IS NOT NULL ORDER BY key LIMIT 1")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        let lead_external: String = sqlx::query_scalar("SELECT raw ->> 'external_key' FROM crm_a.leads WHERE key = $1")
            .bind(&lead)
            .fetch_one(&mut conn)
            .await
            .unwrap();
        let touches: Vec<String> = sqlx::query_scalar(
            "INSERT INTO crm_a.write_queue (operation, object_type, object_key, payload) VALUES ('convert', 'lead', $1, '{}') RETURNING touches",
        )
        .bind(&lead)
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert_eq!(touches, vec![format!("lead:{lead}"), format!("customer@customer_key={lead_external}")], "read crm_a.leads");
        sqlx::query("INSERT INTO crm_a.write_queue (operation, object_type, object_key, payload) VALUES ('update', 'deal', 'd1', '{\"stage\": \"won\"}')")
            .execute(&mut conn)
            .await
            .unwrap();
        // A malformed request is refused by crm_a's trigger with its own message.
        let refused = sqlx::query("INSERT INTO crm_a.write_queue (operation, object_type, object_key) VALUES ('explode', 'deal', 'd1')")
            .execute(&mut conn)
            .await
            .unwrap_err();
        assert!(refused.to_string().contains("unknown operation"), "{refused}");

        // Consume crm_a's events by name.
        let first: Vec<(i64, String)> =
            sqlx::query_as("SELECT id, object_type FROM crm_a.next_events('bi', 5)").fetch_all(&mut conn).await.unwrap();
        let expected: Vec<(i64, String)> =
            sqlx::query_as("SELECT id, object_type FROM crm_a.events ORDER BY id LIMIT 5").fetch_all(&mut conn).await.unwrap();
        assert_eq!(first, expected, "next_events read crm_a's events");
        let position: i64 =
            sqlx::query_scalar("SELECT crm_a.commit_events('bi', $1)").bind(first.last().unwrap().0).fetch_one(&mut conn).await.unwrap();
        assert_eq!(position, first.last().unwrap().0);
        let stored: i64 =
            sqlx::query_scalar("SELECT position FROM crm_a.event_consumers WHERE name = 'bi'").fetch_one(&mut conn).await.unwrap();
        assert_eq!(stored, position);

        // Every view reads, and reads crm_a.
        let views: Vec<String> = sqlx::query_scalar("SELECT viewname::text FROM pg_views WHERE schemaname = 'crm_a' ORDER BY 1")
            .fetch_all(&mut conn)
            .await
            .unwrap();
        assert!(views.len() >= 2 * ObjectKind::ALL.len(), "every object's _current and _history views, and the reports: {views:?}");
        for view in &views {
            sqlx::query(&format!("SELECT * FROM crm_a.{view} LIMIT 1"))
                .fetch_all(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{view}: {e}"));
        }
        let live_deals: i64 =
            sqlx::query_scalar("SELECT count(*) FROM crm_a.deals WHERE deleted_at IS NULL").fetch_one(&mut conn).await.unwrap();
        assert_eq!(count(&mut conn, "crm_a", "deals_current").await, live_deals);

        assert_eq!(count(&mut conn, "crm_b", "write_queue").await, b_queue, "nothing was queued in the other mirror");
        assert_eq!(count(&mut conn, "crm_b", "event_consumers").await, b_consumers, "no position moved in the other mirror");
        assert_eq!(count(&mut conn, "crm_b", "events").await, b_events);
        sqlx::raw_sql("DELETE FROM crm_a.write_queue; DELETE FROM crm_a.event_consumers").execute(&mut conn).await.unwrap();
    }
    drop((a, b));
}

#[tokio::test]
async fn every_function_of_the_schema_pins_its_search_path_to_the_schema_then_pg_catalog() {
    let store = support::store().await;
    let functions: Vec<(String, bool, Option<Vec<String>>)> = sqlx::query_as(
        "SELECT p.oid::regprocedure::text, p.prosecdef, p.proconfig FROM pg_proc p \
         WHERE p.pronamespace = (SELECT oid FROM pg_namespace WHERE nspname = $1) ORDER BY 1",
    )
    .bind(store.schema())
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert!(functions.len() >= 10, "the write queue's triggers, next_events, commit_events, …: {functions:?}");
    for (function, definer, config) in &functions {
        let wanted = format!("search_path={}, pg_catalog{}", store.schema(), if *definer { ", pg_temp" } else { "" });
        assert!(
            config.iter().flatten().any(|setting| *setting == wanted),
            "{function} must pin its search_path ({wanted}); it has {config:?}"
        );
    }
    let definers: Vec<&str> = functions.iter().filter(|(_, definer, _)| *definer).map(|(f, _, _)| f.as_str()).collect();
    assert_eq!(definers, vec!["commit_events(text,bigint)"], "only commit_events runs as its owner");
    assert!(store.unpinned_functions().await.unwrap().is_empty());
}
