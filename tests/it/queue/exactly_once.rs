//! Exactly once at the API: creates whose answer was lost, workers and daemons that died
//! holding a request, and several daemons draining one queue.

use super::*;

#[tokio::test]
async fn a_create_whose_answer_was_lost_reaches_the_api_once() {
    let sim = support::simulator(300, |_| {}).await;
    let store = support::store().await;
    sim.simulator.inject(Fault::ApplyThenDrop, 1);
    let id = enqueue_customer(&store, &sim, "lost-answer-1").await;

    drain(&worker(&store, &sim, "w1"), &store).await;

    let o = outcome(&store, id).await;
    assert_eq!(o.status, "succeeded", "{o:?}");
    let matching = sim.simulator.records(ObjectKind::Customer).into_iter().filter(|c| c["customer_key"] == "lost-answer-1").count();
    assert_eq!(matching, 1, "exactly one customer at the API");
    let posts = posts(&sim);
    assert_eq!(posts, 1, "the create was sent once");
}

#[tokio::test]
async fn a_create_whose_success_could_not_be_read_is_not_sent_again() {
    let sim = support::simulator(300, |_| {}).await;
    let store = support::store().await;
    // Status 200, the JSON cut in half: the customer exists, and we cannot tell its key.
    sim.simulator.inject(Fault::Truncated, 1);
    let id = enqueue_customer(&store, &sim, "garbled-1").await;

    drain(&worker(&store, &sim, "w1"), &store).await;

    let o = outcome(&store, id).await;
    assert_eq!(o.status, "succeeded", "{o:?}");
    assert_eq!(o.result.as_ref().unwrap().0["customer_key"], "garbled-1");
    assert_eq!(posts(&sim), 1);
}

#[tokio::test]
async fn a_create_taken_over_from_a_dead_worker_is_looked_up_before_it_is_sent_again() {
    let sim = support::simulator(300, |_| {}).await;
    let store = support::store().await;
    let partner_key = a_partner_key(&sim);
    let payload = json!({"customer_key": "orphan-1", "email": "o@example.test", "partner_key": partner_key});
    let id = enqueue(&store, "create", "customer", None, payload.clone()).await;
    // A worker claims it, sends the create, and dies before recording anything.
    store.claim("dead-worker", Duration::from_millis(200)).await.unwrap().expect("claimable");
    support::client(&sim, 250).create(ObjectKind::Customer, &payload).await.unwrap();

    let alive = worker(&store, &sim, "w2");
    let handled = first_claim(&alive).await;
    assert_eq!(handled, Handled::Succeeded(id));
    let posts = posts(&sim);
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
    sim.simulator.inject(Fault::ApplyThenDrop, 1);
    let id = enqueue_customer(&store, &sim, "slow-to-show").await;
    let patient = QueueSettings { lookup_grace: Duration::from_millis(1_500), ..settings() };
    let w = Worker::new(support::client(&sim, 250), store.clone(), patient, "w1");

    drain(&w, &store).await;

    let o = outcome(&store, id).await;
    assert_eq!(o.status, "succeeded", "{o:?}");
    let posts = posts(&sim);
    assert_eq!(posts, 1, "the create was not sent again while the record was still invisible");
    assert!(o.attempts >= 3, "sent, looked up too early, looked up again: {o:?}");
}

#[tokio::test]
async fn a_lost_create_is_found_in_the_list_when_the_api_will_not_get_it_by_its_external_key() {
    // Whether `/deals/{external_key}` works is undocumented; here it does not.
    let sim = support::simulator(300, |c| c.external_ids_in_paths = false).await;
    let store = support::store().await;
    sim.simulator.inject(Fault::ApplyThenDrop, 1);
    let id =
        enqueue(&store, "create", "deal", None, json!({"partner_key": a_partner_key(&sim), "external_key": "crm-lost-1", "amount": 1}))
            .await;

    drain(&worker(&store, &sim, "w1"), &store).await;

    let o = outcome(&store, id).await;
    assert_eq!(o.status, "succeeded", "{o:?}");
    assert_eq!(o.result.as_ref().unwrap().0["external_key"], "crm-lost-1");
    assert_eq!(posts(&sim), 1, "found in the list, not created again");
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
    let posts = posts(&sim);
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
    let posts = posts(&sim);
    assert_eq!(posts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_daemons_draining_one_queue_send_each_request_once() {
    let sim = support::simulator(400, |_| {}).await;
    let store = support::store().await;
    let n = 80;
    for i in 0..n {
        enqueue_customer(&store, &sim, format!("pair-{i}")).await;
    }
    let shutdown = tokio_util::sync::CancellationToken::new();
    let mut daemons = Vec::new();
    for name in ["daemon-a", "daemon-b"] {
        let own_pool = Store::connect(&support::database_url(), store.schema(), 4).await.unwrap();
        let settings = QueueSettings { workers: 2, ..settings() };
        let pool = queue::WorkerPool {
            api: support::client(&sim, 250),
            store: own_pool,
            settings,
            holder: name.into(),
            counters: Default::default(),
        };
        daemons.push(tokio::spawn(pool.run(shutdown.clone())));
    }
    support::eventually("every request to succeed", Duration::from_secs(60), || async {
        let done: i64 =
            sqlx::query_scalar("SELECT count(*) FROM write_queue WHERE status = 'succeeded'").fetch_one(store.pool()).await.unwrap();
        done == n
    })
    .await;
    shutdown.cancel();
    for d in daemons {
        d.await.unwrap();
    }
    let posts = posts(&sim);
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
    // The create lands at the API, and its answer never comes back.
    sim.simulator.inject(Fault::ApplyThenHang, 1);
    let id = enqueue_customer(&store, &sim, "killed-1").await;

    let mut first = daemon(&sim, &store);
    support::eventually_paced("the first daemon to send the create", Duration::from_secs(60), Duration::from_millis(10), || async {
        (posts(&sim) > 0).then_some(())
    })
    .await;
    first.kill().await.unwrap();

    let _second = daemon(&sim, &store);
    let o = support::eventually_some("the second daemon to finish the request", Duration::from_secs(60), || async {
        Some(outcome(&store, id).await).filter(|o| o.status != "pending" && o.status != "running")
    })
    .await;
    assert_eq!((o.status.as_str(), o.attempts), ("succeeded", 2), "{o:?}");
    assert_eq!(posts(&sim), 1, "the create was sent once");
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
