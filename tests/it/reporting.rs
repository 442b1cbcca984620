//! The analyst's layer on simulator data: every table, view and column explains itself, the
//! joins the catalogue declares hold, and each view returns what a hand-written query over
//! the base tables returns, also as the tables stood at a past moment.

use partnerstack_simulator::AsResource;
use std::collections::BTreeSet;

use partnerstack_mirror::{
    object::{join_paths, ObjectKind},
    store::{reporting::REPORTS, Store},
};
use partnerstack_simulator::{Clock, Mutation, Resource, RunningSimulator};

use crate::support;

/// Rows of `left` not in `right` plus rows of `right` not in `left`, counting duplicates.
async fn difference(store: &Store, left: &str, right: &str) -> i64 {
    let sql = format!("SELECT count(*) FROM (({left}) EXCEPT ALL ({right})) a");
    let one: i64 = sqlx::query_scalar(&sql).fetch_one(store.pool()).await.unwrap_or_else(|e| panic!("{e}: {sql}"));
    let sql = format!("SELECT count(*) FROM (({right}) EXCEPT ALL ({left})) b");
    let other: i64 = sqlx::query_scalar(&sql).fetch_one(store.pool()).await.unwrap_or_else(|e| panic!("{e}: {sql}"));
    one + other
}

async fn count(store: &Store, sql: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM ({sql}) q")).fetch_one(store.pool()).await.unwrap_or_else(|e| panic!("{e}: {sql}"))
}

/// Asserts that `view` and the hand-written `query` return the same non-empty rows.
async fn same_rows(store: &Store, view: &str, query: &str) {
    let rows = count(store, view).await;
    assert!(rows > 0, "{view} is empty: the comparison would prove nothing");
    assert_eq!(difference(store, view, query).await, 0, "{view} differs from\n{query}");
}

/// A relation, its kind (`r`, `v`, …) and comment, one of its columns and that column's comment.
type RelationColumn = (String, String, Option<String>, String, Option<String>);

