//! Webhook delivery against a real receiver over HTTP, on a real PostgreSQL: signatures
//! checked by an independent implementation, failures and recovery, dead letters, holds, 410,
//! isolation between deliveries, and the real daemon killed or doubled.

mod basics;
mod daemons;
mod failures;
mod outcomes;
mod receiver;

use std::{collections::HashMap, time::Duration};

use base64::{engine::general_purpose::STANDARD, Engine};
use partnerstack_mirror::{
    backoff::Backoff,
    config::OnFailure,
    delivery::{Delivery, DeliveryCounters, DeliverySettings, Signer},
    diff::{EventSource, NewEvent},
    store::{insert_events, Store},
};
use secrecy::SecretString;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use receiver::{Behaviour, Receiver, Request};

use crate::support;

/// `whsec_` + base64 of 32 bytes.
pub const SECRET: &str = "whsec_bXlzZWNyZXRrZXlmb3J0ZXN0aW5nd2ViaG9va3MxMjM=";

/// Settings for tests: quick backoffs, a short poll and lease.
pub fn settings(name: &str, receiver: &Receiver, patterns: &[&str]) -> DeliverySettings {
    DeliverySettings {
        name: name.into(),
        url: receiver.url.parse().unwrap(),
        patterns: patterns.iter().map(|p| (*p).to_owned()).collect(),
        signer: Signer::new(&SecretString::from(SECRET)).unwrap(),
        timeout: Duration::from_secs(2),
        max_attempts: 100,
        on_failure: OnFailure::DeadLetter,
        parallelism: 8,
        start_now: false,
        backoff: Backoff::new(Duration::from_millis(20), Duration::from_millis(200)),
        lease_ttl: Duration::from_secs(5),
        poll: Duration::from_millis(100),
    }
}

/// A delivery running in this process until the returned token is cancelled.
pub struct Running {
    pub stop: CancellationToken,
    pub counters: DeliveryCounters,
    task: JoinHandle<()>,
}

impl Running {
    pub async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task).await.expect("the delivery stops").unwrap();
    }
}

pub fn start(store: &Store, settings: DeliverySettings) -> Running {
    let counters = DeliveryCounters::new([settings.name.as_str()]);
    let stop = CancellationToken::new();
    let wakeups = partnerstack_mirror::store::Wakeups::default();
    tokio::spawn({
        let (store, wakeups, stop) = (store.clone(), wakeups.clone(), stop.clone());
        async move { store.fan_out_wakeups(wakeups, stop).await }
    });
    let delivery = Delivery::new(settings, store.clone(), "test-holder", counters.clone()).unwrap().woken_by(wakeups.events.subscribe());
    let task = tokio::spawn(delivery.run(stop.clone()));
    Running { stop, counters, task }
}

/// Writes events in this order, each `(event_type, record key)`; returns their ids.
pub async fn write(store: &Store, events: &[(&str, String)]) -> Vec<i64> {
    let new: Vec<NewEvent> = events
        .iter()
        .enumerate()
        .map(|(i, (event_type, key))| NewEvent {
            event_type: (*event_type).to_owned(),
            object_type: "deal",
            object_key: key.clone(),
            occurred_ms: 1_700_000_000_000 + i as i64,
            source: EventSource::Poll,
            changes: Some(json!({"stage": {"old": "a", "new": format!("step {i}")}})),
            data: serde_json::value::to_raw_value(&json!({"key": key, "n": i})).unwrap(),
        })
        .collect();
    let mut tx = store.pool().begin().await.unwrap();
    insert_events(&mut tx, &new).await.unwrap();
    // This transaction holds the events lock until it commits: the last ids are its own.
    let mut ids: Vec<i64> =
        sqlx::query_scalar("SELECT id FROM events ORDER BY id DESC LIMIT $1").bind(events.len() as i64).fetch_all(&mut *tx).await.unwrap();
    tx.commit().await.unwrap();
    ids.reverse();
    ids
}

/// `records` records with `each` `deal.stage_updated` events, interleaved across records.
pub fn interleaved(records: usize, each: usize) -> Vec<(&'static str, String)> {
    (0..each).flat_map(|_| (0..records).map(|r| ("deal.stage_updated", format!("deal_{r}")))).collect()
}

/// The event id and record of a webhook body.
pub fn event_of(body: &str) -> (i64, String) {
    let v: Value = serde_json::from_str(body).expect("the body is JSON");
    (v["id"].as_i64().expect("an id"), v["object_key"].as_str().expect("an object_key").to_owned())
}

/// The delivery's position and state.
pub async fn row(store: &Store, name: &str) -> (i64, String, Option<String>) {
    sqlx::query_as("SELECT position, state, state_reason FROM deliveries WHERE name = $1")
        .bind(name)
        .fetch_optional(store.pool())
        .await
        .unwrap()
        .unwrap_or((0, "absent".into(), None))
}

/// HMAC-SHA256 written out from its definition (RFC 2104) over SHA-256, independent of the
/// `hmac` crate and of the product's signer.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block = [0_u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new().chain_update(pad(0x36)).chain_update(message).finalize();
    Sha256::new().chain_update(pad(0x5c)).chain_update(inner).finalize().into()
}

/// The Standard Webhooks check a receiver makes: one of the space-separated `v1,` signatures
/// is the HMAC of `{id}.{timestamp}.{body}` keyed with the secret's decoded bytes.
pub fn signature_is_valid(secret: &str, request: &Request) -> bool {
    let key = STANDARD.decode(secret.strip_prefix("whsec_").unwrap()).unwrap();
    let expected = STANDARD.encode(hmac_sha256(&key, format!("{}.{}.{}", request.id, request.timestamp, request.body).as_bytes()));
    request.signature.split(' ').any(|s| s.strip_prefix("v1,") == Some(expected.as_str()))
}

/// Checks what a receiver got: every event of `ids` accepted; per record, first acceptances
/// in id order; every copy of an event under the same webhook-id with the same body, and
/// distinct events under distinct ids. Returns the number of duplicate acceptances.
pub fn check_delivered(receiver: &Receiver, ids: &[i64]) -> usize {
    let accepted = receiver.accepted();
    let mut by_id: HashMap<String, (i64, String)> = HashMap::new();
    let mut first_seen: Vec<(i64, String)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for r in &accepted {
        let (event, record) = event_of(&r.body);
        match by_id.get(&r.id) {
            Some((e, body)) => {
                assert_eq!(*e, event, "one webhook-id, one event");
                assert_eq!(body, &r.body, "a re-send carries the same body");
            }
            None => {
                by_id.insert(r.id.clone(), (event, r.body.clone()));
            }
        }
        if seen.insert(event) {
            first_seen.push((event, record));
        }
    }
    let events: std::collections::HashSet<i64> = by_id.values().map(|(e, _)| *e).collect();
    assert_eq!(events.len(), by_id.len(), "distinct events have distinct webhook-ids");
    for id in ids {
        assert!(seen.contains(id), "event {id} was delivered");
    }
    let mut last: HashMap<String, i64> = HashMap::new();
    for (event, record) in &first_seen {
        if let Some(previous) = last.insert(record.clone(), *event) {
            assert!(previous < *event, "{record}: event {event} arrived after {previous}");
        }
    }
    accepted.len() - seen.len()
}
