//! One request budget (docs/request-budget.md) against the simulator over HTTP: the rate found for a limit
//! the client is not told, priorities between a backfill and a write-back, and the rate
//! remembered across a restart of the real daemon.

use partnerstack_mirror::sync::Reading;
use std::time::Duration;

use partnerstack_mirror::{
    backoff::Backoff,
    object::ObjectKind,
    partnerstack::{with_priority, ApiClient, ClientConfig, Collection, ListQuery, Priority, RateLimit, START_RATE},
    queue::{Handled, QueueSettings, Worker},
    store::Store,
    sync::Syncer,
};
use partnerstack_simulator::{RunningSimulator, SimulatorConfig};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::support;

/// A client that finds the allowed rate itself, under `ceiling` if given.
fn adaptive_client(sim: &RunningSimulator, page_size: u16, ceiling: Option<f64>) -> ApiClient {
    ApiClient::new(ClientConfig { rate_limit: RateLimit::Adaptive { ceiling }, ..support::client_config(sim, page_size) }).unwrap()
}

/// Requests answered 429 so far.
fn refused(api: &ApiClient) -> u64 {
    api.request_counts().iter().filter(|(_, status, _, _)| status == "429").map(|(_, _, _, n)| n).sum()
}

/// A reader that wants the API again as soon as it has its answer, like a backfill's.
async fn read_until(api: ApiClient, stop: CancellationToken) {
    let (groups, query) = (Collection::Objects(ObjectKind::Group), ListQuery { limit: Some(1), ..ListQuery::default() });
    while !stop.is_cancelled() {
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = with_priority(Priority::Bulk, api.list_page(&groups, &query, None)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_found_settles_near_a_limit_the_client_is_not_told_and_follows_it_up() {
    let sim = support::simulator(50, |c| c.rate_limit_per_sec = Some(20.0)).await;
    let api = adaptive_client(&sim, 1, None);
    let stop = CancellationToken::new();
    let readers: Vec<_> = (0..4).map(|_| tokio::spawn(read_until(api.clone(), stop.clone()))).collect();

    // Past the first probe's overshoot: cut by 429s at least twice, and near the limit.
    support::eventually("the rate to settle near 20/s", Duration::from_secs(60), || async {
        refused(&api) >= 2 && api.learned_rate().is_some_and(|r| (14.0..=30.0).contains(&r))
    })
    .await;
    let (sent, rejected) = (api.requests_sent(), refused(&api));
    support::eventually("300 more requests at the settled rate", Duration::from_secs(60), || async { api.requests_sent() >= sent + 300 })
        .await;
    let share = (refused(&api) - rejected) as f64 / (api.requests_sent() - sent) as f64;
    assert!(share <= 0.1, "{:.1}% of requests at the settled rate were answered 429", share * 100.0);
    let rate = api.learned_rate().unwrap();
    assert!((14.0..=30.0).contains(&rate), "the rate found for a limit of 20/s: {rate:.1}");

    sim.simulator.configure(|c| c.rate_limit_per_sec = Some(40.0));
    support::eventually("the rate to climb past 30/s once the limit is 40/s", Duration::from_secs(60), || async {
        api.learned_rate().is_some_and(|r| r > 30.0)
    })
    .await;
    stop.cancel();
    for reader in readers {
        reader.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_back_waits_behind_at_most_one_backfill_request() {
    let sim = support::simulator(3_000, |_| {}).await;
    let store = support::store().await;
    // Four permits a second, and backfills of two-record pages that keep them all taken: three
    // objects at once, so that several backfill requests are always waiting for a permit.
    let api = adaptive_client(&sim, 2, Some(4.0));
    let stop = CancellationToken::new();
    let syncer = Syncer::new(api.clone(), store.clone(), support::settings(), stop.clone());
    let backfills: Vec<_> = [ObjectKind::Deal, ObjectKind::Customer, ObjectKind::Partnership]
        .into_iter()
        .map(|kind| {
            let syncer = syncer.clone();
            tokio::spawn(async move { syncer.sync_object(kind, Reading::Changes).await })
        })
        .collect();
    support::eventually("the backfills' readers to queue for permits", Duration::from_secs(60), || async {
        api.budget().waiting(Priority::Bulk) >= 3
    })
    .await;

    let deal = sim.simulator.keys(ObjectKind::Deal)[0].clone();
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO write_queue (operation, object_type, object_key, payload) VALUES ('update', 'deal', $1, $2) RETURNING id",
    )
    .bind(&deal)
    .bind(json!({"amount": 4242}))
    .fetch_one(store.pool())
    .await
    .unwrap();
    let worker = Worker::new(api.clone(), store.clone(), queue_settings(), "budget-test");
    let received_before = sim.simulator.request_count();
    assert_eq!(worker.work_one().await.unwrap(), Some(Handled::Succeeded(id)));

    let write = sim.simulator.writes().into_iter().find(|w| w.method == "PATCH").expect("the write-back reached the API");
    let overtaking = write.received_before - received_before;
    assert!(
        overtaking <= 1,
        "{overtaking} backfill requests reached the API between the write-back's queueing and its own request (at most the one already granted)"
    );
    stop.cancel();
    for backfill in backfills {
        let _ = backfill.await.unwrap();
    }
}

fn queue_settings() -> QueueSettings {
    QueueSettings {
        workers: 1,
        max_attempts: 3,
        lease: Duration::from_secs(30),
        poll: Duration::from_millis(20),
        backoff: Backoff::new(Duration::from_millis(5), Duration::from_millis(40)),
        lookup_grace: Duration::ZERO,
    }
}

/// The daemon with no `requests_per_second`, as an operator runs it by default.
fn daemon(sim: &RunningSimulator, store: &Store, port: u16) -> tokio::process::Child {
    let mut command = support::binary(sim, store, &["run"]);
    command
        .env_remove("PSM_PARTNERSTACK__REQUESTS_PER_SECOND")
        .env("PSM_SYNC__INTERVAL", "200ms")
        .env("PSM_HTTP__LISTEN", format!("127.0.0.1:{port}"));
    command.spawn().expect("spawn the daemon")
}

/// `partnerstack_mirror_api_rate_limit_per_second` from the daemon's `/metrics`.
async fn scraped_rate(port: u16) -> Option<f64> {
    let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await.ok()?.text().await.ok()?;
    text.lines().find_map(|l| l.strip_prefix("partnerstack_mirror_api_rate_limit_per_second ")).and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_learned_survives_a_restart_of_the_daemon() {
    let sim = support::simulator(2_000, |c| c.rate_limit_per_sec = Some(20.0)).await;
    let store = support::store().await;
    let port = support::free_port();
    let mut first = daemon(&sim, &store, port);
    support::eventually_some("the daemon to find a rate well above its cautious start", Duration::from_secs(60), || async {
        scraped_rate(port).await.filter(|r| *r >= 2.0 * START_RATE)
    })
    .await;
    let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await.unwrap().text().await.unwrap();
    for series in [
        "partnerstack_mirror_api_permits_waiting{priority=\"urgent\"}",
        "partnerstack_mirror_api_permit_wait_seconds_total{priority=\"bulk\"}",
    ] {
        assert!(metrics.contains(series), "{series} in {metrics}");
    }
    support::sigterm(&first).await;
    assert!(first.wait().await.unwrap().success());
    let (remembered, public_key): (f64, String) =
        sqlx::query_as("SELECT requests_per_second, public_key FROM api_budget").fetch_one(store.pool()).await.unwrap();
    assert_eq!(public_key, SimulatorConfig::default().public_key, "kept per key; the private key is not stored");
    assert!(remembered > START_RATE, "remembered at shutdown: {remembered}");

    // Without a limit now, nothing can lower the rate: the restarted daemon shows at least
    // what it remembered, where a fresh start would show the cautious 5/s.
    sim.simulator.configure(|c| c.rate_limit_per_sec = None);
    let mut second = daemon(&sim, &store, port);
    let started_at = support::eventually_some("the restarted daemon's /metrics", Duration::from_secs(30), || scraped_rate(port)).await;
    assert!(started_at >= remembered, "restarted at {started_at}/s, having remembered {remembered}/s");
    support::sigterm(&second).await;
    assert!(second.wait().await.unwrap().success());
}
