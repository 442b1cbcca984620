//! Write-back workers: claim a queued request, carry it out at the API, and record the
//! outcome together with the mirror rows it changed, in one transaction.
//!
//! Exactly once, as far as the API can tell: updates, deletes and tag changes are idempotent
//! and simply retried; a create or convert whose attempt may have taken effect without a
//! usable answer is not sent again until the record has been looked up by its natural key
//! (and stayed unfindable for the lookup grace), and a match counts as success.

mod operation;

use std::{sync::Arc, time::Duration};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use crate::{store::QueuedRequest, write_back::Operation};
pub use operation::{execute, find_created, OperationError, Outcome};

use crate::{
    backoff::Backoff,
    metrics::Counts,
    object::ObjectKind,
    partnerstack::{with_priority, with_purpose, ApiClient, ApiError, ErrorClass, Priority, Purpose},
    record,
    store::{Claim, FailedAttempt, Store, StoreError, Success, Wakeups},
    telemetry::error_chain,
};

/// How workers behave.
#[derive(Clone, Debug)]
pub struct QueueSettings {
    pub workers: usize,
    pub max_attempts: u32,
    /// A claimed request is the worker's for this long, renewed every third of it while the
    /// request runs; a crashed worker's requests are claimed again once it lapses.
    pub lease: Duration,
    /// Polling covers missed notifications.
    pub poll: Duration,
    /// The waits before a failed request is tried again (a `Retry-After` may ask for longer).
    pub backoff: Backoff,
    /// How long a create whose outcome is unknown must stay unfindable before it is sent
    /// again: PartnerStack can take minutes to show a new record.
    pub lookup_grace: Duration,
}

/// How often an idle worker looks for due requests when no notification woke it (a retry
/// whose wait is over sends none).
const POLL: Duration = Duration::from_secs(1);
/// An attempt that did not succeed, but may next time: what happened, and what the next
/// attempt must know.
#[derive(Default)]
struct Setback<'a> {
    message: &'a str,
    status: Option<u16>,
    /// The pause the API asked for (429, 503).
    retry_after: Option<Duration>,
    /// The request may have taken effect (a create whose answer was lost): it is looked up
    /// before it is sent again.
    maybe_applied: bool,
}

/// Waits between attempts of one request: from a second, doubling, up to ten minutes, so a
/// long outage at PartnerStack costs a handful of attempts, not hundreds.
const BACKOFF: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(600));

impl QueueSettings {
    pub fn from_config(c: &crate::config::QueueConfig) -> QueueSettings {
        QueueSettings {
            workers: c.workers,
            max_attempts: c.max_attempts,
            lease: c.lease,
            poll: POLL,
            backoff: BACKOFF,
            lookup_grace: c.lookup_grace,
        }
    }
}

/// What this process's workers did: attempts finished by outcome (`succeeded`, `retrying`,
/// `failed`, and `paused`: put back, uncharged, because PartnerStack rejected the
/// credentials), `/metrics`' `queue_attempts`. Clones count together.
#[derive(Clone, Debug)]
pub struct WorkerCounters {
    pub attempts: Counts,
}

impl Default for WorkerCounters {
    fn default() -> WorkerCounters {
        WorkerCounters { attempts: Counts::new("outcome", ["succeeded", "retrying", "failed", "paused"]) }
    }
}

/// One worker.
#[derive(Clone)]
pub struct Worker {
    api: ApiClient,
    store: Store,
    settings: QueueSettings,
    name: Arc<str>,
    counters: WorkerCounters,
}

/// What happened to one claimed request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Handled {
    Succeeded(i64),
    Retrying(i64),
    Failed(i64),
    /// The lease was lost to another worker before we could record the outcome.
    Lost(i64),
    /// PartnerStack rejected the credentials: the request is pending again, its attempt not
    /// counted, and the worker waits until the keys are accepted.
    Paused(i64),
}

impl Worker {
    pub fn new(api: ApiClient, store: Store, settings: QueueSettings, name: &str) -> Worker {
        Worker { api, store, settings, name: name.into(), counters: WorkerCounters::default() }
    }

