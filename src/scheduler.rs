//! When passes run: the poll schedule (`sync.schedule` cron or `sync.interval`, slower while
//! webhooks come in), the rescan schedule and the reconcile schedule, timed by
//! tokio-cron-scheduler and run in the scheduler's own supervised loops.
//!
//! Every pass takes one mutex: a poll that finds another pass still running is skipped,
//! and a rescan waits for a running poll, so two passes never diff the same object at once.

use std::{sync::Arc, time::Duration};

use futures::{future::BoxFuture, stream::FuturesUnordered, FutureExt, StreamExt};
use tokio::{
    sync::{mpsc, Mutex},
    time::Instant,
};
use tokio_cron_scheduler::{Job, JobScheduler, JobSchedulerError};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::{
    config::{Schedule, SyncConfig},
    liveness::{self, Liveness},
    object::{ChangeFilter, ObjectKind},
    sync::{PassReport, Reading, SyncError, Syncer},
};

/// The outcome of one pass over several objects.
#[derive(Debug, Default)]
pub struct PassSummary {
    pub reports: Vec<PassReport>,
    pub failures: Vec<(ObjectKind, SyncError)>,
    /// Objects the pass did not try, as the API could not be reached at all.
    pub not_tried: Vec<ObjectKind>,
}

/// One poll pass over `objects`, in order. One object's failure does not stop the others,
/// unless it says that no object can work: keys refused everywhere, or an API that cannot be
/// reached at all (each object would wait out the same retries in turn).
pub async fn poll_all(syncer: &Syncer, objects: &[ObjectKind], reading: Reading) -> PassSummary {
    let mut summary = PassSummary::default();
    for (i, &kind) in objects.iter().enumerate() {
        if let Some((_, e)) = summary.failures.last().filter(|(_, e)| e.is_unreachable()) {
            warn!(not_tried = objects.len() - i, error = %e.chain(), "PartnerStack cannot be reached; the rest of this pass waits for the next");
            summary.not_tried = objects[i..].to_vec();
            break;
        }
        match syncer.sync_object(kind, reading).await {
            Ok(report) => summary.reports.push(report),
            Err(SyncError::Cancelled) => break,
            Err(e) => {
                // A 401/403 on one object's list stops the pass only if the keys are refused
                // everywhere; otherwise this key may not read that object, and the rest go on.
                let fatal = e.is_fatal() && !syncer.api().credentials_work().await;
                summary.failures.push((kind, e));
                if fatal {
                    break;
                }
            }
        }
    }
    summary
}

/// Rescans the objects whose later changes only a complete read can find now (see
/// [`Syncer::needs_rescan`]).
pub async fn rescan_all(syncer: &Syncer, objects: &[ObjectKind]) -> PassSummary {
    let mut summary = PassSummary::default();
    for &kind in objects {
        let rescan = match syncer.needs_rescan(kind).await {
            Ok(false) => continue,
            Ok(true) => syncer.rescan(kind).await,
            Err(e) => Err(e),
        };
        match rescan {
            Ok(report) => summary.reports.push(report),
            Err(SyncError::Cancelled) => break,
            Err(e) => summary.failures.push((kind, e)),
        }
    }
    summary
}

/// One complete key scan per object.
pub async fn reconcile_all(syncer: &Syncer, objects: &[ObjectKind]) -> PassSummary {
    let mut summary = PassSummary::default();
    for &kind in objects {
        match syncer.reconcile(kind).await {
            Ok(report) => summary.reports.push(report),
            Err(SyncError::Cancelled) => break,
            Err(e) => summary.failures.push((kind, e)),
        }
    }
    summary
}

/// How often the daemon asks again whether the API honours `min_updated` on transactions
/// and rewards (and once at start).
pub const PROBE_EVERY: Duration = Duration::from_secs(24 * 3600);

/// One of the scheduler's loops, for the daemon's supervisor: a panic or an error in it is
/// named and stops the daemon like any other loop's.
pub struct ScheduledLoop {
    pub name: &'static str,
    /// Whether the loop promises its steps to the watchdog ([`crate::liveness`]); the cron
    /// clock only waits.
    pub watched: bool,
    pub work: BoxFuture<'static, anyhow::Result<()>>,
}

