//! PartnerStack webhooks in (docs/webhooks.md): the daemon's side after the HTTP endpoint has kept a
//! webhook in `webhook_inbox` and answered it.
//!
//! - Object webhooks are hints: they ask for an immediate read of that object type
//!   ([`ReadRequests`]), coalesced, so a burst of a thousand webhooks about deals costs a
//!   read or two, and the rows and events come from the API's answer through the normal
//!   diff. A forged, replayed, duplicated or reordered webhook costs at most an extra read; a
//!   lost one is caught by the next poll.
//! - Training completions are data PartnerStack sends no other way: each becomes one
//!   `training_completions` row and one event, however often it is delivered.
//! - The inbox is worked through in transactions that lock their rows (several daemons share
//!   it), and a webhook received just before a crash is handled after the restart.

pub mod payload;

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::Value;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::{
    liveness,
    metrics::Counts,
    object::ObjectKind,
    store::{InboxDecision, InboxRow, Store, StoreError, TrainingRow},
    telemetry::error_chain,
};
use payload::Webhook;

/// Webhooks handled per transaction.
const BATCH: i64 = 100;
/// Polling covers a wake-up missed (a webhook another daemon's endpoint received).
const POLL: Duration = Duration::from_secs(1);

/// The object types webhooks asked to read, not read yet: each at most once however many
/// webhooks asked, with what they said of it.
#[derive(Debug, Default)]
pub struct ReadRequests {
    kinds: Mutex<BTreeMap<ObjectKind, Asked>>,
    wake: Notify,
}

/// What the webhooks about one object type said since its last read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Asked {
    /// Only that records changed (`deal.updated`, `reward.status_updated`): a read by
    /// created windows (transactions and rewards, while the API ignores `min_updated` on
    /// them) cannot see it, and is not worth a request; the rescan finds it.
    UpdatesOnly,
    /// Something that may be new (`*.created`), or unknown.
    Anything,
}

impl Asked {
    /// What a webhook named `event` says.
    pub fn by(event: Option<&str>) -> Asked {
        match event {
            Some(name) if !name.ends_with("created") => Asked::UpdatesOnly,
            _ => Asked::Anything,
        }
    }
}

impl ReadRequests {
    /// Asks for a read of `kind` (webhooks that may be about anything).
    pub fn request(&self, kind: ObjectKind) {
        self.ask(kind, Asked::Anything);
    }

    /// Asks for a read of `kind`; `Anything` wins over `UpdatesOnly`.
    pub fn ask(&self, kind: ObjectKind, asked: Asked) {
        let mut kinds = self.kinds.lock().expect("no panics while holding it");
        let entry = kinds.entry(kind).or_insert(asked);
        *entry = (*entry).max(asked);
        drop(kinds);
        self.wake.notify_one();
    }

    /// Waits until some object type was asked for, and takes every one asked for so far.
    pub async fn next(&self) -> BTreeMap<ObjectKind, Asked> {
        loop {
            let taken = std::mem::take(&mut *self.kinds.lock().expect("no panics while holding it"));
            if !taken.is_empty() {
                return taken;
            }
            self.wake.notified().await;
        }
    }
}

/// What happened to webhooks in this process, by outcome (`/metrics`' `webhooks_received`
/// and `webhooks_handled`). Clones count together.
#[derive(Clone, Debug)]
pub struct IntakeCounters {
    /// What the endpoint answered: `accepted`, `wrong_token`, `too_large`, `not_json`.
    pub received: Counts,
    /// What the inbox worker made of the accepted ones ([`crate::store::InboxOutcome::as_str`]).
    pub handled: Counts,
}

impl Default for IntakeCounters {
    fn default() -> IntakeCounters {
        IntakeCounters {
            received: Counts::new("outcome", ["accepted", "wrong_token", "too_large", "not_json"]),
            handled: Counts::new("outcome", ["read_requested", "recorded", "ignored", "quarantined"]),
        }
    }
}

/// The daemon's inbox worker.
#[derive(Clone)]
pub struct Intake {
    pub store: Store,
    pub reads: Arc<ReadRequests>,
    /// The object types this daemon mirrors; hints about others are ignored.
    pub objects: Vec<ObjectKind>,
    pub counters: IntakeCounters,
    /// Woken by the HTTP endpoint after it kept a webhook.
    pub wake: Arc<Notify>,
}