    /// Counts outcomes into `counters` (shared by the daemon's workers) instead of its own.
    pub fn counting_into(self, counters: WorkerCounters) -> Worker {
        Worker { counters, ..self }
    }

    /// Claims and carries out one due request. `None`: nothing is due.
    pub async fn work_one(&self) -> Result<Option<Handled>, StoreError> {
        let handled = match self.store.claim(&self.name, self.settings.lease).await? {
            None => {
                // Idle: requests a dead worker left running (and nobody could claim yet, an
                // earlier request for their record waiting) show as pending again. A busy
                // worker claims expired ones directly, so the sweep costs nothing then.
                self.store.release_expired().await?;
                return Ok(None);
            }
            // Someone queued this and waits for it: it goes first in the request budget.
            Some(Claim::Request(request)) => {
                with_priority(Priority::Urgent, with_purpose(Purpose::WriteBack, self.handle(request))).await?
            }
            Some(Claim::Unknown { id, operation, object_type, object_key, why }) => {
                warn!(
                    id,
                    operation,
                    object_type,
                    object_key = object_key.as_deref().unwrap_or("-"),
                    error = why,
                    "write-back request failed"
                );
                self.store.fail(id, &self.name, &why, None).await?;
                Handled::Failed(id)
            }
        };
        let outcome = match handled {
            Handled::Succeeded(_) => "succeeded",
            Handled::Retrying(_) => "retrying",
            Handled::Failed(_) => "failed",
            Handled::Paused(_) => "paused",
            Handled::Lost(_) => return Ok(Some(handled)),
        };
        self.counters.attempts.add(outcome, 1);
        Ok(Some(handled))
    }

