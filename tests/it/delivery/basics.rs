//! What a receiver gets: signed, matching events with the columns of `events`.

use std::time::Duration;

use partnerstack_mirror::store::{EventRow, EVENT_COLUMNS};

use super::*;

#[tokio::test]
async fn every_webhook_is_signed_as_standard_webhooks_says_and_carries_the_event_as_json() {
    let store = support::store().await;
    let receiver = Receiver::start().await;
    let mut events = interleaved(4, 3);
    events.push(("lead.approved", "lead_1".into()));
    events.push(("deal.created", "deal_9".into()));
    let ids = write(&store, &events).await;
    let delivery = start(&store, settings("crm", &receiver, &["deal.stage_updated", "deal.created"]));

    support::eventually("every matching event to arrive", Duration::from_secs(30), || async { receiver.accepted().len() >= 13 }).await;
    support::eventually("the position to pass every event", Duration::from_secs(30), || async {
        row(&store, "crm").await.0 == *ids.last().unwrap()
    })
    .await;
    delivery.stop().await;

    let requests = receiver.requests();
    assert_eq!(requests.len(), 13, "the lead event does not match the patterns");
    let now = chrono::Utc::now().timestamp();
    for r in &requests {
        assert!(signature_is_valid(SECRET, r), "{r:?}");
        let tampered = Request { body: r.body.replace("deal_", "deal-"), ..r.clone() };
        assert!(!signature_is_valid(SECRET, &tampered), "the body is signed");
        assert!((now - r.timestamp).abs() < 300, "webhook-timestamp is Unix seconds at send: {}", r.timestamp);
        assert_eq!(r.content_type, "application/json");
        let (event, _) = event_of(&r.body);
        assert_eq!(r.id, format!("{}.crm.{event}", store.schema()), "webhook-id is the schema, the delivery and the event");
        let row: EventRow =
            sqlx::query_as(&format!("SELECT {EVENT_COLUMNS} FROM events WHERE id = $1")).bind(event).fetch_one(store.pool()).await.unwrap();
        assert_eq!(r.body, row.to_json(), "the body is the event's row as JSON");
        assert_ne!(row.event_type, "lead.approved");
    }
    assert_eq!(check_delivered(&receiver, &ids[..12]), 0);
}

#[tokio::test]
async fn a_delivery_starting_now_sends_only_events_written_after_it_first_ran() {
    let store = support::store().await;
    let receiver = Receiver::start().await;
    write(&store, &interleaved(2, 2)).await;
    let delivery = start(&store, DeliverySettings { start_now: true, ..settings("news", &receiver, &["*"]) });
    support::eventually("the delivery's row", Duration::from_secs(30), || async { row(&store, "news").await.1 == "active" }).await;
    let later = write(&store, &interleaved(3, 1)).await;

    support::eventually("the new events to arrive", Duration::from_secs(30), || async { receiver.accepted().len() >= 3 }).await;
    support::eventually("the position to pass them", Duration::from_secs(30), || async {
        row(&store, "news").await.0 == *later.last().unwrap()
    })
    .await;
    delivery.stop().await;
    let got: Vec<i64> = receiver.accepted().iter().map(|r| event_of(&r.body).0).collect();
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(got.iter().all(|id| later.contains(id)), "{got:?} vs {later:?}");
}
