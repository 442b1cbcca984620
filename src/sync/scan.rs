//! A complete read of one object (backfills, rescans, key scans): every record created up to
//! a moment, by disjoint created windows placed by volume, or team by team for partner-team
//! members (every team, or the teams that may have changed); the cursor moves to that moment
//! once every listing is read.
//!
//! The scan starts with one reader over everything. After each full page a reader offers
//! the older part of what it has left to the pool; the pool takes it only while a reader
//! is idle, and only if the claim is dense enough to be worth a window of its own
//! ([`WindowClaim::older_part`]). The reader keeps the newer part and stops when its pages pass below
//! it. At most `sync.backfill_concurrency` readers run at once.

use std::sync::{
    atomic::{AtomicBool, AtomicUsize, Ordering},
    Arc,
};

use futures::{stream, stream::FuturesUnordered, Stream, StreamExt};
use tokio::sync::{mpsc, Semaphore};

use super::{
    read::{Destination, Listing},
    window::{CreatedWindow, WindowClaim},
    SyncError, Syncer,
};
use crate::{
    diff::EventSource,
    object::ChangeFilter,
    partnerstack::{current_purpose, with_purpose, ApiError, Collection, ListQuery, Purpose},
    progress::Progress,
    store::{CursorAdvance, TeamsToRead},
};

impl Syncer {
    /// Reads every record created up to `until`, then moves the cursor to `until` (changes
    /// made during the read have a later `updated_at`, so the next poll reads them).
    pub(super) async fn read_everything(&self, to: &Destination, until: i64) -> Result<(), SyncError> {
        if to.kind.change_filter() == ChangeFilter::PerTeam {
            self.read_teams(to, self.store.every_team().await?).await?;
        } else {
            self.read_by_volume(to, CreatedWindow::everything_until(until)).await?;
        }
        let advance = CursorAdvance {
            cursor_ms: until,
            window_start_ms: None,
            window_end_ms: until,
            backfill_completed: true,
            rescan_completed: true,
        };
        self.store.advance(to.kind, &advance, Some(&to.lease)).await?;
        Ok(())
    }

    /// Partner-team members of `teams`, one listing per team, `backfill_concurrency` at a
    /// time, each team's read recorded as of `teams.as_of` once it is complete. Requests go
    /// under [`Purpose::Team`] (under [`Purpose::Webhook`] when a webhook asked for them).
    pub(super) async fn read_teams(&self, to: &Destination, teams: TeamsToRead) -> Result<(), SyncError> {
        let kind = to.kind;
        let TeamsToRead { keys, as_of } = teams;
        self.progress.listings_planned.fetch_add(keys.len() as u64, Ordering::Relaxed);
        let purpose = if current_purpose() == Purpose::Webhook { Purpose::Webhook } else { Purpose::Team };
        // A team the API no longer knows (removed since its partnerships were read) has no
        // members to list; a key scan then finds its members gone.
        let read = |team: String| async move {
            let listing = Listing {
                collection: Collection::TeamMembers(team.clone()),
                query: ListQuery::default(),
                created: None,
                advance: None,
                updated_bounds: None,
            };
            match self.read(to, listing, None).await {
                Err(SyncError::Api(ApiError::NotFound { message })) => {
                    tracing::info!(object = %kind, api_message = %message, "a partner team the API does not know: no members listed");
                }
                Err(e) => return Err(e),
                Ok(()) => {}
            }
            self.store.team_read(&team, as_of).await?;
            Ok(())
        };
        let reads = stream::iter(keys.into_iter().map(read)).buffer_unordered(self.settings.backfill_concurrency);
        let mut reads = std::pin::pin!(reads);
        with_purpose(purpose, async {
            while let Some(done) = reads.next().await {
                if let Err(e) = done {
                    return Err(after_the_others(e, &mut reads).await);
                }
            }
            Ok(())
        })
        .await
    }