/// Whether PartnerStack's webhooks are coming in (docs/steady-state.md): while one was received within
/// `quiet_after`, hints bring changes at once and polls may come seldom.
#[derive(Clone, Debug)]
pub struct WebhookHealth {
    pub quiet_after: Duration,
}

/// When passes run: polls (every `sync.interval`, or on `sync.schedule`; every
/// `sync.interval_with_webhooks` while webhooks come in), rescans (`sync.rescan_schedule`:
/// the objects only complete reads keep current) and key scans (`sync.reconcile_schedule`).
///
/// tokio-cron-scheduler only keeps the time: its jobs send ticks to the scheduler's own
/// loops, which run the passes in tasks the daemon supervises, so a pass that panics is named
/// and stops the daemon (issue 25). A tick that comes while its loop is busy waits, one at
/// most (ticks coalesce).
pub struct Scheduler {
    syncer: Syncer,
    config: SyncConfig,
    webhooks: Option<WebhookHealth>,
}

impl Scheduler {
    pub fn new(syncer: Syncer, config: SyncConfig) -> Scheduler {
        Scheduler { syncer, config, webhooks: None }
    }

    /// With webhook intake configured: polls slow down while webhooks come in.
    pub fn with_webhooks(self, health: WebhookHealth) -> Scheduler {
        Scheduler { webhooks: Some(health), ..self }
    }

    /// The loops: `poll` (with the `min_updated` probes), `rescans`, `key scans`, and the
    /// `cron clock` that sends the ticks and stops with the daemon.
    pub async fn loops(self, shutdown: CancellationToken) -> Result<Vec<ScheduledLoop>, JobSchedulerError> {
        let Scheduler { syncer, config, webhooks } = self;
        let clock = JobScheduler::new().await?;
        let rescan_ticks = ticks(&clock, &config.rescan_schedule).await?;
        let key_scan_ticks = ticks(&clock, &config.reconcile_schedule).await?;
        let poll_clock = match &config.schedule {
            Schedule::Cron(expr) => PollClock::Ticks(ticks(&clock, expr).await?),
            Schedule::Every(every) => PollClock::Every(*every),
        };
        clock.start().await?;
        // One pass at a time: a poll tick that finds another pass running is skipped; rescans
        // and key scans wait for a running poll rather than skip, as they are rare and must
        // happen.
        let busy = Arc::new(Mutex::new(()));
        let objects: Arc<[ObjectKind]> = config.objects.clone().into();
        let polls = Polls { syncer: syncer.clone(), config, webhooks, busy: busy.clone(), objects: objects.clone() };
        let rescans = {
            let (syncer, busy, objects, shutdown) = (syncer.clone(), busy.clone(), objects.clone(), shutdown.clone());
            on_ticks(rescan_ticks, shutdown.clone(), move || {
                let (syncer, busy, objects, shutdown) = (syncer.clone(), busy.clone(), objects.clone(), shutdown.clone());
                async move { waiting_pass(&syncer, &busy, &shutdown, "rescan", rescan_all(&syncer, &objects)).await }
            })
        };
        let key_scans = {
            let (syncer, busy, objects, shutdown) = (syncer.clone(), busy.clone(), objects.clone(), shutdown.clone());
            on_ticks(key_scan_ticks, shutdown.clone(), move || {
                let (syncer, busy, objects, shutdown) = (syncer.clone(), busy.clone(), objects.clone(), shutdown.clone());
                async move { waiting_pass(&syncer, &busy, &shutdown, "reconcile", reconcile_all(&syncer, &objects)).await }
            })
        };
        let keeper = {
            let shutdown = shutdown.clone();
            async move {
                shutdown.cancelled().await;
                let mut clock = clock;
                clock.shutdown().await?;
                // A rescan or key scan still running finishes its page and closes its run.
                let _idle = busy.lock().await;
                Ok(())
            }
        };
        Ok(vec![
            ScheduledLoop { name: "poll", watched: true, work: polls.run(poll_clock, shutdown).boxed() },
            ScheduledLoop { name: "rescans", watched: true, work: rescans.boxed() },
            ScheduledLoop { name: "key scans", watched: true, work: key_scans.boxed() },
            ScheduledLoop { name: "cron clock", watched: false, work: keeper.boxed() },
        ])
    }
}

