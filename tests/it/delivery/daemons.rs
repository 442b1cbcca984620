//! The real daemon delivering: killed with SIGKILL in the middle, and two of them at once.

use std::time::Duration;

use super::*;

/// One `[[delivery]]` in the environment, as `PSM_DELIVERY` (figment reads the inline table).
fn delivery_env(receiver: &Receiver) -> (&'static str, String) {
    (
        "PSM_DELIVERY",
        format!(
            r#"[{{name="hooks", url="{}", secret="{SECRET}", events=["test.*"], start="beginning", timeout="2s", min_backoff="50ms", max_backoff="500ms"}}]"#,
            receiver.url
        ),
    )
}

/// `records` records with `each` `test.changed` events, interleaved.
fn test_events(records: usize, each: usize) -> Vec<(&'static str, String)> {
    (0..each).flat_map(|_| (0..records).map(|r| ("test.changed", format!("deal_{r}")))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_killed_during_delivery_loses_no_event_and_resends_only_under_the_same_webhook_id() {
    let sim = support::simulator(50, |_| {}).await;
    let store = support::store().await;
    let receiver = Receiver::start().await;
    // Slow enough that the kill lands in the middle.
    receiver.set(Behaviour::Slow(Duration::from_millis(5)));
    let mut ids = write(&store, &test_events(20, 10)).await;
    let mut first = support::daemon(&sim, &store, &[delivery_env(&receiver)]);
    support::eventually("some webhooks to arrive", Duration::from_secs(60), || async { receiver.accepted().len() >= 40 }).await;
    ids.extend(write(&store, &test_events(20, 5)).await);
    first.kill().await.unwrap();
    let at_kill = receiver.accepted().len();
    assert!(at_kill < ids.len(), "killed in the middle ({at_kill} of {})", ids.len());
    ids.extend(write(&store, &test_events(20, 5)).await);

    let mut second = support::daemon(&sim, &store, &[delivery_env(&receiver)]);
    support::eventually("every event to be delivered after the restart", Duration::from_secs(90), || async {
        row(&store, "hooks").await.0 >= *ids.last().unwrap()
    })
    .await;
    support::sigterm(&second).await;
    let status = tokio::time::timeout(Duration::from_secs(30), second.wait()).await.expect("exits in time").unwrap();
    assert!(status.success(), "{status:?}");

    let duplicates = check_delivered(&receiver, &ids);
    // Only what was in flight or not yet checkpointed when the process died is sent again.
    assert!(duplicates <= 1_000, "{duplicates} re-sends");
    assert!(receiver.requests().iter().all(|r| signature_is_valid(SECRET, r)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_on_one_database_deliver_each_event_once_between_them() {
    let sim = support::simulator(50, |_| {}).await;
    let store = support::store().await;
    let receiver = Receiver::start().await;
    let ports = [support::free_port(), support::free_port()];
    // Long leases: in the normal case (no crash, no pause) the lease never changes hands.
    let env =
        |port: u16| [delivery_env(&receiver), ("PSM_HTTP__LISTEN", format!("127.0.0.1:{port}")), ("PSM_SYNC__LEASE_TTL", "20s".into())];
    let mut daemons = [support::daemon(&sim, &store, &env(ports[0])), support::daemon(&sim, &store, &env(ports[1]))];
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.extend(write(&store, &test_events(30, 4)).await);
    }
    support::eventually("every event to be delivered", Duration::from_secs(90), || async {
        row(&store, "hooks").await.0 >= *ids.last().unwrap()
    })
    .await;
    let duplicates = check_delivered(&receiver, &ids);
    assert_eq!(duplicates, 0, "each event was delivered once between the two daemons");

    let scrape = || async {
        let mut text = String::new();
        for port in ports {
            text.push_str(&reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await.unwrap().text().await.unwrap());
        }
        text
    };
    // The sync's own events (the simulator's backfill) pass too, not matching.
    support::eventually("the lag gauges to reach zero", Duration::from_secs(30), || async {
        scrape().await.contains("partnerstack_mirror_delivery_lag_events{delivery=\"hooks\"} 0")
    })
    .await;
    let metrics = scrape().await;
    let sent: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("partnerstack_mirror_delivery_sent_total{delivery=\"hooks\"}"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(sent as usize, ids.len(), "the daemons' sent counters add up to the events");
    for series in [
        "partnerstack_mirror_delivery_failed_total{delivery=\"hooks\"} 0",
        "partnerstack_mirror_delivery_dead_lettered_total{delivery=\"hooks\"} 0",
        "partnerstack_mirror_delivery_lag_events{delivery=\"hooks\"} 0",
        "partnerstack_mirror_delivery_lag_seconds{delivery=\"hooks\"} 0",
        "partnerstack_mirror_delivery_enabled{delivery=\"hooks\"} 1",
        "partnerstack_mirror_delivery_latency_seconds_count{delivery=\"hooks\"}",
    ] {
        assert!(metrics.contains(series), "{series} in\n{metrics}");
    }
    for daemon in &mut daemons {
        support::sigterm(daemon).await;
        let status = tokio::time::timeout(Duration::from_secs(30), daemon.wait()).await.expect("exits in time").unwrap();
        assert!(status.success(), "{status:?}");
    }
}