impl Intake {
    /// Works through the inbox until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        while !shutdown.is_cancelled() {
            let woken = self.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            liveness::step();
            match self.work_through().await {
                Ok(_) => {}
                Err(error) => warn!(error = %error_chain(&error), "webhook inbox: database error; trying again"),
            }
            liveness::wait_for(POLL);
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = woken => {}
                _ = tokio::time::sleep(POLL) => {}
            }
        }
        Ok(())
    }

    /// Handles every pending webhook; returns how many.
    pub async fn work_through(&self) -> Result<usize, StoreError> {
        let mut handled = 0;
        loop {
            liveness::step();
            let n = self.handle_batch().await?;
            handled += n;
            if n < BATCH as usize {
                return Ok(handled);
            }
        }
    }

    /// One transaction (the store's): the webhooks it locks, their completions and events,
    /// their outcomes. Reads are asked for only once it committed.
    async fn handle_batch(&self) -> Result<usize, StoreError> {
        let mut reads = BTreeMap::new();
        let outcomes = self.store.handle_inbox_batch(BATCH, |row| self.decide(row, &mut reads)).await?;
        for &outcome in &outcomes {
            self.counters.handled.add(outcome.as_str(), 1);
        }
        for (kind, asked) in reads {
            self.reads.ask(kind, asked);
        }
        Ok(outcomes.len())
    }

    /// What to make of one webhook: a read to ask for (gathered in `reads`), a training
    /// completion to store or to quarantine, or nothing.
    fn decide(&self, row: &InboxRow, reads: &mut BTreeMap<ObjectKind, Asked>) -> InboxDecision {
        // Only JSON is accepted into the inbox; a row that is not must have come another way.
        let Ok(body) = serde_json::from_str::<Value>(&row.payload) else {
            return InboxDecision::Ignored(Some("not JSON".into()));
        };
        match payload::read(&body) {
            Webhook::Hint(kind) if self.objects.contains(&kind) => {
                let asked = Asked::by(payload::event_name(&body).as_deref());
                let entry = reads.entry(kind).or_insert(asked);
                *entry = (*entry).max(asked);
                // A team webhook makes its team due: the read lists that team (and any other
                // whose partnership changed), not every team.
                let team = payload::team_key(&body).filter(|_| kind == ObjectKind::PartnerTeamMember);
                InboxDecision::ReadRequested { team }
            }
            Webhook::Hint(kind) => InboxDecision::Ignored(Some(format!("{} is not mirrored (sync.objects)", kind.table()))),
            Webhook::Unknown => InboxDecision::Ignored(None),
            Webhook::Training(completion) => {
                if let Some(why) = unstorable(&body) {
                    let error = format!("training completion cannot be stored: {why}");
                    warn!(inbox_id = row.id, error, "webhook quarantined");
                    return InboxDecision::Quarantined(error);
                }
                let identity = completion.identity().unwrap_or_else(|| format!("body|{}", body));
                let kind = completion.kind.unwrap_or(payload::TrainingKind::Course);
                tracing::debug!(inbox_id = row.id, kind = kind.as_str(), "training completion");
                InboxDecision::Recorded(TrainingRow {
                    identity,
                    kind: kind.as_str(),
                    event_type: kind.event_type(),
                    facts: completion.facts,
                })
            }
        }
    }
}

/// Why PostgreSQL could not keep this body as `jsonb`: a NUL character anywhere in it.
fn unstorable(v: &Value) -> Option<&'static str> {
    let nul = match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => return a.iter().find_map(unstorable),
        Value::Object(o) => return o.iter().find_map(|(k, v)| if k.contains('\0') { Some("a NUL character") } else { unstorable(v) }),
        _ => false,
    };
    nul.then_some("a NUL character")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn read_requests_coalesce_and_are_taken_all_at_once() {
        let reads = ReadRequests::default();
        for _ in 0..1000 {
            reads.request(ObjectKind::Deal);
        }
        reads.ask(ObjectKind::Lead, Asked::UpdatesOnly);
        reads.ask(ObjectKind::Reward, Asked::UpdatesOnly);
        reads.request(ObjectKind::Reward);
        reads.ask(ObjectKind::Deal, Asked::UpdatesOnly);
        let asked = BTreeMap::from([
            (ObjectKind::Deal, Asked::Anything),
            (ObjectKind::Lead, Asked::UpdatesOnly),
            (ObjectKind::Reward, Asked::Anything),
        ]);
        assert_eq!(reads.next().await, asked, "one entry per kind; anything wins over updates only");
        assert!(tokio::time::timeout(Duration::from_millis(20), reads.next()).await.is_err(), "nothing left to take");
    }

    #[test]
    fn only_a_creation_may_bring_something_new() {
        assert_eq!(Asked::by(Some("transaction.created")), Asked::Anything);
        assert_eq!(Asked::by(Some("partnership_created")), Asked::Anything);
        assert_eq!(Asked::by(Some("reward.status_updated")), Asked::UpdatesOnly);
        assert_eq!(Asked::by(Some("transaction_updated")), Asked::UpdatesOnly);
        assert_eq!(Asked::by(None), Asked::Anything);
    }

    #[test]
    fn a_nul_anywhere_cannot_be_stored() {
        assert!(unstorable(&serde_json::json!({"data": {"name": "a\u{0}b"}})).is_some());
        assert!(unstorable(&serde_json::json!({"data": {"name": "ab", "tags": ["x"]}})).is_none());
    }
}
