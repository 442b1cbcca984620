//! The daemon under production conditions, as an operator meets them: credentials that stop
//! working for a while, a database that goes away, an API that asks to wait, a call that hangs.

use std::time::Duration;

use partnerstack_mirror::{object::ObjectKind, simulator::SimulatorConfig};
use serde_json::json;

use crate::support::{self, DatabaseProxy, Link};

async fn get(url: &str) -> (u16, String) {
    match reqwest::get(url).await {
        Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
        Err(_) => (0, String::new()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_credentials_pause_everything_uncharged_until_the_api_accepts_them_again() {
    let sim = support::simulator(300, |_| {}).await;
    let store = support::store().await;
    let deals: Vec<String> = sim.simulator.keys(ObjectKind::Deal).into_iter().take(4).collect();
    for (i, deal) in deals.iter().enumerate() {
        sqlx::query("INSERT INTO write_queue (operation, object_type, object_key, payload) VALUES ('update', 'deal', $1, $2)")
            .bind(deal)
            .bind(json!({"amount": 7_000 + i}))
            .execute(store.pool())
            .await
            .unwrap();
    }
    // The key is rotated at PartnerStack before the daemon starts.
    sim.simulator.configure(|c| c.private_key = "sk_rotated".into());
    let port = support::free_port();
    let mut child = support::daemon(&sim, &store, &[("PSM_HTTP__LISTEN", format!("127.0.0.1:{port}"))]);

    support::eventually("the daemon to report the pause in `daemons`", Duration::from_secs(30), || async {
        store.daemons().await.unwrap().iter().any(|d| d.problem.as_deref().is_some_and(|p| p.contains("rejected the credentials")))
    })
    .await;
    let (status, body) = get(&format!("http://127.0.0.1:{port}/readyz")).await;
    assert_eq!(status, 503);
    assert!(body.contains("rejected the credentials"), "{body}");
    let report = support::binary(&sim, &store, &["status"]).stdout(std::process::Stdio::piped()).output().await.unwrap();
    let report = String::from_utf8_lossy(&report.stdout);
    assert!(report.contains("PROBLEM") && report.contains("rejected the credentials (401)"), "{report}");
    let (pending, charged): (i64, i64) =
        sqlx::query_as("SELECT count(*) FILTER (WHERE status = 'pending'), coalesce(sum(attempts), 0) FROM write_queue")
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert_eq!((pending, charged), (deals.len() as i64, 0), "queued requests wait, uncharged");

    sim.simulator.configure(|c| c.private_key = SimulatorConfig::default().private_key);
    support::eventually("every request to succeed once the keys work", Duration::from_secs(60), || async {
        let done: i64 =
            sqlx::query_scalar("SELECT count(*) FROM write_queue WHERE status = 'succeeded'").fetch_one(store.pool()).await.unwrap();
        done == deals.len() as i64
    })
    .await;
    let attempts: Vec<i32> = sqlx::query_scalar("SELECT attempts FROM write_queue ORDER BY id").fetch_all(store.pool()).await.unwrap();
    assert_eq!(attempts, vec![1; deals.len()], "no attempt was charged for the rejected keys");
    for (i, deal) in deals.iter().enumerate() {
        assert_eq!(sim.simulator.record(ObjectKind::Deal, deal).unwrap()["amount"], 7_000 + i);
        let applied = sim.simulator.writes().iter().filter(|w| w.path.ends_with(deal.as_str()) && w.status == 200).count();
        assert_eq!(applied, 1, "deal {deal} was updated once");
    }
    support::eventually("the pause to be lifted in `daemons`", Duration::from_secs(30), || async {
        store.daemons().await.unwrap().iter().all(|d| d.problem.is_none())
    })
    .await;

    support::sigterm(&child).await;
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await.expect("exits in time").unwrap();
    assert!(status.success(), "{status:?}");
    assert!(store.daemons().await.unwrap().is_empty(), "a clean stop removes the daemon's line");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_answer_while_the_database_is_down() {
    let sim = support::simulator(300, |_| {}).await;
    let store = support::store().await;
    let proxy = DatabaseProxy::start().await;
    let port = support::free_port();
    let mut child =
        support::daemon(&sim, &store, &[("DATABASE_URL", proxy.url.clone()), ("PSM_HTTP__LISTEN", format!("127.0.0.1:{port}"))]);
    let metrics = format!("http://127.0.0.1:{port}/metrics");
    support::eventually("a first pass and the database's gauges", Duration::from_secs(60), || async {
        let (status, body) = get(&metrics).await;
        status == 200 && body.contains("partnerstack_mirror_database_up 1") && body.contains("partnerstack_mirror_sync_lag_seconds{")
    })
    .await;

    proxy.set(Link::Down);
    let (status, body) = get(&metrics).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("partnerstack_mirror_database_up 0"), "{body}");
    for present in
        ["partnerstack_mirror_api_requests_total{", "partnerstack_mirror_queue_attempts_total{", "partnerstack_mirror_rows_written_total{"]
    {
        assert!(body.contains(present), "{present} is missing while the database is down:\n{body}");
    }
    for absent in ["partnerstack_mirror_sync_lag_seconds", "partnerstack_mirror_queue_depth", "partnerstack_mirror_last_event_id"] {
        assert!(!body.contains(absent), "{absent} was made up while the database is down:\n{body}");
    }
    let (status, body) = get(&format!("http://127.0.0.1:{port}/readyz")).await;
    assert_eq!(status, 503);
    assert!(body.contains("database unreachable"), "{body}");

    proxy.set(Link::Up);
    support::eventually("the database's gauges to come back", Duration::from_secs(30), || async {
        get(&metrics).await.1.contains("partnerstack_mirror_database_up 1")
    })
    .await;
    support::sigterm(&child).await;
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await.expect("exits in time").unwrap();
    assert!(status.success(), "{status:?}");
}
