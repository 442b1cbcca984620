//! Created-time windows for backfills and rescans, placed by volume.
//!
//! `created_at` never changes, so disjoint created windows split a listing exactly: each
//! record belongs to one window, and windows can be read at the same time without two of
//! them ever writing the same record.
//!
//! A scan starts with one window over everything; a reader that finds its window dense
//! while it reads it hands the older part to an idle reader (see [`WindowClaim::older_part`]). So a
//! small object costs one or two requests and no probes, and every window but its last page
//! reads full pages: requests ≈ records / page size + about one per window.

use crate::partnerstack::ListQuery;

/// A split-off window, and what its reader keeps, should hold at least this many full pages:
/// each window costs about one part-filled request, so windows this large keep requests
/// within a few percent of records / page size.
pub const MIN_WINDOW_PAGES: u64 = 16;

/// Records created in `[from, until)`; `from = None` means "since the beginning".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CreatedWindow {
    pub from: Option<i64>,
    pub until: i64,
}

impl CreatedWindow {
    /// Everything created up to `until` (inclusive).
    pub fn everything_until(until: i64) -> CreatedWindow {
        CreatedWindow { from: None, until: until + 1 }
    }

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

/// The part of a window its reader still owns, and what the reader has seen of it so far:
/// the listing goes newest-created first, so the records still to come were created at or
/// before the oldest one seen, and the density seen lately guesses where they lie.
#[derive(Clone, Debug)]
pub struct WindowClaim {
    window: CreatedWindow,
    /// `created_at` of the latest record listed.
    oldest: Option<i64>,
    /// `(kept, created_ms)` at the last two times `kept` reached a power of two: the
    /// density is taken since the older one, over the newer half or more of what was read,
    /// so it follows a history whose density changes (sparse years, then a crowded day).
    checkpoints: [(u64, i64); 2],
    /// Records listed inside the window so far.
    kept: u64,
    /// False once a record came newer than one before it: the listing is not in the
    /// documented order, so the reader neither splits nor stops early (it reads its listing
    /// to the end, which is right whatever the order).
    ordered: bool,
}

impl WindowClaim {
    pub fn new(window: CreatedWindow) -> WindowClaim {
        WindowClaim { window, oldest: None, kept: 0, checkpoints: [(0, 0); 2], ordered: true }
    }

    /// The records this reader still keeps.
    pub fn window(&self) -> CreatedWindow {
        self.window
    }

    /// Takes note of one listed record's `created_at`, in listing order; true when it
    /// belongs to the claim.
    pub fn observe(&mut self, created_ms: i64) -> bool {
        if self.oldest.is_some_and(|o| created_ms > o) {
            self.ordered = false;
        }
        self.oldest = Some(self.oldest.map_or(created_ms, |o| o.min(created_ms)));
        let inside = self.window.contains(created_ms);
        if inside {
            self.kept += 1;
            if self.kept.is_power_of_two() {
                self.checkpoints = [self.checkpoints[1], (self.kept, created_ms)];
            }
        }
        inside
    }

    /// True once the listing has gone below the claim's start: what follows belongs to the
    /// reader the older part was handed to.
    pub fn passed(&self) -> bool {
        self.ordered && matches!((self.window.from, self.oldest), (Some(f), Some(o)) if o < f)
    }

    /// The older part of what is left to read, if there is enough of it to be worth a
    /// window of its own, going by the density seen so far (`page_size`: records in a full
    /// page). The claim is unchanged until it [gives the part up](WindowClaim::give_up).
    ///
    /// A bounded remainder is halved. An open one (towards the past, where nothing tells
    /// how far records go) is cut once this reader has read `MIN_WINDOW_PAGES` pages: it
    /// keeps about as many records again as it has read, at the density seen lately, and
    /// hands off everything older.
    pub fn older_part(&self, page_size: usize) -> Option<CreatedWindow> {
        let (Some(oldest), [(since_kept, since), _]) = (self.oldest, self.checkpoints) else { return None };
        let page = page_size.max(1) as f64;
        let min_window = MIN_WINDOW_PAGES as f64 * page;
        if !self.ordered || (self.kept as f64) < page || since_kept == 0 {
            return None;
        }
        // Records per millisecond lately (over a span of at least one millisecond).
        let density = (self.kept - since_kept) as f64 / (since - oldest).max(1) as f64;
        let at = match self.window.from {
            Some(from) => {
                let left = oldest - from; // milliseconds `[from, oldest)` still to read
                if density * (left as f64) < 2.0 * min_window {
                    return None;
                }
                from + left / 2
            }
            None => {
                if (self.kept as f64) < min_window {
                    return None;
                }
                let keep_ms = (self.kept as f64 / density).ceil() as i64;
                oldest.saturating_sub(keep_ms.max(1))
            }
        };
        // The claim would keep `[at, until)`, which still holds the oldest millisecond seen
        // (more records of it may follow); the other reader reads `[from, at)`.
        if at > oldest || self.window.from.is_some_and(|f| at <= f) {
            return None;
        }
        Some(CreatedWindow { from: self.window.from, until: at })
    }

