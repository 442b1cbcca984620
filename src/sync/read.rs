//! Reading one listing to its end: fetch a page, check and keep its records, write it in one
//! transaction and count what it changed; the cursor moves with the listing's last page.

use std::{
    collections::HashSet,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Instant,
};

use futures::{stream::FuturesUnordered, Future, Stream, StreamExt};
use serde_json::value::RawValue;
use tokio_util::task::AbortOnDropHandle;

use super::{
    scan::Readers,
    window::{CreatedWindow, WindowClaim},
    SyncError, Syncer,
};
use crate::{
    diff::EventSource,
    object::ObjectKind,
    partnerstack::{ApiError, Collection, ListQuery, Page},
    progress::Progress,
    record::{self, Record, Rejected},
    store::{CursorAdvance, FirstLoadWrite, Lease, PageOutcome, PageWrite},
};

/// Where a pass's pages go, shared by all its listings.
#[derive(Clone)]
pub(super) struct Destination {
    pub kind: ObjectKind,
    pub source: EventSource,
    pub emit_events: bool,
    pub run_id: i64,
    pub lease: Lease,
    /// Collects every key listed (key scans).
    pub seen: Option<Arc<Mutex<HashSet<String>>>>,
}

/// One listing to read to its end.
pub(super) struct Listing {
    pub collection: Collection,
    pub query: ListQuery,
    /// Keep only records created inside this window (scan windows are disjoint, and the
    /// query asks for a millisecond more on each side); it may shrink as its reader hands
    /// older parts to others.
    pub created: Option<CreatedWindow>,
    /// Moves the cursor with the last page.
    pub advance: Option<CursorAdvance>,
    /// The updated window asked for (epoch ms, inclusive), where the API may ignore it: a
    /// page listing a record updated outside it ends the listing with
    /// [`SyncError::UpdatedFilterIgnored`], before that page is written.
    pub updated_bounds: Option<(i64, i64)>,
}

/// A page's items, checked.
struct CheckedPage {
    /// Valid records inside the listing's created window.
    records: Vec<Record>,
    /// Items that cannot be stored, for quarantine.
    rejected: Vec<Rejected>,
}

impl Syncer {
    /// Reads one listing page by page; each page is one transaction. With `readers` (a
    /// scan's, whose pages carry no cursor), pages are written while the next one is
    /// fetched, as many at once as the pool allows, and a created window that proves dense
    /// hands its older part to an idle reader and stops once its pages pass below what it
    /// kept.
    pub(super) async fn read(&self, to: &Destination, listing: Listing, readers: Option<&Arc<Readers>>) -> Result<(), SyncError> {
        let mut pages = std::pin::pin!(self.api.list(&listing.collection, listing.query.clone()));
        let mut claim = listing.created.map(WindowClaim::new);
        let mut advanced = false;
        let mut writing = FuturesUnordered::new();
        let read = async {
            while let Some(page) = beside(&mut writing, self.next_page(&mut pages)).await?? {
                let listed = page.items.len();
                let checked = check(to.kind, page.items, claim.as_mut());
                if let Some((from, until)) = listing.updated_bounds {
                    if checked.records.iter().any(|r| r.updated_ms.is_some_and(|u| u < from || u > until)) {
                        return Err(SyncError::UpdatedFilterIgnored);
                    }
                }
                let last = !page.has_more || claim.as_ref().is_some_and(WindowClaim::passed);
                if let Some(seen) = &to.seen {
                    let mut seen = seen.lock().expect("no panics while holding it");
                    seen.extend(checked.records.iter().map(|r| r.key.clone()));
                    seen.extend(checked.rejected.iter().filter_map(|r| r.key.clone()));
                }
                crate::liveness::step();
                match readers {
                    Some(readers) if listing.advance.is_none() => {
                        let permit =
                            beside(&mut writing, readers.writers.clone().acquire_owned()).await?.expect("the semaphore is never closed");
                        // A task of its own, so pages are encoded and written on every core while
                        // this reader fetches and checks the next.
                        let (syncer, to, readers) = (self.clone(), to.clone(), Arc::clone(readers));
                        writing.push(on_own_task(async move {
                            let _permit = permit;
                            syncer.write(&to, checked, None, Some(&readers.first_load)).await
                        }));
                    }
                    _ => {
                        self.write(to, checked, if last { listing.advance.clone() } else { None }, None).await?;
                        advanced |= last;
                    }
                }
                if last {
                    break;
                }
                if let (Some(readers), Some(claim)) = (readers, claim.as_mut()) {
                    readers.offer(claim, listed);
                }
            }
            Ok::<_, SyncError>(())
        }
        .await;
        // Pages already under way are finished, not dropped, whatever stopped the listing
        // (shutdown, a failed page): a transaction dropped half way would hold its locks,
        // the lease row's among them, until its connection noticed.
        let written = finish_all(&mut writing).await;
        read.and(written)?;
        self.progress.listings_done.fetch_add(1, Ordering::Relaxed);
        if let (Some(advance), false) = (&listing.advance, advanced) {
            self.store.advance(to.kind, advance, Some(&to.lease)).await?;
        }
        Ok(())
    }

