//! Write-back: an SQL INSERT becomes exactly one API call, retried when it may be, and its
//! result lands in the mirror with `write_back` events.

use std::time::Duration;

use partnerstack_mirror::{
    object::ObjectKind,
    queue::{self, Handled, QueueSettings, Worker},
    simulator::{Fault, RunningSimulator},
    store::Store,
};
use serde_json::{json, Value};

use crate::support;

fn settings() -> QueueSettings {
    QueueSettings {
        workers: 1,
        max_attempts: 5,
        lease: Duration::from_secs(30),
        poll: Duration::from_millis(20),
        min_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(40),
        lookup_grace: Duration::ZERO,
    }
}

fn worker(store: &Store, sim: &RunningSimulator, name: &str) -> Worker {
    Worker::new(support::client(sim, 250), store.clone(), settings(), name)
}

async fn enqueue(store: &Store, operation: &str, object_type: &str, object_key: Option<&str>, payload: Value) -> i64 {
    sqlx::query_scalar("INSERT INTO write_queue (operation, object_type, object_key, payload) VALUES ($1, $2, $3, $4) RETURNING id")
        .bind(operation)
        .bind(object_type)
        .bind(object_key)
        .bind(payload)
        .fetch_one(store.pool())
        .await
        .unwrap_or_else(|e| panic!("{operation} {object_type}: {e}"))
}

