//! The daemon as an operator runs it: systemd notifications, the HTTP endpoint, SIGTERM,
//! leases with fencing, several instances on one database.

use partnerstack_mirror::sync::Reading;
use std::{collections::HashMap, os::unix::net::UnixDatagram, time::Duration};

use partnerstack_mirror::{
    diff::EventSource,
    http::{self, Endpoint},
    metrics::{Metrics, Sources},
    object::ObjectKind,
    store::{PageWrite, StoreError},
};
use partnerstack_simulator::Mutation;
use tokio::process::Child;
use tokio_util::sync::CancellationToken;

use crate::support;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_hears_ready_status_watchdog_and_stopping() {
    let sim = support::simulator(300, |_| {}).await;
    let store = support::store().await;
    let dir = std::env::temp_dir().join(format!("psm-notify-{}-{}", std::process::id(), rand::random::<u32>()));
    std::fs::create_dir_all(&dir).unwrap();
    let socket_path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(30))).unwrap();

    let mut child =
        support::daemon(&sim, &store, &[("NOTIFY_SOCKET", socket_path.display().to_string()), ("WATCHDOG_USEC", "1000000".into())]);
    let mut heard = Vec::new();
    let mut buf = vec![0_u8; 4096];
    while !heard.iter().any(|m: &String| m.contains("WATCHDOG=1")) {
        let n = socket.recv(&mut buf).expect("a notification within 30s");
        heard.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert!(heard[0].contains("READY=1"), "READY comes first: {heard:?}");
    assert!(heard[0].contains("STATUS="), "{heard:?}");

    support::sigterm(&child).await;
    while !heard.iter().any(|m| m.contains("STOPPING=1")) {
        let n = socket.recv(&mut buf).expect("STOPPING=1 before exit");
        heard.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await.expect("exits in time").unwrap();
    assert!(status.success(), "{status:?}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn the_endpoint_reports_health_readiness_and_metrics() {
    let sim = support::simulator(300, |_| {}).await;
    let store = support::store().await;
    let syncer = support::syncer(&store, &sim, 100, support::settings());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let metrics = Metrics::new(Sources {
        written: &syncer.progress().written,
        api: syncer.api(),
        queue: &Default::default(),
        intake: &Default::default(),
        deliveries: &Default::default(),
        pushes: &Default::default(),
    });
    let endpoint = Endpoint {
        store: store.clone(),
        api: syncer.api().clone(),
        metrics: metrics.into(),
        intake: None,
        freshness: Duration::from_secs(60),
        objects: vec![ObjectKind::Deal, ObjectKind::Lead],
    };
    let server = tokio::spawn(http::serve(listener, endpoint, shutdown.clone()));
    let client = reqwest::Client::new();

    assert_eq!(client.get(format!("{base}/healthz")).send().await.unwrap().status(), 200);
    let not_ready = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(not_ready.status(), 503);
    assert!(not_ready.text().await.unwrap().contains("never synced"));

    syncer.sync_object(ObjectKind::Deal, Reading::Changes).await.unwrap();
    syncer.sync_object(ObjectKind::Lead, Reading::Changes).await.unwrap();
    assert_eq!(client.get(format!("{base}/readyz")).send().await.unwrap().status(), 200);
    // Empty is a value too: every status and every synced object has its series.
    let metrics = client.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    for status in ["pending", "running", "succeeded", "failed", "cancelled"] {
        assert!(metrics.contains(&format!("partnerstack_mirror_queue_depth{{status=\"{status}\"}} 0")), "{status}: {metrics}");
    }
    assert!(metrics.contains("partnerstack_mirror_quarantined_records{object=\"deals\"} 0"), "{metrics}");

    // A write-back request no worker has taken for a minute.
    sqlx::query("INSERT INTO write_queue (operation, object_type, object_key, run_after) VALUES ('refresh', 'deal', 'd', now() - interval '60 seconds')")
        .execute(store.pool())
        .await
        .unwrap();
    let metrics = client.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("partnerstack_mirror_queue_depth{status=\"pending\"} 1"), "{metrics}");
    let waited: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("partnerstack_mirror_queue_oldest_due_seconds "))
        .expect("the oldest due request's wait is reported")
        .parse()
        .unwrap();
    assert!((60.0..120.0).contains(&waited), "{waited}");
    let deals: i64 = sqlx::query_scalar("SELECT count(*) FROM deals").fetch_one(store.pool()).await.unwrap();
    assert!(metrics.contains(&format!("partnerstack_mirror_rows_written_total{{object=\"deals\"}} {deals}")), "{metrics}");
    assert!(metrics.contains("partnerstack_mirror_api_requests_total{"), "{metrics}");
    assert!(metrics.contains("partnerstack_mirror_sync_lag_seconds{object=\"deals\"}"), "{metrics}");
    assert!(metrics.contains("partnerstack_mirror_last_event_id"), "{metrics}");
    shutdown.cancel();
    server.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_pass_exits_cleanly_and_loses_nothing() {
    let sim = support::simulator(3_000, |_| {}).await;
    let store = support::store().await;
    let mut child = support::daemon(&sim, &store, &[]);
    support::eventually("a few pages", Duration::from_secs(60), || async {
        sqlx::query_scalar::<_, i64>("SELECT coalesce(sum(pages), 0)::bigint FROM sync_runs").fetch_one(store.pool()).await.unwrap_or(0)
            >= 5
    })
    .await;

    support::sigterm(&child).await;
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await.expect("exits within 30s").unwrap();
    assert!(status.success(), "{status:?}");
    let running: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sync_runs WHERE outcome = 'running'").fetch_one(store.pool()).await.unwrap();
    assert_eq!(running, 0, "every run was closed");
    let held: i64 = sqlx::query_scalar("SELECT count(*) FROM sync_leases WHERE expires_at > now()").fetch_one(store.pool()).await.unwrap();
    assert_eq!(held, 0, "leases were released");

    // A fresh pass completes the mirror with no record created twice.
    let syncer = support::syncer(&store, &sim, 100, support::settings());
    support::sync_all(&syncer).await;
    for kind in [ObjectKind::Deal, ObjectKind::Customer, ObjectKind::Partnership] {
        let rows: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {}", kind.table())).fetch_one(store.pool()).await.unwrap();
        assert_eq!(rows as usize, sim.simulator.keys(kind).len(), "{kind}");
    }
    let doubled: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT 1 FROM events WHERE event_type LIKE '%.created' GROUP BY object_type, object_key HAVING count(*) > 1) d",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(doubled, 0);
}

