//! One sync pass of one object: read the API in windows, write each page in one transaction,
//! move the cursor only when a window is complete.
//!
//! How the mirror stays correct whatever the API's undocumented answers are (docs/correctness.md):
//! - Incremental windows are `[cursor - lookback, now - settle]`, requested one millisecond
//!   wider on each side, so inclusive and exclusive bounds both cover the window; the
//!   overlap with the previous window re-reads its last milliseconds, which the diff turns
//!   into no-ops, so many records sharing one `updated_at` millisecond are never split.
//! - Pages follow the key cursor (`starting_after`) to the end; a record changed while we
//!   list gets a new `updated_at` after the window's end and is read by the next window.
//! - Transactions and rewards are read by created windows, and rescans catch their later
//!   changes (docs/correctness.md, question 3), so nothing depends on `min_updated` being honoured there; while the
//!   daemon's probe finds it honoured, they are polled by updated windows like the others
//!   and leave the hourly rescan (docs/steady-state.md), and a window that lists a record updated outside
//!   it sends them back at once.
//! - Partner-team members are listed one team at a time: a pass reads only the teams whose
//!   partnership was written since the team was last read (or that a webhook named), and
//!   the daily key scan reads every team (docs/steady-state.md).
//! - Backfills and rescans read disjoint created windows, several at once, placed by volume:
//!   one window over everything, split while it is read when it proves dense (`window.rs`).

mod pass;
mod read;
mod scan;
mod window;

use std::{
    collections::HashSet,
    sync::{atomic::Ordering, Arc, Mutex},
    time::Duration,
};

use chrono::Utc;
use tokio_util::sync::CancellationToken;
use tracing::info;

pub use crate::progress::Progress;
use crate::{
    diff::EventSource,
    object::{ChangeFilter, ObjectKind},
    partnerstack::{
        probe::{self, FilterProbe},
        with_priority, with_purpose, ApiClient, ApiError, Collection, ErrorClass, ListQuery, Priority, Purpose,
    },
    store::{CursorAdvance, Lease, ReconcileOutcome, RunKind, RunTotals, Store, StoreError, UpdatedFilter},
};
use pass::Pass;
use read::{Destination, Listing};

pub use window::{CreatedWindow, WindowClaim};

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
    /// An updated window listed a record updated outside it: the API ignores `min_updated`
    /// on this list after all (caught by the poll, never returned from a pass).
    #[error("the API ignores min_updated on this list")]
    UpdatedFilterIgnored,
}

impl SyncError {
    /// Bad credentials stop everything; other failures only this object's pass.
    pub fn is_fatal(&self) -> bool {
        matches!(self, SyncError::Api(e) if matches!(e.class(), ErrorClass::Fatal))
    }

    /// The API could not be reached at all: the next object would wait out the same retries.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, SyncError::Api(e) if e.is_unreachable())
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

/// How much of an object a pass reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reading {
    /// What changed since the cursor (an object's first pass reads everything: its backfill).
    Changes,
    /// Every record again (`sync --full`): a complete read, diffed like any other.
    Everything,
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
    /// One pass per object at a time within this process (the lease is the holder's, so it
    /// cannot keep a webhook-triggered read from overlapping a scheduled pass).
    local: Arc<ObjectLocks>,
}

/// One lock per object type.
#[derive(Default)]
struct ObjectLocks([tokio::sync::Mutex<()>; ObjectKind::ALL.len()]);

impl ObjectLocks {
    async fn lock(&self, kind: ObjectKind) -> tokio::sync::MutexGuard<'_, ()> {
        self.0[ObjectKind::ALL.iter().position(|k| *k == kind).expect("every kind is in ALL")].lock().await
    }
}