/// Runs every loop of [`Scheduler::loops`] in this task until `shutdown` (a test's or a
/// benchmark's daemon without a supervisor); the first failure ends them all.
pub async fn run(syncer: Syncer, config: SyncConfig, liveness: Arc<Liveness>, shutdown: CancellationToken) -> anyhow::Result<()> {
    let loops = Scheduler::new(syncer, config).loops(shutdown).await?;
    let mut running: FuturesUnordered<_> = loops.into_iter().map(|l| liveness.scope(l.name, l.work)).collect();
    while let Some(done) = running.next().await {
        done?;
    }
    Ok(())
}

/// A tick each time `cron` fires; a tick not taken yet absorbs the next ones.
async fn ticks(clock: &JobScheduler, cron: &str) -> Result<mpsc::Receiver<()>, JobSchedulerError> {
    let (tick, ticks) = mpsc::channel(1);
    clock
        .add(Job::new_async(cron, move |_, _| {
            let _ = tick.try_send(());
            Box::pin(async {})
        })?)
        .await?;
    Ok(ticks)
}

/// Runs `work` at each tick until `shutdown`, in the caller's task: a panic in it is the
/// caller's. Fails when the ticks stop coming for good (the cron clock died).
pub async fn on_ticks<F, Fut>(mut ticks: mpsc::Receiver<()>, shutdown: CancellationToken, mut work: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    const STEP: Duration = Duration::from_secs(1);
    loop {
        // Waiting for the next tick is waiting on purpose.
        liveness::wait_for(STEP);
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            tick = ticks.recv() => match tick {
                Some(()) => work().await,
                None if shutdown.is_cancelled() => return Ok(()),
                None => anyhow::bail!("the cron clock stopped sending ticks"),
            },
            _ = tokio::time::sleep(STEP) => {}
        }
    }
}

/// A rescan or key scan: waits for a running poll, then runs `pass` and logs its summary.
async fn waiting_pass(
    syncer: &Syncer,
    busy: &Mutex<()>,
    shutdown: &CancellationToken,
    name: &str,
    pass: impl std::future::Future<Output = PassSummary>,
) {
    if !credentials_accepted(syncer, shutdown).await {
        return;
    }
    // Waiting for a running poll is waiting on purpose: that poll is watched as a loop of
    // its own.
    let _guard = tokio::select! {
        guard = busy.lock() => guard,
        _ = keep_promising(shutdown) => return,
    };
    log_summary(syncer, name, pass.await);
}

/// What wakes the poll loop: a pause of `sync.interval` after each pass, or the ticks of
/// `sync.schedule`.
enum PollClock {
    Every(Duration),
    Ticks(mpsc::Receiver<()>),
}

/// The poll loop's state.
struct Polls {
    syncer: Syncer,
    config: SyncConfig,
    webhooks: Option<WebhookHealth>,
    busy: Arc<Mutex<()>>,
    objects: Arc<[ObjectKind]>,
}

