//! The webhook switches: duplicates, losses, delays and shuffles happen as configured, and
//! a full queue drops webhooks instead of holding up changes.

use std::time::{Duration, Instant};

use reqwest::StatusCode;

use super::{
    config,
    receiver::{subscribe, Received, Receiver},
    serve,
};
use crate::{webhooks::BATCH, Mutation, Resource, Simulator};

/// Touches each of `keys` (customers) in one go, before the sender gets a chance to run.
fn touch_all(s: &Simulator, keys: &[String]) {
    for key in keys {
        s.apply(Mutation::Touch { kind: Resource::Customer, key: key.clone() }).unwrap();
    }
}

fn keys_of(got: &[Received]) -> Vec<String> {
    got.iter().map(|r| r.data_key().to_owned()).collect()
}

/// Touches `marker` and waits for it: everything queued before it has then been sent.
async fn after_marker(s: &Simulator, rx: &Receiver, marker: &str) -> Vec<Received> {
    touch_all(s, &[marker.to_owned()]);
    let got = rx.wait_until("the marker", |got| got.last().is_some_and(|r| r.data_key() == marker)).await;
    got[..got.len() - 1].to_vec()
}

#[tokio::test]
async fn duplicate_share_sends_that_share_twice_right_after_the_original() {
    let sim = serve(300, |c| c.webhooks.duplicate_share = 1.0).await;
    let s = &sim.simulator;
    let rx = Receiver::start(StatusCode::OK).await;
    subscribe(&sim, &rx.url, &["customer.updated"]).await;
    let customers = s.keys(Resource::Customer);
    touch_all(s, &customers[..5]);
    let got = rx.wait_for(10).await;
    let twice: Vec<String> = customers[..5].iter().flat_map(|k| [k.clone(), k.clone()]).collect();
    assert_eq!(keys_of(&got), twice);
    assert!(got.chunks(2).all(|pair| pair[0].body == pair[1].body));

    s.configure(|c| c.webhooks.duplicate_share = 0.5);
    touch_all(s, &customers[5..45]);
    s.configure(|c| c.webhooks.duplicate_share = 0.0);
    let got = after_marker(s, &rx, &customers[45]).await;
    let half = keys_of(&got[10..]);
    let doubled = customers[5..45].iter().filter(|k| half.iter().filter(|h| h == k).count() == 2).count();
    assert!((5..35).contains(&doubled), "about half of 40 doubled: {doubled}");
    let mut once: Vec<String> = half.clone();
    once.dedup();
    assert_eq!(once, customers[5..45], "copies come right after their original, nothing lost");
}

/// The customers whose webhook got through with `loss_share` 0.5, on a fresh simulator.
async fn kept_at_half_loss(seed: u64) -> (Vec<String>, Vec<String>, u64) {
    let mut c = config(300, seed);
    c.webhooks.loss_share = 0.5;
    let sim = Simulator::new(c).start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let s = &sim.simulator;
    let rx = Receiver::start(StatusCode::OK).await;
    subscribe(&sim, &rx.url, &["customer.updated"]).await;
    let customers = s.keys(Resource::Customer);
    touch_all(s, &customers[..40]);
    s.configure(|c| c.webhooks.loss_share = 0.0);
    let kept = keys_of(&after_marker(s, &rx, &customers[40]).await);
    (customers[..40].to_vec(), kept, s.webhook_stats().lost)
}

#[tokio::test]
async fn loss_share_keeps_that_share_from_being_sent_counts_it_and_follows_the_seed() {
    let sim = serve(300, |c| c.webhooks.loss_share = 1.0).await;
    let s = &sim.simulator;
    let rx = Receiver::start(StatusCode::OK).await;
    subscribe(&sim, &rx.url, &["customer.updated"]).await;
    let customers = s.keys(Resource::Customer);
    touch_all(s, &customers[..10]);
    s.configure(|c| c.webhooks.loss_share = 0.0);
    assert!(after_marker(s, &rx, &customers[10]).await.is_empty(), "all ten lost");
    assert_eq!(s.webhook_stats().lost, 10);

    let (touched, kept, lost) = kept_at_half_loss(11).await;
    assert!((5..35).contains(&kept.len()), "about half of 40 kept: {}", kept.len());
    assert_eq!(lost, 40 - kept.len() as u64);
    let in_order: Vec<&String> = touched.iter().filter(|k| kept.contains(k)).collect();
    assert_eq!(kept.iter().collect::<Vec<_>>(), in_order, "the rest arrive once each, in order");
    assert_eq!(kept_at_half_loss(11).await.1, kept, "the same seed loses the same webhooks");
}

#[tokio::test]
async fn reorder_shuffles_webhooks_within_small_batches_and_loses_none() {
    let sim = serve(300, |c| c.webhooks.reorder = true).await;
    let s = &sim.simulator;
    let rx = Receiver::start(StatusCode::OK).await;
    subscribe(&sim, &rx.url, &["customer.updated"]).await;
    let customers: Vec<String> = s.keys(Resource::Customer)[..4 * BATCH].to_vec();
    touch_all(s, &customers);
    let got = keys_of(&rx.wait_for(customers.len()).await);
    assert_ne!(got, customers, "shuffled");
    for (i, key) in got.iter().enumerate() {
        let sent = customers.iter().position(|k| k == key).expect("a touched customer");
        assert_eq!(i / BATCH, sent / BATCH, "{key} stays in its batch of {BATCH}");
    }
    let mut sorted = got.clone();
    sorted.sort();
    let mut expected = customers.clone();
    expected.sort();
    assert_eq!(sorted, expected, "each once");
}

#[tokio::test]
async fn delay_holds_each_webhook_back_that_long() {
    let delay = Duration::from_millis(300);
    let sim = serve(300, |c| c.webhooks.delay = delay).await;
    let s = &sim.simulator;
    let rx = Receiver::start(StatusCode::OK).await;
    subscribe(&sim, &rx.url, &["customer.updated"]).await;
    let customers = s.keys(Resource::Customer);
    let changed = Instant::now();
    touch_all(s, &customers[..2]);
    let got = rx.wait_for(2).await;
    assert!(got.iter().all(|r| r.at.duration_since(changed) >= delay), "{:?}", got.iter().map(|r| r.at - changed).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_full_queue_drops_webhooks_and_counts_them_instead_of_holding_up_changes() {
    let sim = serve(300, |_| {}).await;
    let s = sim.simulator.clone();
    let rx = Receiver::start(StatusCode::OK).await;
    subscribe(&sim, &rx.url, &["customer.updated"]).await;
    sim.stop().await;
    let customers = s.keys(Resource::Customer);
    // With the sender stopped nothing leaves the queue; each change still returns at once.
    for i in 0..crate::webhooks::QUEUE_CAPACITY + 100 {
        s.apply(Mutation::Touch { kind: Resource::Customer, key: customers[i % customers.len()].clone() }).unwrap();
    }
    let stats = s.webhook_stats();
    assert_eq!((stats.dropped, stats.lost, stats.sent), (100, 0, 0));
    assert!(rx.got().is_empty());
}
