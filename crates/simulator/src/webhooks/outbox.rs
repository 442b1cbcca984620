//! The sender: one background task, started with the server, takes deliveries off the
//! bounded queue and POSTs them one at a time, so without the reorder switch they leave in
//! the order of the changes. Each POST has a short timeout and is never retried: what
//! PartnerStack does on failure is unknown, and the mirror must survive lost webhooks.

use std::{
    collections::VecDeque,
    sync::{Mutex, PoisonError},
    time::Duration,
};

use rand::{rngs::StdRng, seq::SliceRandom, SeedableRng};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Delivery, SentWebhook};
use crate::Simulator;

/// How long one POST may take before it counts as unanswered (status 0).
const POST_TIMEOUT: Duration = Duration::from_secs(2);
/// The reorder switch shuffles batches of up to this many deliveries…
pub(crate) const BATCH: usize = 8;
/// …gathered for at most this long after the first (or until the first is due).
const BATCH_WINDOW: Duration = Duration::from_millis(50);
/// The sent log keeps this many of the latest webhooks (a long demo sends without end).
const LOG_CAPACITY: usize = 10_000;

/// The queue's receiving end and what was sent, shared by the simulator's clones.
pub(crate) struct Outbox {
    /// Held by the running sender for its whole life; a sender started later (the server
    /// started again) takes it over once the previous one has ended.
    receiver: tokio::sync::Mutex<mpsc::Receiver<Delivery>>,
    log: Mutex<Log>,
}

#[derive(Default)]
struct Log {
    recent: VecDeque<SentWebhook>,
    sent: u64,
}

impl Outbox {
    pub fn new(receiver: mpsc::Receiver<Delivery>) -> Outbox {
        Outbox { receiver: tokio::sync::Mutex::new(receiver), log: Mutex::default() }
    }

    /// The latest sent webhooks, oldest first.
    pub fn sent(&self) -> Vec<SentWebhook> {
        self.log().recent.iter().cloned().collect()
    }

    /// How many were sent in all.
    pub fn sent_count(&self) -> u64 {
        self.log().sent
    }

    fn record(&self, webhook: SentWebhook) {
        let mut log = self.log();
        if log.recent.len() == LOG_CAPACITY {
            log.recent.pop_front();
        }
        log.recent.push_back(webhook);
        log.sent += 1;
    }

    fn log(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Sends queued webhooks until `stop`; what is still queued then stays for a later sender.
pub(crate) async fn deliver(sim: Simulator, stop: CancellationToken) {
    let outbox = &sim.shared.outbox;
    let mut receiver = tokio::select! {
        _ = stop.cancelled() => return,
        receiver = outbox.receiver.lock() => receiver,
    };
    let client = reqwest::Client::builder().timeout(POST_TIMEOUT).redirect(reqwest::redirect::Policy::none()).no_proxy().build();
    let client = match client {
        Ok(client) => client,
        Err(e) => {
            tracing::warn!(error = %e, "the simulator cannot send webhooks: no HTTP client");
            return;
        }
    };
    let mut rng = StdRng::seed_from_u64(sim.config().seed ^ 0x00de_11e5);
    loop {
        let Some(batch) = next_batch(&mut receiver, &mut rng, &stop).await else { return };
        for delivery in batch {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep_until(delivery.due) => {}
            }
            let status = tokio::select! {
                _ = stop.cancelled() => return,
                status = post(&client, &delivery) => status,
            };
            let body = serde_json::from_str(&delivery.body).unwrap_or_default();
            outbox.record(SentWebhook { target: delivery.target, event: delivery.event, status, body });
        }
    }
}

/// The next deliveries to send: one, or with the reorder switch a shuffled batch of those
/// queued within a short window (or before the first is due).
async fn next_batch(receiver: &mut mpsc::Receiver<Delivery>, rng: &mut StdRng, stop: &CancellationToken) -> Option<Vec<Delivery>> {
    let first = tokio::select! {
        _ = stop.cancelled() => None,
        first = receiver.recv() => first,
    }?;
    if !first.reorder {
        return Some(vec![first]);
    }
    // A delayed webhook waits anyway, so its batch gathers until it is due.
    let until = (tokio::time::Instant::now() + BATCH_WINDOW).max(first.due);
    let mut batch = vec![first];
    while batch.len() < BATCH {
        match tokio::time::timeout_at(until, receiver.recv()).await {
            Ok(Some(next)) => batch.push(next),
            Ok(None) | Err(_) => break,
        }
    }
    batch.shuffle(rng);
    Some(batch)
}

/// One POST; the status answered, or 0 when none came. The target is not logged: it may
/// carry the receiver's secret token in its path.
async fn post(client: &reqwest::Client, delivery: &Delivery) -> u16 {
    let request = client.post(&delivery.target).header(reqwest::header::CONTENT_TYPE, "application/json").body(delivery.body.to_string());
    match request.send().await {
        Ok(response) => response.status().as_u16(),
        Err(e) => {
            tracing::debug!(event = %delivery.event, error = %e.without_url(), "webhook not answered");
            0
        }
    }
}
