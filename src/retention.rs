//! The daemon's retention loop: on a schedule, prunes events past `events.retain` (never one
//! an active consumer or delivery has not passed), finished write-back requests past
//! `queue.retain_finished`, and `sync_runs` (with the `api_requests` tally) past
//! `sync.retain_runs`, one small batch at a time
//! with a pause between batches, so writers (a backfill) barely notice.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    config::{Config, Retention},
    liveness,
    store::{Store, StoreError},
    telemetry::error_chain,
};

/// How often the retention loop runs at most and at least: half the shortest retention
/// configured, within these bounds, so a short retention (`events.retain = "1m"`) is kept to
/// closely and a long one costs a few cheap queries an hour.
const EVERY_AT_LEAST: Duration = Duration::from_secs(5);
const EVERY_AT_MOST: Duration = Duration::from_secs(15 * 60);
/// The first run, this long after start at most (a daemon restarted often still prunes).
const FIRST_RUN_AFTER: Duration = Duration::from_secs(10);
/// Rows per statement, and the pause between statements.
const EVENTS_PER_BATCH: i64 = 5_000;
const ROWS_PER_BATCH: i64 = 1_000;
const PAUSE: Duration = Duration::from_millis(50);

/// What to keep, from the configuration.
#[derive(Clone, Copy, Debug)]
pub struct RetentionSettings {
    pub events: Retention,
    pub finished_requests: Retention,
    pub runs: Retention,
}

impl From<&Config> for RetentionSettings {
    fn from(c: &Config) -> Self {
        RetentionSettings { events: c.events.retain, finished_requests: c.queue.retain_finished, runs: c.sync.retain_runs }
    }
}

impl RetentionSettings {
    /// The time between runs: half the shortest retention, within bounds.
    pub fn period(&self) -> Duration {
        [self.events, self.finished_requests, self.runs]
            .into_iter()
            .filter_map(Retention::max_age)
            .map(|age| age / 2)
            .min()
            .unwrap_or(EVERY_AT_MOST)
            .clamp(EVERY_AT_LEAST, EVERY_AT_MOST)
    }
}

/// Runs until `shutdown`.
pub async fn run(store: Store, settings: RetentionSettings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let every = settings.period();
    let mut next = every.min(FIRST_RUN_AFTER);
    loop {
        liveness::wait_for(next);
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(next) => {}
        }
        if let Err(error) = prune_once(&store, settings, &shutdown).await {
            warn!(error = %error_chain(&error), "retention: pruning failed; trying again at the next run");
        }
        next = every;
    }
}

/// One run over every table with a retention; stops early on `shutdown`.
pub async fn prune_once(store: &Store, settings: RetentionSettings, shutdown: &CancellationToken) -> Result<(), StoreError> {
    if let Some(age) = settings.events.max_age() {
        prune_events(store, age, shutdown).await?;
    }
    if let Some(age) = settings.finished_requests.max_age() {
        let removed = in_batches(shutdown, || store.prune_finished_requests(age, ROWS_PER_BATCH)).await?;
        store.record_prune("write_queue", removed, None).await?;
    }
    if let Some(age) = settings.runs.max_age() {
        let removed = in_batches(shutdown, || store.prune_runs(age, ROWS_PER_BATCH)).await?;
        store.record_prune("sync_runs", removed, None).await?;
        let removed = in_batches(shutdown, || store.prune_request_tally(age, ROWS_PER_BATCH)).await?;
        store.record_prune("api_requests", removed, None).await?;
        let removed = in_batches(shutdown, || store.prune_push_runs(age, ROWS_PER_BATCH)).await?;
        store.record_prune("push_runs", removed, None).await?;
    }
    Ok(())
}

async fn prune_events(store: &Store, age: Duration, shutdown: &CancellationToken) -> Result<(), StoreError> {
    liveness::step();
    let protection = store.event_protection(age).await?;
    let mut removed = 0;
    while !shutdown.is_cancelled() {
        liveness::step();
        let Some(batch) = store.next_event_batch(age, protection.keep_after, EVENTS_PER_BATCH).await? else { break };
        removed += store.remove_events(batch).await?;
        pause(shutdown).await;
    }
    let mut notes = Vec::new();
    if let Some(by) = &protection.kept_by {
        notes.push(format!("kept from {} on for {by}", protection.keep_after.unwrap_or_default() + 1));
    }
    if !protection.lapsed.is_empty() {
        warn!(lapsed = ?protection.lapsed, "retention: inactive for longer than events.retain, these no longer keep events from being pruned");
        notes.push(format!("no longer protecting (inactive): {}", protection.lapsed.join(", ")));
    }
    if removed > 0 {
        info!(removed, "retention: pruned old events");
    }
    store.record_prune("events", removed, (!notes.is_empty()).then(|| notes.join("; ")).as_deref()).await
}

/// Runs `batch` until it removes nothing (or shutdown), pausing between batches.
async fn in_batches<F, Fut>(shutdown: &CancellationToken, mut batch: F) -> Result<u64, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<u64, StoreError>>,
{
    let mut removed = 0;
    while !shutdown.is_cancelled() {
        liveness::step();
        let n = batch().await?;
        removed += n;
        if n == 0 {
            break;
        }
        pause(shutdown).await;
    }
    Ok(removed)
}

async fn pause(shutdown: &CancellationToken) {
    liveness::wait_for(PAUSE);
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = tokio::time::sleep(PAUSE) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(events: Retention) -> RetentionSettings {
        RetentionSettings { events, finished_requests: Retention::Forever, runs: Retention::Keep(Duration::from_secs(30 * 86_400)) }
    }

    #[test]
    fn pruning_runs_at_half_the_shortest_retention_within_bounds() {
        assert_eq!(settings(Retention::Keep(Duration::from_secs(60))).period(), Duration::from_secs(30));
        assert_eq!(settings(Retention::Keep(Duration::from_secs(1))).period(), EVERY_AT_LEAST);
        assert_eq!(settings(Retention::Keep(Duration::from_secs(90 * 86_400))).period(), EVERY_AT_MOST);
        let forever = RetentionSettings { events: Retention::Forever, finished_requests: Retention::Forever, runs: Retention::Forever };
        assert_eq!(forever.period(), EVERY_AT_MOST);
    }
}
