//! A complete read of one object (backfills, rescans, key scans): every record created up to
//! a moment, by disjoint created windows read at the same time, or team by team for
//! partner-team members; the cursor moves to that moment once every listing is read.

use std::sync::atomic::Ordering;

use futures::{stream, StreamExt, TryStreamExt};

use super::{
    read::{Destination, Listing},
    window, SyncError, Syncer,
};
use crate::{
    object::{ChangeFilter, ObjectKind},
    partnerstack::{segment, ListQuery},
    store::CursorAdvance,
};

/// Created windows per concurrent reader: more, smaller windows even out their sizes, so
/// one large window does not leave the other readers idle at the end.
const WINDOWS_PER_READER: usize = 4;

impl Syncer {
    /// Reads every record created up to `until`, then moves the cursor to `until` (changes
    /// made during the read have a later `updated_at`, so the next poll reads them).
    pub(super) async fn read_everything(&self, to: &Destination, until: i64) -> Result<(), SyncError> {
        let listings = self.scan_listings(to.kind, until).await?;
        self.progress.listings_planned.fetch_add(listings.len() as u64, Ordering::Relaxed);
        stream::iter(listings.into_iter().map(|listing| self.read(to, listing)))
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
        self.store.advance(to.kind, &advance, Some(&to.lease)).await?;
        Ok(())
    }

    /// The listings that together cover every record created up to `until`.
    async fn scan_listings(&self, kind: ObjectKind, until: i64) -> Result<Vec<Listing>, SyncError> {
        if kind.change_filter() == ChangeFilter::PerTeam {
            let teams = self.store.team_keys().await?;
            return Ok(teams
                .into_iter()
                .map(|team| Listing {
                    path: format!("{}/{}", kind.api_path(), segment(&team)),
                    query: ListQuery::default(),
                    created: None,
                    advance: None,
                })
                .collect());
        }
        let oldest =
            if self.settings.backfill_concurrency > 1 { window::oldest_created(&self.api, kind.api_path(), until).await? } else { None };
        let parts = self.settings.backfill_concurrency * WINDOWS_PER_READER;
        Ok(window::split_created(oldest, until, parts)
            .into_iter()
            .map(|created| Listing { path: kind.api_path().to_owned(), query: created.query(), created: Some(created), advance: None })
            .collect())
    }
}
