//! An endpoint that fails for a while, then recovers; one that asks to wait; one that is slow.

use std::time::Duration;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_failing_every_way_for_a_while_then_recovering_gets_every_event_in_order_per_record() {
    let store = support::store().await;
    let receiver = Receiver::start().await;
    // Forty failed requests of every kind, then the endpoint recovers.
    let failures = [Behaviour::Status(500), Behaviour::Reset, Behaviour::Hang, Behaviour::Status(503), Behaviour::TooMany(0)];
    receiver.script(failures.iter().cycle().take(40).cloned());
    let ids = write(&store, &interleaved(12, 6)).await;
    let delivery =
        start(&store, DeliverySettings { timeout: Duration::from_millis(400), parallelism: 4, ..settings("flaky", &receiver, &["*"]) });

    support::eventually("every event to be delivered", Duration::from_secs(60), || async {
        row(&store, "flaky").await.0 == *ids.last().unwrap()
    })
    .await;
    let failed = delivery_failed(&delivery);
    delivery.stop().await;

    let requests = receiver.requests();
    for kind in &failures {
        assert!(requests.iter().any(|r| r.answer == *kind), "the receiver answered {kind:?} at least once");
    }
    let duplicates = check_delivered(&receiver, &ids);
    // A hung request may have been taken in by the receiver before the client gave up; here
    // the receiver never accepts one, so each event is accepted once.
    assert_eq!(duplicates, 0);
    assert!(requests.iter().all(|r| signature_is_valid(SECRET, r)), "every attempt is signed afresh");
    assert!(failed >= 40, "{failed} failed attempts counted");
    let dead: i64 = sqlx::query_scalar("SELECT count(*) FROM delivery_dead_letters").fetch_one(store.pool()).await.unwrap();
    assert_eq!(dead, 0);
}

fn delivery_failed(delivery: &Running) -> u64 {
    delivery.counters.failed.get_or_create(&partnerstack_mirror::delivery::labels("flaky")).get()
}

#[tokio::test]
async fn a_429_with_retry_after_pauses_the_delivery_for_as_long_as_the_endpoint_asks() {
    let store = support::store().await;
    let receiver = Receiver::start().await;
    receiver.script([Behaviour::TooMany(2)]);
    let ids = write(&store, &interleaved(3, 2)).await;
    let delivery = start(&store, DeliverySettings { parallelism: 1, ..settings("polite", &receiver, &["*"]) });

    support::eventually("every event to be delivered", Duration::from_secs(30), || async {
        row(&store, "polite").await.0 == *ids.last().unwrap()
    })
    .await;
    delivery.stop().await;
    let requests = receiver.requests();
    assert_eq!(requests[0].answer, Behaviour::TooMany(2));
    let waited = requests[1].at - requests[0].at;
    assert!(waited >= Duration::from_secs(2), "the next request came {waited:?} after the 429, not after Retry-After: 2");
    assert!(requests[1..].iter().any(|r| r.id == requests[0].id), "the same event again, under the same webhook-id");
    check_delivered(&receiver, &ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_endpoint_does_not_delay_another_delivery() {
    let store = support::store().await;
    let slow = Receiver::start().await;
    slow.set(Behaviour::Hang);
    let fast = Receiver::start().await;
    let ids = write(&store, &interleaved(10, 5)).await;
    let stuck = start(&store, DeliverySettings { timeout: Duration::from_secs(20), ..settings("stuck", &slow, &["*"]) });
    let quick = start(&store, settings("quick", &fast, &["*"]));

    support::eventually("the fast delivery to deliver everything", Duration::from_secs(15), || async {
        row(&store, "quick").await.0 == *ids.last().unwrap()
    })
    .await;
    assert_eq!(check_delivered(&fast, &ids), 0);
    assert!(slow.accepted().is_empty() && !slow.requests().is_empty(), "the slow endpoint is still holding its first requests");
    assert_eq!(row(&store, "stuck").await.0, 0, "the slow delivery has not moved");
    quick.stop().await;
    stuck.stop.cancel();
}