/// Works until no request is pending or running (retries wait out their backoff).
async fn drain(worker: &Worker, store: &Store) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if worker.work_one().await.unwrap().is_some() {
            continue;
        }
        let open: i64 = sqlx::query_scalar("SELECT count(*) FROM write_queue WHERE status IN ('pending', 'running')")
            .fetch_one(store.pool())
            .await
            .unwrap();
        if open == 0 {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{open} requests still open");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[derive(sqlx::FromRow, Debug)]
struct Outcome {
    status: String,
    attempts: i32,
    last_error: Option<String>,
    http_status: Option<i32>,
    result: Option<sqlx::types::Json<Value>>,
}

async fn outcome(store: &Store, id: i64) -> Outcome {
    sqlx::query_as("SELECT status, attempts, last_error, http_status, result FROM write_queue WHERE id = $1")
        .bind(id)
        .fetch_one(store.pool())
        .await
        .unwrap()
}

fn result_key(o: &Outcome) -> String {
    o.result.as_ref().and_then(|r| r.0.get("key")).and_then(Value::as_str).expect("the result carries the record").to_owned()
}

async fn write_back_events(store: &Store, kind: ObjectKind, key: &str) -> Vec<String> {
    sqlx::query_scalar("SELECT event_type FROM events WHERE source = 'write_back' AND object_type = $1 AND object_key = $2 ORDER BY id")
        .bind(kind.singular())
        .bind(key)
        .fetch_all(store.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn every_operation_runs_end_to_end_from_an_sql_insert() {
    let sim = support::simulator(600, |_| {}).await;
    let store = support::store().await;
    support::sync_all(&support::syncer(&store, &sim, 250, support::settings())).await;
    let s = &sim.simulator;
    let partnership = s.records(ObjectKind::Partnership).into_iter().find(|p| p["archived"] == false).unwrap();
    let partner_key = partnership["partner_key"].as_str().unwrap().to_owned();
    let live = |kind| {
        s.records(kind).into_iter().filter(|r| r["archived"] == false).map(|r| r["key"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
    };
    let (deals, leads, customers) = (live(ObjectKind::Deal), live(ObjectKind::Lead), live(ObjectKind::Customer));

    let creates = [
        (
            ObjectKind::Customer,
            json!({"customer_key": "wb-cust-1", "email": "wb1@example.test", "partner_key": partner_key, "name": "WB One"}),
        ),
        (ObjectKind::Deal, json!({"partner_key": partner_key, "external_key": "wb-deal-1", "account_name": "WB", "amount": 1234})),
        (
            ObjectKind::Lead,
            json!({"partner_key": partner_key, "external_key": "wb-lead@example.test", "status": "open", "meta": {"first_name": "A", "last_name": "B"}}),
        ),
        (
            ObjectKind::Partnership,
            json!({"email": "wb-partner@example.test", "first_name": "W", "last_name": "B", "partner_key": "wb-partner"}),
        ),
        (ObjectKind::Transaction, json!({"key": "wb-txn-1", "customer_external_key": "wb-cust-1", "amount": 990, "currency": "USD"})),
        (ObjectKind::Action, json!({"target_type": "partnership", "target_key": partner_key, "type": "webinar", "value": 1})),
        (ObjectKind::Reward, json!({"amount": 500, "description": "bonus"})),
    ];
    let mut created = Vec::new();
    for (kind, payload) in creates {
        created.push((kind, enqueue(&store, "create", kind.singular(), None, payload).await));
    }
    let update = enqueue(&store, "update", "deal", Some(&deals[0]), json!({"stage": "Closed Won"})).await;
    let delete = enqueue(&store, "delete", "lead", Some(&leads[0]), json!({})).await;
    let tags = enqueue(&store, "modify_tags", "partnership", partnership["key"].as_str(), json!({"add": ["wb-tag"]})).await;
    let convert_deal =
        enqueue(&store, "convert", "deal", Some(&deals[1]), json!({"email": "converted@example.test", "customer_key": "wb-conv-1"})).await;
    let convert_lead = enqueue(&store, "convert", "lead", Some(&leads[1]), json!({"customer_key": "wb-conv-2"})).await;
    let refresh = enqueue(&store, "refresh", "customer", Some(&customers[0]), json!({})).await;
    let files: Vec<i64> = {
        let mut ids = Vec::new();
        for deal in deals.iter().skip(2).take(6) {
            ids.push(enqueue(&store, "fetch_attachments", "deal", Some(deal), json!({})).await);
        }
        ids
    };

    drain(&worker(&store, &sim, "w1"), &store).await;

    for (kind, id) in created {
        let o = outcome(&store, id).await;
        assert_eq!(o.status, "succeeded", "{kind}: {o:?}");
        let key = result_key(&o);
        assert!(s.record(kind, &key).is_some(), "{kind} {key} exists at the API");
        let raw: sqlx::types::Json<Value> = sqlx::query_scalar(&format!("SELECT raw FROM {} WHERE key = $1", kind.table()))
            .bind(&key)
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(raw.0["key"], key.as_str());
        assert_eq!(write_back_events(&store, kind, &key).await, [format!("{}.created", kind.singular())]);
    }
    assert_eq!(outcome(&store, update).await.status, "succeeded");
    let stage: String = sqlx::query_scalar("SELECT stage FROM deals WHERE key = $1").bind(&deals[0]).fetch_one(store.pool()).await.unwrap();
    assert_eq!(stage, "Closed Won");
    assert!(write_back_events(&store, ObjectKind::Deal, &deals[0]).await.contains(&"deal.stage_updated".to_owned()));

    assert_eq!(outcome(&store, delete).await.status, "succeeded");
    let archived: bool =
        sqlx::query_scalar("SELECT archived FROM leads WHERE key = $1").bind(&leads[0]).fetch_one(store.pool()).await.unwrap();
    assert!(archived);
    assert!(write_back_events(&store, ObjectKind::Lead, &leads[0]).await.contains(&"lead.deleted".to_owned()));

    assert_eq!(outcome(&store, tags).await.status, "succeeded");
    let tag_list: Vec<String> = sqlx::query_scalar("SELECT tags FROM partnerships WHERE key = $1")
        .bind(partnership["key"].as_str())
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert!(tag_list.contains(&"wb-tag".to_owned()));

    for id in [convert_deal, convert_lead] {
        let o = outcome(&store, id).await;
        assert_eq!(o.status, "succeeded", "{o:?}");
        let customer = result_key(&o);
        let rows: i64 =
            sqlx::query_scalar("SELECT count(*) FROM customers WHERE key = $1").bind(&customer).fetch_one(store.pool()).await.unwrap();
        assert_eq!(rows, 1, "the converted customer is mirrored");
    }
    assert_eq!(outcome(&store, refresh).await.status, "succeeded");
    for id in files {
        assert_eq!(outcome(&store, id).await.status, "succeeded");
    }
    let (files, bytes): (i64, Option<i64>) = sqlx::query_as("SELECT count(*), sum(size)::bigint FROM deal_files WHERE content IS NOT NULL")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert!(files > 0 && bytes.unwrap_or(0) > 0, "attachments were fetched with their content");
}

#[tokio::test]
async fn malformed_inserts_are_rejected_with_a_message_naming_the_problem() {
    let store = support::store().await;
    let cases = [
        ("frobnicate", "deal", Some("d"), json!({}), "unknown operation \"frobnicate\""),
        ("modify_tags", "deal", Some("d"), json!({"add": ["x"]}), "not allowed for object_type \"deal\""),
        ("update", "deal", None, json!({}), "needs object_key"),
        ("create", "customer", None, json!({"email": "a@b.test"}), "missing required field(s): customer_key, partner_key"),
        ("create", "transaction", None, json!({"amount": 1, "currency": "USD"}), "exactly one of customer_key"),
        ("modify_tags", "partnership", Some("p"), json!({"add": "vip"}), "must be an array"),
        ("update", "deal", Some("d"), json!([1, 2]), "payload must be a JSON object"),
    ];
    for (operation, object_type, key, payload, expected) in cases {
        let err = sqlx::query("INSERT INTO write_queue (operation, object_type, object_key, payload) VALUES ($1, $2, $3, $4)")
            .bind(operation)
            .bind(object_type)
            .bind(key)
            .bind(payload)
            .execute(store.pool())
            .await
            .expect_err(expected);
        assert!(err.to_string().contains(expected), "{operation} {object_type}: {err}");
    }
    // The same idempotency key cannot be queued twice.
    let insert = "INSERT INTO write_queue (operation, object_type, object_key, idempotency_key) VALUES ('refresh', 'deal', 'd', 'once')";
    sqlx::query(insert).execute(store.pool()).await.unwrap();
    assert!(sqlx::query(insert).execute(store.pool()).await.is_err());
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_retried_with_backoff() {
    let sim = support::simulator(300, |_| {}).await;
    let store = support::store().await;
    let deal = sim.simulator.keys(ObjectKind::Deal)[0].clone();
    sim.simulator.inject(Fault::ServerError(503), 2);
    let id = enqueue(&store, "update", "deal", Some(&deal), json!({"amount": 4242})).await;
    drain(&worker(&store, &sim, "w1"), &store).await;
    let o = outcome(&store, id).await;
    assert_eq!((o.status.as_str(), o.attempts), ("succeeded", 3), "two answered failures, then success: {o:?}");
    assert_eq!(sim.simulator.record(ObjectKind::Deal, &deal).unwrap()["amount"], 4242);
    let statuses: Vec<u16> = sim.simulator.writes().iter().map(|w| w.status).collect();
    assert_eq!(statuses, [503, 503, 200], "each attempt was one PATCH");
}

#[tokio::test]
async fn a_rate_limited_request_waits_at_least_the_retry_after_it_was_given() {
    let sim = support::simulator(300, |_| {}).await;
    let store = support::store().await;
    let deal = sim.simulator.keys(ObjectKind::Deal)[0].clone();
    sim.simulator.inject(Fault::ServerError(429), 1);
    let id = enqueue(&store, "update", "deal", Some(&deal), json!({"amount": 77})).await;
    let w = worker(&store, &sim, "w1");
    assert_eq!(w.work_one().await.unwrap(), Some(Handled::Retrying(id)));
    // The backoff alone is at most 40 ms here; the simulator said `Retry-After: 1`.
    let (status, http_status, wait): (String, Option<i32>, f64) =
        sqlx::query_as("SELECT status, http_status, extract(epoch FROM run_after - updated_at)::float8 FROM write_queue WHERE id = $1")
            .bind(id)
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert_eq!((status.as_str(), http_status), ("pending", Some(429)));
    assert!(wait >= 0.99, "run_after is {wait}s out");
    drain(&w, &store).await;
    assert_eq!(outcome(&store, id).await.status, "succeeded");
}

#[tokio::test]
async fn attempts_run_out_and_the_last_error_is_kept() {
    let sim = support::simulator(300, |_| {}).await;
    let store = support::store().await;
    let deal = sim.simulator.keys(ObjectKind::Deal)[0].clone();
    sim.simulator.inject(Fault::ServerError(502), 10);
    let id = sqlx::query_scalar("INSERT INTO write_queue (operation, object_type, object_key, payload, max_attempts) VALUES ('update', 'deal', $1, '{\"amount\": 5}', 2) RETURNING id")
        .bind(&deal)
        .fetch_one(store.pool())
        .await
        .unwrap();
    drain(&worker(&store, &sim, "w1"), &store).await;
    let o = outcome(&store, id).await;
    assert_eq!((o.status.as_str(), o.attempts, o.http_status), ("failed", 2, Some(502)), "{o:?}");
    assert!(o.last_error.unwrap().contains("gave up after 2 attempts"));
}

#[tokio::test]
async fn a_validation_error_fails_at_once_with_the_api_message() {
    let sim = support::simulator(300, |_| {}).await;
    let store = support::store().await;
    let id = enqueue(
        &store,
        "create",
        "customer",
        None,
        json!({"customer_key": "x-1", "email": "x@example.test", "partner_key": "no-such-partner"}),
    )
    .await;
    drain(&worker(&store, &sim, "w1"), &store).await;
    let o = outcome(&store, id).await;
    assert_eq!((o.status.as_str(), o.attempts, o.http_status), ("failed", 1, Some(400)), "{o:?}");
    assert!(o.last_error.unwrap().contains("partner"), "the API's message is kept");
}

#[tokio::test]
async fn a_request_whose_worker_died_is_claimed_again_when_its_lease_expires() {
    let sim = support::simulator(300, |_| {}).await;
    let store = support::store().await;
    let deal = sim.simulator.keys(ObjectKind::Deal)[0].clone();
    let id = enqueue(&store, "refresh", "deal", Some(&deal), json!({})).await;
    // A worker claims it and dies without a word.
    let claimed = store.claim("dead-worker", Duration::from_millis(300)).await.unwrap().expect("claimable");
    assert_eq!(claimed.id, id);
    let alive = worker(&store, &sim, "w2");
    assert_eq!(alive.work_one().await.unwrap(), None, "leased to the dead worker");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let handled = loop {
        if let Some(h) = alive.work_one().await.unwrap() {
            break h;
        }
        assert!(tokio::time::Instant::now() < deadline, "the lease expires");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(handled, Handled::Succeeded(id));
    assert_eq!(outcome(&store, id).await.attempts, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_slower_than_its_lease_stays_with_its_worker() {
    let sim = support::simulator(300, |_| {}).await;
    let store = support::store().await;
    let deal = sim.simulator.keys(ObjectKind::Deal)[0].clone();
    sim.simulator.inject(Fault::Slow(Duration::from_millis(1_500)), 1);
    let id = enqueue(&store, "update", "deal", Some(&deal), json!({"amount": 31})).await;
    let short = QueueSettings { lease: Duration::from_millis(300), ..settings() };
    let slow = Worker::new(support::client(&sim, 250), store.clone(), short.clone(), "slow");
    let other = Worker::new(support::client(&sim, 250), store.clone(), short, "other");

    let first = tokio::spawn(async move { slow.work_one().await.unwrap() });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while sqlx::query_scalar::<_, Option<String>>("SELECT locked_by FROM write_queue WHERE id = $1")
        .bind(id)
        .fetch_one(store.pool())
        .await
        .unwrap()
        .is_none()
    {
        assert!(tokio::time::Instant::now() < deadline, "the slow worker claims it");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut looked = 0;
    while !first.is_finished() {
        assert_eq!(other.work_one().await.unwrap(), None, "taken over while its worker still waited for the answer");
        looked += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(looked > 20, "the other worker kept looking for the whole request");
    assert_eq!(first.await.unwrap(), Some(Handled::Succeeded(id)));
    assert_eq!(outcome(&store, id).await.attempts, 1);
    assert_eq!(sim.simulator.writes().len(), 1);
}

#[tokio::test]
async fn a_create_whose_answer_was_lost_reaches_the_api_once() {
    let sim = support::simulator(300, |_| {}).await;
    let store = support::store().await;
    let partner_key = sim.simulator.records(ObjectKind::Partnership)[0]["partner_key"].as_str().unwrap().to_owned();
    sim.simulator.inject(Fault::ApplyThenDrop, 1);
    let id = enqueue(
        &store,
        "create",
        "customer",
        None,
        json!({"customer_key": "lost-answer-1", "email": "l@example.test", "partner_key": partner_key}),
    )
    .await;

    drain(&worker(&store, &sim, "w1"), &store).await;

    let o = outcome(&store, id).await;
    assert_eq!(o.status, "succeeded", "{o:?}");
    let matching = sim.simulator.records(ObjectKind::Customer).into_iter().filter(|c| c["customer_key"] == "lost-answer-1").count();
    assert_eq!(matching, 1, "exactly one customer at the API");
    let posts = sim.simulator.writes().into_iter().filter(|w| w.method == "POST" && w.path.ends_with("/customers")).count();
    assert_eq!(posts, 1, "the create was sent once");
}

#[tokio::test]
async fn a_create_taken_over_from_a_dead_worker_is_looked_up_before_it_is_sent_again() {
    let sim = support::simulator(300, |_| {}).await;
    let store = support::store().await;
    let partner_key = sim.simulator.records(ObjectKind::Partnership)[0]["partner_key"].as_str().unwrap().to_owned();
    let payload = json!({"customer_key": "orphan-1", "email": "o@example.test", "partner_key": partner_key});
    let id = enqueue(&store, "create", "customer", None, payload.clone()).await;
    // A worker claims it, sends the create, and dies before recording anything.
    store.claim("dead-worker", Duration::from_millis(200)).await.unwrap().expect("claimable");
    support::client(&sim, 250).request_json(reqwest::Method::POST, "customers", Some(&payload), false).await.unwrap();

    let alive = worker(&store, &sim, "w2");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let handled = loop {
        if let Some(h) = alive.work_one().await.unwrap() {
            break h;
        }
        assert!(tokio::time::Instant::now() < deadline, "the lease expires");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(handled, Handled::Succeeded(id));
    let posts = sim.simulator.writes().into_iter().filter(|w| w.method == "POST").count();
    assert_eq!(posts, 1, "the surviving worker found the customer and did not create it again");
    let mirrored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM customers WHERE customer_key = 'orphan-1'").fetch_one(store.pool()).await.unwrap();
    assert_eq!(mirrored, 1);
}

#[tokio::test]
async fn a_lost_create_is_not_sent_again_while_the_api_may_still_be_catching_up() {
    // The API shows a new record to single GETs only after a while (research notes §5).
    let sim = support::simulator(300, |c| c.read_after_write_lag = Duration::from_millis(800)).await;
    let store = support::store().await;
    let partner_key = sim.simulator.records(ObjectKind::Partnership)[0]["partner_key"].as_str().unwrap().to_owned();
    sim.simulator.inject(Fault::ApplyThenDrop, 1);
    let id = enqueue(
        &store,
        "create",
        "customer",
        None,
        json!({"customer_key": "slow-to-show", "email": "s@example.test", "partner_key": partner_key}),
    )
    .await;
    let patient = QueueSettings { lookup_grace: Duration::from_millis(1_500), ..settings() };
    let w = Worker::new(support::client(&sim, 250), store.clone(), patient, "w1");

    drain(&w, &store).await;

    let o = outcome(&store, id).await;
    assert_eq!(o.status, "succeeded", "{o:?}");
    let posts = sim.simulator.writes().into_iter().filter(|w| w.method == "POST").count();
    assert_eq!(posts, 1, "the create was not sent again while the record was still invisible");
    assert!(o.attempts >= 3, "sent, looked up too early, looked up again: {o:?}");
}

#[tokio::test]
async fn a_lost_conversion_of_a_lead_is_found_by_the_lead_external_key() {
    let sim = support::simulator(400, |_| {}).await;
    let store = support::store().await;
    support::sync_all(&support::syncer(&store, &sim, 250, support::settings())).await;
    let lead = sim.simulator.records(ObjectKind::Lead).into_iter().find(|l| l["archived"] == false).unwrap();
    sim.simulator.inject(Fault::ApplyThenDrop, 1);
    let id = enqueue(&store, "convert", "lead", lead["key"].as_str(), json!({})).await;
    drain(&worker(&store, &sim, "w1"), &store).await;
    let o = outcome(&store, id).await;
    assert_eq!(o.status, "succeeded", "{o:?}");
    assert_eq!(o.result.as_ref().unwrap().0["customer_key"], lead["external_key"]);
    let posts = sim.simulator.writes().into_iter().filter(|w| w.method == "POST").count();
    assert_eq!(posts, 1, "the conversion was sent once");
}

#[tokio::test]
async fn a_lost_create_without_a_natural_key_fails_rather_than_risk_a_duplicate() {
    let sim = support::simulator(300, |_| {}).await;
    let store = support::store().await;
    sim.simulator.inject(Fault::ApplyThenDrop, 1);
    let id = enqueue(&store, "create", "reward", None, json!({"amount": 100, "description": "once"})).await;
    drain(&worker(&store, &sim, "w1"), &store).await;
    let o = outcome(&store, id).await;
    assert_eq!(o.status, "failed", "{o:?}");
    assert!(o.last_error.unwrap().contains("not sent again"));
    let posts = sim.simulator.writes().into_iter().filter(|w| w.method == "POST").count();
    assert_eq!(posts, 1);
}

#[tokio::test]
async fn cancelled_requests_are_never_sent() {
    let sim = support::simulator(200, |_| {}).await;
    let store = support::store().await;
    let deal = sim.simulator.keys(ObjectKind::Deal)[0].clone();
    let id = enqueue(&store, "update", "deal", Some(&deal), json!({"amount": 1})).await;
    assert!(store.cancel(id).await.unwrap());
    drain(&worker(&store, &sim, "w1"), &store).await;
    assert_eq!(outcome(&store, id).await.status, "cancelled");
    assert!(sim.simulator.writes().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_daemons_draining_one_queue_send_each_request_once() {
    let sim = support::simulator(400, |_| {}).await;
    let store = support::store().await;
    let partner_key = sim.simulator.records(ObjectKind::Partnership)[0]["partner_key"].as_str().unwrap().to_owned();
    let n = 80;
    for i in 0..n {
        enqueue(
            &store,
            "create",
            "customer",
            None,
            json!({"customer_key": format!("pair-{i}"), "email": format!("p{i}@example.test"), "partner_key": partner_key}),
        )
        .await;
    }
    let shutdown = tokio_util::sync::CancellationToken::new();
    let mut daemons = Vec::new();
    for name in ["daemon-a", "daemon-b"] {
        let own_pool = Store::connect(&support::database_url(), store.schema(), 4).await.unwrap();
        let settings = QueueSettings { workers: 2, ..settings() };
        daemons.push(tokio::spawn(queue::run_workers(support::client(&sim, 250), own_pool, settings, name.into(), shutdown.clone())));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let done: i64 =
            sqlx::query_scalar("SELECT count(*) FROM write_queue WHERE status = 'succeeded'").fetch_one(store.pool()).await.unwrap();
        if done == n {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{done} of {n} done");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    for d in daemons {
        d.await.unwrap();
    }
    let posts = sim.simulator.writes().into_iter().filter(|w| w.method == "POST").count();
    assert_eq!(posts, n as usize, "each request reached the API once");
    let (daemons, most_attempts): (i64, i32) =
        sqlx::query_as("SELECT count(DISTINCT split_part(locked_by, '#', 1)), max(attempts) FROM write_queue")
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert_eq!(daemons, 2, "both daemons took requests");
    assert_eq!(most_attempts, 1, "no request was claimed twice");
}

/// The real daemon, draining the queue (and syncing) with a short queue lease.
fn daemon(sim: &RunningSimulator, store: &Store) -> tokio::process::Child {
    support::binary(sim, store, &["run"])
        .env("PSM_SYNC__INTERVAL", "1s")
        .env("PSM_HTTP__LISTEN", "127.0.0.1:0")
        .env("PSM_QUEUE__WORKERS", "1")
        .env("PSM_QUEUE__LEASE", "2s")
        .spawn()
        .expect("spawn the daemon")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_killed_while_its_create_is_in_flight_leaves_exactly_one_record() {
    let sim = support::simulator(200, |_| {}).await;
    let store = support::store().await;
    let partner_key = sim.simulator.records(ObjectKind::Partnership)[0]["partner_key"].as_str().unwrap().to_owned();
    // The create lands at the API, and its answer never comes back.
    sim.simulator.inject(Fault::ApplyThenHang, 1);
    let id = enqueue(
        &store,
        "create",
        "customer",
        None,
        json!({"customer_key": "killed-1", "email": "k@example.test", "partner_key": partner_key}),
    )
    .await;
    let posts = || sim.simulator.writes().into_iter().filter(|w| w.method == "POST").count();

    let mut first = daemon(&sim, &store);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while posts() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "the first daemon sends the create");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    first.kill().await.unwrap();

    let _second = daemon(&sim, &store);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let o = loop {
        let o = outcome(&store, id).await;
        if o.status != "pending" && o.status != "running" {
            break o;
        }
        assert!(tokio::time::Instant::now() < deadline, "the second daemon finishes the request: {o:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!((o.status.as_str(), o.attempts), ("succeeded", 2), "{o:?}");
    assert_eq!(posts(), 1, "the create was sent once");
    let at_api = sim.simulator.records(ObjectKind::Customer).into_iter().filter(|c| c["customer_key"] == "killed-1").count();
    assert_eq!(at_api, 1);
    let key = result_key(&o);
    let created: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE object_key = $1 AND event_type = 'customer.created'")
        .bind(&key)
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(created, 1, "one created event, whichever of the poll and the write-back saw it first");
}
