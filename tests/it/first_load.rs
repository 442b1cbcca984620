//! A first load writes its pages by binary `COPY`: the rows and events must be exactly those
//! the ordinary upsert writes, and a page that meets a stored row falls back to it.

use partnerstack_mirror::sync::Reading;
use partnerstack_mirror::{
    diff::EventSource,
    object::ObjectKind,
    record::{self, Record},
    store::{FirstLoadWrite, PageWrite, Store},
};
use partnerstack_simulator::RunningSimulator;
use serde_json::{json, Value};

use crate::support;

fn page(kind: ObjectKind, records: Vec<Record>) -> PageWrite<'static> {
    PageWrite { kind, records, rejected: &[], source: EventSource::Backfill, emit_events: true, run_id: None, advance: None, lease: None }
}

/// Every column of every row but the sync times, by key.
async fn rows(store: &Store, kind: ObjectKind) -> Vec<Value> {
    sqlx::query_scalar(&format!("SELECT to_jsonb(t) - 'synced_at' - 'first_synced_at' FROM {} t ORDER BY key", kind.table()))
        .fetch_all(store.pool())
        .await
        .unwrap()
}

/// Every event but its id and detection time, in id order.
async fn events(store: &Store) -> Vec<Value> {
    sqlx::query_scalar("SELECT to_jsonb(e) - 'id' - 'detected_at' FROM events e ORDER BY id").fetch_all(store.pool()).await.unwrap()
}

/// The simulator's records of `kind`, plus awkward ones: text arrays with quotes, commas,
/// braces and none at all, a leap day, an amount beyond 2^53, an archived record.
fn samples(sim: &RunningSimulator, kind: ObjectKind) -> Vec<Record> {
    let mut values = sim.simulator.records(kind);
    values.truncate(120);
    if let Some(first) = values.first().cloned() {
        let mut extra = first.clone();
        extra["key"] = json!(format!("{}-awkward", first["key"].as_str().unwrap()));
        match kind {
            ObjectKind::Partnership => {
                extra["tags"] = json!(["quote \" inside", "back\\slash", "comma, too", "{braces}", "NULL", "", "ünïcödé"])
            }
            ObjectKind::Deal => {
                extra["close_date"] = json!("2024-02-29");
                extra["amount"] = json!(9_007_199_254_740_993_i64);
            }
            _ => {}
        }
        extra["archived"] = json!(true);
        values.push(extra);
        if kind == ObjectKind::Partnership {
            let mut bare = first.clone();
            bare["key"] = json!(format!("{}-no-tags", first["key"].as_str().unwrap()));
            bare["tags"] = json!([]);
            values.push(bare);
        }
    }
    values.into_iter().map(|v| record::from_value(kind, v).unwrap()).collect()
}

#[tokio::test]
async fn a_first_load_by_copy_stores_every_column_and_event_exactly_as_the_upsert_does() {
    let sim = support::simulator(600, |_| {}).await;
    let (copied, upserted) = (support::store().await, support::store().await);
    for kind in ObjectKind::ALL {
        let records = samples(&sim, kind);
        assert!(!records.is_empty(), "{kind}");
        let written = copied.write_first_load_page(page(kind, records.clone())).await.unwrap();
        assert!(matches!(written, FirstLoadWrite::Copied(o) if o.rows_written == records.len() as u64), "{kind}: {written:?}");
        upserted.write_page(page(kind, records)).await.unwrap();
        assert_eq!(rows(&copied, kind).await, rows(&upserted, kind).await, "{kind}");
    }
    let (by_copy, by_upsert) = (events(&copied).await, events(&upserted).await);
    assert!(!by_copy.is_empty());
    assert_eq!(by_copy, by_upsert);
}

#[tokio::test]
async fn a_first_load_page_that_meets_a_stored_row_is_diffed_like_any_other_page() {
    let sim = support::simulator(400, |_| {}).await;
    let store = support::store().await;
    let kind = ObjectKind::Deal;
    let records = samples(&sim, kind);
    // A write-back (say) stored one of them first, with an older stage.
    let mut older = sim.simulator.records(kind)[3].clone();
    let key = older["key"].as_str().unwrap().to_owned();
    older["stage"] = json!("an older stage");
    store.write_page(PageWrite { source: EventSource::Poll, ..page(kind, vec![record::from_value(kind, older).unwrap()]) }).await.unwrap();

    let written = store.write_first_load_page(page(kind, records.clone())).await.unwrap();
    assert!(matches!(written, FirstLoadWrite::Upserted(_)), "{written:?}");

    assert_eq!(rows(&store, kind).await.len(), records.len());
    let events = support::event_types(&store, kind, &key).await;
    assert_eq!(events.iter().filter(|e| *e == "deal.created").count(), 1, "{events:?}");
    assert!(events.contains(&"deal.stage_updated".to_owned()), "the difference is an event: {events:?}");
    let created: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'deal.created'").fetch_one(store.pool()).await.unwrap();
    assert_eq!(created, records.len() as i64, "one created event per record");
}

/// A first sight outside a backfill is news (an application already approved makes an
/// `application.approved`), which only the ordinary way tells: such a page is never copied.
#[tokio::test]
async fn a_first_load_page_that_is_no_backfills_is_written_the_ordinary_way_with_its_news() {
    let sim = support::simulator(200, |_| {}).await;
    let store = support::store().await;
    let kind = ObjectKind::Application;
    let mut approved = sim.simulator.records(kind)[0].clone();
    approved["approved"] = json!(true);
    let key = approved["key"].as_str().unwrap().to_owned();
    let records = vec![record::from_value(kind, approved).unwrap()];

    let written = store.write_first_load_page(PageWrite { source: EventSource::Poll, ..page(kind, records) }).await.unwrap();
    assert!(matches!(written, FirstLoadWrite::Upserted(o) if o.rows_written == 1), "{written:?}");
    let events = support::event_types(&store, kind, &key).await;
    assert_eq!(events, ["application.created", "application.approved"], "{events:?}");
}

