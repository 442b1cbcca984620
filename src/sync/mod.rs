//! One sync pass of one object: read the API in windows, write each page in one transaction,
//! move the cursor only when a window is complete.
//!
//! How the mirror stays correct whatever the API's undocumented answers are (SPEC 9):
//! - Incremental windows are `[cursor - lookback, now - settle]`, requested one millisecond
//!   wider on each side, so inclusive and exclusive bounds both cover the window; the
//!   overlap with the previous window re-reads its last milliseconds, which the diff turns
//!   into no-ops, so many records sharing one `updated_at` millisecond are never split.
//! - Pages follow the key cursor (`starting_after`) to the end; a record changed while we
//!   list gets a new `updated_at` after the window's end and is read by the next window.
//! - Transactions and rewards are read by created windows, and rescans catch their later
//!   changes (SPEC 9.3), so nothing depends on `min_updated` being honoured there.
//! - The first pass backfills by disjoint created windows, several at once.

mod window;

use std::{
    collections::HashSet,
    sync::{atomic::Ordering, Arc, Mutex},
    time::Duration,
};

use chrono::Utc;
use futures::{stream, StreamExt, TryStreamExt};
use tokio_util::sync::CancellationToken;
use tracing::{info, info_span, Instrument};

pub use crate::progress::{ObjectCounters, Progress};
use crate::{
    diff::EventSource,
    object::{ChangeFilter, ObjectKind},
    partnerstack::{ApiClient, ApiError, ErrorClass, ListQuery},
    record,
    store::{CursorAdvance, Lease, PageWrite, ReconcileOutcome, RunKind, RunTotals, Store, StoreError},
};

pub use window::{split_created, CreatedWindow};

/// Why a pass failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("PartnerStack API request failed")]
    Api(#[from] ApiError),
    #[error("database write failed")]
    Store(#[from] StoreError),
    #[error("stopped by shutdown")]
    Cancelled,
    #[error(
        "reconcile refused: {would_delete} of {live} live rows vanished from the key scan, over the {:.1}% brake \
         (sync.reconcile_max_delete_share); nothing was marked deleted", max_share * 100.0
    )]
    ReconcileRefused { would_delete: i64, live: i64, max_share: f64 },
}

impl SyncError {
    /// Bad credentials stop everything; other failures only this object's pass.
    pub fn is_fatal(&self) -> bool {
        matches!(self, SyncError::Api(e) if matches!(e.class(), ErrorClass::Fatal))
    }

    /// The whole chain in one line, for `sync_state.last_error` and the command line.
    pub fn chain(&self) -> String {
        crate::telemetry::error_chain(self)
    }
}

/// What the sync needs to know from the configuration.
#[derive(Clone, Debug)]
pub struct SyncSettings {
    pub lookback: Duration,
    pub settle: Duration,
    pub backfill_concurrency: usize,
    pub emit_backfill_events: bool,
    /// The safety brake: a key scan may mark at most this share of live rows deleted.
    pub reconcile_max_delete_share: f64,
    /// How long an object's lease lasts without a write renewing it.
    pub lease_ttl: Duration,
}

impl From<&crate::config::SyncConfig> for SyncSettings {
    fn from(c: &crate::config::SyncConfig) -> Self {
        SyncSettings {
            lookback: c.lookback,
            settle: c.settle,
            backfill_concurrency: c.backfill_concurrency,
            emit_backfill_events: c.emit_backfill_events,
            reconcile_max_delete_share: c.reconcile_max_delete_share,
            lease_ttl: c.lease_ttl,
        }
    }
}

/// The result of one pass over one object.
#[derive(Clone, Debug)]
pub struct PassReport {
    pub kind: ObjectKind,
    pub run: RunKind,
    pub totals: RunTotals,
    pub requests: u64,
    /// Another instance holds the object's lease: this pass did nothing.
    pub held_elsewhere: bool,
}