    /// Works until `shutdown`, woken by `wake` (the daemon's one `LISTEN`) or the poll. While
    /// PartnerStack rejects the credentials it claims nothing, so queued requests stay
    /// pending and uncharged.
    pub async fn run(self, wake: Arc<Notify>, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.api.until_credentials_accepted() => {}
            }
            // Registered before looking for work, so an INSERT in between still wakes us.
            let notified = wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            crate::liveness::step();
            match self.work_one().await {
                Ok(Some(_)) => continue,
                Ok(None) => {}
                Err(error) => warn!(error = %error_chain(&error), "write-back worker: database error"),
            }
            crate::liveness::wait_for(self.settings.poll);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = notified => {}
                _ = tokio::time::sleep(self.settings.poll) => {}
            }
        }
    }

    /// Carries out a request while renewing its lease, so a slow request (a long download, a
    /// slow API) is never taken over by another worker while this one still waits for it.
    /// Everything logged meanwhile carries the request's id (one span per request).
    #[tracing::instrument(name = "write_back", skip_all, fields(id = request.id, operation = %request.operation, object_type = request.kind.singular()))]
    async fn handle(&self, request: QueuedRequest) -> Result<Handled, StoreError> {
        let id = request.id;
        crate::renewal::renewing(self.carry_out(request), self.settings.lease / 3, || async {
            match self.store.renew_claim(id, &self.name, self.settings.lease).await {
                Ok(true) => {}
                Ok(false) => warn!(id, "the request's lease was lost to another worker; its outcome will not be recorded here"),
                Err(error) => warn!(id, error = %error_chain(&error), "could not renew the request's lease"),
            }
        })
        .await
    }

    async fn carry_out(&self, request: QueuedRequest) -> Result<Handled, StoreError> {
        let id = request.id;
        let kind = request.kind;
        let payload = &request.payload;
        let creates = request.operation.creates();

        // A previous attempt of a create may have happened: look before sending again.
        if let Some(unknown_for) = request.outcome_unknown_for.filter(|_| creates) {
            let (lookup_kind, lookup) = match request.operation {
                Operation::Convert => {
                    (ObjectKind::Customer, operation::conversion_lookup(&self.store, kind, request.object_key.as_deref(), payload).await?)
                }
                _ => (kind, payload.clone()),
            };
            match find_created(&self.api, lookup_kind, &lookup, request.created_at.timestamp_millis()).await {
                Ok(Some(found)) => {
                    info!(id, "the earlier attempt had created the record; not sending again");
                    let outcome = Outcome { records: vec![(lookup_kind, found.clone())], result: found, ..Outcome::default() };
                    return self.succeed(&request, outcome).await;
                }
                Ok(None) => {
                    let waited = Duration::from_secs_f64(unknown_for.max(0.0));
                    if let Some(remaining) = self.settings.lookup_grace.checked_sub(waited).filter(|r| !r.is_zero()) {
                        let message = format!(
                            "an earlier attempt may have reached the API, and PartnerStack can take minutes to show a new \
                             record: looking again in {}s before sending",
                            remaining.as_secs()
                        );
                        return self
                            .retry_or_fail(&request, Setback { message: &message, retry_after: Some(remaining), ..Setback::default() })
                            .await;
                    }
                }
                Err(OperationError::Unsupported(why)) => {
                    let message = format!(
                        "an earlier attempt may have reached the API; not sent again, to avoid a duplicate: {why}; \
                         check PartnerStack and queue a new request if the record is missing"
                    );
                    return self.fail(&request, &message, None).await;
                }
                Err(OperationError::Api(e @ ApiError::Unauthorized { .. })) => return self.refused(&request, &e).await,
                Err(e) => return self.retry_or_fail(&request, Setback { message: &error_chain(&e), ..Setback::default() }).await,
            }
        }

        match execute(&self.api, &self.store, &request).await {
            Ok(outcome) => self.succeed(&request, outcome).await,
            Err(OperationError::Api(e @ ApiError::Unauthorized { .. })) => self.refused(&request, &e).await,
            Err(OperationError::Api(e)) => {
                let status = e.status();
                let ambiguous = e.may_have_been_applied();
                match e.class() {
                    ErrorClass::Retryable => {
                        let setback = Setback {
                            message: &error_chain(&e),
                            status,
                            retry_after: e.retry_after(),
                            maybe_applied: ambiguous && creates,
                        };
                        self.retry_or_fail(&request, setback).await
                    }
                    ErrorClass::Fatal | ErrorClass::Skip => self.fail(&request, &error_chain(&e), status).await,
                }
            }
            Err(OperationError::Store(e)) => Err(e),
            Err(e) => self.fail(&request, &e.to_string(), None).await,
        }
    }

    async fn retry_or_fail(&self, request: &QueuedRequest, setback: Setback<'_>) -> Result<Handled, StoreError> {
        let Setback { message, status, retry_after, maybe_applied } = setback;
        let max = request.max_attempts.map_or(self.settings.max_attempts, |m| m.max(1) as u32);
        if request.attempts as u32 >= max {
            let message = format!("{message} (gave up after {} attempts)", request.attempts);
            return self.fail(request, &message, status).await;
        }
        // `attempts` counts the sends so far (at least one), so the first retry already waits
        // up to two steps: the schedule the queue has always kept.
        let delay = self.settings.backoff.delay_honouring(request.attempts as u32, retry_after);
        info!(
            id = request.id,
            operation = %request.operation,
            object_type = request.kind.singular(),
            attempt = request.attempts,
            retry_in_ms = delay.as_millis() as u64,
            error = message,
            "write-back request will be tried again"
        );
        let attempt = FailedAttempt { delay, error: message, http_status: status, outcome_unknown: maybe_applied };
        self.store.retry_later(request.id, &self.name, &attempt).await?;
        Ok(Handled::Retrying(request.id))
    }

    /// A 401 or 403: if the API still accepts the keys, this key may not make this request,
    /// which then fails with the API's message (a retry would meet the same answer); otherwise
    /// the keys are at fault, and the request waits for them, uncharged.
    async fn refused(&self, request: &QueuedRequest, error: &ApiError) -> Result<Handled, StoreError> {
        if self.api.credentials_work().await {
            let message = format!("{} (the API accepts the keys otherwise: this key may not make this request)", error_chain(error));
            return self.fail(request, &message, error.status()).await;
        }
        self.pause(request, error).await
    }

    /// Puts a request back, its attempt not counted: the keys are at fault, not the request.
    async fn pause(&self, request: &QueuedRequest, error: &ApiError) -> Result<Handled, StoreError> {
        warn!(
            id = request.id,
            operation = %request.operation,
            object_type = request.kind.singular(),
            "write-back request put back uncharged: PartnerStack rejected the credentials"
        );
        self.store.release_uncharged(request.id, &self.name, &error_chain(error), error.status()).await?;
        Ok(Handled::Paused(request.id))
    }

    /// Gives up on a request, keeping the reason in `last_error`.
    async fn fail(&self, request: &QueuedRequest, message: &str, status: Option<u16>) -> Result<Handled, StoreError> {
        warn!(
            id = request.id,
            operation = %request.operation,
            object_type = request.kind.singular(),
            object_key = request.object_key.as_deref().unwrap_or("-"),
            http_status = status,
            error = message,
            "write-back request failed"
        );
        self.store.fail(request.id, &self.name, message, status).await?;
        Ok(Handled::Failed(request.id))
    }

    /// Records success with the mirror rows, events and files, in one transaction.
    async fn succeed(&self, request: &QueuedRequest, outcome: Outcome) -> Result<Handled, StoreError> {
        let id = request.id;
        let mut records = Vec::with_capacity(outcome.records.len());
        for (kind, value) in outcome.records {
            match record::from_value(kind, value) {
                Ok(r) => records.push((kind, r)),
                Err((key, error)) => warn!(id, ?key, %error, "the API's answer could not be mirrored; the next poll will try again"),
            }
        }
        let success = Success {
            records,
            gone: outcome.gone.as_ref().map(|(kind, key)| (*kind, key.as_str())),
            files: &outcome.files,
            result: &outcome.result,
        };
        if !self.store.succeed(id, &self.name, success).await? {
            return Ok(Handled::Lost(id));
        }
        info!(
            id,
            operation = %request.operation,
            object_type = request.kind.singular(),
            object_key = request.object_key.as_deref().unwrap_or("-"),
            attempt = request.attempts,
            "write-back request succeeded"
        );
        Ok(Handled::Succeeded(id))
    }
}

