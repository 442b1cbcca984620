//! Retries, backoff, `Retry-After`, permanent failures, and leases.

use super::*;
use partnerstack_simulator::AsResource;

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
    assert_eq!(claimed.id(), id);
    let alive = worker(&store, &sim, "w2");
    assert_eq!(alive.work_one().await.unwrap(), None, "leased to the dead worker");

    // Once the lease has run out, the request is pending again, as SQL and `queue list` show.
    support::eventually("the expired request to be pending again", Duration::from_secs(10), || async {
        store.release_expired().await.unwrap();
        outcome(&store, id).await.status == "pending"
    })
    .await;
    let handled = first_claim(&alive).await;
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
    support::eventually_paced("the slow worker to claim it", Duration::from_secs(10), Duration::from_millis(5), || async {
        sqlx::query_scalar::<_, Option<String>>("SELECT locked_by FROM write_queue WHERE id = $1")
            .bind(id)
            .fetch_one(store.pool())
            .await
            .unwrap()
            .map(drop)
    })
    .await;
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
async fn a_delete_retried_after_the_record_went_away_succeeds() {
    let sim = support::simulator(300, |_| {}).await;
    let store = support::store().await;
    support::sync_all(&support::syncer(&store, &sim, 250, support::settings())).await;
    let deal =
        sim.simulator.records(ObjectKind::Deal).into_iter().find(|d| d["archived"] == false).unwrap()["key"].as_str().unwrap().to_owned();
    sim.simulator.inject(Fault::ServerError(503), 1);
    let id = enqueue(&store, "delete", "deal", Some(&deal), json!({})).await;
    let w = worker(&store, &sim, "w1");
    assert_eq!(w.work_one().await.unwrap(), Some(Handled::Retrying(id)));
    // Before the retry, the record disappears (another tool, or a first attempt that did land).
    sim.simulator.apply(Mutation::HardDelete { kind: ObjectKind::Deal.resource(), key: deal.clone() }).unwrap();

    drain(&w, &store).await;

    assert_eq!(outcome(&store, id).await.status, "succeeded");
    let deleted: bool =
        sqlx::query_scalar("SELECT deleted_at IS NOT NULL FROM deals WHERE key = $1").bind(&deal).fetch_one(store.pool()).await.unwrap();
    assert!(deleted, "the mirror marks it deleted");
    assert_eq!(write_back_events(&store, ObjectKind::Deal, &deal).await, ["deal.deleted"]);
}

#[tokio::test]
async fn a_first_delete_of_an_unknown_key_fails_with_the_api_message() {
    let sim = support::simulator(100, |_| {}).await;
    let store = support::store().await;
    let id = enqueue(&store, "delete", "deal", Some("deal_no_such_thing"), json!({})).await;
    drain(&worker(&store, &sim, "w1"), &store).await;
    let o = outcome(&store, id).await;
    assert_eq!((o.status.as_str(), o.http_status), ("failed", Some(404)), "{o:?}");
    assert!(o.last_error.unwrap().contains("deal_no_such_thing"));
}

/// A 403 for one kind of request while the API accepts the keys otherwise: this key may not
/// make that request, so it fails with the API's message instead of waiting for ever.
#[tokio::test]
async fn a_request_this_key_may_not_make_fails_while_other_requests_go_through() {
    let sim = support::simulator(200, |c| c.forbidden = vec!["POST /api/v2/rewards".into()]).await;
    let store = support::store().await;
    let forbidden = enqueue(&store, "create", "reward", None, json!({"amount": 100})).await;
    let deal = sim.simulator.keys(ObjectKind::Deal)[0].clone();
    let allowed = enqueue(&store, "update", "deal", Some(&deal), json!({"amount": 7})).await;
    drain(&worker(&store, &sim, "w1"), &store).await;

    let refused = outcome(&store, forbidden).await;
    assert_eq!((refused.status.as_str(), refused.attempts, refused.http_status), ("failed", 1, Some(403)));
    assert!(refused.last_error.as_deref().unwrap_or_default().contains("may not make this request"), "{:?}", refused.last_error);
    assert_eq!(outcome(&store, allowed).await.status, "succeeded");
}