impl PassReport {
    fn nothing(kind: ObjectKind, run: RunKind, held_elsewhere: bool) -> PassReport {
        PassReport { kind, run, totals: RunTotals::default(), requests: 0, held_elsewhere }
    }
}

/// Reads the API and writes the mirror.
#[derive(Clone)]
pub struct Syncer {
    api: ApiClient,
    store: Store,
    settings: SyncSettings,
    progress: Arc<Progress>,
    shutdown: CancellationToken,
    /// This instance's name in `sync_leases` and `sync_runs`.
    holder: Arc<str>,
}

/// One listing to read to its end, and what to do with it.
#[derive(Clone)]
struct Listing {
    kind: ObjectKind,
    path: String,
    query: ListQuery,
    /// Keep only records created in `[from, until)` (backfill windows are disjoint).
    created_range: Option<(Option<i64>, i64)>,
    source: EventSource,
    emit_events: bool,
    run_id: i64,
    /// Moves the cursor with the last page.
    advance: Option<CursorAdvance>,
    /// Collects every key listed (key scans).
    seen: Option<Arc<Mutex<HashSet<String>>>>,
    lease: Lease,
}

impl Syncer {
    pub fn new(api: ApiClient, store: Store, settings: SyncSettings, shutdown: CancellationToken) -> Syncer {
        let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_owned()).unwrap_or_else(|_| "host".into());
        let holder = format!("{host}/{}/{:08x}", std::process::id(), rand::random::<u32>());
        Syncer { api, store, settings, progress: Arc::default(), shutdown, holder: holder.into() }
    }

    /// This instance's lease-holder name.
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Runs `work` under the object's lease: taken first (a pass held elsewhere does
    /// nothing), renewed every third of its TTL while the work runs (also while it waits out
    /// a long `Retry-After`), released after. A renewal that finds the lease gone only logs:
    /// the work's next write is fenced off and fails the pass through the normal path.
    async fn leased<F, Fut>(&self, kind: ObjectKind, run: RunKind, work: F) -> Result<PassReport, SyncError>
    where
        F: FnOnce(Lease) -> Fut,
        Fut: std::future::Future<Output = Result<PassReport, SyncError>>,
    {
        let Some(lease) = self.store.acquire_lease(kind, &self.holder, self.settings.lease_ttl).await? else {
            return Ok(PassReport::nothing(kind, run, true));
        };
        let work = work(lease.clone());
        tokio::pin!(work);
        let mut renewals = tokio::time::interval(lease.ttl / 3);
        renewals.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        renewals.tick().await;
        let result = loop {
            tokio::select! {
                result = &mut work => break result,
                _ = renewals.tick() => {
                    if let Err(error) = self.store.renew_lease(&lease).await {
                        tracing::warn!(object = %kind, error = %crate::telemetry::error_chain(&error), "cannot renew the lease");
                    }
                }
            }
        };
        if let Err(error) = self.store.release_lease(&lease).await {
            tracing::warn!(object = %lease.kind, error = %error, "cannot release the lease; it expires by itself");
        }
        result
    }

    pub fn progress(&self) -> Arc<Progress> {
        self.progress.clone()
    }

    pub fn api(&self) -> &ApiClient {
        &self.api
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// One pass: a backfill if the object was never loaded (or `full`), otherwise the next
    /// incremental window.
    pub async fn sync_object(&self, kind: ObjectKind, full: bool) -> Result<PassReport, SyncError> {
        self.leased(kind, RunKind::Poll, |lease| async move {
            let state = self.store.object_state(kind).await?;
            let first_load = state.backfill_completed_at.is_none();
            match (state.cursor_ms, kind.change_filter()) {
                (None, _) => self.scan(kind, RunKind::Backfill, first_load, &lease).await,
                (Some(_), _) if full => self.scan(kind, RunKind::Rescan, false, &lease).await,
                // Team members are only found by walking every team: rescans do that.
                (Some(_), ChangeFilter::PerTeam) => Ok(PassReport::nothing(kind, RunKind::Poll, false)),
                (Some(cursor), filter) => self.poll(kind, cursor, filter, &lease).await,
            }
        })
        .await
    }

    /// A complete read of the object (all records, no change filter): catches later changes
    /// to objects the API cannot filter by `updated_at`.
    pub async fn rescan(&self, kind: ObjectKind) -> Result<PassReport, SyncError> {
        self.leased(kind, RunKind::Rescan, |lease| async move {
            let state = self.store.object_state(kind).await?;
            let run = if state.cursor_ms.is_none() { RunKind::Backfill } else { RunKind::Rescan };
            self.scan(kind, run, state.backfill_completed_at.is_none(), &lease).await
        })
        .await
    }

    /// The next incremental window.
    async fn poll(&self, kind: ObjectKind, cursor: i64, filter: ChangeFilter, lease: &Lease) -> Result<PassReport, SyncError> {
        let now = Utc::now().timestamp_millis();
        let from = cursor - self.settings.lookback.as_millis() as i64;
        let until = (now - self.settings.settle.as_millis() as i64).max(from);
        // One millisecond wider on each side: right under inclusive and exclusive bounds.
        let query = match filter {
            ChangeFilter::Updated => ListQuery { min_updated: Some(from - 1), max_updated: Some(until + 1), ..ListQuery::default() },
            _ => ListQuery { min_created: Some(from - 1), max_created: Some(until + 1), ..ListQuery::default() },
        };
        let requests_before = self.api.requests_sent();
        let run_id = self.store.start_run(kind, RunKind::Poll, Some((from, until)), &self.holder).await?;
        self.progress.listings_planned.fetch_add(1, Ordering::Relaxed);
        let listing = Listing {
            kind,
            path: kind.api_path().to_owned(),
            query,
            created_range: None,
            source: EventSource::Poll,
            emit_events: true,
            run_id,
            advance: Some(CursorAdvance {
                cursor_ms: until,
                window_start_ms: Some(from),
                window_end_ms: until,
                ..CursorAdvance::default()
            }),
            seen: None,
            lease: lease.clone(),
        };
        let span = info_span!("sync_pass", object = %kind, run = "poll", run_id, window_start = from, window_end = until);
        self.finish(kind, RunKind::Poll, run_id, requests_before, self.read(listing).instrument(span).await).await
    }

    /// A backfill or rescan: every record, by disjoint created windows read concurrently.
    async fn scan(&self, kind: ObjectKind, run: RunKind, first_load: bool, lease: &Lease) -> Result<PassReport, SyncError> {
        let source = if first_load { EventSource::Backfill } else { EventSource::Poll };
        let emit_events = !first_load || self.settings.emit_backfill_events;
        let until = Utc::now().timestamp_millis() - self.settings.settle.as_millis() as i64;
        let requests_before = self.api.requests_sent();
        let run_id = self.store.start_run(kind, run, Some((0, until)), &self.holder).await?;
        let span = info_span!("sync_pass", object = %kind, run = run.as_str(), run_id, window_end = until);
        let result = self.read_everything(self.scan_template(kind, source, emit_events, run_id, None, lease), until).instrument(span).await;
        self.finish(kind, run, run_id, requests_before, result).await
    }

    /// A complete key scan: reads every record (and stores what changed), then marks deleted
    /// the live rows it did not see, unless more than the brake allows would go. Only a scan
    /// that finished cleanly gets that far.
    pub async fn reconcile(&self, kind: ObjectKind) -> Result<PassReport, SyncError> {
        self.leased(kind, RunKind::Reconcile, |lease| async move { self.reconcile_leased(kind, &lease).await }).await
    }

    async fn reconcile_leased(&self, kind: ObjectKind, lease: &Lease) -> Result<PassReport, SyncError> {
        let until = Utc::now().timestamp_millis() - self.settings.settle.as_millis() as i64;
        let requests_before = self.api.requests_sent();
        let run_id = self.store.start_run(kind, RunKind::Reconcile, Some((0, until)), &self.holder).await?;
        let span = info_span!("sync_pass", object = %kind, run = "reconcile", run_id, window_end = until);
        let result = async {
            let seen = Arc::new(Mutex::new(HashSet::new()));
            self.read_everything(self.scan_template(kind, EventSource::Reconcile, true, run_id, Some(seen.clone()), lease), until).await?;
            let seen = std::mem::take(&mut *seen.lock().expect("no panics while holding it"));
            match self.store.mark_vanished(kind, &seen, until, self.settings.reconcile_max_delete_share, Some(lease)).await? {
                ReconcileOutcome::Deleted { keys, live } => {
                    info!(object = %kind, deleted = keys.len(), live, "key scan complete");
                    Ok(())
                }
                ReconcileOutcome::Refused { would_delete, live, max_share } => {
                    tracing::error!(object = %kind, would_delete, live, max_share, "key scan would delete too much; refused");
                    Err(SyncError::ReconcileRefused { would_delete, live, max_share })
                }
            }
        }
        .instrument(span)
        .await;
        self.finish(kind, RunKind::Reconcile, run_id, requests_before, result).await
    }

    /// Reads every record created up to `until`, then moves the cursor to `until` (changes
    /// made during the read have a later `updated_at`, so the next poll reads them).
    /// What every window of a scan shares.
    fn scan_template(
        &self,
        kind: ObjectKind,
        source: EventSource,
        emit_events: bool,
        run_id: i64,
        seen: Option<Arc<Mutex<HashSet<String>>>>,
        lease: &Lease,
    ) -> Listing {
        Listing {
            kind,
            path: String::new(),
            query: ListQuery::default(),
            created_range: None,
            source,
            emit_events,
            run_id,
            advance: None,
            seen,
            lease: lease.clone(),
        }
    }

    async fn read_everything(&self, template: Listing, until: i64) -> Result<(), SyncError> {
        let kind = template.kind;
        let listings = self.scan_listings(kind, until).await?;
        self.progress.listings_planned.fetch_add(listings.len() as u64, Ordering::Relaxed);
        stream::iter(
            listings.into_iter().map(|(path, query, created_range)| self.read(Listing { path, query, created_range, ..template.clone() })),
        )
        .buffer_unordered(self.settings.backfill_concurrency)
        .try_collect::<Vec<()>>()
        .await?;
        let advance = CursorAdvance {
            cursor_ms: until,
            window_start_ms: None,
            window_end_ms: until,
            backfill_completed: true,
            rescan_completed: true,
        };
        self.store.advance(kind, &advance, Some(&template.lease)).await?;
        Ok(())
    }

    /// The listings that together cover every record created up to `until`.
    async fn scan_listings(&self, kind: ObjectKind, until: i64) -> Result<Vec<(String, ListQuery, Option<(Option<i64>, i64)>)>, SyncError> {
        if kind.change_filter() == ChangeFilter::PerTeam {
            let teams = self.store.team_keys().await?;
            return Ok(teams
                .into_iter()
                .map(|t| (format!("{}/{}", kind.api_path(), crate::partnerstack::segment(&t)), ListQuery::default(), None))
                .collect());
        }
        let oldest =
            if self.settings.backfill_concurrency > 1 { window::oldest_created(&self.api, kind.api_path(), until).await? } else { None };
        let parts = self.settings.backfill_concurrency * 4;
        Ok(split_created(oldest, until, parts)
            .into_iter()
            .map(|w| {
                let query = ListQuery { min_created: w.from.map(|f| f - 1), max_created: Some(w.until + 1), ..ListQuery::default() };
                (kind.api_path().to_owned(), query, Some((w.from, w.until)))
            })
            .collect())
    }

    /// Reads one listing page by page; each page is one transaction.
    async fn read(&self, listing: Listing) -> Result<(), SyncError> {
        let mut pages = std::pin::pin!(self.api.list(&listing.path, listing.query.clone()));
        let mut advanced = false;
        loop {
            let fetch_started = std::time::Instant::now();
            let page = tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => return Err(SyncError::Cancelled),
                page = pages.next() => page,
            };
            self.progress.fetch_micros.fetch_add(fetch_started.elapsed().as_micros() as u64, Ordering::Relaxed);
            let Some(page) = page else { break };
            let page = page?;
            let last = !page.has_more;
            let mut records = Vec::with_capacity(page.items.len());
            let mut rejected = Vec::new();
            for item in &page.items {
                match record::check(listing.kind, item) {
                    Ok(r) => {
                        let inside = match listing.created_range {
                            None => true,
                            Some((from, until)) => {
                                let c = r.created_ms.unwrap_or(0);
                                from.is_none_or(|f| c >= f) && c < until
                            }
                        };
                        if inside {
                            records.push(r);
                        }
                    }
                    Err(bad) => rejected.push(bad),
                }
            }
            if let Some(seen) = &listing.seen {
                let mut seen = seen.lock().expect("no panics while holding it");
                seen.extend(records.iter().map(|r| r.key.clone()));
                seen.extend(rejected.iter().filter_map(|r| r.key.clone()));
            }
            if !rejected.is_empty() {
                tracing::warn!(object = %listing.kind, count = rejected.len(), first_error = %rejected[0].error, "records quarantined");
            }
            let write_started = std::time::Instant::now();
            let outcome = self
                .store
                .write_page(PageWrite {
                    kind: listing.kind,
                    records,
                    rejected: &rejected,
                    source: listing.source,
                    emit_events: listing.emit_events,
                    run_id: Some(listing.run_id),
                    advance: if last { listing.advance.clone() } else { None },
                    lease: Some(&listing.lease),
                })
                .await?;
            self.progress.write_micros.fetch_add(write_started.elapsed().as_micros() as u64, Ordering::Relaxed);
            advanced |= last;
            let p = &self.progress;
            p.pages.fetch_add(1, Ordering::Relaxed);
            p.records.fetch_add(outcome.records, Ordering::Relaxed);
            p.rows_written.fetch_add(outcome.rows_written, Ordering::Relaxed);
            p.events_written.fetch_add(outcome.events_written, Ordering::Relaxed);
            p.quarantined.fetch_add(outcome.quarantined, Ordering::Relaxed);
            let o = p.object(listing.kind);
            o.rows_written.fetch_add(outcome.rows_written, Ordering::Relaxed);
            o.events_written.fetch_add(outcome.events_written, Ordering::Relaxed);
            crate::liveness::step();
            if last {
                break;
            }
        }
        self.progress.listings_done.fetch_add(1, Ordering::Relaxed);
        if let (Some(advance), false) = (&listing.advance, advanced) {
            self.store.advance(listing.kind, advance, Some(&listing.lease)).await?;
        }
        Ok(())
    }

    /// Closes the run. `requests` counts every request the client sent meanwhile, so it is
    /// exact when one pass runs at a time (the daemon's case).
    async fn finish(
        &self,
        kind: ObjectKind,
        run: RunKind,
        run_id: i64,
        requests_before: u64,
        result: Result<(), SyncError>,
    ) -> Result<PassReport, SyncError> {
        let requests = self.api.requests_sent().saturating_sub(requests_before);
        match result {
            Ok(()) => {
                let totals = self.store.finish_run(kind, run_id, requests, None).await?;
                info!(object = %kind, run = run.as_str(), pages = totals.pages, rows = totals.rows_written, events = totals.events_written, "pass finished");
                Ok(PassReport { kind, run, totals, requests, held_elsewhere: false })
            }
            Err(e) => {
                let message = e.chain();
                tracing::error!(object = %kind, run = run.as_str(), error = %message, "pass failed");
                // Recording the failure is best effort: the database may be what failed.
                let _ = self.store.finish_run(kind, run_id, requests, Some(&message)).await;
                Err(e)
            }
        }
    }
}