/// The lease is renewed while pages are written: a page's transaction holds the lease row
/// `FOR SHARE` until it commits, so the renewal must wait beside the work, never instead of
/// it (the two must not wait for each other for ever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_that_renews_its_lease_while_pages_are_written_finishes() {
    let sim = support::simulator(3_000, |_| {}).await;
    let store = support::store().await;
    // A renewal every 40 ms, and pages of five records: hundreds of renewals, each likely to
    // meet a page's open transaction.
    let settings = partnerstack_mirror::sync::SyncSettings { lease_ttl: std::time::Duration::from_millis(120), ..support::settings() };
    let syncer = support::syncer(&store, &sim, 5, settings);
    let pass = tokio::time::timeout(std::time::Duration::from_secs(60), syncer.sync_object(ObjectKind::Deal, Reading::Changes))
        .await
        .expect("the backfill finishes while its lease is renewed")
        .unwrap();
    let deals = sim.simulator.records(ObjectKind::Deal).len();
    assert_eq!(rows(&store, ObjectKind::Deal).await.len(), deals);
    // The run's counters, added by each page's events statement, count every page once.
    assert_eq!((pass.totals.rows_written as usize, pass.totals.events_written as usize), (deals, deals));
    assert!(pass.totals.pages as usize >= deals / 5, "pages of five: {:?}", pass.totals);
}

/// Secondary indexes are put off while a first load fills a table, and built once at its
/// end: the same indexes as declared, built anew (new oids); primary keys are kept throughout.
#[tokio::test]
async fn a_first_load_builds_the_secondary_indexes_it_put_off_once_its_pages_are_in() {
    let sim = support::simulator(1_500, |_| {}).await;
    let store = support::store().await;
    let before = support::indexes(&store).await;
    let declared = support::index_definitions(&store).await;
    support::sync_all(&support::syncer(&store, &sim, 50, support::settings())).await;

    assert_eq!(support::index_definitions(&store).await, declared, "the same indexes, defined the same way");
    let after = support::indexes(&store).await;
    let mut rebuilt = 0;
    for ((name, table, _, old), (_, _, _, new)) in before.iter().zip(&after) {
        // Team members are read team by team, into a table that is never `COPY`-loaded.
        if name.ends_with("_pkey") || table == ObjectKind::PartnerTeamMember.table() {
            assert_eq!(old, new, "{name} is kept");
        } else {
            assert_ne!(old, new, "{name} was put off and built again");
            rebuilt += 1;
        }
    }
    assert!(rebuilt >= 30, "every loaded table's secondary indexes ({rebuilt})");
    let deferred: i64 = sqlx::query_scalar("SELECT count(*) FROM deferred_indexes").fetch_one(store.pool()).await.unwrap();
    assert_eq!(deferred, 0);
}

/// A load killed before it built its indexes left them listed: the next start builds them,
/// except those of a table whose load is still alive elsewhere (its sync lease is live),
/// which that load builds itself; once the lease has lapsed, a start builds them too.
#[tokio::test]
async fn indexes_a_killed_first_load_put_off_are_built_at_the_next_start_unless_a_live_load_holds_them() {
    let store = support::store().await;
    let declared = support::index_definitions(&store).await;
    let deals = store.defer_indexes(ObjectKind::Deal).await.unwrap();
    let customers = store.defer_indexes(ObjectKind::Customer).await.unwrap();
    assert!(deals > 0 && customers > 0);
    assert_eq!(support::index_definitions(&store).await.len(), declared.len() - deals - customers);
    sqlx::query("INSERT INTO sync_leases (object, holder, epoch, expires_at) VALUES ('deals', 'elsewhere', 1, now() + interval '1 hour')")
        .execute(store.pool())
        .await
        .unwrap();

    let restarted = Store::connect(&support::database_url(), store.schema(), 2).await.unwrap();
    restarted.migrate().await.unwrap();
    let left: Vec<String> = sqlx::query_scalar("SELECT DISTINCT table_name FROM deferred_indexes").fetch_all(store.pool()).await.unwrap();
    assert_eq!(left, ["deals"], "customers' indexes are built; deals' belong to a live load");
    assert_eq!(support::index_definitions(&store).await.len(), declared.len() - deals);

    sqlx::query("UPDATE sync_leases SET expires_at = now()").execute(store.pool()).await.unwrap();
    restarted.migrate().await.unwrap();
    assert_eq!(support::index_definitions(&store).await, declared);
}

/// Dropping indexes needs the table to itself: a session reading it wins, and the load
/// keeps its indexes (slower, never blocked behind a report).
#[tokio::test]
async fn a_first_load_keeps_its_indexes_while_another_session_reads_the_table() {
    let store = support::store().await;
    let declared = support::index_definitions(&store).await;
    let observer = support::observer(&store).await;
    let mut reading = observer.begin().await.unwrap();
    sqlx::query("SELECT count(*) FROM deals").execute(&mut *reading).await.unwrap();

    assert_eq!(store.defer_indexes(ObjectKind::Deal).await.unwrap(), 0);
    assert_eq!(support::index_definitions(&store).await, declared);
    let deferred: i64 = sqlx::query_scalar("SELECT count(*) FROM deferred_indexes").fetch_one(store.pool()).await.unwrap();
    assert_eq!(deferred, 0, "nothing is listed when nothing was dropped");

    reading.rollback().await.unwrap();
    assert!(store.defer_indexes(ObjectKind::Deal).await.unwrap() > 0, "with the reader gone, the indexes can go");
}