impl Polls {
    /// The first pass at once (a new mirror backfills right away), after probing
    /// `min_updated`; then a pass every `sync.interval` (or at each tick of `sync.schedule`),
    /// or every `sync.interval_with_webhooks` while webhooks come in, looked at again at each
    /// interval or tick so ordinary polls resume by themselves when they stop.
    async fn run(self, mut clock: PollClock, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut last_probe: Option<Instant> = None;
        let mut last_poll: Option<Instant> = None;
        // Each object's last successful pass as this loop last saw it.
        let mut looked = std::collections::HashMap::new();
        loop {
            let quiet = self.webhooks_healthy().await;
            let due = match (quiet, last_poll) {
                (true, Some(ended)) => ended.elapsed() >= self.config.interval_with_webhooks,
                _ => true,
            };
            if due {
                if !credentials_accepted(&self.syncer, &shutdown).await {
                    return Ok(());
                }
                // Not raced against shutdown: the pass sees the token between pages and
                // closes its run and lease itself, so nothing is left half done.
                match self.busy.try_lock() {
                    Ok(_guard) => {
                        if last_probe.is_none_or(|at| at.elapsed() >= PROBE_EVERY) {
                            self.probe().await;
                            last_probe = Some(Instant::now());
                        }
                        let name = if quiet {
                            // Says in `status` and systemd's STATUS= why polls come seldom.
                            let every = humantime_serde::re::humantime::format_duration(self.config.interval_with_webhooks);
                            format!("poll (webhooks healthy: every {every})")
                        } else {
                            "poll".to_owned()
                        };
                        let objects = if quiet { self.not_read_since_looked(&mut looked).await } else { self.objects.to_vec() };
                        log_summary(&self.syncer, &name, poll_all(&self.syncer, &objects, Reading::Changes).await);
                        looked = self.syncer.store().last_successes().await.unwrap_or_default();
                        last_poll = Some(Instant::now());
                    }
                    Err(_) => info!("previous pass still running; skipping this poll"),
                }
            }
            if shutdown.is_cancelled() {
                return Ok(());
            }
            match &mut clock {
                PollClock::Ticks(ticks) => {
                    if !next_tick(ticks, &shutdown).await? {
                        return Ok(());
                    }
                }
                PollClock::Every(every) => {
                    let every = *every;
                    // While quiet, wake at the next quiet poll or after one ordinary interval,
                    // whichever is first, to see whether webhooks still come.
                    let pause = match (self.webhooks.is_some(), last_poll) {
                        (true, Some(ended)) if quiet => {
                            every.min(self.config.interval_with_webhooks.saturating_sub(ended.elapsed()).max(Duration::from_millis(1)))
                        }
                        _ => every,
                    };
                    liveness::wait_for(pause);
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(pause) => {}
                    }
                }
            }
        }
    }

    /// While webhooks come in, the objects that no read brought up to date since this loop
    /// last looked: a read a webhook asked for (or another daemon's pass) since then was a poll
    /// of that object, with the same windows, so another would find nothing new. Compared with
    /// what was seen before, not with the clock, so clocks that differ skip nothing for good.
    async fn not_read_since_looked(
        &self,
        looked: &mut std::collections::HashMap<ObjectKind, chrono::DateTime<chrono::Utc>>,
    ) -> Vec<ObjectKind> {
        let Ok(now) = self.syncer.store().last_successes().await else { return self.objects.to_vec() };
        let due: Vec<ObjectKind> = self
            .objects
            .iter()
            .copied()
            .filter(|kind| match (looked.get(kind), now.get(kind)) {
                (Some(before), Some(since)) => since <= before,
                _ => true,
            })
            .collect();
        if due.len() < self.objects.len() {
            tracing::debug!(skipped = self.objects.len() - due.len(), "objects read since the last poll (webhooks) skip this one");
        }
        *looked = now;
        due
    }

    /// Whether webhook intake is configured and a webhook came within `quiet_after`. A
    /// database that does not answer says no: polls then keep their ordinary pace.
    async fn webhooks_healthy(&self) -> bool {
        let Some(health) = &self.webhooks else { return false };
        liveness::step();
        match self.syncer.store().last_webhook_age().await {
            Ok(age) => age.is_some_and(|age| age < health.quiet_after),
            Err(e) => {
                tracing::debug!(error = %crate::telemetry::error_chain(&e), "cannot tell when the last webhook came");
                false
            }
        }
    }

    /// Probes `min_updated` on the objects documented by created time only.
    async fn probe(&self) {
        for &kind in self.objects.iter().filter(|k| k.change_filter() == ChangeFilter::CreatedOnly) {
            if let Err(e) = self.syncer.probe_updated_filter(kind).await {
                warn!(object = %kind, error = %e.chain(), "cannot record what the min_updated probe found");
            }
        }
    }
}

