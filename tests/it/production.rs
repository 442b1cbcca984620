//! The daemon under production conditions, as an operator meets them: credentials that stop
//! working for a while, a database that goes away, an API that asks to wait, a call that hangs.

use std::time::Duration;

use partnerstack_mirror::object::ObjectKind;
use partnerstack_simulator::SimulatorConfig;
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

/// `WATCHDOG=1` means the loops are alive and doing what they should: waiting out an 8 s
/// `Retry-After` with a 2 s watchdog period is that, and the pings go on; a database that
/// stops answering in the middle of a call is not, and the pings stop until it answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watchdog_pings_through_a_long_retry_after_and_stops_when_a_loop_hangs() {
    use partnerstack_simulator::Fault;
    let sim = support::simulator(300, |_| {}).await;
    sim.simulator.inject(Fault::RateLimited(Duration::from_secs(8)), 1);
    let store = support::store().await;
    let proxy = DatabaseProxy::start().await;
    let notify = support::NotifySocket::bind();
    let log = std::env::temp_dir().join(format!("psm-watchdog-{}-{}.log", std::process::id(), rand::random::<u32>()));
    let mut command = support::binary(&sim, &store, &["run"]);
    command
        .env("PSM_SYNC__INTERVAL", "200ms")
        .env("PSM_HTTP__LISTEN", "127.0.0.1:0")
        .env("DATABASE_URL", &proxy.url)
        .env("NOTIFY_SOCKET", &notify.path)
        .env("WATCHDOG_USEC", "2000000")
        .env("PSM_PARTNERSTACK__TIMEOUT", "1s")
        .env("PSM_DATABASE__STATEMENT_TIMEOUT", "3s")
        .stderr(std::fs::File::create(&log).unwrap());
    let mut child = command.spawn().unwrap();

    // Through the Retry-After: a ping at least every watchdog period, and a STATUS= saying why.
    let started = tokio::time::Instant::now();
    let mut last_ping: Option<tokio::time::Instant> = None;
    let mut heard_wait = false;
    while started.elapsed() < Duration::from_secs(10) {
        let message = notify.next(Duration::from_secs(2)).await.expect("the daemon went silent for a whole watchdog period");
        if message.contains("WATCHDOG=1") {
            if let Some(previous) = last_ping {
                assert!(previous.elapsed() < Duration::from_secs(2), "no ping for {:?}", previous.elapsed());
            }
            last_ping = Some(tokio::time::Instant::now());
        }
        heard_wait |= message.contains("STATUS=PartnerStack rate limit: resuming in");
    }
    assert!(heard_wait, "STATUS= never said what the daemon waits for");
    support::eventually("a pass to finish after the wait", Duration::from_secs(30), || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM sync_runs WHERE outcome = 'succeeded'")
            .fetch_one(store.pool())
            .await
            .unwrap_or(0)
            > 0
    })
    .await;
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(!logged.contains("\"level\":\"ERROR\""), "waiting is not an error:\n{logged}");

    // A call that never returns: the daemon's scheduler waits on a lock the test holds, the
    // link freezes, the lock goes; the statement is done at the server but its answer never
    // arrives, so no timeout of the server's can end it. The loop breaks its promise and
    // the pings stop. (A database that refuses connections is not a hang: the calls fail
    // within the pool's timeout and the loops go on.)
    let mut blocker = store.pool().begin().await.unwrap();
    sqlx::query("LOCK TABLE sync_leases IN ACCESS EXCLUSIVE MODE").execute(&mut *blocker).await.unwrap();
    let app = format!("partnerstack-mirror/{}/%", store.schema());
    support::eventually("the daemon to wait on the lock", Duration::from_secs(10), || async {
        sqlx::query_scalar::<_, bool>(
            "SELECT count(*) > 0 FROM pg_stat_activity WHERE application_name LIKE $1 AND wait_event_type = 'Lock'",
        )
        .bind(&app)
        .fetch_one(store.pool())
        .await
        .unwrap()
    })
    .await;
    proxy.set(Link::Frozen);
    blocker.commit().await.unwrap();
    let silence = async {
        let mut last_ping = tokio::time::Instant::now();
        loop {
            match notify.next(Duration::from_millis(500)).await {
                Some(m) if m.contains("WATCHDOG=1") => last_ping = tokio::time::Instant::now(),
                _ if last_ping.elapsed() > Duration::from_secs(4) => break,
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(40), silence).await.expect("the pings never stopped while a call hung");
    // And they come back when it answers again.
    proxy.set(Link::Up);
    let ping = async { while !notify.next(Duration::from_secs(1)).await.is_some_and(|m| m.contains("WATCHDOG=1")) {} };
    tokio::time::timeout(Duration::from_secs(30), ping).await.expect("the pings did not resume");
    support::sigterm(&child).await;
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await.expect("exits in time").unwrap();
    assert!(status.success(), "{status:?}");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("withholding the watchdog ping"), "the hang was not logged:\n{logged}");
    let _ = std::fs::remove_file(&log);
}

/// A database that refuses connections is named as such at once, not after the pool has
/// retried for its whole acquire timeout and can only say that it timed out; the password in
/// the URL is never printed.
#[tokio::test]
async fn a_command_against_a_refusing_database_says_so_and_keeps_the_password() {
    let sim = support::simulator(1, |_| {}).await;
    let store = support::store().await;
    let closed = support::free_port();
    let (code, said) = support::exit_and_stderr(
        support::binary(&sim, &store, &["status"])
            .env("DATABASE_URL", format!("postgres://mirror:hunter2-secret@127.0.0.1:{closed}/mirror"))
            .env("PSM_DATABASE__STATEMENT_TIMEOUT", "300s"),
    )
    .await;
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("cannot connect to the database") && said.contains("Connection refused"), "{said}");
    assert_eq!(said.matches("Connection refused").count(), 1, "said once: {said}");
    assert!(!said.contains("hunter2"), "{said}");
}

/// An operator's command pointed at a schema that holds no mirror (a typo in
/// `database.schema`) says so, and does not quietly create a new, empty mirror there.
#[tokio::test]
async fn a_command_on_a_mistyped_schema_says_so_and_creates_nothing() {
    let sim = support::simulator(1, |_| {}).await;
    let store = support::store().await;
    let typo = format!("{}_typo", store.schema());
    for args in [&["status"][..], &["queue", "list"], &["events", "tail"], &["delivery", "list"]] {
        let (code, said) = support::exit_and_stderr(support::binary(&sim, &store, args).env("PSM_DATABASE__SCHEMA", &typo)).await;
        assert_eq!(code, Some(2), "{args:?}: {said}");
        assert!(said.contains(&format!("schema `{typo}` holds no mirror")), "{args:?}: {said}");
    }
    let created: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
        .bind(&typo)
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert!(!created, "no schema was created");
}
