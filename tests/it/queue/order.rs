//! Order per record: requests for one record are carried out in id order, as two INSERTs in
//! SQL would be, while requests for different records still run side by side.

use super::*;

/// Two daemons' worth of workers (two each) on their own connection pools, until `shutdown`.
async fn two_daemons(
    store: &Store,
    sim: &RunningSimulator,
    shutdown: &tokio_util::sync::CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut daemons = Vec::new();
    for name in ["daemon-a", "daemon-b"] {
        let own_pool = Store::connect(&support::database_url(), store.schema(), 4).await.unwrap();
        let pool = queue::WorkerPool {
            api: support::client(sim, 250),
            store: own_pool,
            settings: QueueSettings { workers: 2, max_attempts: 100, ..settings() },
            holder: name.into(),
            counters: Default::default(),
        };
        daemons.push(tokio::spawn(pool.run(shutdown.clone())));
    }
    daemons
}

async fn all_finished(store: &Store) -> bool {
    let open: i64 = sqlx::query_scalar("SELECT count(*) FROM write_queue WHERE status IN ('pending', 'running')")
        .fetch_one(store.pool())
        .await
        .unwrap();
    open == 0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_updates_of_one_deal_end_on_the_later_one_under_rate_limits_with_two_daemons() {
    let sim = support::simulator(400, |c| c.rate_limit_per_sec = Some(12.0)).await;
    let store = support::store().await;
    let deals: Vec<String> = sim.simulator.keys(ObjectKind::Deal).into_iter().take(12).collect();
    for deal in &deals {
        enqueue(&store, "update", "deal", Some(deal), json!({"amount": 111_111})).await;
        enqueue(&store, "update", "deal", Some(deal), json!({"amount": 222_222})).await;
    }
    let shutdown = tokio_util::sync::CancellationToken::new();
    let daemons = two_daemons(&store, &sim, &shutdown).await;
    support::eventually("every update to be carried out", Duration::from_secs(90), || all_finished(&store)).await;
    shutdown.cancel();
    for d in daemons {
        d.await.unwrap();
    }

    let failed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM write_queue WHERE status <> 'succeeded'").fetch_one(store.pool()).await.unwrap();
    assert_eq!(failed, 0);
    let throttled = sim.simulator.writes().iter().filter(|w| w.status == 429).count();
    assert!(throttled > 0, "the API must have turned some requests away for this test to mean anything");
    for deal in &deals {
        assert_eq!(sim.simulator.record(ObjectKind::Deal, deal).unwrap()["amount"], 222_222, "deal {deal} ended on the earlier update");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_convert_waits_for_the_update_of_its_lead_queued_before_it() {
    let sim = support::simulator(400, |_| {}).await;
    let store = support::store().await;
    let lead = sim.simulator.keys(ObjectKind::Lead)[0].clone();
    // The update is turned away twice: its retries must still come before the convert.
    sim.simulator.inject(Fault::ServerError(503), 2);
    let update = enqueue(&store, "update", "lead", Some(&lead), json!({"amount": 4_200})).await;
    let convert = enqueue(&store, "convert", "lead", Some(&lead), json!({"customer_key": "ordered-conversion"})).await;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let daemons = two_daemons(&store, &sim, &shutdown).await;
    support::eventually("both requests to be carried out", Duration::from_secs(30), || all_finished(&store)).await;
    shutdown.cancel();
    for d in daemons {
        d.await.unwrap();
    }

    assert_eq!(outcome(&store, update).await.status, "succeeded");
    assert_eq!(outcome(&store, convert).await.status, "succeeded");
    let sent: Vec<(String, u16)> = sim
        .simulator
        .writes()
        .into_iter()
        .filter(|w| w.path.contains(&lead))
        .map(|w| (if w.path.ends_with("/convert") { "convert" } else { "update" }.to_owned(), w.status))
        .collect();
    let expected: Vec<(String, u16)> = [("update", 503), ("update", 503), ("update", 200), ("convert", 200)]
        .into_iter()
        .map(|(what, status)| (what.to_owned(), status))
        .collect();
    assert_eq!(sent, expected, "the convert went out before its lead's update was done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_for_different_records_still_run_at_the_same_time() {
    let sim = support::simulator(400, |_| {}).await;
    let store = support::store().await;
    let deals = sim.simulator.keys(ObjectKind::Deal);
    sim.simulator.inject(Fault::Slow(Duration::from_secs(2)), 2);
    enqueue(&store, "update", "deal", Some(&deals[0]), json!({"amount": 1})).await;
    enqueue(&store, "update", "deal", Some(&deals[1]), json!({"amount": 2})).await;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let daemons = two_daemons(&store, &sim, &shutdown).await;
    support::eventually("both slow requests to be in flight at once", Duration::from_secs(10), || async {
        let running: i64 =
            sqlx::query_scalar("SELECT count(*) FROM write_queue WHERE status = 'running'").fetch_one(store.pool()).await.unwrap();
        running == 2
    })
    .await;
    support::eventually("both requests to be carried out", Duration::from_secs(30), || all_finished(&store)).await;
    shutdown.cancel();
    for d in daemons {
        d.await.unwrap();
    }
}

#[tokio::test]
async fn the_records_a_request_touches_are_named_at_insert() {
    let store = support::store().await;
    let touches = |id: i64| {
        let pool = store.pool().clone();
        async move {
            sqlx::query_scalar::<_, Vec<String>>("SELECT touches FROM write_queue WHERE id = $1").bind(id).fetch_one(&pool).await.unwrap()
        }
    };
    let update = enqueue(&store, "update", "deal", Some("deal_1"), json!({"amount": 1})).await;
    assert_eq!(touches(update).await, ["deal:deal_1"]);
    let create = enqueue(&store, "create", "partnership", None, json!({"email": "Jane@Example.test", "partner_key": "jane"})).await;
    assert_eq!(touches(create).await, ["partnership@partner_key=jane", "partnership@email=jane@example.test"]);
    let convert = enqueue(&store, "convert", "deal", Some("deal_1"), json!({"email": "a@b.test", "customer_key": "acme"})).await;
    assert_eq!(touches(convert).await, ["deal:deal_1", "customer@customer_key=acme"]);
    let reward = enqueue(&store, "create", "reward", None, json!({"amount": 100})).await;
    assert!(touches(reward).await.is_empty(), "a create without a natural key is ordered with nothing");
}