impl Syncer {
    pub fn new(api: ApiClient, store: Store, settings: SyncSettings, shutdown: CancellationToken) -> Syncer {
        let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_owned()).unwrap_or_else(|_| "host".into());
        let holder = format!("{host}/{}/{:08x}", std::process::id(), rand::random::<u32>());
        Syncer { api, store, settings, progress: Arc::default(), shutdown, holder: holder.into(), local: Arc::default() }
    }

    /// This instance's lease-holder name.
    pub fn holder(&self) -> &str {
        &self.holder
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
    /// incremental window (for team members: the teams that may have changed).
    pub async fn sync_object(&self, kind: ObjectKind, reading: Reading) -> Result<PassReport, SyncError> {
        self.leased(kind, RunKind::Poll, |lease| async move {
            let state = self.store.object_state(kind).await?;
            let first_load = state.backfill_completed_at.is_none();
            match (state.cursor_ms, state.change_filter(kind)) {
                (None, _) => self.scan(kind, RunKind::Backfill, first_load, &lease).await,
                (Some(_), _) if reading == Reading::Everything => self.scan(kind, RunKind::Rescan, false, &lease).await,
                (Some(_), ChangeFilter::PerTeam) => {
                    with_priority(Priority::Normal, with_purpose(Purpose::Team, self.read_teams_due(kind, &lease, EventSource::Poll))).await
                }
                (Some(cursor), filter) => self.poll(kind, cursor, filter, &lease).await,
            }
        })
        .await
    }

    /// A read made at once because a PartnerStack webhook said the object changed: the next
    /// incremental window, reaching up to now (the `lookback` overlap of the next window
    /// re-reads anything committed late, so `settle` is not needed here), its events marked
    /// `webhook`, at urgent priority in the request budget. For team members: the teams
    /// that may have changed (a webhook that named its team made it due). An object never
    /// loaded is backfilled, as by [`Syncer::sync_object`] (at bulk priority).
    pub async fn read_now(&self, kind: ObjectKind) -> Result<PassReport, SyncError> {
        self.leased(kind, RunKind::Poll, |lease| async move {
            let state = self.store.object_state(kind).await?;
            match (state.cursor_ms, state.change_filter(kind)) {
                (None, _) => self.scan(kind, RunKind::Backfill, state.backfill_completed_at.is_none(), &lease).await,
                (Some(_), ChangeFilter::PerTeam) => {
                    let read = self.read_teams_due(kind, &lease, EventSource::Webhook);
                    with_priority(Priority::Urgent, with_purpose(Purpose::Webhook, read)).await
                }
                (Some(cursor), filter) => {
                    let read = self.poll_window(kind, cursor, filter, &lease, Duration::ZERO, EventSource::Webhook);
                    with_priority(Priority::Urgent, with_purpose(Purpose::Webhook, read)).await
                }
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

    /// Whether the object's later changes are found only by complete reads now, so the
    /// hourly rescan must read it: transactions and rewards, unless the API honours
    /// `min_updated` on them (see [`ObjectState::change_filter`]). Team members are not
    /// rescanned: their teams are read when they may have changed, and all of them daily by
    /// the key scan.
    pub async fn needs_rescan(&self, kind: ObjectKind) -> Result<bool, SyncError> {
        if kind.change_filter() != ChangeFilter::CreatedOnly {
            return Ok(false);
        }
        Ok(self.store.object_state(kind).await?.change_filter(kind) == ChangeFilter::CreatedOnly)
    }

    /// The next incremental window, at normal priority in the request budget.
    async fn poll(&self, kind: ObjectKind, cursor: i64, filter: ChangeFilter, lease: &Lease) -> Result<PassReport, SyncError> {
        let window = self.poll_window(kind, cursor, filter, lease, self.settings.settle, EventSource::Poll);
        with_priority(Priority::Normal, with_purpose(Purpose::Poll, window)).await
    }

    /// The window `[cursor - lookback, now - settle]`, its events marked `source`.
    async fn poll_window(
        &self,
        kind: ObjectKind,
        cursor: i64,
        filter: ChangeFilter,
        lease: &Lease,
        settle: Duration,
        source: EventSource,
    ) -> Result<PassReport, SyncError> {
        let now = Utc::now().timestamp_millis();
        let from = cursor - self.settings.lookback.as_millis() as i64;
        let until = (now - settle.as_millis() as i64).max(from);
        // One millisecond wider on each side: right under inclusive and exclusive bounds.
        let query = match filter {
            ChangeFilter::Updated => ListQuery { min_updated: Some(from - 1), max_updated: Some(until + 1), ..ListQuery::default() },
            _ => ListQuery { min_created: Some(from - 1), max_created: Some(until + 1), ..ListQuery::default() },
        };
        // A list documented by created time only, read by updated windows because the probe
        // found the filter honoured: a record outside the window says it no longer is.
        let updated_bounds =
            (filter == ChangeFilter::Updated && kind.change_filter() == ChangeFilter::CreatedOnly).then_some((from - 1, until + 1));
        let pass = Pass { kind, run: RunKind::Poll, from: Some(from), until };
        self.run_pass(pass, |run_id| async move {
            self.progress.listings_planned.fetch_add(1, Ordering::Relaxed);
            let to = Destination { kind, source, emit_events: true, run_id, lease: lease.clone(), seen: None };
            let advance = CursorAdvance { cursor_ms: until, window_start_ms: Some(from), window_end_ms: until, ..CursorAdvance::default() };
            let listing = Listing { collection: Collection::Objects(kind), query, created: None, advance: Some(advance), updated_bounds };
            match self.read(&to, listing, None).await {
                // The cursor stays: created windows from it find new records, and the
                // rescans that resume find the changes since the last good window.
                Err(SyncError::UpdatedFilterIgnored) => {
                    tracing::warn!(
                        object = %kind,
                        "an updated window listed records updated outside it: the API no longer honours min_updated here; \
                         back to created windows and hourly rescans"
                    );
                    self.store.record_updated_filter(kind, UpdatedFilter::Ignored).await?;
                    Ok(())
                }
                other => other,
            }
        })
        .await
    }

    /// Asks the API whether it honours `min_updated` on `kind`'s list (two requests; see
    /// [`probe::updated_filter`]) and remembers the answer in `sync_state`. A change is
    /// logged; it takes effect at once when the filter stopped being honoured, and from the
    /// object's next complete read (the hourly rescan) when it started. A failed probe
    /// changes nothing. Only for lists documented by created time only.
    pub async fn probe_updated_filter(&self, kind: ObjectKind) -> Result<Option<UpdatedFilter>, SyncError> {
        if kind.change_filter() != ChangeFilter::CreatedOnly {
            return Ok(None);
        }
        let found = match with_purpose(Purpose::Probe, probe::updated_filter(&self.api, kind)).await {
            FilterProbe::Honoured => UpdatedFilter::Honoured,
            FilterProbe::Ignored => UpdatedFilter::Ignored,
            FilterProbe::Empty => UpdatedFilter::Undetermined,
            FilterProbe::Failed(e) => {
                tracing::warn!(object = %kind, error = %crate::telemetry::error_chain(&e), "cannot probe min_updated; keeping what was found before");
                return Ok(None);
            }
        };
        let before = self.store.record_updated_filter(kind, found).await?;
        if before != Some(found) {
            let what = match found {
                UpdatedFilter::Honoured => "polled by updated windows from its next complete read on; the hourly rescan leaves it",
                UpdatedFilter::Ignored | UpdatedFilter::Undetermined => "polled by created windows, its changes found by hourly rescans",
            };
            info!(object = %kind, min_updated = found.as_str(), before = before.map(UpdatedFilter::as_str), "min_updated probed: {what}");
        }
        Ok(Some(found))
    }

    /// A backfill or rescan: every record, by disjoint created windows read concurrently,
    /// at bulk priority in the request budget (whoever started it).
    async fn scan(&self, kind: ObjectKind, run: RunKind, first_load: bool, lease: &Lease) -> Result<PassReport, SyncError> {
        let source = if first_load { EventSource::Backfill } else { EventSource::Poll };
        let emit_events = !first_load || self.settings.emit_backfill_events;
        let until = self.settled_now();
        let pass = self.run_pass(Pass { kind, run, from: None, until }, |run_id| async move {
            let to = Destination { kind, source, emit_events, run_id, lease: lease.clone(), seen: None };
            self.read_everything(&to, until).await
        });
        let purpose = if run == RunKind::Backfill { Purpose::Backfill } else { Purpose::Rescan };
        with_priority(Priority::Bulk, with_purpose(purpose, pass)).await
    }

    /// The partner teams that may have changed (see [`crate::store::Store::teams_due`]): no
    /// request at all when none did. The cursor stays where the last walk of every team left
    /// it: only a walk finds a member who joined without the partnership changing.
    async fn read_teams_due(&self, kind: ObjectKind, lease: &Lease, source: EventSource) -> Result<PassReport, SyncError> {
        let until = Utc::now().timestamp_millis();
        self.run_pass(Pass { kind, run: RunKind::Poll, from: None, until }, |run_id| async move {
            let teams = self.store.teams_due().await?;
            if !teams.keys.is_empty() {
                tracing::debug!(object = %kind, teams = teams.keys.len(), "reading the partner teams that may have changed");
            }
            let to = Destination { kind, source, emit_events: true, run_id, lease: lease.clone(), seen: None };
            self.read_teams(&to, teams).await
        })
        .await
    }

    /// A complete key scan: reads every record (and stores what changed), then marks deleted
    /// the live rows it did not see, unless more than the brake allows would go. Only a scan
    /// that finished cleanly gets that far. Bulk priority in the request budget.
    pub async fn reconcile(&self, kind: ObjectKind) -> Result<PassReport, SyncError> {
        let scan = self.leased(kind, RunKind::Reconcile, |lease| async move {
            let until = self.settled_now();
            self.run_pass(Pass { kind, run: RunKind::Reconcile, from: None, until }, |run_id| self.key_scan(kind, run_id, until, &lease))
                .await
        });
        with_priority(Priority::Bulk, with_purpose(Purpose::KeyScan, scan)).await
    }

    /// The work of [`Syncer::reconcile`] once its run is open.
    async fn key_scan(&self, kind: ObjectKind, run_id: i64, until: i64, lease: &Lease) -> Result<(), SyncError> {
        let seen = Arc::new(Mutex::new(HashSet::new()));
        let to =
            Destination { kind, source: EventSource::Reconcile, emit_events: true, run_id, lease: lease.clone(), seen: Some(seen.clone()) };
        self.read_everything(&to, until).await?;
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

    /// Now, less the settle time: records changed later may not be listed yet.
    fn settled_now(&self) -> i64 {
        Utc::now().timestamp_millis() - self.settings.settle.as_millis() as i64
    }
}
