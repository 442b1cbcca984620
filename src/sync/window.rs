//! Created-time windows for backfills and rescans.
//!
//! `created_at` never changes, so disjoint created windows split a listing exactly: each
//! record belongs to one window, and windows can be read at the same time without two of
//! them ever writing the same record.

use crate::partnerstack::{ApiClient, ApiError, ListQuery};

const DAY_MS: i64 = 86_400_000;

/// Records created in `[from, until)`; `from = None` means "since the beginning".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CreatedWindow {
    pub from: Option<i64>,
    pub until: i64,
}

impl CreatedWindow {
    /// True when a record created at `created_ms` belongs to this window.
    pub fn contains(&self, created_ms: i64) -> bool {
        self.from.is_none_or(|f| created_ms >= f) && created_ms < self.until
    }

    /// The list query for this window, one millisecond wider on each side: right under
    /// inclusive and exclusive bounds alike (records outside are dropped by [`contains`]).
    ///
    /// [`contains`]: CreatedWindow::contains
    pub fn query(&self) -> ListQuery {
        ListQuery { min_created: self.from.map(|f| f - 1), max_created: Some(self.until + 1), ..ListQuery::default() }
    }
}

/// Splits `[oldest, until]` into at most `parts` equal windows, newest first; the oldest
/// window is open towards the past so a record older than the probe found is still read.
pub fn split_created(oldest: Option<i64>, until: i64, parts: usize) -> Vec<CreatedWindow> {
    let end = until + 1; // `until` itself is included
    let Some(oldest) = oldest.filter(|o| *o < end) else {
        return vec![CreatedWindow { from: None, until: end }];
    };
    let parts = parts.max(1) as i64;
    let span = end - oldest;
    let step = (span / parts).max(1);
    let mut bounds: Vec<i64> = (1..parts).map(|i| oldest + i * step).filter(|b| *b < end).collect();
    bounds.dedup();
    let mut windows = Vec::with_capacity(bounds.len() + 1);
    let mut upper = end;
    for b in bounds.into_iter().rev() {
        windows.push(CreatedWindow { from: Some(b), until: upper });
        upper = b;
    }
    windows.push(CreatedWindow { from: None, until: upper });
    windows
}

/// About when the oldest record was created (to a day), by bisecting on `max_created` with
/// one-record pages: some fifteen requests, worth it to spread a backfill over several
/// concurrent windows. `None` when there is no record at all.
pub async fn oldest_created(api: &ApiClient, path: &str, until: i64) -> Result<Option<i64>, ApiError> {
    let any_created_before = |t: i64| async move {
        let query = ListQuery { max_created: Some(t), limit: Some(1), ..ListQuery::default() };
        api.list_page(path, &query, None).await.map(|p| !p.items.is_empty())
    };
    if !any_created_before(until + 1).await? {
        return Ok(None);
    }
    // Invariant: some record was created before `high`; bisect until the gap is a day.
    let (mut low, mut high) = (0_i64, until + 1);
    while high - low > DAY_MS {
        let mid = low + (high - low) / 2;
        if any_created_before(mid).await? {
            high = mid;
        } else {
            low = mid;
        }
    }
    Ok(Some(low))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_disjoint_and_cover_everything_up_to_until() {
        let windows = split_created(Some(1_000), 10_999, 4);
        assert_eq!(windows.first().unwrap().until, 11_000);
        assert_eq!(windows.last().unwrap().from, None);
        for pair in windows.windows(2) {
            assert_eq!(pair[0].from, Some(pair[1].until), "{windows:?}");
        }
        assert_eq!(windows.len(), 4);
    }

    #[test]
    fn a_window_holds_its_start_and_not_its_end() {
        let w = CreatedWindow { from: Some(100), until: 200 };
        assert!(w.contains(100) && w.contains(199));
        assert!(!w.contains(99) && !w.contains(200));
        assert!(CreatedWindow { from: None, until: 200 }.contains(0), "open towards the past");
        let query = w.query();
        assert_eq!((query.min_created, query.max_created), (Some(99), Some(201)));
    }

    #[test]
    fn no_oldest_record_means_one_open_window() {
        assert_eq!(split_created(None, 99, 8), vec![CreatedWindow { from: None, until: 100 }]);
    }

    #[test]
    fn a_tiny_span_never_makes_empty_or_reversed_windows() {
        let windows = split_created(Some(5), 6, 16);
        assert!(windows.iter().all(|w| w.from.is_none_or(|f| f < w.until)), "{windows:?}");
        assert_eq!(windows.first().unwrap().until, 7);
    }
}