    /// Every record of `window`. A backfill into an empty table writes its pages by `COPY`
    /// and builds the table's secondary indexes once at the end, not row by row; one killed
    /// before it built them left them listed, and the next scan of the object builds them
    /// first.
    async fn read_by_volume(&self, to: &Destination, window: CreatedWindow) -> Result<(), SyncError> {
        self.store.restore_indexes(Some(to.kind)).await?;
        let first_load = to.source == EventSource::Backfill && self.store.holds_no_rows(to.kind).await?;
        if !first_load {
            return self.read_windows(to, window, false).await;
        }
        let deferred = self.store.defer_indexes(to.kind).await?;
        let read = self.read_windows(to, window, true).await;
        if deferred > 0 {
            if let Err(e) = self.store.restore_indexes(Some(to.kind)).await {
                // The read's own failure, if any, says more; the next scan or start builds them.
                read?;
                return Err(e.into());
            }
        }
        read
    }

    /// Every record of `window`, starting with one reader and splitting by volume.
    async fn read_windows(&self, to: &Destination, window: CreatedWindow, first_load: bool) -> Result<(), SyncError> {
        let limit = self.settings.backfill_concurrency.max(1);
        let (handed, mut handed_off) = mpsc::channel(limit);
        let readers = Arc::new(Readers {
            limit,
            busy: AtomicUsize::new(1),
            handed,
            writers: Arc::new(Semaphore::new(limit)),
            first_load: AtomicBool::new(first_load),
            progress: self.progress.clone(),
        });
        // The readers share this task (their page writes have tasks of their own: checking
        // pages on more cores as well measured no faster).
        let start = |created: CreatedWindow| {
            let listing = Listing {
                collection: Collection::Objects(to.kind),
                query: created.query(),
                created: Some(created),
                advance: None,
                updated_bounds: None,
            };
            self.read(to, listing, Some(&readers))
        };
        self.progress.listings_planned.fetch_add(1, Ordering::Relaxed);
        let mut running = FuturesUnordered::new();
        running.push(start(window));
        loop {
            tokio::select! {
                Some(older) = handed_off.recv() => running.push(start(older)),
                Some(done) = running.next() => {
                    if let Err(e) = done {
                        return Err(after_the_others(e, &mut running).await);
                    }
                    readers.busy.fetch_sub(1, Ordering::AcqRel);
                    if running.is_empty() {
                        // A reader hands off before it finishes, so anything handed is queued.
                        match handed_off.try_recv() {
                            Ok(older) => running.push(start(older)),
                            Err(_) => return Ok(()),
                        }
                    }
                }
            }
        }
    }
}

/// `failed`, once the other reads have ended if it is shutdown's: every read then stops at
/// its next page, and the pages they are writing are finished rather than dropped half way
/// (a dropped transaction holds its locks, the lease row's among them, until its connection
/// notices). After any other failure the others are dropped: they would read on.
async fn after_the_others(failed: SyncError, others: &mut (impl Stream<Item = Result<(), SyncError>> + Unpin)) -> SyncError {
    if matches!(failed, SyncError::Cancelled) {
        while others.next().await.is_some() {}
    }
    failed
}

/// The readers of one scan: how many are busy (reading, or handed a window not yet
/// started), where handed-off windows go, and how many pages may be written at once.
pub(super) struct Readers {
    limit: usize,
    busy: AtomicUsize,
    handed: mpsc::Sender<CreatedWindow>,
    /// Pages being written at once, over all readers: a reader fetches its next page while
    /// its last ones are written, so one reader alone can keep the database busy.
    pub(super) writers: Arc<Semaphore>,
    /// The object's table was empty when this backfill began, and no page has met a
    /// stored row since: pages are written by `COPY`.
    pub(super) first_load: AtomicBool,
    progress: Arc<Progress>,
}

impl Readers {
    /// Called by a reader after a full page: if a reader is idle and `claim` is dense enough
    /// (`page_size` records a full page), hands the older part of the claim to it.
    pub(super) fn offer(&self, claim: &mut WindowClaim, page_size: usize) {
        let reserved = self.busy.fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| (b < self.limit).then_some(b + 1)).is_ok();
        if !reserved {
            return;
        }
        match claim.older_part(page_size) {
            // Never full: at most `limit` windows are busy, and the channel holds `limit`.
            Some(older) if self.handed.try_send(older).is_ok() => {
                claim.give_up(older);
                self.progress.listings_planned.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                self.busy.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }
}
