//! Backfill windows are placed by volume: one listing over everything, split while it is
//! read when it proves dense. Every request but about one per window brings a full page,
//! small objects cost one or two requests, and nothing is missed or doubled at a window's
//! edge, also with thousands of records in one millisecond and under either bound semantics.

use partnerstack_mirror::sync::Reading;
use partnerstack_simulator::AsResource;
use std::{collections::HashMap, sync::atomic::Ordering};

use partnerstack_mirror::{
    object::ObjectKind,
    sync::{SyncSettings, Syncer},
};
use partnerstack_simulator::{BoundSemantics, Clock, Mutation, RunningSimulator};
use serde_json::Value;

use crate::support;

const PAGE: u16 = 25;

fn four_readers() -> SyncSettings {
    SyncSettings { backfill_concurrency: 4, ..support::settings() }
}

/// What one backfill of `kind` cost: requests sent and windows read.
struct Cost {
    records: usize,
    requests: u64,
    windows: u64,
}

/// Backfills `kind`, checks that the mirror holds exactly the records the API lists (each
/// with one `created` event), and returns what it cost.
async fn backfill_exactly(sim: &RunningSimulator, syncer: &Syncer, kind: ObjectKind) -> Cost {
    let windows_before = syncer.progress().listings_planned.load(Ordering::Relaxed);
    let report = syncer.sync_object(kind, Reading::Changes).await.unwrap();
    let windows = syncer.progress().listings_planned.load(Ordering::Relaxed) - windows_before;
    let store = syncer.store();

    let listed = sim.simulator.config().archived_listed;
    let expected: HashMap<String, Value> = sim
        .simulator
        .records(kind)
        .into_iter()
        .filter(|r| listed || r["archived"] != Value::Bool(true))
        .map(|r| (r["key"].as_str().unwrap().to_owned(), r))
        .collect();
    let rows: Vec<(String, sqlx::types::Json<Value>)> =
        sqlx::query_as(&format!("SELECT key, raw FROM {}", kind.table())).fetch_all(store.pool()).await.unwrap();
    assert_eq!(rows.len(), expected.len(), "{kind}: every record, once");
    for (key, raw) in rows {
        assert_eq!(expected.get(&key), Some(&raw.0), "{kind} {key}");
    }
    let (events, distinct): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT object_key) FROM events WHERE object_type = $1 AND event_type LIKE '%.created'")
            .bind(kind.singular())
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert_eq!((events, distinct), (expected.len() as i64, expected.len() as i64), "{kind}: one created event per record");
    Cost { records: expected.len(), requests: report.requests, windows }
}

/// Full pages make at least `share` of the requests; with `per_window`, requests are at
/// most records / page size plus two per window.
fn assert_full_pages(cost: &Cost, share: f64, per_window: bool) {
    let full_pages = cost.records as f64 / f64::from(PAGE);
    assert!(
        !per_window || cost.requests as f64 <= full_pages.ceil() + 2.0 * cost.windows as f64,
        "{} requests for {} records in {} windows",
        cost.requests,
        cost.records,
        cost.windows
    );
    assert!(
        full_pages / cost.requests as f64 >= share,
        "records per request {:.1} of {PAGE} ({} requests for {} records in {} windows)",
        cost.records as f64 / cost.requests as f64,
        cost.requests,
        cost.records,
        cost.windows
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dense_history_is_split_among_readers_and_read_in_full_pages() {
    let sim = support::simulator(30_000, |c| c.history_days = 2).await;
    let store = support::store().await;
    let cost = backfill_exactly(&sim, &support::syncer(&store, &sim, PAGE, four_readers()), ObjectKind::Deal).await;
    assert!(cost.records > 3_000, "{} deals", cost.records);
    assert!(cost.windows > 1, "the readers shared the work");
    assert_full_pages(&cost, 0.9, true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sparse_history_is_read_in_full_pages_too() {
    let sim = support::simulator(30_000, |c| c.history_days = 3_650).await;
    let store = support::store().await;
    let cost = backfill_exactly(&sim, &support::syncer(&store, &sim, PAGE, four_readers()), ObjectKind::Deal).await;
    assert!(cost.windows > 1, "the readers shared the work");
    assert_full_pages(&cost, 0.9, true);
}

/// Most of the records in a few milliseconds, the rest spread over ten years: windows split
/// next to (never inside) a crowded millisecond, and records there are all read once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skewed_history_with_thousands_of_records_in_one_millisecond_loses_none_at_window_edges() {
    for (bounds, archived_listed) in [(BoundSemantics::Inclusive, true), (BoundSemantics::Exclusive, false)] {
        let sim = support::simulator(1_000, |c| {
            c.history_days = 3_650;
            c.bounds = bounds;
            c.archived_listed = archived_listed;
        })
        .await;
        let now = chrono::Utc::now().timestamp_millis();
        // 1,200 deals in one millisecond long ago; and the newest ones 150 milliseconds in a
        // row with 40 each, so readers find them dense and window edges and page edges fall
        // inside crowded milliseconds.
        let crowded = std::iter::once((now - 400 * 86_400_000, 1_200)).chain((0..150).map(|ms| (now - 86_400_000 + ms, 40)));
        for (at, count) in crowded {
            sim.simulator.set_clock(Clock::Frozen(at));
            for _ in 0..count {
                sim.simulator.apply(Mutation::Create(ObjectKind::Deal.resource())).unwrap();
            }
        }
        sim.simulator.set_clock(Clock::Real);
        let store = support::store().await;
        let cost = backfill_exactly(&sim, &support::syncer(&store, &sim, PAGE, four_readers()), ObjectKind::Deal).await;
        assert!(cost.windows > 1, "{bounds:?}: the readers shared the work");
        // Each window is asked for one millisecond more on each side (docs/correctness.md, question 1), so under
        // inclusive bounds a crowded millisecond next to a window's edge is listed twice:
        // a cost in requests on such data, never a record missed or doubled.
        assert_full_pages(&cost, 0.75, false);
    }
}

/// No probes: an object of up to one page costs one request, of up to two pages two.
#[tokio::test]
async fn a_small_object_costs_one_or_two_requests() {
    let sim = support::simulator(1_500, |_| {}).await;
    let store = support::store().await;
    let syncer = support::syncer(&store, &sim, 250, four_readers());
    let mut sizes = Vec::new();
    for kind in support::listed_kinds().filter(|k| *k != ObjectKind::PartnerTeamMember) {
        let cost = backfill_exactly(&sim, &syncer, kind).await;
        assert!(cost.records <= 500, "{kind}: {} records is not small", cost.records);
        assert_eq!(cost.requests, cost.records.div_ceil(250).max(1) as u64, "{kind}: {} records", cost.records);
        sizes.push(cost.records);
    }
    assert!(sizes.iter().any(|n| *n <= 250) && sizes.iter().any(|n| *n > 250), "one-page and two-page objects: {sizes:?}");
}
