//! Push (docs/push.md): a query in the user's database says what PartnerStack should hold; each
//! run compares it with the mirror and queues a write-back for each difference, exactly once.
//!
//! A run: take the push's lease (one run of a push at a time across daemons and shells), run
//! the query and the comparison in one read-only statement ([`crate::store::PushPlan`]),
//! refuse duplicate keys, apply the brake, and queue what differs in one INSERT, fenced by
//! the lease, recording the run in `push_runs` in the same transaction. The write-back
//! workers then carry the requests out in order with anything else queued for each record.

mod counters;
mod schedule;
pub mod shape;

use std::time::Duration;

use chrono::Utc;
use tracing::{info, warn};

pub use counters::PushCounters;
pub use schedule::run_on_schedule;
pub use shape::{Field, Matching, QueryColumn, Shape, ShapeError};

use crate::{
    config::PushConfig,
    store::{PlannedRequest, PushLease, PushPlan, PushRunLine, QueryFailure, Store, StoreError},
    telemetry::error_chain,
};

/// How long a run's lease lasts without renewal unless told (`sync.lease_ttl` in the daemon
/// and the commands); renewed every third of it while the run goes on.
const LEASE_TTL: Duration = Duration::from_secs(60);
/// The brake's default: this share of the object's live rows, and never fewer than
/// [`BRAKE_FLOOR`] records.
const BRAKE_SHARE: i64 = 10;
const BRAKE_FLOOR: i64 = 10;

/// Why a push could not run, or its query does not fit it.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error(transparent)]
    Shape(#[from] ShapeError),
    #[error("push {push}: the query failed: {message}")]
    Query { push: String, message: String },
    #[error("push {push}: the query returned the key {key:?} more than once (each row must be one record); nothing was queued")]
    Duplicate { push: String, key: String },
    #[error("push {push} is running in another instance now (lease `push:{push}` in sync_leases); try again when it is done")]
    Busy { push: String },
    #[error(
        "push {push}: the mirror has not finished its first load of {object} (is it in sync.objects?); a push compares with \
         the mirror, so it waits for it"
    )]
    NotLoaded { push: String, object: &'static str },
    #[error("push {push}: this run lost its lease to another instance before queuing; nothing was queued")]
    Fenced { push: String },
    #[error("push {push}: database error")]
    Store {
        push: String,
        #[source]
        source: StoreError,
    },
}

impl PushError {
    /// The configuration does not fit the database (a column, the key): exit 2.
    pub fn is_configuration(&self) -> bool {
        matches!(self, PushError::Shape(_))
    }
}

/// One configured push, its query described and checked.
#[derive(Clone, Debug)]
pub struct Pusher {
    store: Store,
    config: PushConfig,
    shape: Shape,
    /// This instance's name in the lease and `push_runs`.
    holder: String,
    lease_ttl: Duration,
    counters: PushCounters,
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq)]
pub struct RunReport {
    /// What `push_runs` records.
    pub line: PushRunLine,
    pub plan: PushPlan,
}

/// The plan's requests, counted per record (what the brake and `push_runs` count).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Records with a request to queue now.
    pub changes: i64,
    /// Records whose requests for the same values are all still on their way.
    pub in_flight: i64,
    /// Records whose requests for the same values failed or did not show (see `push_runs.held`).
    pub held: i64,
    /// Compared records that hold the desired values.
    pub unchanged: i64,
}

impl Tally {
    pub fn of(plan: &PushPlan) -> Tally {
        use std::collections::HashMap;
        // The strongest decision per record: queue > in flight > held.
        let rank = |d: &str| match d {
            "queue" => 3,
            "in_flight" => 2,
            _ => 1,
        };
        let mut records: HashMap<&str, (u8, bool)> = HashMap::new();
        for r in &plan.requests {
            let entry = records.entry(r.record.as_str()).or_insert((0, false));
            entry.0 = entry.0.max(rank(&r.decision));
            entry.1 |= r.operation != "create";
        }
        let count = |n: u8| records.values().filter(|(rank, _)| *rank == n).count() as i64;
        let compared_with_requests = records.values().filter(|(_, compared)| *compared).count() as i64;
        Tally { changes: count(3), in_flight: count(2), held: count(1), unchanged: plan.compared - compared_with_requests }
    }
}

/// The brake's limit for a plan: `max_changes`, or 10% of the object's rows, at least 10.
pub fn brake_limit(config: &PushConfig, plan: &PushPlan) -> i64 {
    config.max_changes.map_or_else(|| (plan.object_rows / BRAKE_SHARE).max(BRAKE_FLOOR), |m| m as i64)
}

/// This process's name in leases and `push_runs` when it is not a daemon (`push run`).
pub fn shell_holder() -> String {
    let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_owned()).unwrap_or_else(|_| "host".into());
    format!("shell:{host}/{}", std::process::id())
}

impl Pusher {
    /// Describes the query (nothing runs) and checks its columns against what a write-back
    /// can set on the object: at the daemon's start and before every command.
    pub async fn prepare(store: &Store, config: &PushConfig, holder: &str, counters: PushCounters) -> Result<Pusher, PushError> {
        let columns = store.describe_push_query(&config.query, config.timeout).await.map_err(|e| query_error(&config.name, e))?;
        let shape = Shape::new(config, &columns)?;
        Ok(Pusher { store: store.clone(), config: config.clone(), shape, holder: holder.to_owned(), lease_ttl: LEASE_TTL, counters })
    }

    /// Runs hold the push's lease for `ttl` without renewal (`sync.lease_ttl`): a dead
    /// instance's run is taken over that long after its last renewal.
    pub fn leased_for(self, ttl: Duration) -> Pusher {
        Pusher { lease_ttl: ttl, ..self }
    }

