//! The simulator sends webhooks, as PartnerStack does (research notes §2.11, §6): the
//! subscriptions made with `/v2/webhooks`, and one `POST` per event of every change to each
//! live subscription that asked for that event's name.
//!
//! Nothing is known of PartnerStack's delivery guarantees (no signature, retry policy or
//! envelope was found), so the mirror must treat webhooks as hints that may be lost, late,
//! repeated or out of order. [`WebhookSwitches`] makes each of those happen on purpose;
//! the simulator itself never retries.
//!
//! Layout: this file decides what is sent to whom (under the state lock, cheap and never
//! blocking: deliveries go into a bounded queue, dropped and counted when it is full);
//! `subscriptions` answers the `/v2/webhooks` endpoints; `payload` builds the bodies in the
//! current and the legacy style; `outbox` sends them from a background task, off the lock.

mod outbox;
mod payload;
pub(super) mod subscriptions;

use std::{sync::Arc, time::Duration};

use serde_json::{value::RawValue, Value};
use tokio::sync::mpsc;

use crate::Resource;

use super::{fake::Fake, state::State, table::Table};

#[cfg(test)]
pub(super) use outbox::BATCH;
pub(super) use outbox::{deliver, Outbox};

/// Deliveries waiting for the sender; past this many, new ones are dropped (and counted)
/// rather than holding up the change that caused them.
pub(super) const QUEUE_CAPACITY: usize = 4_096;

/// How the simulator misbehaves when it sends webhooks, as a real sender might; all off by
/// default. Lost and duplicated webhooks are drawn from the seed, so a seed and a sequence
/// of changes give the same deliveries.
#[derive(Clone, Debug, Default)]
pub struct WebhookSwitches {
    /// This share (0–1) of webhooks is sent twice, the copy right after the original.
    pub duplicate_share: f64,
    /// Each webhook waits this long after its change before it is sent.
    pub delay: Duration,
    /// Webhooks go out shuffled within small batches: up to 8 queued within 50 ms of each
    /// other (or, with a delay, while the first waits).
    pub reorder: bool,
    /// This share (0–1) of webhooks is never sent (see [`WebhookStats::lost`]).
    pub loss_share: f64,
    /// The v1 style: the record's fields flat at the top level plus
    /// `"event": "deal_stage_updated"`, and partnerships as the legacy sample shows them
    /// (an integer `id`, no `key`, `"archived": "false"`). Otherwise the current style,
    /// `{"event": "deal.stage_updated", "data": <the record as the API serves it>}`.
    pub legacy_payloads: bool,
}

/// One webhook the simulator sent, for tests to compare with what a receiver stored.
#[derive(Clone, Debug, PartialEq)]
pub struct SentWebhook {
    /// The subscription's target URL.
    pub target: String,
    /// The name in the body's `event` field: `deal.updated`, or `deal_updated` in the legacy
    /// style.
    pub event: String,
    /// The HTTP status answered; 0 when no answer came (refused, timed out, not HTTP).
    pub status: u16,
    /// The body as sent (always a JSON object).
    pub body: Value,
}

/// Counts of webhooks that were not sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WebhookStats {
    /// Sent (answered or not), duplicates included.
    pub sent: u64,
    /// Kept back on purpose by [`WebhookSwitches::loss_share`].
    pub lost: u64,
    /// Dropped because the send queue was full (the sender not running, or far behind).
    pub dropped: u64,
}

/// Which Litmos completion a [`TrainingCompletion`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrainingKind {
    Course,
    LearningPath,
}

impl TrainingKind {
    /// The webhook's event name.
    pub fn event(self) -> &'static str {
        match self {
            TrainingKind::Course => "training.course_completed",
            TrainingKind::LearningPath => "training.learning_path_completed",
        }
    }
}

/// A partner finishing a course or learning path in SAP Litmos. PartnerStack reports these
/// only as webhooks (nothing in the API lists them); the fields are those a connector
/// lists, since no sample payload was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrainingCompletion {
    pub kind: TrainingKind,
    /// Litmos's id of the course or learning path.
    pub id: String,
    pub name: String,
    pub partnership_key: Option<String>,
    pub partner_key: Option<String>,
    pub email: Option<String>,
    /// The vendor company's key (`comp_…`).
    pub company_key: Option<String>,
    /// Epoch milliseconds.
    pub completed_at_ms: i64,
}

const COURSES: &[&str] = &["Partner Onboarding 101", "Selling the Platform", "Technical Certification", "Advanced Integrations"];
const LEARNING_PATHS: &[&str] = &["Certified Partner Path", "Sales Enablement Path", "Solutions Architect Path"];

/// One POST waiting to be sent.
pub(super) struct Delivery {
    target: String,
    /// The name as it appears in the body.
    event: String,
    body: Arc<str>,
    /// Not before this instant (the delay switch).
    due: tokio::time::Instant,
    /// Whether the batch it lands in goes out shuffled.
    reorder: bool,
}