    /// The next page, unless shutdown comes first; the wait is counted as fetch time.
    async fn next_page(&self, pages: &mut (impl Stream<Item = Result<Page, ApiError>> + Unpin)) -> Result<Option<Page>, SyncError> {
        let fetch_started = Instant::now();
        let page = tokio::select! {
            biased;
            _ = self.shutdown.cancelled() => return Err(SyncError::Cancelled),
            page = pages.next() => page,
        };
        self.progress.fetch_micros.fetch_add(fetch_started.elapsed().as_micros() as u64, Ordering::Relaxed);
        Ok(page.transpose()?)
    }

    /// Writes one checked page (rows, events, quarantine and, with `advance`, the cursor) in
    /// one transaction, and counts what it changed. While `first_load` holds, by `COPY`
    /// (the table was empty when the backfill began); it stops holding once a page meets
    /// a stored row.
    async fn write(
        &self,
        to: &Destination,
        page: CheckedPage,
        advance: Option<CursorAdvance>,
        first_load: Option<&AtomicBool>,
    ) -> Result<(), SyncError> {
        if let Some(first) = page.rejected.first() {
            tracing::warn!(object = %to.kind, count = page.rejected.len(), first_error = %first.error, "records quarantined");
        }
        let write_started = Instant::now();
        let write = PageWrite {
            kind: to.kind,
            records: page.records,
            rejected: &page.rejected,
            source: to.source,
            emit_events: to.emit_events,
            run_id: Some(to.run_id),
            advance,
            lease: Some(&to.lease),
        };
        let outcome = match first_load.filter(|f| f.load(Ordering::Relaxed)) {
            Some(first_load) => match self.store.write_first_load_page(write).await? {
                FirstLoadWrite::Copied(outcome) => outcome,
                FirstLoadWrite::Upserted(outcome) => {
                    first_load.store(false, Ordering::Relaxed);
                    outcome
                }
            },
            None => self.store.write_page(write).await?,
        };
        self.progress.write_micros.fetch_add(write_started.elapsed().as_micros() as u64, Ordering::Relaxed);
        count(&self.progress, to.kind, &outcome);
        Ok(())
    }
}

/// Checks every item of a page: a valid record is kept when it belongs to `claim` (if
/// given; the claim takes note of every record listed), an invalid one is rejected for
/// quarantine. The items become the records' text (a page's text is held once).
fn check(kind: ObjectKind, items: Vec<Box<RawValue>>, mut claim: Option<&mut WindowClaim>) -> CheckedPage {
    let mut checked = CheckedPage { records: Vec::with_capacity(items.len()), rejected: Vec::new() };
    for item in items {
        match record::check(kind, item) {
            Ok(r) if claim.as_mut().is_none_or(|c| c.observe(r.created_ms.unwrap_or(0))) => checked.records.push(r),
            Ok(_) => {}
            Err(bad) => checked.rejected.push(bad),
        }
    }
    checked
}

/// Runs `work` on a task of its own, so that it can use another core than its caller's (the
/// futures of one task share one thread: a scan's readers and their page writes would all
/// parse and encode on one core). Dropped unfinished (a failed sibling, shutdown), the returned
/// future aborts the task.
pub(super) fn on_own_task(
    work: impl Future<Output = Result<(), SyncError>> + Send + 'static,
) -> impl Future<Output = Result<(), SyncError>> {
    let task = AbortOnDropHandle::new(tokio::spawn(work));
    async move {
        match task.await {
            Ok(done) => done,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(SyncError::Cancelled),
        }
    }
}

/// Awaits every page write in `writing`; the first failure is returned once all have ended.
async fn finish_all(writing: &mut FuturesUnordered<impl Future<Output = Result<(), SyncError>>>) -> Result<(), SyncError> {
    let mut failed = None;
    while let Some(written) = writing.next().await {
        if let Err(e) = written {
            failed.get_or_insert(e);
        }
    }
    failed.map_or(Ok(()), Err)
}

/// Awaits `work` while the pages in `writing` are written; the first failed write fails.
async fn beside<T>(
    writing: &mut FuturesUnordered<impl Future<Output = Result<(), SyncError>>>,
    work: impl Future<Output = T>,
) -> Result<T, SyncError> {
    let mut work = std::pin::pin!(work);
    loop {
        tokio::select! {
            out = &mut work => return Ok(out),
            Some(written) = writing.next() => written?,
        }
    }
}

/// Adds one page's outcome to the process's totals.
fn count(progress: &Progress, kind: ObjectKind, outcome: &PageOutcome) {
    progress.pages.fetch_add(1, Ordering::Relaxed);
    progress.records.fetch_add(outcome.records, Ordering::Relaxed);
    progress.quarantined.fetch_add(outcome.quarantined, Ordering::Relaxed);
    progress.written.rows.add(kind.table(), outcome.rows_written);
    progress.written.events.add(kind.table(), outcome.events_written);
}