/// The daemon's write-back workers: `settings.workers` of them, all woken by one `LISTEN`
/// connection. [`WorkerPool::loops`] hands each loop to the daemon's supervisor.
pub struct WorkerPool {
    pub api: ApiClient,
    pub store: Store,
    pub settings: QueueSettings,
    /// This instance's name; workers are `{holder}#{n}`.
    pub holder: String,
    pub counters: WorkerCounters,
}

impl WorkerPool {
    /// The workers to run, `(name, future)`, woken by `wake` (the daemon's one `LISTEN`,
    /// [`Store::fan_out_wakeups`]) or their poll. None when `workers` is 0.
    pub fn loops(self, wake: Arc<Notify>, shutdown: &CancellationToken) -> Vec<(String, futures::future::BoxFuture<'static, ()>)> {
        use futures::FutureExt;
        (0..self.settings.workers)
            .map(|n| {
                let name = format!("{}#{n}", self.holder);
                let worker =
                    Worker::new(self.api.clone(), self.store.clone(), self.settings.clone(), &name).counting_into(self.counters.clone());
                (format!("write-back worker {n}"), worker.run(wake.clone(), shutdown.clone()).boxed())
            })
            .collect()
    }

    /// Runs every worker, and a `LISTEN` of their own, until `shutdown` (benchmarks and
    /// tests; the daemon supervises the workers one by one through [`WorkerPool::loops`]).
    pub async fn run(self, shutdown: CancellationToken) {
        let wakeups = Wakeups::default();
        let (store, listening, stop) = (self.store.clone(), wakeups.clone(), shutdown.clone());
        let listen = async move { store.fan_out_wakeups(listening, stop).await };
        let workers = futures::future::join_all(self.loops(wakeups.queue, &shutdown).into_iter().map(|(_, work)| work));
        futures::future::join(listen, workers).await;
    }
}
