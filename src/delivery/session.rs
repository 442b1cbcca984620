//! One delivering session: what a delivery does while it holds its lease. It reads events
//! into per-record lanes (a bounded window), puts up to `parallelism` of them on the wire,
//! handles each answer (accepted, retried after a backoff, dead-lettered, held, or 410), and
//! saves the position, which renews the lease, every second while it moves.

use std::{collections::HashSet, time::Duration};

use tokio::{task::JoinSet, time::Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::{
    counters,
    lanes::{Job, LaneKey, Lanes},
    send::{self, Answer},
    Delivery, DeliverySettings,
};
use crate::{
    config::OnFailure,
    liveness,
    store::{Checkpoint, DeliveryLease, GiveUp, StoreError},
    telemetry::error_chain,
};

/// Events read ahead and not yet done, at most: the memory bound of a delivery.
const WINDOW: usize = 1_000;
/// Events read per query.
const BATCH: usize = 500;
/// Requeued dead letters taken in at once.
const REQUEUED_AT_ONCE: usize = 100;
/// How often the position is written while it moves.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);
/// How often requeued dead letters are looked for.
const REQUEUE_POLL: Duration = Duration::from_secs(1);

/// How a delivering session ended.
pub(super) enum End {
    /// Told to stop; the position is saved and the lease released.
    Stopped,
    /// Another daemon holds the lease now.
    Lost,
    /// The endpoint answered 410 Gone.
    Disabled,
    Failed(StoreError),
}

impl From<StoreError> for End {
    fn from(e: StoreError) -> End {
        match e {
            StoreError::LostDelivery { .. } => End::Lost,
            e => End::Failed(e),
        }
    }
}

/// One webhook on the wire, and what came of it.
struct Sent {
    key: LaneKey,
    job: Job,
    answer: Answer,
    took: Duration,
}

/// Delivering while the lease holds.
pub(super) struct Session<'a> {
    delivery: &'a Delivery,
    lease: DeliveryLease,
    lanes: Lanes,
    sending: JoinSet<Sent>,
    /// The endpoint asked the whole delivery to wait (429) until then.
    paused_until: Option<Instant>,
    caught_up: bool,
    read_at: Instant,
    unsaved: Checkpoint,
    committed: i64,
    checkpointed_at: Instant,
    /// Holding at an event: the state goes back to active once the position reaches this.
    holding_until: Option<i64>,
    /// Requeued dead letters in the lanes.
    requeued: HashSet<i64>,
    requeue_looked_at: Option<Instant>,
    /// The last attempt failed: said once in the log, and once when it recovers.
    failing: bool,
    labels: counters::DeliveryLabels,
}

