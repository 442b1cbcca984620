//! PartnerStack webhooks in, through the real daemon's HTTP listener: rejected requests leave
//! nothing behind, object webhooks are hints that trigger a read (never data), training
//! completions are recorded once however often they come, and the inbox survives a crash.

use std::time::Duration;

use partnerstack_mirror::object::ObjectKind;
use partnerstack_simulator::Mutation;
use serde_json::{json, Value};

use crate::support;

const TOKEN: &str = "test-token-0123456789abcdef";

struct Daemon {
    child: tokio::process::Child,
    base: String,
}

impl Daemon {
    /// The real daemon with webhook intake on, polling only once an hour, so whatever is
    /// read after the first pass was read because of a webhook.
    fn start(sim: &partnerstack_simulator::RunningSimulator, store: &partnerstack_mirror::store::Store) -> Daemon {
        let port = support::free_port();
        let child = support::daemon(
            sim,
            store,
            &[
                ("PSM_HTTP__LISTEN", format!("127.0.0.1:{port}")),
                ("PSM_WEBHOOKS__TOKEN", TOKEN.into()),
                ("PSM_SYNC__INTERVAL", "1h".into()),
                ("PSM_SYNC__OBJECTS", "[\"deals\", \"partnerships\"]".into()),
            ],
        );
        Daemon { child, base: format!("http://127.0.0.1:{port}") }
    }

    async fn post(&self, token: &str, body: impl Into<reqwest::Body>) -> u16 {
        reqwest::Client::new()
            .post(format!("{}/webhooks/partnerstack/{token}", self.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    }

    async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.base)).await.unwrap().text().await.unwrap()
    }

    async fn stop(mut self) {
        support::sigterm(&self.child).await;
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await.expect("exits in time").unwrap();
        assert!(status.success(), "{status:?}");
    }
}

async fn backfilled(store: &partnerstack_mirror::store::Store) -> bool {
    let done: i64 = sqlx::query_scalar("SELECT count(*) FROM sync_state WHERE backfill_completed_at IS NOT NULL")
        .fetch_one(store.pool())
        .await
        .unwrap_or(0);
    done == 2
}

