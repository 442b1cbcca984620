//! What happens to an event the endpoint keeps refusing: a dead letter (and `delivery retry`),
//! a hold; and a 410 Gone, which disables the delivery until `delivery enable`.

use std::{process::Stdio, time::Duration};

use super::*;

/// Runs the real binary's command line against `store`'s schema; returns its stdout.
async fn command(store: &Store, args: &[&str]) -> String {
    let sim = support::simulator(1, |_| {}).await;
    let output = support::binary(&sim, store, args).stdout(Stdio::piped()).stderr(Stdio::piped()).output().await.unwrap();
    assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn refuse_poison(receiver: &Receiver, status: u16) {
    receiver.rule(move |body| body.contains("\"object_key\":\"poison\"").then_some(Behaviour::Status(status)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_refused_max_attempts_times_becomes_a_dead_letter_and_delivery_retry_sends_it_again() {
    let store = support::store().await;
    let receiver = Receiver::start().await;
    refuse_poison(&receiver, 500);
    let ids =
        write(&store, &[("deal.stage_updated", "a".into()), ("deal.stage_updated", "poison".into()), ("deal.stage_updated", "a".into())])
            .await;
    let delivery = start(&store, DeliverySettings { max_attempts: 3, ..settings("crm", &receiver, &["*"]) });

    support::eventually("the position to pass the dead letter", Duration::from_secs(30), || async { row(&store, "crm").await.0 == ids[2] })
        .await;
    let (event_id, attempts, http_status, last_error, body): (i64, i32, Option<i32>, String, String) =
        sqlx::query_as("SELECT event_id, attempts, http_status, last_error, body FROM delivery_dead_letters WHERE delivery = 'crm'")
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert_eq!((event_id, attempts, http_status), (ids[1], 3, Some(500)));
    assert!(last_error.contains("500"), "{last_error}");
    assert_eq!(event_of(&body).0, ids[1], "the body sent is kept");
    let poison_tries = receiver.requests().iter().filter(|r| r.body.contains("poison")).count();
    assert_eq!(poison_tries, 3);
    assert_eq!(delivery.counters.dead_lettered.get_or_create(&partnerstack_mirror::delivery::labels("crm")).get(), 1);
    let listed = command(&store, &["delivery", "list"]).await;
    assert!(listed.contains("delivery crm: active") && listed.contains("dead letters 1"), "{listed}");
    let dead = command(&store, &["delivery", "dead-letters", "crm"]).await;
    assert_eq!(dead.lines().count(), 1, "{dead}");
    assert!(dead.starts_with(&format!("event {} deal.stage_updated deal poison: dead since ", ids[1])), "{dead}");
    assert!(dead.contains("3 attempts, HTTP 500") && dead.contains("last error: "), "{dead}");

    let sim = support::simulator(1, |_| {}).await;
    let unknown = support::binary(&sim, &store, &["delivery", "retry", "crn"]).stderr(Stdio::piped()).output().await.unwrap();
    assert!(!unknown.status.success() && String::from_utf8_lossy(&unknown.stderr).contains("there is no delivery crn"));

    receiver.clear_rule();
    let said = command(&store, &["delivery", "retry", "crm"]).await;
    assert!(said.contains("1 dead letter"), "{said}");
    support::eventually("the dead letter to be delivered and removed", Duration::from_secs(30), || async {
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM delivery_dead_letters").fetch_one(store.pool()).await.unwrap();
        left == 0 && receiver.accepted().iter().any(|r| r.body.contains("poison"))
    })
    .await;
    delivery.stop().await;
    let retried = receiver.accepted().into_iter().find(|r| r.body.contains("poison")).unwrap();
    assert_eq!(retried.body, body);
    assert_eq!(retried.id, format!("{}.crm.{}", store.schema(), ids[1]), "the same webhook-id as its first attempts");
    assert!(signature_is_valid(SECRET, &retried));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holding_delivery_stops_advancing_at_the_refused_event_until_the_endpoint_accepts_it() {
    let store = support::store().await;
    let receiver = Receiver::start().await;
    refuse_poison(&receiver, 400);
    let ids =
        write(&store, &[("deal.stage_updated", "a".into()), ("deal.stage_updated", "poison".into()), ("deal.stage_updated", "b".into())])
            .await;
    let delivery =
        start(&store, DeliverySettings { max_attempts: 2, on_failure: OnFailure::Hold, ..settings("strict", &receiver, &["*"]) });

    support::eventually("the delivery to hold", Duration::from_secs(30), || async { row(&store, "strict").await.1 == "holding" }).await;
    let tries_then = receiver.requests().iter().filter(|r| r.body.contains("poison")).count();
    support::eventually("more attempts at the held event", Duration::from_secs(30), || async {
        receiver.requests().iter().filter(|r| r.body.contains("poison")).count() > tries_then + 2
    })
    .await;
    support::eventually("the position to reach the event before the held one", Duration::from_secs(30), || async {
        row(&store, "strict").await.0 == ids[0]
    })
    .await;
    let (position, state, reason) = row(&store, "strict").await;
    assert_eq!((position, state.as_str()), (ids[0], "holding"), "the position stops below the held event");
    assert!(reason.as_deref().is_some_and(|r| r.contains(&ids[1].to_string()) && r.contains("400")), "{reason:?}");
    let dead: i64 = sqlx::query_scalar("SELECT count(*) FROM delivery_dead_letters").fetch_one(store.pool()).await.unwrap();
    assert_eq!(dead, 0, "holding keeps no dead letter");

    receiver.clear_rule();
    support::eventually("the hold to lift", Duration::from_secs(30), || async {
        let (position, state, _) = row(&store, "strict").await;
        position == ids[2] && state == "active"
    })
    .await;
    delivery.stop().await;
    check_delivered(&receiver, &ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_410_gone_disables_the_delivery_until_delivery_enable_turns_it_back_on() {
    let store = support::store().await;
    let receiver = Receiver::start().await;
    receiver.set(Behaviour::Status(410));
    let ids = write(&store, &interleaved(3, 2)).await;
    let delivery = start(&store, settings("gone", &receiver, &["*"]));

    support::eventually("the delivery to be disabled", Duration::from_secs(30), || async { row(&store, "gone").await.1 == "disabled" })
        .await;
    let (position, _, reason) = row(&store, "gone").await;
    assert_eq!(position, 0, "no event passed");
    assert!(reason.as_deref().is_some_and(|r| r.contains("410") && r.contains("delivery enable gone")), "{reason:?}");
    let status = command(&store, &["status"]).await;
    assert!(status.contains("delivery gone: disabled") && status.contains("DISABLED: the endpoint answered 410 Gone"), "{status}");
    let delivering: bool =
        sqlx::query_scalar("SELECT lease_expires_at > now() FROM deliveries WHERE name = 'gone'").fetch_one(store.pool()).await.unwrap();
    assert!(!delivering, "a disabled delivery gives its lease up: nothing delivers it");
    let later = write(&store, &interleaved(1, 1)).await;

    receiver.set(Behaviour::Accept);
    let said = command(&store, &["delivery", "enable", "gone"]).await;
    assert!(said.contains("enabled"), "{said}");
    support::eventually("every event to be delivered", Duration::from_secs(60), || async {
        let (position, state, _) = row(&store, "gone").await;
        state == "active" && position == later[0]
    })
    .await;
    delivery.stop().await;
    check_delivered(&receiver, &[ids, later].concat());
}