    pub fn config(&self) -> &PushConfig {
        &self.config
    }

    pub fn shape(&self) -> &Shape {
        &self.shape
    }

    /// What a run would do now, changing nothing (`push plan`).
    pub async fn plan(&self) -> Result<PushPlan, PushError> {
        self.store.plan_push(&self.shape, &self.config.query, self.config.timeout).await.map_err(|e| query_error(&self.config.name, e))
    }

    /// One run. `force`: past the brake, this once. A run that cannot start because another
    /// instance runs the push is [`PushError::Busy`]; one whose query fails or returns a key
    /// twice is recorded as failed in `push_runs` and returned as the error.
    pub async fn run(&self, force: bool) -> Result<RunReport, PushError> {
        let push = &self.config.name;
        let Some(lease) = self.store.acquire_push_lease(push, &self.holder, self.lease_ttl).await.map_err(|e| self.store_error(e))? else {
            return Err(PushError::Busy { push: push.clone() });
        };
        let outcome = crate::renewal::renewing(self.run_leased(&lease, force), self.lease_ttl / 3, || async {
            crate::liveness::step();
            match self.store.renew_push_lease(&lease).await {
                Ok(true) => {}
                Ok(false) => warn!(push = %push, "this run's lease was taken over by another instance; it will queue nothing"),
                Err(error) => warn!(push = %push, error = %error_chain(&error), "cannot renew the push's lease"),
            }
        })
        .await;
        if let Err(error) = self.store.release_push_lease(&lease).await {
            warn!(push = %push, error = %error_chain(&error), "cannot release the push's lease; it lapses by itself");
        }
        self.counters.count(push, &outcome);
        outcome
    }

    async fn run_leased(&self, lease: &PushLease, force: bool) -> Result<RunReport, PushError> {
        let push = &self.config.name;
        let mut line =
            PushRunLine { push: push.clone(), holder: self.holder.clone(), started_at: Utc::now(), forced: force, ..Default::default() };
        // Not a failure, and not recorded: the mirror is still loading (a first start).
        crate::liveness::step();
        if !self.store.object_loaded(self.shape.kind).await.map_err(|e| self.store_error(e))? {
            return Err(PushError::NotLoaded { push: push.clone(), object: self.shape.kind.table() });
        }
        // The query may take up to its own timeout: waiting that long is keeping a promise.
        crate::liveness::wait_for(self.config.timeout);
        let plan = match self.plan().await {
            Ok(plan) => plan,
            Err(error) => return Err(self.failed(line, error).await),
        };
        let tally = Tally::of(&plan);
        let limit = brake_limit(&self.config, &plan);
        line.rows_read = plan.rows_read;
        line.skipped = plan.skipped;
        line.not_found = plan.not_found;
        line.unchanged = tally.unchanged;
        line.changes = tally.changes;
        line.in_flight = tally.in_flight;
        line.held = tally.held;
        line.max_changes = Some(limit);
        if let Some(key) = plan.duplicate.clone() {
            return Err(self.failed(line, PushError::Duplicate { push: push.clone(), key }).await);
        }
        if tally.changes > limit && !force {
            line.outcome = "braked".into();
            line.refused_by_brake = tally.changes;
            let why = format!(
                "the brake held: {} records would change, more than max_changes ({limit}); nothing was queued. If the query is right, \
                 `partnerstack-mirror push run {push} --force` lets this run through once (or raise max_changes)",
                tally.changes
            );
            warn!(push = %push, changes = tally.changes, max_changes = limit, "{why}");
            line.error = Some(why);
            self.store.record_push_run(&line).await.map_err(|e| self.store_error(e))?;
            return Ok(RunReport { line, plan });
        }
        let queue: Vec<&PlannedRequest> = plan.requests.iter().filter(|r| r.decision == "queue").collect();
        if queue.is_empty() {
            line.outcome = "unchanged".into();
            self.store.record_push_run(&line).await.map_err(|e| self.store_error(e))?;
        } else {
            line.outcome = "changed".into();
            crate::liveness::step();
            match self.store.queue_push(lease, self.shape.kind, &queue, &line).await {
                Ok(queued) => line.requests_queued = queued as i64,
                Err(StoreError::Fenced { .. }) => return Err(PushError::Fenced { push: push.clone() }),
                Err(e) => return Err(self.store_error(e)),
            }
        }
        info!(
            push = %push,
            outcome = %line.outcome,
            rows_read = line.rows_read,
            changes = line.changes,
            requests_queued = line.requests_queued,
            unchanged = line.unchanged,
            in_flight = line.in_flight,
            held = line.held,
            skipped = line.skipped,
            not_found = line.not_found,
            "push run finished"
        );
        Ok(RunReport { line, plan })
    }

    /// Records a failed run with its reason and gives the error back.
    async fn failed(&self, mut line: PushRunLine, error: PushError) -> PushError {
        warn!(push = %self.config.name, error = %error_chain(&error), "push run failed; nothing was queued");
        line.outcome = "failed".into();
        line.error = Some(error.to_string());
        if let Err(e) = self.store.record_push_run(&line).await {
            warn!(push = %self.config.name, error = %error_chain(&e), "cannot record the failed run in push_runs");
        }
        error
    }

    fn store_error(&self, source: StoreError) -> PushError {
        PushError::Store { push: self.config.name.clone(), source }
    }
}

fn query_error(push: &str, e: QueryFailure) -> PushError {
    match e {
        QueryFailure::Refused { message, .. } => PushError::Query { push: push.to_owned(), message },
        QueryFailure::Store(source) => PushError::Store { push: push.to_owned(), source },
    }
}
