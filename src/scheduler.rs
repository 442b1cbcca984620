//! When passes run: the poll schedule (`sync.schedule` cron or `sync.interval`), the rescan
//! schedule and the reconcile schedule, driven by tokio-cron-scheduler.
//!
//! Every pass takes one mutex: a tick that finds the previous pass still running is skipped
//! (tokio-cron-scheduler would happily overlap them), and a rescan waits for a running poll
//! so two passes never diff the same object at once.

use std::{sync::Arc, time::Duration};

use tokio::sync::Mutex;
use tokio_cron_scheduler::{Job, JobScheduler};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::{
    config::{Schedule, SyncConfig},
    liveness::{self, Liveness},
    object::{ChangeFilter, ObjectKind},
    sync::{PassReport, SyncError, Syncer},
};

/// The passes that run on their own cron schedule.
#[derive(Clone, Copy)]
enum Pass {
    Rescan,
    Reconcile,
}

impl Pass {
    fn name(self) -> &'static str {
        match self {
            Pass::Rescan => "rescan",
            Pass::Reconcile => "reconcile",
        }
    }
}

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
pub async fn poll_all(syncer: &Syncer, objects: &[ObjectKind], full: bool) -> PassSummary {
    let mut summary = PassSummary::default();
    for (i, &kind) in objects.iter().enumerate() {
        if let Some((_, e)) = summary.failures.last().filter(|(_, e)| e.is_unreachable()) {
            warn!(not_tried = objects.len() - i, error = %e.chain(), "PartnerStack cannot be reached; the rest of this pass waits for the next");
            summary.not_tried = objects[i..].to_vec();
            break;
        }
        match syncer.sync_object(kind, full).await {
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

/// Rescans the objects whose later changes only a complete read can find.
pub async fn rescan_all(syncer: &Syncer, objects: &[ObjectKind]) -> PassSummary {
    let mut summary = PassSummary::default();
    for &kind in objects.iter().filter(|k| k.change_filter() != ChangeFilter::Updated) {
        match syncer.rescan(kind).await {
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

/// Runs passes on their schedules until `shutdown` is cancelled. The first poll pass starts
/// at once (a new mirror backfills right away). While PartnerStack rejects the credentials,
/// no pass starts; they resume once it accepts them. Rescans and key scans run as loops of
/// their own in `liveness`, the poll in the caller's.
pub async fn run(
    syncer: Syncer,
    config: SyncConfig,
    liveness: Arc<Liveness>,
    shutdown: CancellationToken,
) -> Result<(), tokio_cron_scheduler::JobSchedulerError> {
    let busy = Arc::new(Mutex::new(()));
    let objects: Arc<[ObjectKind]> = config.objects.clone().into();
    let mut scheduler = JobScheduler::new().await?;

    let poll = {
        let (syncer, busy, objects, shutdown) = (syncer.clone(), busy.clone(), objects.clone(), shutdown.clone());
        move || {
            let (syncer, busy, objects, shutdown) = (syncer.clone(), busy.clone(), objects.clone(), shutdown.clone());
            async move {
                if !credentials_accepted(&syncer, &shutdown).await {
                    return;
                }
                let Ok(_guard) = busy.try_lock() else {
                    info!("previous pass still running; skipping this tick");
                    return;
                };
                log_summary(&syncer, "poll", poll_all(&syncer, &objects, false).await);
            }
        }
    };

    // Rescans and key scans wait for a running poll rather than skip: they are rare and
    // must happen.
    for (pass, cron) in [(Pass::Rescan, &config.rescan_schedule), (Pass::Reconcile, &config.reconcile_schedule)] {
        let (syncer, busy, objects, liveness, shutdown) =
            (syncer.clone(), busy.clone(), objects.clone(), liveness.clone(), shutdown.clone());
        scheduler
            .add(Job::new_async(cron.as_str(), move |_, _| {
                let (syncer, busy, objects, liveness, shutdown) =
                    (syncer.clone(), busy.clone(), objects.clone(), liveness.clone(), shutdown.clone());
                Box::pin(async move {
                    let job = async {
                        if !credentials_accepted(&syncer, &shutdown).await {
                            return;
                        }
                        // Waiting for a running poll is waiting on purpose: that poll is
                        // watched as a loop of its own.
                        let _guard = tokio::select! {
                            guard = busy.lock() => guard,
                            _ = keep_promising(&shutdown) => return,
                        };
                        let summary = match pass {
                            Pass::Rescan => rescan_all(&syncer, &objects).await,
                            Pass::Reconcile => reconcile_all(&syncer, &objects).await,
                        };
                        log_summary(&syncer, pass.name(), summary);
                    };
                    liveness.scope(pass.name(), job).await;
                })
            })?)
            .await?;
    }

    let interval = match &config.schedule {
        Schedule::Cron(expr) => {
            let (poll, liveness) = (poll.clone(), liveness.clone());
            scheduler
                .add(Job::new_async(expr.as_str(), move |_, _| {
                    let (poll, liveness) = (poll.clone(), liveness.clone());
                    Box::pin(async move { liveness.scope("poll", poll()).await })
                })?)
                .await?;
            None
        }
        Schedule::Every(every) => Some(*every),
    };
    scheduler.start().await?;

    // First pass now; then, for `sync.interval`, a fixed pause between passes.
    loop {
        // Not raced against shutdown: the pass sees the token between pages and closes its
        // run and lease itself, so nothing is left half done.
        poll().await;
        if shutdown.is_cancelled() {
            break;
        }
        match interval {
            Some(pause) => {
                liveness::wait_for(pause);
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(pause) => {}
                }
            }
            // Cron polls run as jobs; this loop only waits for shutdown.
            None => {
                keep_promising(&shutdown).await;
                break;
            }
        }
    }
    scheduler.shutdown().await?;
    // A rescan or reconcile job still running finishes its page and closes its run.
    let _idle = busy.lock().await;
    Ok(())
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
            kinds.extend(more);
        }
        if !credentials_accepted(&syncer, &shutdown).await {
            break;
        }
        for kind in kinds {
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