/// The next tick, promising a second at a time; `false`: shutdown came first.
async fn next_tick(ticks: &mut mpsc::Receiver<()>, shutdown: &CancellationToken) -> anyhow::Result<bool> {
    const STEP: Duration = Duration::from_secs(1);
    loop {
        liveness::wait_for(STEP);
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(false),
            tick = ticks.recv() => return match tick {
                Some(()) => Ok(true),
                None if shutdown.is_cancelled() => Ok(false),
                None => Err(anyhow::anyhow!("the cron clock stopped sending ticks")),
            },
            _ = tokio::time::sleep(STEP) => {}
        }
    }
}

/// Reads at once the object types PartnerStack's webhooks asked for (see [`crate::intake`]),
/// until `shutdown`. Coalesced: however many webhooks asked for an object type while a read
/// ran, it is read once more after. A failed read is logged; the next poll catches up.
pub async fn read_on_request(syncer: Syncer, reads: Arc<crate::intake::ReadRequests>, shutdown: CancellationToken) -> anyhow::Result<()> {
    const IDLE_STEP: Duration = Duration::from_secs(1);
    // Webhooks come in bursts: a moment's wait after the first lets one read answer the
    // whole burst instead of one read per inbox batch.
    const GATHER: Duration = Duration::from_millis(250);
    while !shutdown.is_cancelled() {
        liveness::wait_for(IDLE_STEP);
        let mut kinds = tokio::select! {
            _ = shutdown.cancelled() => break,
            kinds = reads.next() => kinds,
            _ = tokio::time::sleep(IDLE_STEP) => continue,
        };
        liveness::wait_for(GATHER);
        tokio::time::sleep(GATHER).await;
        if let Ok(more) = tokio::time::timeout(Duration::ZERO, reads.next()).await {
            for (kind, asked) in more {
                let entry = kinds.entry(kind).or_insert(asked);
                *entry = (*entry).max(asked);
            }
        }
        if !credentials_accepted(&syncer, &shutdown).await {
            break;
        }
        for (kind, asked) in kinds {
            // Updates of records read by created windows: the read could not see them.
            if asked == crate::intake::Asked::UpdatesOnly && matches!(syncer.needs_rescan(kind).await, Ok(true)) {
                tracing::debug!(object = %kind, "webhooks told of updates only, which created windows cannot see; the rescan reads them");
                continue;
            }
            match syncer.read_now(kind).await {
                Ok(report) => {
                    info!(object = %kind, rows = report.totals.rows_written, events = report.totals.events_written, "read after a webhook")
                }
                Err(SyncError::Cancelled) => break,
                Err(e) => warn!(object = %kind, error = %e.chain(), "read after a webhook failed; the next poll catches up"),
            }
        }
    }
    Ok(())
}

/// Waits until `shutdown`, promising a second at a time that the wait is on purpose.
async fn keep_promising(shutdown: &CancellationToken) {
    const STEP: Duration = Duration::from_secs(1);
    while !shutdown.is_cancelled() {
        liveness::wait_for(STEP);
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = tokio::time::sleep(STEP) => {}
        }
    }
}

/// Waits while PartnerStack rejects the credentials. `false`: shutdown came first.
async fn credentials_accepted(syncer: &Syncer, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = syncer.api().until_credentials_accepted() => true,
    }
}

fn log_summary(syncer: &Syncer, pass: &str, summary: PassSummary) {
    let rows: i64 = summary.reports.iter().map(|r| i64::from(r.totals.rows_written)).sum();
    let events: i64 = summary.reports.iter().map(|r| i64::from(r.totals.events_written)).sum();
    syncer.progress().set_summary(format!(
        "last {pass} pass: {} objects, {rows} rows and {events} events written, {} failed",
        summary.reports.len(),
        summary.failures.len()
    ));
    if summary.failures.is_empty() {
        info!(pass, objects = summary.reports.len(), rows, events, "pass complete");
    } else {
        for (kind, e) in &summary.failures {
            if e.is_fatal() {
                error!(pass, object = %kind, error = %e.chain(), "pass failed; check the API keys");
            } else {
                warn!(pass, object = %kind, error = %e.chain(), "object failed this pass; it will be retried");
            }
        }
    }
}