    /// Shrinks the claim to what is newer than `older` (an [`older_part`] of it), which
    /// another reader now reads.
    ///
    /// [`older_part`]: WindowClaim::older_part
    pub fn give_up(&mut self, older: CreatedWindow) {
        debug_assert_eq!(older.from, self.window.from);
        self.window.from = Some(older.until);
    }

    /// [`older_part`](WindowClaim::older_part), given up at once.
    #[cfg(test)]
    fn split(&mut self, page_size: usize) -> Option<CreatedWindow> {
        let older = self.older_part(page_size)?;
        self.give_up(older);
        Some(older)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_holds_its_start_and_not_its_end() {
        let w = CreatedWindow { from: Some(100), until: 200 };
        assert!(w.contains(100) && w.contains(199));
        assert!(!w.contains(99) && !w.contains(200));
        assert!(CreatedWindow { from: None, until: 200 }.contains(0), "open towards the past");
        let query = w.query();
        assert_eq!((query.min_created, query.max_created), (Some(99), Some(201)));
        assert_eq!(CreatedWindow::everything_until(99), CreatedWindow { from: None, until: 100 });
    }

    /// A claim that has read `pages` full pages of 100 records, one record per millisecond
    /// going down from `top`.
    fn read(window: CreatedWindow, top: i64, pages: i64) -> WindowClaim {
        let mut claim = WindowClaim::new(window);
        for i in 0..pages * 100 {
            assert!(claim.observe(top - i));
        }
        claim
    }

    #[test]
    fn a_small_open_window_is_never_split() {
        let mut claim = read(CreatedWindow::everything_until(1_000_000), 1_000_000, MIN_WINDOW_PAGES as i64 - 1);
        assert_eq!(claim.split(100), None);
        assert_eq!(claim.window(), CreatedWindow::everything_until(1_000_000));
    }

    #[test]
    fn an_open_window_keeps_as_much_again_as_it_has_read_and_hands_off_the_rest() {
        let pages = MIN_WINDOW_PAGES as i64;
        let mut claim = read(CreatedWindow::everything_until(1_000_000), 1_000_000, pages);
        let oldest = 1_000_000 - pages * 100 + 1;
        let older = claim.split(100).expect("dense enough");
        assert_eq!(older.from, None);
        assert_eq!(claim.window().from, Some(older.until), "the two parts meet");
        assert!(claim.window().contains(oldest), "the oldest millisecond seen stays with the reader");
        // About as many milliseconds again as were read: as many records at this density.
        assert!((older.until - (oldest - pages * 100)).abs() <= 2, "{older:?}");
        assert!(!claim.passed());
        assert!(!claim.observe(older.until - 1), "older records are the other reader's");
        assert!(claim.passed(), "and the reader stops once it sees one");
    }

    #[test]
    fn a_bounded_remainder_is_halved_only_when_it_holds_two_windows() {
        // 16 pages read over 1,600 ms; 10,000 ms left at that density is 100 pages.
        let window = CreatedWindow { from: Some(0), until: 11_601 };
        let mut claim = read(window, 11_600, 16);
        let older = claim.split(100).unwrap();
        assert_eq!(older, CreatedWindow { from: Some(0), until: 5_000 });
        assert_eq!(claim.window(), CreatedWindow { from: Some(5_000), until: 11_601 });
        // 1,000 ms left is 10 pages: not worth a window of its own.
        let mut small = read(CreatedWindow { from: Some(10_000), until: 11_601 }, 11_600, 6);
        assert_eq!(small.split(100), None);
    }

    #[test]
    fn records_in_one_millisecond_never_split_that_millisecond() {
        let mut claim = WindowClaim::new(CreatedWindow::everything_until(500));
        for _ in 0..5_000 {
            claim.observe(500);
        }
        let older = claim.split(100).expect("very dense");
        assert!(older.until <= 500 && claim.window().contains(500), "{older:?} {:?}", claim.window());
    }

    #[test]
    fn a_listing_out_of_order_is_neither_split_nor_cut_short() {
        let mut claim = read(CreatedWindow::everything_until(1_000_000), 1_000_000, 20);
        claim.observe(1_000_000);
        assert_eq!(claim.split(100), None);
        let mut bounded = WindowClaim::new(CreatedWindow { from: Some(50), until: 100 });
        bounded.observe(60);
        bounded.observe(10);
        bounded.observe(70);
        assert!(!bounded.passed());
    }

    #[test]
    fn splitting_never_makes_empty_or_reversed_windows() {
        // Everything read sits in one millisecond just above the window's start.
        let mut claim = WindowClaim::new(CreatedWindow { from: Some(99), until: 101 });
        for _ in 0..10_000 {
            claim.observe(100);
        }
        if let Some(older) = claim.split(100) {
            assert!(older.from.is_none_or(|f| f < older.until), "{older:?}");
        }
        let w = claim.window();
        assert!(w.from.is_none_or(|f| f < w.until), "{w:?}");
    }
}