async fn inbox(store: &partnerstack_mirror::store::Store) -> Vec<(String, Option<String>)> {
    sqlx::query_as("SELECT outcome, event FROM webhook_inbox ORDER BY id").fetch_all(store.pool()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_an_oversize_body_and_a_body_that_is_not_json_are_turned_away_and_nothing_is_kept() {
    let sim = support::simulator(200, |_| {}).await;
    let store = support::store().await;
    let daemon = Daemon::start(&sim, &store);
    support::eventually("the endpoint to answer", Duration::from_secs(30), || async { daemon.post(TOKEN, "{}").await == 200 }).await;
    support::eventually("the first webhook to be handled", Duration::from_secs(30), || async {
        inbox(&store).await.iter().all(|(outcome, _)| outcome != "pending")
    })
    .await;

    assert_eq!(daemon.post("wrong-token-0123456789abcdef", r#"{"event": "deal.updated"}"#).await, 404);
    let too_large =
        reqwest::Client::new().post(format!("{}/webhooks/partnerstack/{TOKEN}", daemon.base)).body(vec![b' '; (1 << 20) + 1]).send().await;
    let too_large = too_large.unwrap();
    assert_eq!(too_large.status(), 413);
    let said: serde_json::Value = too_large.json().await.expect("a JSON answer like the 400's");
    assert_eq!(said["status"], 413, "{said}");
    assert_eq!(daemon.post(TOKEN, "this is not JSON").await, 400);
    assert_eq!(inbox(&store).await, [("ignored".to_owned(), None)], "only the accepted `{{}}` was kept");
    let metrics = daemon.metrics().await;
    for outcome in ["wrong_token", "too_large", "not_json"] {
        assert!(
            metrics.contains(&format!("partnerstack_mirror_webhooks_received_total{{outcome=\"{outcome}\"}} 1")),
            "{outcome}:\n{metrics}"
        );
    }
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_arrives_by_webhook_and_a_forged_one_changes_nothing() {
    let sim = support::simulator(300, |_| {}).await;
    let store = support::store().await;
    let daemon = Daemon::start(&sim, &store);
    support::eventually("the backfill", Duration::from_secs(60), || backfilled(&store)).await;
    let before = support::last_event_id(&store).await;

    // A forged webhook about a deal that did not change: at most an extra read, no event.
    let deal = sim.simulator.keys(ObjectKind::Deal)[0].clone();
    let forged = json!({"event": "deal.stage_updated", "data": {"key": deal, "stage": "Forged"}});
    assert_eq!(daemon.post(TOKEN, forged.to_string()).await, 200);
    support::eventually("the forged webhook's read", Duration::from_secs(30), || async {
        let reads: i64 =
            sqlx::query_scalar("SELECT count(*) FROM sync_runs WHERE object = 'deals' AND kind = 'poll' AND outcome = 'succeeded'")
                .fetch_one(store.pool())
                .await
                .unwrap();
        reads >= 1
    })
    .await;
    assert_eq!(support::last_event_id(&store).await, before, "a forged webhook made no event");
    let stage: String = sqlx::query_scalar("SELECT stage FROM deals WHERE key = $1").bind(&deal).fetch_one(store.pool()).await.unwrap();
    assert_ne!(stage, "Forged", "nothing of a webhook's body is stored as data");

    // A real change, announced by a webhook: read at once, its events marked `webhook`.
    sim.simulator.apply(Mutation::DealStage { key: deal.clone() }).unwrap();
    assert_eq!(daemon.post(TOKEN, json!({"event": "deal.stage_updated", "data": {"key": deal}}).to_string()).await, 200);
    support::eventually("the change to be mirrored", Duration::from_secs(30), || async {
        support::event_types_after(&store, before, ObjectKind::Deal, &deal).await.contains(&"deal.stage_updated".to_owned())
    })
    .await;
    let sources: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT source FROM events WHERE id > $1").bind(before).fetch_all(store.pool()).await.unwrap();
    assert_eq!(sources, ["webhook"]);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_webhooks_about_one_object_type_costs_a_handful_of_reads() {
    let sim = support::simulator(300, |_| {}).await;
    let store = support::store().await;
    let daemon = Daemon::start(&sim, &store);
    support::eventually("the backfill", Duration::from_secs(60), || backfilled(&store)).await;
    let deal = sim.simulator.keys(ObjectKind::Deal)[1].clone();
    sim.simulator.apply(Mutation::DealStage { key: deal.clone() }).unwrap();
    let client = reqwest::Client::new();
    let url = format!("{}/webhooks/partnerstack/{TOKEN}", daemon.base);
    let sends = (0..1000).map(|_| client.post(&url).body(json!({"event": "deal.updated", "data": {"key": deal}}).to_string()).send());
    for answer in futures::future::join_all(sends).await {
        assert_eq!(answer.unwrap().status(), 200);
    }
    support::eventually("every webhook to be handled", Duration::from_secs(60), || async {
        inbox(&store).await.iter().filter(|(o, _)| o == "read_requested").count() == 1000
    })
    .await;
    support::eventually("the change to be mirrored", Duration::from_secs(30), || async {
        support::event_types(&store, ObjectKind::Deal, &deal).await.contains(&"deal.stage_updated".to_owned())
    })
    .await;
    let reads: i64 = sqlx::query_scalar("SELECT count(*) FROM sync_runs WHERE object = 'deals' AND kind = 'poll'")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert!(reads <= 5, "{reads} reads for 1000 webhooks about deals");
    daemon.stop().await;
}

fn completion(completed_at: i64) -> Value {
    json!({"event": "training.course_completed", "data": {
        "id": "crs_17", "name": "Selling 101",
        "partnership": {"key": "part_1", "partner_key": "jane", "email": "jane@example.test"},
        "company_key": "comp_1", "completed_at": completed_at}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_training_completion_delivered_three_times_is_one_row_and_one_event() {
    let sim = support::simulator(100, |_| {}).await;
    let store = support::store().await;
    let daemon = Daemon::start(&sim, &store);
    let body = completion(1_790_000_000_000).to_string();
    for _ in 0..3 {
        support::eventually("the webhook to be accepted", Duration::from_secs(30), || async {
            daemon.post(TOKEN, body.clone()).await == 200
        })
        .await;
    }
    // Legacy style, same completion: still the same one.
    let legacy = json!({"event": "training_course_completed", "id": "crs_17", "name": "Selling 101",
                        "partnership": {"key": "part_1"}, "completed_at": 1_790_000_000_000_i64});
    assert_eq!(daemon.post(TOKEN, legacy.to_string()).await, 200);
    support::eventually("the inbox to be handled", Duration::from_secs(30), || async {
        inbox(&store).await.iter().filter(|(o, _)| o == "recorded").count() == 4
    })
    .await;
    let (rows, deliveries): (i64, i64) =
        sqlx::query_as("SELECT count(*), sum(deliveries)::bigint FROM training_completions").fetch_one(store.pool()).await.unwrap();
    assert_eq!((rows, deliveries), (1, 4));
    let events: Vec<(String, String, String)> =
        sqlx::query_as("SELECT event_type, object_type, source FROM events WHERE object_type = 'training'")
            .fetch_all(store.pool())
            .await
            .unwrap();
    assert_eq!(events, [("training.course_completed".into(), "training".into(), "webhook".into())]);
    let (partner_key, item_name): (Option<String>, Option<String>) =
        sqlx::query_as("SELECT partner_key, item_name FROM training_completions").fetch_one(store.pool()).await.unwrap();
    assert_eq!((partner_key.as_deref(), item_name.as_deref()), (Some("jane"), Some("Selling 101")));

    // A completion PostgreSQL cannot hold is quarantined, never dropped silently.
    let broken = json!({"event": "training.learning_path_completed", "data": {"name": "bad\u{0}name", "completed_at": 1}});
    assert_eq!(daemon.post(TOKEN, broken.to_string()).await, 200);
    support::eventually("the broken completion to be quarantined", Duration::from_secs(30), || async {
        inbox(&store).await.iter().any(|(o, _)| o == "quarantined")
    })
    .await;
    let quarantined: i64 =
        sqlx::query_scalar("SELECT count(*) FROM quarantine WHERE object = 'training_completions'").fetch_one(store.pool()).await.unwrap();
    assert_eq!(quarantined, 1);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_kept_before_a_crash_are_handled_after_the_restart() {
    let sim = support::simulator(100, |_| {}).await;
    let store = support::store().await;
    let mut first = Daemon::start(&sim, &store);
    // Accepted, answered, and the daemon killed at once: handled or not, it is in the inbox.
    let body = completion(1_790_000_000_001).to_string();
    support::eventually("the webhook to be accepted", Duration::from_secs(30), || async { first.post(TOKEN, body.clone()).await == 200 })
        .await;
    first.child.start_kill().unwrap();
    first.child.wait().await.unwrap();
    // And one kept by an endpoint whose daemon died before handling it.
    store.accept_webhook(Some("training.course_completed"), &completion(1_790_000_000_002).to_string()).await.unwrap();

    let second = Daemon::start(&sim, &store);
    support::eventually("both completions after the restart", Duration::from_secs(30), || async {
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM training_completions").fetch_one(store.pool()).await.unwrap();
        rows == 2
    })
    .await;
    let events: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE object_type = 'training'").fetch_one(store.pool()).await.unwrap();
    assert_eq!(events, 2, "each completion once");
    assert!(inbox(&store).await.iter().all(|(o, _)| o == "recorded"));
    second.stop().await;
}

#[tokio::test]
async fn webhooks_register_list_and_remove_manage_partnerstacks_subscriptions() {
    let sim = support::simulator(50, |_| {}).await;
    let store = support::store().await;
    let run = |args: &'static [&'static str]| {
        let mut command = support::binary(&sim, &store, args);
        command.stdout(std::process::Stdio::piped());
        async move {
            let output = command.output().await.unwrap();
            assert!(output.status.success(), "{args:?}: {output:?}");
            String::from_utf8(output.stdout).unwrap()
        }
    };
    let registered = run(&[
        "webhooks",
        "register",
        "--url",
        "https://mirror.example.test/webhooks/partnerstack/abc",
        "--event",
        "deal.updated",
        "--event",
        "training.course_completed",
    ])
    .await;
    let key = registered.split_whitespace().nth(1).expect("the new subscription's key").to_owned();
    let subscriptions = sim.simulator.webhook_subscriptions();
    assert_eq!(subscriptions.len(), 1);
    assert_eq!(subscriptions[0]["target"], "https://mirror.example.test/webhooks/partnerstack/abc");
    assert_eq!(subscriptions[0]["events"], json!(["deal.updated", "training.course_completed"]));
    let listed = run(&["webhooks", "list"]).await;
    assert!(listed.contains(&key) && listed.contains("deal.updated"), "{listed}");

    let mut remove = support::binary(&sim, &store, &["webhooks", "remove", &key]);
    assert!(remove.status().await.unwrap().success());
    let emptied = run(&["webhooks", "list"]).await;
    assert!(!emptied.contains(&key) && emptied.contains("no webhook subscriptions"), "removed subscriptions are not listed: {emptied}");

    // The URL carries the intake token: plain http is refused (but on loopback), before any request.
    let known = sim.simulator.webhook_subscriptions().len();
    for url in ["http://mirror.example.test/webhooks/partnerstack/abc", "not a url"] {
        let (code, said) = support::exit_and_stderr(&mut support::binary(&sim, &store, &["webhooks", "register", "--url", url])).await;
        assert_eq!(code, Some(2), "{url}: {said}");
    }
    assert_eq!(sim.simulator.webhook_subscriptions().len(), known, "nothing was registered");

    // Without `--event`, every event the mirror acts on.
    run(&["webhooks", "register", "--url", "https://mirror.example.test/webhooks/partnerstack/abc"]).await;
    let subscriptions = sim.simulator.webhook_subscriptions();
    let events = subscriptions.first().expect("a new subscription, listed first")["events"].clone();
    assert_eq!(events, json!(partnerstack_mirror::subscriptions::MIRRORED_EVENTS));
}

/// PartnerStack sends the webhooks itself here, doubled, shuffled and partly lost: every
/// change is still mirrored (lost ones by the next poll), and each change is evented once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicated_reordered_and_lost_webhooks_still_mirror_every_change_once() {
    let sim = support::simulator(300, |c| {
        c.webhooks.duplicate_share = 0.5;
        c.webhooks.reorder = true;
        c.webhooks.loss_share = 0.3;
    })
    .await;
    let store = support::store().await;
    let port = support::free_port();
    let mut child = support::daemon(
        &sim,
        &store,
        &[
            ("PSM_HTTP__LISTEN", format!("127.0.0.1:{port}")),
            ("PSM_WEBHOOKS__TOKEN", TOKEN.into()),
            ("PSM_SYNC__INTERVAL", "2s".into()),
            ("PSM_SYNC__OBJECTS", "[\"deals\", \"partnerships\"]".into()),
        ],
    );
    support::eventually("the backfill", Duration::from_secs(60), || backfilled(&store)).await;
    let mut register = support::binary(
        &sim,
        &store,
        &["webhooks", "register", "--url", &format!("http://127.0.0.1:{port}/webhooks/partnerstack/{TOKEN}"), "--event", "*"],
    );
    assert!(register.status().await.unwrap().success());

    let before = support::last_event_id(&store).await;
    let deals: Vec<String> = sim.simulator.keys(ObjectKind::Deal).into_iter().take(10).collect();
    for deal in &deals {
        sim.simulator.apply(Mutation::DealStage { key: deal.clone() }).unwrap();
    }
    support::eventually("every changed deal to be mirrored", Duration::from_secs(60), || async {
        let mut caught = 0;
        for deal in &deals {
            let raw: Option<sqlx::types::Json<Value>> =
                sqlx::query_scalar("SELECT raw FROM deals WHERE key = $1").bind(deal).fetch_optional(store.pool()).await.unwrap();
            caught += usize::from(raw.map(|r| r.0) == sim.simulator.record(ObjectKind::Deal, deal));
        }
        caught == deals.len()
    })
    .await;
    for deal in &deals {
        let events = support::event_types_after(&store, before, ObjectKind::Deal, deal).await;
        assert_eq!(events.iter().filter(|e| *e == "deal.stage_updated").count(), 1, "{deal}: {events:?}");
    }
    let stats = sim.simulator.webhook_stats();
    assert!(stats.sent > 0 && stats.lost > 0, "the simulator sent and lost webhooks: {stats:?}");
    let webhook_reads: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE id > $1 AND source = 'webhook'")
        .bind(before)
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert!(webhook_reads > 0, "some changes came in by webhook");
    support::sigterm(&child).await;
    assert!(tokio::time::timeout(Duration::from_secs(30), child.wait()).await.expect("exits").unwrap().success());
}