/// The webhook side of the state: subscriptions, the generator for webhook decisions, and
/// the queue's sending end.
pub(super) struct Webhooks {
    /// Subscriptions stored like records, so the list endpoint pages them the same way.
    pub subscriptions: Table,
    /// Subscription keys, losses, duplicates and training completions draw from this
    /// generator, not the account's, so the account's history is the same with or without
    /// subscribers.
    pub fake: Fake,
    queue: mpsc::Sender<Delivery>,
    lost: u64,
    dropped: u64,
}

impl Webhooks {
    /// The state's part and the receiving end for the sender task.
    pub fn new(seed: u64) -> (Webhooks, mpsc::Receiver<Delivery>) {
        let (queue, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let fake = Fake::new(seed ^ 0x5eb4_00c5);
        (Webhooks { subscriptions: Table::default(), fake, queue, lost: 0, dropped: 0 }, receiver)
    }

    /// Whether any subscription is live (otherwise changes cost nothing extra).
    pub fn any_live(&self) -> bool {
        self.subscriptions.rows.values().any(|r| !r.archived)
    }

    /// `(lost, dropped)`.
    pub fn counts(&self) -> (u64, u64) {
        (self.lost, self.dropped)
    }

    /// The targets of the live subscriptions that asked for `event` (dotted).
    fn targets(&self, event: &str) -> Vec<String> {
        let live = self.subscriptions.newest_first().filter(|r| !r.archived).map(|r| r.value());
        live.filter(|s| wants(s, event)).filter_map(|s| s["target"].as_str().map(str::to_owned)).collect()
    }

    /// Queues `body` for each of `targets`, applying the loss and duplicate switches.
    fn enqueue(&mut self, targets: Vec<String>, body: &payload::Body, switches: &WebhookSwitches) {
        for target in targets {
            if self.fake.chance(switches.loss_share) {
                self.lost += 1;
                continue;
            }
            let copies = if self.fake.chance(switches.duplicate_share) { 2 } else { 1 };
            for _ in 0..copies {
                let delivery = Delivery {
                    target: target.clone(),
                    event: body.event.clone(),
                    body: body.text.clone(),
                    due: tokio::time::Instant::now() + switches.delay,
                    reorder: switches.reorder,
                };
                if self.queue.try_send(delivery).is_err() {
                    self.dropped += 1;
                    tracing::debug!(event = %body.event, "webhook queue full; webhook dropped");
                }
            }
        }
    }
}

/// Whether a subscription's `events` name `event` (dotted), its legacy spelling, or `*`.
fn wants(subscription: &Value, event: &str) -> bool {
    let legacy = payload::legacy_name(event);
    subscription["events"].as_array().into_iter().flatten().filter_map(Value::as_str).any(|e| e == "*" || e == event || e == legacy)
}

impl State {
    /// Sends the webhooks of one change: each of `events` (dotted names) about the record
    /// `kind`/`key` as it now is, or as `gone` when it no longer exists (a hard delete).
    pub(super) fn announce(&mut self, kind: Resource, key: &str, events: &[String], gone: Option<&RawValue>) {
        if events.is_empty() || !self.webhooks.any_live() {
            return;
        }
        let record = match (self.table(kind).get(key), gone) {
            (Some(row), _) => row.raw().to_owned(),
            (None, Some(gone)) => gone.to_owned(),
            (None, None) => return,
        };
        for event in events {
            let targets = self.webhooks.targets(event);
            if !targets.is_empty() {
                let body = payload::record(kind, event, &record, self.config.webhooks.legacy_payloads);
                self.webhooks.enqueue(targets, &body, &self.config.webhooks);
            }
        }
    }

    /// Sends a training completion to its subscribers.
    pub(super) fn announce_training(&mut self, completion: &TrainingCompletion) {
        let targets = self.webhooks.targets(completion.kind.event());
        if !targets.is_empty() {
            let body = payload::training(completion, self.config.webhooks.legacy_payloads);
            self.webhooks.enqueue(targets, &body, &self.config.webhooks);
        }
    }

    /// A completion of a random course or learning path by a random partnership (`None`
    /// when there is none), completed now.
    pub(super) fn random_training_completion(&mut self, kind: TrainingKind) -> Option<TrainingCompletion> {
        let now = self.now();
        let company_key = self.account.company["key"].as_str().map(str::to_owned);
        let (webhooks, partnerships) = self.webhooks_and_table(Resource::Partnership);
        let key = partnerships.random_key(&mut webhooks.fake.rng)?.to_owned();
        let p = partnerships.get(&key)?.value();
        let f = &mut webhooks.fake;
        let (id, name) = match kind {
            TrainingKind::Course => (f.token("crs_", 12), f.pick(COURSES)),
            TrainingKind::LearningPath => (f.token("lp_", 12), f.pick(LEARNING_PATHS)),
        };
        let text = |field: &str| p[field].as_str().map(str::to_owned);
        Some(TrainingCompletion {
            kind,
            id,
            name: name.to_owned(),
            partnership_key: Some(key),
            partner_key: text("partner_key"),
            email: text("email"),
            company_key,
            completed_at_ms: now,
        })
    }
}