#[tokio::test]
async fn a_writer_whose_lease_was_taken_over_is_fenced_off() {
    let sim = support::simulator(100, |_| {}).await;
    let store = support::store().await;
    let ttl = Duration::from_secs(30);
    let first = store.acquire_lease(ObjectKind::Deal, "daemon-a", ttl).await.unwrap().expect("free");
    assert!(store.acquire_lease(ObjectKind::Deal, "daemon-b", ttl).await.unwrap().is_none(), "held by a");

    // a stalls past its lease; b takes over with a higher epoch.
    sqlx::query("UPDATE sync_leases SET expires_at = now() - interval '1 second'").execute(store.pool()).await.unwrap();
    let second = store.acquire_lease(ObjectKind::Deal, "daemon-b", ttl).await.unwrap().expect("expired, so free");
    assert!(second.epoch > first.epoch);

    let record = partnerstack_mirror::record::from_value(ObjectKind::Deal, sim.simulator.records(ObjectKind::Deal)[0].clone()).unwrap();
    let page = |lease| PageWrite {
        kind: ObjectKind::Deal,
        records: vec![record.clone()],
        rejected: &[],
        source: EventSource::Poll,
        emit_events: true,
        run_id: None,
        advance: None,
        lease: Some(lease),
    };
    let err = store.write_page(page(&first)).await.expect_err("a's write is fenced");
    assert!(matches!(err, StoreError::Fenced { .. }), "{err:?}");
    assert_eq!(support::last_event_id(&store).await, 0, "nothing of a's page was written");
    store.write_page(page(&second)).await.expect("b writes");
    assert_eq!(support::last_event_id(&store).await, 1);
}

/// Three daemons share one database: the work spreads, one is killed with SIGKILL and one
/// loses its database connections, and still every change is mirrored and evented once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_daemons_share_the_work_survive_a_kill_and_event_each_change_once() {
    let sim = support::simulator(1_500, |_| {}).await;
    let store = support::store().await;
    let mut daemons: Vec<Child> = (0..3).map(|_| support::daemon(&sim, &store, &[])).collect();

    let backfilled = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM sync_state WHERE backfill_completed_at IS NOT NULL")
            .fetch_one(store.pool())
            .await
            .unwrap_or(0)
            >= (ObjectKind::default_set().len() as i64)
    };
    support::eventually("the backfill", Duration::from_secs(120), backfilled).await;
    let holders: i64 = sqlx::query_scalar("SELECT count(DISTINCT holder) FROM sync_runs").fetch_one(store.pool()).await.unwrap();
    assert!(holders >= 2, "passes spread over several daemons ({holders})");

    // Kill one outright; cut another's database connections.
    daemons[0].kill().await.unwrap();
    let victim = daemons[1].id().unwrap();
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1")
        .bind(format!("partnerstack-mirror/{}/{victim}", store.schema()))
        .execute(store.pool())
        .await
        .unwrap();

    let mut changed: HashMap<String, usize> = HashMap::new();
    for key in sim.simulator.keys(ObjectKind::Deal).into_iter().take(15) {
        sim.simulator.apply(Mutation::DealStage { key: key.clone() }).unwrap();
        changed.insert(key, 1);
    }
    support::eventually("the survivors to mirror every change", Duration::from_secs(60), || async {
        let mut caught = 0;
        for key in changed.keys() {
            let raw: Option<sqlx::types::Json<serde_json::Value>> =
                sqlx::query_scalar("SELECT raw FROM deals WHERE key = $1").bind(key).fetch_optional(store.pool()).await.unwrap_or(None);
            if raw.map(|r| r.0) == sim.simulator.record(ObjectKind::Deal, key) {
                caught += 1;
            }
        }
        caught == changed.len()
    })
    .await;
    for key in changed.keys() {
        let events = support::event_types(&store, ObjectKind::Deal, key).await;
        assert_eq!(events.iter().filter(|e| *e == "deal.stage_updated").count(), 1, "{key}: {events:?}");
    }
    for d in &mut daemons[1..] {
        support::sigterm(d).await;
        assert!(tokio::time::timeout(Duration::from_secs(30), d.wait()).await.expect("exits").unwrap().success());
    }
}