impl<'a> Session<'a> {
    pub(super) fn new(delivery: &'a Delivery, lease: DeliveryLease, position: i64, holding: bool) -> Session<'a> {
        Session {
            delivery,
            lanes: Lanes::new(position),
            sending: JoinSet::new(),
            paused_until: None,
            caught_up: false,
            read_at: Instant::now(),
            unsaved: Checkpoint { position, ..Checkpoint::default() },
            committed: position,
            checkpointed_at: Instant::now(),
            holding_until: holding.then_some(position + 1),
            requeued: HashSet::new(),
            requeue_looked_at: None,
            failing: false,
            labels: counters::labels(&lease.name),
            lease,
        }
    }

    fn settings(&self) -> &DeliverySettings {
        &self.delivery.settings
    }

    pub(super) async fn run(mut self, shutdown: &CancellationToken) -> End {
        let mut wake = self.delivery.wake.clone();
        loop {
            if shutdown.is_cancelled() {
                return self.stop().await;
            }
            if let Err(end) = self.take_in().await {
                return end;
            }
            self.dispatch();
            if let Err(e) = self.checkpoint_if_due().await {
                return e.into();
            }

            let now = Instant::now();
            let mut wake_at = self.checkpointed_at + self.checkpoint_interval();
            let mut consider = |at: Option<Instant>| {
                if let Some(at) = at.filter(|at| *at > now) {
                    wake_at = wake_at.min(at);
                }
            };
            consider(self.lanes.next_wake());
            consider(self.paused_until);
            consider(self.requeue_looked_at.map(|t| t + REQUEUE_POLL));
            if self.caught_up {
                consider(Some(self.read_at + self.settings().poll));
            }
            // A request in flight answers within the timeout.
            let promise = if self.sending.is_empty() { wake_at } else { wake_at.max(now + self.settings().timeout) };
            liveness::wait_until(promise);
            let listening = self.caught_up && wake.is_some();
            tokio::select! {
                _ = shutdown.cancelled() => {}
                Some(done) = self.sending.join_next(), if !self.sending.is_empty() => {
                    let sent = match done {
                        Ok(sent) => sent,
                        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                        Err(_) => continue,
                    };
                    if let Err(end) = self.handle(sent).await {
                        return end;
                    }
                }
                changed = async { wake.as_mut().expect("listening").changed().await }, if listening => {
                    if changed.is_err() {
                        wake = None;
                    }
                    self.caught_up = false;
                }
                _ = tokio::time::sleep_until(wake_at) => {
                    if self.caught_up && self.read_at.elapsed() >= self.settings().poll {
                        self.caught_up = false;
                    }
                }
            }
        }
    }

    fn checkpoint_interval(&self) -> Duration {
        CHECKPOINT_EVERY.min(self.lease.ttl / 3)
    }

    /// Reads the next events (while the window has room) and requeued dead letters into
    /// their lanes.
    async fn take_in(&mut self) -> Result<(), End> {
        // A whole batch at a time: not one query per event done once the window is full.
        let room = if self.lanes.pending() + BATCH <= WINDOW { BATCH } else { 0 };
        if !self.caught_up && room > 0 {
            liveness::step();
            let after = self.lanes.read_position();
            let (rows, read_to) = self.delivery.store.delivery_events(after, &self.settings().patterns, room as i64).await?;
            self.caught_up = rows.len() < room;
            self.read_at = Instant::now();
            for row in rows {
                let key =
                    LaneKey { object_type: row.object_type.as_str().into(), object_key: row.object_key.as_str().into(), requeued: false };
                self.lanes.push(key, Job { event_id: row.id, event_type: row.event_type.as_str().into(), body: row.to_json().into() });
            }
            self.lanes.read_to(read_to);
        }
        let due = self.requeue_looked_at.is_none_or(|t| t.elapsed() >= REQUEUE_POLL);
        if due && self.requeued.len() < REQUEUED_AT_ONCE {
            liveness::step();
            let skip: Vec<i64> = self.requeued.iter().copied().collect();
            let letters =
                self.delivery.store.requeued_dead_letters(&self.lease.name, &skip, (REQUEUED_AT_ONCE - skip.len()) as i64).await?;
            self.requeue_looked_at = Some(Instant::now());
            for l in letters {
                self.requeued.insert(l.event_id);
                let key = LaneKey { object_type: l.object_type.into(), object_key: l.object_key.into(), requeued: true };
                self.lanes.push(key, Job { event_id: l.event_id, event_type: l.event_type.into(), body: l.body.into() });
            }
        }
        Ok(())
    }

    /// Puts ready lanes on the wire, up to `parallelism` at once, unless the endpoint asked
    /// the delivery to wait.
    fn dispatch(&mut self) {
        let now = Instant::now();
        if self.paused_until.is_some_and(|t| t > now) {
            return;
        }
        while self.sending.len() < self.settings().parallelism {
            let Some((key, job, _)) = self.lanes.next_ready(now) else { break };
            let settings = self.delivery.settings.clone();
            let client = self.delivery.client.clone();
            let webhook_id = send::webhook_id(self.delivery.store.schema(), &self.lease.name, job.event_id);
            self.sending.spawn(async move {
                let (answer, took) = send::post(&client, &settings.url, &settings.signer, &webhook_id, &job.body).await;
                Sent { key, job, answer, took }
            });
        }
    }

    async fn handle(&mut self, sent: Sent) -> Result<(), End> {
        let Sent { key, job, answer, took } = sent;
        let name = self.lease.name.clone();
        self.delivery.counters.latency.get_or_create(&self.labels).observe(took.as_secs_f64());
        match answer {
            Answer::Accepted => {
                self.delivery.counters.sent.get_or_create(&self.labels).inc();
                self.unsaved.sent = true;
                if self.failing {
                    info!(delivery = %name, "the endpoint accepts webhooks again");
                    self.failing = false;
                }
                if key.requeued {
                    liveness::step();
                    self.delivery.store.dead_letter_delivered(&self.lease, job.event_id).await?;
                    self.requeued.remove(&job.event_id);
                    info!(delivery = %name, event = job.event_id, "requeued dead letter delivered");
                }
                self.lanes.done(&key);
            }
            Answer::Gone => {
                let reason = format!(
                    "the endpoint answered 410 Gone to event {} at {} UTC; `partnerstack-mirror delivery enable {name}` turns it back on",
                    job.event_id,
                    chrono::Utc::now().format("%Y-%m-%d %H:%M:%S"),
                );
                error!(delivery = %name, event = job.event_id, "the endpoint answered 410 Gone: delivery disabled");
                liveness::step();
                self.delivery.store.set_delivery_state(&self.lease, "disabled", Some(&reason)).await?;
                self.unsaved.error = Some(reason);
                self.sending.abort_all();
                self.lanes.clear();
                let _ = self.checkpoint().await;
                let _ = self.delivery.store.release_delivery(&self.lease).await;
                return Err(End::Disabled);
            }
            Answer::Failed { status, retry_after, error } => {
                self.delivery.counters.failed.get_or_create(&self.labels).inc();
                let attempts = self.lanes.attempts(&key) + 1;
                let message = format!("event {} ({}), attempt {attempts}: {error}", job.event_id, job.event_type);
                self.unsaved.error = Some(message.clone());
                let s = self.delivery.settings.clone();
                if attempts >= s.max_attempts && (key.requeued || s.on_failure == OnFailure::DeadLetter) {
                    warn!(delivery = %name, event = job.event_id, attempts, %error, "giving up on the event: kept as a dead letter");
                    let give_up = GiveUp {
                        event_id: job.event_id,
                        event_type: &job.event_type,
                        object_type: &key.object_type,
                        object_key: &key.object_key,
                        body: &job.body,
                        attempts,
                        last_error: &error,
                        http_status: status,
                    };
                    liveness::step();
                    self.delivery.store.dead_letter(&self.lease, &give_up).await?;
                    self.delivery.counters.dead_lettered.get_or_create(&self.labels).inc();
                    self.requeued.remove(&job.event_id);
                    self.lanes.done(&key);
                    return Ok(());
                }
                if attempts >= s.max_attempts && self.holding_until.is_none() {
                    let reason = format!("holding at event {} after {attempts} failed attempts: {error}", job.event_id);
                    warn!(delivery = %name, event = job.event_id, attempts, %error, "holding: the delivery keeps trying this event before any later one");
                    liveness::step();
                    self.delivery.store.set_delivery_state(&self.lease, "holding", Some(&reason)).await?;
                    self.holding_until = Some(job.event_id);
                } else if !self.failing {
                    warn!(delivery = %name, event = job.event_id, attempts, %error, "webhook failed; trying again after a backoff (further failures are logged at debug level until one succeeds)");
                } else {
                    debug!(delivery = %name, event = job.event_id, attempts, %error, "webhook failed; trying again after a backoff");
                }
                self.failing = true;
                let wait = s.backoff.delay_honouring(attempts - 1, retry_after);
                let at = Instant::now() + wait;
                self.lanes.retry(&key, at);
                if status == Some(429) {
                    self.paused_until = Some(self.paused_until.map_or(at, |p| p.max(at)));
                }
            }
        }
        Ok(())
    }

    async fn checkpoint_if_due(&mut self) -> Result<(), StoreError> {
        let since = self.checkpointed_at.elapsed();
        let news = self.lanes.position() != self.committed || self.unsaved.sent || self.unsaved.error.is_some();
        if (news && since >= CHECKPOINT_EVERY) || since >= self.checkpoint_interval() {
            self.checkpoint().await?;
        }
        Ok(())
    }

    /// Writes the position (and renews the lease); lifts a hold the position has passed.
    async fn checkpoint(&mut self) -> Result<(), StoreError> {
        self.unsaved.position = self.lanes.position();
        liveness::step();
        self.delivery.store.checkpoint_delivery(&self.lease, &self.unsaved).await?;
        self.committed = self.unsaved.position;
        self.unsaved.sent = false;
        self.unsaved.error = None;
        self.checkpointed_at = Instant::now();
        if self.holding_until.is_some_and(|until| self.committed >= until) {
            liveness::step();
            self.delivery.store.set_delivery_state(&self.lease, "active", None).await?;
            self.holding_until = None;
            info!(delivery = %self.lease.name, "the held event was accepted; delivering again");
        }
        Ok(())
    }

    /// Lets what is on the wire finish (each request within the timeout), saves the
    /// position and gives the lease up.
    async fn stop(mut self) -> End {
        let deadline = Instant::now() + self.settings().timeout + Duration::from_secs(1);
        liveness::wait_until(deadline);
        while let Ok(Some(done)) = tokio::time::timeout_at(deadline, self.sending.join_next()).await {
            let Ok(sent) = done else { continue };
            if let Err(end) = self.handle(sent).await {
                return end;
            }
        }
        self.sending.abort_all();
        if let Err(e) = self.checkpoint().await {
            warn!(delivery = %self.lease.name, error = %error_chain(&e), "cannot save the delivery's position while stopping; events after the last saved one are sent again");
        }
        liveness::step();
        if let Err(e) = self.delivery.store.release_delivery(&self.lease).await {
            warn!(delivery = %self.lease.name, error = %error_chain(&e), "cannot release the delivery's lease; it lapses by itself");
        }
        End::Stopped
    }
}