#[tokio::test]
async fn every_table_view_and_column_of_the_mirror_has_a_comment() {
    let store = support::store().await;
    // Every relation of the schema, whoever created it: a table added by a later migration
    // without its entry in src/store/reporting/bookkeeping.rs fails here, by name.
    let rows: Vec<RelationColumn> = sqlx::query_as(
        "SELECT c.relname::text, c.relkind::text, obj_description(c.oid, 'pg_class'), a.attname::text, col_description(c.oid, a.attnum) \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped \
         WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm', 'f') ORDER BY 1, a.attnum",
    )
    .bind(store.schema())
    .fetch_all(store.pool())
    .await
    .unwrap();
    let mut missing = BTreeSet::new();
    let mut relations = BTreeSet::new();
    for (relation, kind, about, column, column_about) in &rows {
        relations.insert((relation.clone(), kind.clone()));
        if about.as_deref().is_none_or(str::is_empty) {
            missing.insert(format!("{relation} (the {})", if kind == "v" { "view" } else { "table" }));
        }
        if column_about.as_deref().is_none_or(str::is_empty) {
            missing.insert(format!("{relation}.{column}"));
        }
    }
    assert!(missing.is_empty(), "no comment on: {missing:#?}\n(add them to src/store/reporting/bookkeeping.rs)");

    let views: BTreeSet<&str> = relations.iter().filter(|(_, k)| k == "v").map(|(r, _)| r.as_str()).collect();
    for kind in ObjectKind::ALL {
        for view in [format!("{}_current", kind.table()), format!("{}_history", kind.table())] {
            assert!(views.contains(view.as_str()), "{view} is missing");
        }
    }
    for report in REPORTS {
        assert!(views.contains(report.name), "{} is missing", report.name);
    }
    assert!(relations.len() > 40, "{relations:?}");

    // What a BI tool shows for the join trap.
    let trap: String = sqlx::query_scalar(
        "SELECT col_description(a.attrelid, a.attnum) FROM pg_attribute a WHERE a.attrelid = 'transactions'::regclass AND a.attname = 'customer_key'",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert!(trap.contains("INTERNAL") && trap.contains("Joins `customers.key`"), "{trap}");
}

#[tokio::test]
async fn a_second_start_leaves_the_reporting_layer_alone_and_a_changed_one_is_applied() {
    let store = support::store().await;
    let first: (String, chrono::DateTime<chrono::Utc>) =
        sqlx::query_as("SELECT fingerprint, applied_at FROM reporting_layer").fetch_one(store.pool()).await.unwrap();
    store.migrate().await.unwrap();
    let second: (String, chrono::DateTime<chrono::Utc>) =
        sqlx::query_as("SELECT fingerprint, applied_at FROM reporting_layer").fetch_one(store.pool()).await.unwrap();
    assert_eq!(first, second, "nothing was applied again");

    // A start after an upgrade (different statements) applies them: comments come back.
    sqlx::query("UPDATE reporting_layer SET fingerprint = 'from an older version'").execute(store.pool()).await.unwrap();
    sqlx::query("COMMENT ON TABLE deals IS NULL").execute(store.pool()).await.unwrap();
    store.migrate().await.unwrap();
    let about: Option<String> =
        sqlx::query_scalar("SELECT obj_description('deals'::regclass, 'pg_class')").fetch_one(store.pool()).await.unwrap();
    assert!(about.is_some_and(|a| a.starts_with("One row per deal")));
    let fingerprint: String = sqlx::query_scalar("SELECT fingerprint FROM reporting_layer").fetch_one(store.pool()).await.unwrap();
    assert_eq!(fingerprint, first.0);
}

#[tokio::test]
async fn every_join_the_catalogue_declares_holds_on_simulator_data() {
    let sim = support::simulator(1_500, |_| {}).await;
    let store = support::store().await;
    let syncer = support::syncer(&store, &sim, 100, support::settings());
    support::sync_all(&syncer).await;
    for (kind, column, join) in join_paths() {
        let (child, parent) = (kind.table(), join.kind.table());
        let (matched, dangling): (i64, i64) = sqlx::query_as(&format!(
            "SELECT count(*) FILTER (WHERE EXISTS (SELECT 1 FROM {parent} p WHERE p.{target} = c.{name})), \
                    count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM {parent} p WHERE p.{target} = c.{name})) \
             FROM {child} c WHERE c.{name} IS NOT NULL",
            name = column.name,
            target = join.column,
        ))
        .fetch_one(store.pool())
        .await
        .unwrap();
        assert!(matched > 0, "{child}.{} never joins {parent}.{}", column.name, join.column);
        assert_eq!(dangling, 0, "{child}.{} has values not in {parent}.{}", column.name, join.column);
    }
    // The trap itself: YOUR key for a customer is not what transactions call customer_key.
    let wrong: i64 = sqlx::query_scalar("SELECT count(*) FROM transactions t JOIN customers c ON c.customer_key = t.customer_key")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(wrong, 0);
}

/// Archives and hard-deletes a few records of the tables the reports read, so the
/// `_current` views have something to leave out.
async fn delete_some(sim: &RunningSimulator, syncer: &partnerstack_mirror::sync::Syncer) {
    for kind in
        [ObjectKind::Deal, ObjectKind::Customer, ObjectKind::Partnership, ObjectKind::Transaction, ObjectKind::Reward, ObjectKind::Lead]
    {
        let keys = sim.simulator.keys(kind);
        for key in keys.iter().skip(3).step_by(17).take(5) {
            sim.simulator.apply(Mutation::Archive { kind: kind.resource(), key: key.clone() }).unwrap();
        }
    }
    let gone = sim.simulator.keys(ObjectKind::Customer)[1].clone();
    sim.simulator.apply(Mutation::HardDelete { kind: Resource::Customer, key: gone }).unwrap();
    support::sync_all(syncer).await;
    support::rescan_all(syncer).await;
    syncer.reconcile(ObjectKind::Customer).await.unwrap();
}

#[tokio::test]
async fn current_and_report_views_match_hand_written_queries_over_the_base_tables() {
    let sim = support::simulator(2_000, |_| {}).await;
    let store = support::store().await;
    let syncer = support::syncer(&store, &sim, 100, support::settings());
    support::sync_all(&syncer).await;
    delete_some(&sim, &syncer).await;

    for kind in ObjectKind::ALL {
        let table = kind.table();
        let deleted = count(&store, &format!("SELECT 1 FROM {table} WHERE deleted_at IS NOT NULL")).await;
        if matches!(kind, ObjectKind::Deal | ObjectKind::Customer | ObjectKind::Partnership | ObjectKind::Transaction) {
            assert!(deleted > 0, "{table}: nothing deleted, the filter would be untested");
        }
        same_rows(&store, &format!("SELECT * FROM {table}_current"), &format!("SELECT * FROM {table} WHERE deleted_at IS NULL")).await;
    }

    // One live partnership per partner key, as the reports pick it.
    let partner = |column: &str, by: &str| {
        format!(
            "(SELECT p.{column} FROM partnerships p WHERE p.partner_key = {by} \
              ORDER BY p.deleted_at IS NOT NULL, p.updated_at DESC NULLS LAST, p.key LIMIT 1)"
        )
    };
    same_rows(
        &store,
        "SELECT * FROM partner_customers",
        "SELECT p.key, p.partner_key, p.email, p.first_name, p.last_name, p.group_key, p.group_name, \
                c.key, c.customer_key, c.email, c.name, c.source_type, c.test, c.created_at \
         FROM customers c, partnerships p \
         WHERE c.partnership_key = p.key AND c.deleted_at IS NULL AND p.deleted_at IS NULL",
    )
    .await;
    same_rows(
        &store,
        "SELECT * FROM partner_deals",
        &format!(
            "SELECT d.key, d.external_key, d.account_name, d.stage, round(d.amount / 100.0, 2), d.close_date, d.source, \
                    {}, d.partner_key, {}, d.customer_key, d.created_at, d.updated_at \
             FROM deals d WHERE d.deleted_at IS NULL",
            partner("key", "d.partner_key"),
            partner("email", "d.partner_key"),
        ),
    )
    .await;
    same_rows(
        &store,
        "SELECT * FROM partner_revenue",
        "SELECT t.partnership_key, \
                (SELECT partner_key FROM partnerships WHERE key = t.partnership_key), \
                (SELECT email FROM partnerships WHERE key = t.partnership_key), \
                (SELECT group_name FROM partnerships WHERE key = t.partnership_key), \
                count(*), sum(CASE WHEN t.approved THEN 1 ELSE 0 END), \
                round(sum(t.amount_usd) / 100.0, 2), round(coalesce(sum(CASE WHEN t.approved THEN t.amount_usd END), 0) / 100.0, 2) \
         FROM transactions t WHERE t.deleted_at IS NULL AND NOT coalesce(t.test, false) GROUP BY t.partnership_key",
    )
    .await;
    same_rows(
        &store,
        "SELECT * FROM partner_rewards",
        "SELECT r.partnership_key, \
                (SELECT partner_key FROM partnerships WHERE key = r.partnership_key), \
                (SELECT email FROM partnerships WHERE key = r.partnership_key), \
                r.reward_status, count(*), round(sum(r.amount) / 100.0, 2) \
         FROM rewards r WHERE r.deleted_at IS NULL GROUP BY r.partnership_key, r.reward_status",
    )
    .await;
    same_rows(
        &store,
        "SELECT * FROM deal_pipeline",
        "SELECT stage, count(*), round(coalesce(sum(amount), 0) / 100.0, 2), round(avg(amount) / 100.0, 2), min(close_date), max(close_date) \
         FROM deals WHERE deleted_at IS NULL GROUP BY stage",
    )
    .await;
    same_rows(
        &store,
        "SELECT * FROM lead_funnel",
        &format!(
            "SELECT l.partner_key, {}, {}, l.status, count(*), count(*) FILTER (WHERE l.approved IS TRUE), \
                    count(*) FILTER (WHERE l.approved IS FALSE), round(coalesce(sum(l.amount), 0) / 100.0, 2) \
             FROM leads l WHERE l.deleted_at IS NULL GROUP BY l.partner_key, l.status",
            partner("key", "l.partner_key"),
            partner("email", "l.partner_key"),
        ),
    )
    .await;

    // The pipeline in currency units is the simulator's own cents / 100.
    let live_cents: i64 =
        sim.simulator.records(ObjectKind::Deal).iter().filter(|d| d["archived"] != true).filter_map(|d| d["amount"].as_i64()).sum();
    let pipeline_cents: i64 =
        sqlx::query_scalar("SELECT (sum(amount) * 100)::bigint FROM deal_pipeline").fetch_one(store.pool()).await.unwrap();
    assert_eq!(pipeline_cents, live_cents);
}

/// The typed columns, `created_at`, `updated_at` and `raw` of an object table or its history.
fn comparable(kind: ObjectKind) -> String {
    let mut columns = vec!["key".to_owned(), "created_at".into(), "updated_at".into(), "raw".into()];
    columns.extend(kind.columns().iter().map(|c| format!("\"{}\"", c.name)));
    columns.join(", ")
}

#[tokio::test]
async fn history_views_give_every_table_as_it_stood_at_a_past_moment() {
    let now = chrono::Utc::now().timestamp_millis();
    // Records generated before the changes below, which the clock stamps at fixed moments.
    let sim = support::simulator(800, |c| c.history_end_ms = Some(now - 600_000)).await;
    let store = support::store().await;
    let syncer = support::syncer(&store, &sim, 100, support::settings());
    support::sync_all(&syncer).await;
    let s = &sim.simulator;
    let deals = s.keys(ObjectKind::Deal);
    let customers = s.keys(ObjectKind::Customer);
    let partnerships = s.keys(ObjectKind::Partnership);
    let rewards = s.keys(ObjectKind::Reward);

    let first = now - 240_000;
    s.set_clock(Clock::Frozen(first));
    s.apply(Mutation::DealStage { key: deals[0].clone() }).unwrap();
    s.apply(Mutation::DealStage { key: deals[1].clone() }).unwrap();
    s.apply(Mutation::Archive { kind: Resource::Deal, key: deals[2].clone() }).unwrap();
    s.apply(Mutation::Touch { kind: Resource::Customer, key: customers[0].clone() }).unwrap();
    s.apply(Mutation::Archive { kind: Resource::Customer, key: customers[1].clone() }).unwrap();
    s.apply(Mutation::PartnershipTags { key: partnerships[0].clone(), add: vec!["emea".into()], remove: vec![] }).unwrap();
    s.apply(Mutation::RewardStatus { key: rewards[0].clone() }).unwrap();
    s.apply(Mutation::TransactionUpdate { key: s.keys(ObjectKind::Transaction)[0].clone() }).unwrap();
    s.apply(Mutation::LeadStatus { key: s.keys(ObjectKind::Lead)[0].clone() }).unwrap();
    s.apply(Mutation::Create(Resource::Deal)).unwrap();
    support::sync_all(&syncer).await;
    support::rescan_all(&syncer).await;
    for kind in ObjectKind::ALL {
        let table = kind.table();
        sqlx::query(&format!("CREATE TABLE then_{table} AS SELECT * FROM {table}_current")).execute(store.pool()).await.unwrap();
    }

    let second = now - 120_000;
    s.set_clock(Clock::Frozen(second));
    s.apply(Mutation::DealStage { key: deals[0].clone() }).unwrap();
    s.apply(Mutation::Restore { kind: Resource::Deal, key: deals[2].clone() }).unwrap();
    s.apply(Mutation::Archive { kind: Resource::Deal, key: deals[3].clone() }).unwrap();
    s.apply(Mutation::HardDelete { kind: Resource::Deal, key: deals[4].clone() }).unwrap();
    s.apply(Mutation::Touch { kind: Resource::Customer, key: customers[0].clone() }).unwrap();
    s.apply(Mutation::PartnershipGroup { key: partnerships[1].clone() }).unwrap();
    s.apply(Mutation::RewardStatus { key: rewards[0].clone() }).unwrap();
    s.apply(Mutation::Create(Resource::Customer)).unwrap();
    support::sync_all(&syncer).await;
    support::rescan_all(&syncer).await;
    syncer.reconcile(ObjectKind::Deal).await.unwrap();

    // Between the two rounds of changes: each table as it stood then, from its history.
    let then = chrono::DateTime::from_timestamp_millis(first + 60_000).unwrap().to_rfc3339();
    for kind in ObjectKind::ALL {
        let (table, columns) = (kind.table(), comparable(kind));
        let at_then =
            format!("SELECT {columns} FROM {table}_history WHERE valid_from <= '{then}' AND (valid_to > '{then}' OR valid_to IS NULL)");
        same_rows(&store, &at_then, &format!("SELECT {columns} FROM then_{table}")).await;
        // And now: the current versions are the live rows.
        let current = format!("SELECT {columns} FROM {table}_history WHERE valid_to IS NULL");
        assert_eq!(difference(&store, &current, &format!("SELECT {columns} FROM {table}_current")).await, 0, "{table} now");
    }

    // One version per change, however many events it emitted (updated + stage_updated).
    let versions = |key: String| {
        let store = store.clone();
        async move {
            sqlx::query_as::<_, (i64, Option<i64>, String)>(
                "SELECT (extract(epoch FROM valid_from) * 1000)::bigint, (extract(epoch FROM valid_to) * 1000)::bigint, stage \
                 FROM deals_history WHERE key = $1 ORDER BY valid_from",
            )
            .bind(key)
            .fetch_all(store.pool())
            .await
            .unwrap()
        }
    };
    let moved = versions(deals[0].clone()).await;
    assert_eq!(moved.len(), 3, "backfill, first move, second move: {moved:?}");
    assert_eq!((moved[1].0, moved[1].1, moved[2].0, moved[2].1), (first, Some(second), second, None));
    assert_ne!(moved[1].2, moved[2].2);
    // Archived at the first moment, restored at the second: no version in between.
    let restored = versions(deals[2].clone()).await;
    assert_eq!(restored.len(), 2, "{restored:?}");
    assert_eq!((restored[0].1, restored[1].0, restored[1].1), (Some(first), second, None));
    // Gone from the key scan: its last version ends when the scan saw it gone.
    let vanished = versions(deals[4].clone()).await;
    assert!(vanished.last().unwrap().1.is_some_and(|end| end > second), "{vanished:?}");
}

#[tokio::test]
async fn rows_without_events_still_have_their_current_version_in_the_history() {
    let now = chrono::Utc::now().timestamp_millis();
    let sim = support::simulator(300, |c| c.history_end_ms = Some(now - 600_000)).await;
    let store = support::store().await;
    // A backfill without `created` events, as `sync.emit_backfill_events = false` loads.
    let settings = partnerstack_mirror::sync::SyncSettings { emit_backfill_events: false, ..support::settings() };
    let syncer = support::syncer(&store, &sim, 100, settings);
    support::sync_all(&syncer).await;
    let moved = sim.simulator.keys(ObjectKind::Deal)[0].clone();
    let changed_at = now - 60_000;
    sim.simulator.set_clock(Clock::Frozen(changed_at));
    sim.simulator.apply(Mutation::DealStage { key: moved.clone() }).unwrap();
    support::sync_all(&syncer).await;
    assert_eq!(count(&store, "SELECT 1 FROM events WHERE object_type = 'deal'").await, 2, "updated + stage_updated only");

    for kind in ObjectKind::ALL {
        let (table, columns) = (kind.table(), comparable(kind));
        same_rows(
            &store,
            &format!("SELECT {columns} FROM {table}_history WHERE valid_to IS NULL"),
            &format!("SELECT {columns} FROM {table}_current"),
        )
        .await;
    }
    // The changed deal's history begins with its change; the others' with their updated_at.
    let (versions, from, event): (i64, chrono::DateTime<chrono::Utc>, Option<i64>) =
        sqlx::query_as("SELECT count(*) OVER (), valid_from, event_id FROM deals_history WHERE key = $1")
            .bind(&moved)
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert_eq!((versions, from.timestamp_millis()), (1, changed_at));
    assert!(event.is_some());
    let untouched: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM deals_history h JOIN deals d USING (key) WHERE h.event_id IS NULL AND h.valid_from = d.updated_at",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(untouched, count(&store, "SELECT 1 FROM deals_current").await - 1);
}
