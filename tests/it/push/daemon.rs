//! The daemon runs each push on its schedule; `/metrics` counts its runs and `status` shows
//! the last one.

use super::{bad_input::toml_push, *};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_runs_a_push_on_its_schedule_and_shows_it_in_metrics_and_status() {
    let (sim, store, _) = mirrored(200).await;
    let push = toml_push(&[
        ("name", "tiers"),
        ("object", "partnerships"),
        ("query", &format!("SELECT key, ARRAY['tier:gold'] AS tags FROM {}.partnerships WHERE deleted_at IS NULL", store.schema())),
        ("manage_tags", "tier:*"),
        ("max_changes", "100000"),
        ("interval", "200ms"),
    ]);
    let port = support::free_port();
    let mut daemon = support::daemon(&sim, &store, &[("PSM_PUSH", push.clone()), ("PSM_HTTP__LISTEN", format!("127.0.0.1:{port}"))]);
    let runs = || async {
        let outcomes: Vec<(String, i64)> = sqlx::query_as("SELECT outcome, in_flight FROM push_runs WHERE push = 'tiers' ORDER BY id")
            .fetch_all(store.pool())
            .await
            .unwrap();
        outcomes
    };
    // It queues, its workers carry the changes out, and a later run finds nothing to do: not
    // even requests still on their way (a run while they are is `unchanged` too).
    support::eventually("the push to change PartnerStack and then find nothing to do", PATIENCE, || async {
        let outcomes = runs().await;
        outcomes.first().is_some_and(|(o, _)| o == "changed")
            && outcomes.last().is_some_and(|(o, in_flight)| o == "unchanged" && *in_flight == 0)
    })
    .await;
    let keys = partnership_keys(&store, 3).await;
    for key in &keys {
        assert!(tags_at_api(&sim, key).contains(&"tier:gold".to_owned()), "{key}");
    }

    let metrics = support::eventually_some("/metrics to count the runs", PATIENCE, || async {
        let text = reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await.ok()?.text().await.ok()?;
        text.contains("partnerstack_mirror_push_runs_total{push=\"tiers\",outcome=\"changed\"} 1").then_some(text)
    })
    .await;
    assert!(metrics.contains("partnerstack_mirror_push_runs_total{push=\"tiers\",outcome=\"braked\"} 0"), "{metrics}");
    let live: i64 = sqlx::query_scalar("SELECT count(*) FROM partnerships WHERE deleted_at IS NULL").fetch_one(store.pool()).await.unwrap();
    assert!(metrics.contains(&format!("partnerstack_mirror_push_requests_queued_total{{push=\"tiers\"}} {live}")), "{metrics}");
    assert!(metrics.contains("partnerstack_mirror_push_rows_read_total{push=\"tiers\"}"), "{metrics}");
    assert!(metrics.contains("partnerstack_mirror_push_refused_by_brake_total{push=\"tiers\"} 0"), "{metrics}");

    let output = support::binary(&sim, &store, &["status"]).stdout(std::process::Stdio::piped()).output().await.unwrap();
    let status = String::from_utf8_lossy(&output.stdout);
    assert!(status.contains("push tiers: last run ") && status.contains(" UTC unchanged: "), "{status}");
    support::sigterm(&daemon).await;
    assert!(daemon.wait().await.unwrap().success());
}

#[tokio::test]
async fn one_run_of_a_push_at_a_time_and_a_run_that_lost_its_lease_queues_nothing() {
    let (_sim, store, _) = mirrored(100).await;
    let query = format!("SELECT key, ARRAY['tier:gold'] AS tags FROM {}.partnerships", store.schema());
    let config =
        push_config("tiers", &format!("object = \"partnerships\"\nquery = {query:?}\nmanage_tags = [\"tier:*\"]\nmax_changes = 1000"));
    let tiers = pusher(&store, &config).await;
    // Another instance is running it.
    let elsewhere = store.acquire_push_lease("tiers", "elsewhere", Duration::from_secs(60)).await.unwrap().expect("free");
    let error = tiers.run(false).await.unwrap_err();
    assert!(matches!(error, partnerstack_mirror::push::PushError::Busy { .. }), "{error}");
    store.release_push_lease(&elsewhere).await.unwrap();
    assert!(queued(&store, "tiers").await.is_empty());

    // A run whose lease another instance took over (it stalled past its TTL) cannot queue.
    let stalled = store.acquire_push_lease("tiers", "stalled", Duration::from_millis(1)).await.unwrap().expect("free");
    let plan = tiers.plan().await.unwrap();
    support::eventually("the stalled run's lease to lapse", PATIENCE, || async {
        store.acquire_push_lease("tiers", "taker", Duration::from_secs(60)).await.unwrap().is_some()
    })
    .await;
    let requests: Vec<&partnerstack_mirror::store::PlannedRequest> = plan.requests.iter().collect();
    let line = partnerstack_mirror::store::PushRunLine { push: "tiers".into(), outcome: "changed".into(), ..Default::default() };
    let fenced = store.queue_push(&stalled, ObjectKind::Partnership, &requests, &line).await.unwrap_err();
    assert!(matches!(fenced, partnerstack_mirror::store::StoreError::Fenced { .. }), "{fenced}");
    assert!(queued(&store, "tiers").await.is_empty(), "the fenced run queued nothing");
    let runs: i64 = sqlx::query_scalar("SELECT count(*) FROM push_runs").fetch_one(store.pool()).await.unwrap();
    assert_eq!(runs, 0, "nor recorded a run");
}
