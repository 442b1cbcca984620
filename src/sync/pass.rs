//! The bookkeeping every pass shares: the object's lease, taken and kept renewed while the
//! pass runs; its `sync_runs` row, opened and closed; and one span around all of it, so
//! everything the pass logs (its verdict included) names the object, the run and its window.

use std::future::Future;

use tracing::{info, info_span, Instrument};

use super::{PassReport, SyncError, Syncer};
use crate::{
    object::ObjectKind,
    store::{Lease, RunKind},
};

/// One pass to run: which object, what kind of run, and the window it covers (`from: None`
/// for a complete read of everything up to `until`), in epoch milliseconds.
#[derive(Clone, Copy, Debug)]
pub(super) struct Pass {
    pub kind: ObjectKind,
    pub run: RunKind,
    pub from: Option<i64>,
    pub until: i64,
}

impl Syncer {
    /// Runs `work` under the object's lease: taken first (a pass held elsewhere does
    /// nothing), renewed every third of its TTL while the work runs (also while it waits out
    /// a long `Retry-After`), released after. A renewal that finds the lease gone only logs:
    /// the work's next write is fenced off and fails the pass through the normal path.
    pub(super) async fn leased<F, Fut>(&self, kind: ObjectKind, run: RunKind, work: F) -> Result<PassReport, SyncError>
    where
        F: FnOnce(Lease) -> Fut,
        Fut: Future<Output = Result<PassReport, SyncError>>,
    {
        // One pass per object within this process: the lease is the holder's, so it cannot
        // keep a webhook-triggered read from overlapping a scheduled pass.
        let _ours = self.local.lock(kind).await;
        let Some(lease) = self.store.acquire_lease(kind, &self.holder, self.settings.lease_ttl).await? else {
            return Ok(PassReport::nothing(kind, run, true));
        };
        let result = crate::renewal::renewing(work(lease.clone()), lease.ttl / 3, || async {
            if let Err(error) = self.store.renew_lease(&lease).await {
                tracing::warn!(object = %kind, error = %crate::telemetry::error_chain(&error), "cannot renew the lease");
            }
        })
        .await;
        if let Err(error) = self.store.release_lease(&lease).await {
            tracing::warn!(object = %lease.kind, error = %error, "cannot release the lease; it expires by itself");
        }
        result
    }

    /// Opens the pass's run, does `work` (given the run's id) inside the pass's span, and
    /// closes the run with what happened, in the same span.
    pub(super) async fn run_pass<F, Fut>(&self, pass: Pass, work: F) -> Result<PassReport, SyncError>
    where
        F: FnOnce(i64) -> Fut,
        Fut: Future<Output = Result<(), SyncError>>,
    {
        let requests_before = self.api.requests_sent();
        let run_id = self.store.start_run(pass.kind, pass.run, Some((pass.from.unwrap_or(0), pass.until)), &self.holder).await?;
        let span = info_span!(
            "sync_pass",
            object = %pass.kind,
            run = pass.run.as_str(),
            run_id,
            window_start = pass.from,
            window_end = pass.until
        );
        async move {
            let result = work(run_id).await;
            self.finish(pass, run_id, requests_before, result).await
        }
        .instrument(span)
        .await
    }

    /// Closes the run. `requests` counts every request the client sent meanwhile, so it is
    /// exact when one pass runs at a time (the daemon's case).
    async fn finish(&self, pass: Pass, run_id: i64, requests_before: u64, result: Result<(), SyncError>) -> Result<PassReport, SyncError> {
        let Pass { kind, run, .. } = pass;
        let requests = self.api.requests_sent().saturating_sub(requests_before);
        match result {
            Ok(()) => {
                let totals = self.store.finish_run(kind, run_id, requests, None).await?;
                info!(object = %kind, run = run.as_str(), pages = totals.pages, rows = totals.rows_written, events = totals.events_written, "pass finished");
                Ok(PassReport { kind, run, totals, requests, held_elsewhere: false })
            }
            Err(e) => {
                let message = e.chain();
                // A pass cut short by shutdown is no failure to alert on; the next start resumes it.
                if matches!(e, SyncError::Cancelled) {
                    info!(object = %kind, run = run.as_str(), "pass stopped by shutdown");
                } else {
                    tracing::error!(object = %kind, run = run.as_str(), error = %message, "pass failed");
                }
                // Recording the failure is best effort: the database may be what failed.
                let _ = self.store.finish_run(kind, run_id, requests, Some(&message)).await;
                Err(e)
            }
        }
    }
}
