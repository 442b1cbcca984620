//! What this process has done so far, counted where the work happens (the sync, the
//! scheduler) and read where it is shown (progress lines, `/metrics`, systemd's `STATUS=`).
//! Its own module because both sides use it and neither should import the other.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
    time::Duration,
};

use crate::{metrics::Counts, object::ObjectKind};

/// Running totals across passes, for progress lines and metrics.
#[derive(Debug, Default)]
pub struct Progress {
    pub pages: AtomicU64,
    pub records: AtomicU64,
    pub written: Written,
    pub quarantined: AtomicU64,
    /// What the last pass did, in one line (systemd's `STATUS=`, `status`).
    pub summary: Mutex<Option<String>>,
    /// Time spent waiting for API pages and writing them, summed over concurrent readers
    /// (benchmarks print where a backfill's time goes).
    pub fetch_micros: AtomicU64,
    pub write_micros: AtomicU64,
    /// Listings (backfill and rescan windows, poll windows) planned and finished: the basis
    /// of the progress line's ETA.
    pub listings_planned: AtomicU64,
    pub listings_done: AtomicU64,
}

/// Mirror rows and events written, by object table: `/metrics`' `rows_written` and
/// `events_written`, and added up, the progress lines' totals.
#[derive(Clone, Debug)]
pub struct Written {
    pub rows: Counts,
    pub events: Counts,
}

impl Default for Written {
    fn default() -> Written {
        let by_object = || Counts::new("object", ObjectKind::ALL.map(ObjectKind::table));
        Written { rows: by_object(), events: by_object() }
    }
}

impl Progress {
    /// Time left at the pace so far, once at least one listing has finished.
    pub fn eta(&self, elapsed: Duration) -> Option<Duration> {
        let planned = self.listings_planned.load(Ordering::Relaxed);
        let done = self.listings_done.load(Ordering::Relaxed);
        (done > 0 && planned >= done).then(|| elapsed.mul_f64((planned - done) as f64 / done as f64))
    }

    /// Remembers what the last pass did.
    pub fn set_summary(&self, line: String) {
        *self.summary.lock().expect("no panics while holding it") = Some(line);
    }

    pub fn summary(&self) -> Option<String> {
        self.summary.lock().expect("no panics while holding it").clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_eta_extrapolates_the_pace_of_finished_listings() {
        let p = Progress::default();
        assert_eq!(p.eta(Duration::from_secs(10)), None, "nothing finished yet");
        p.listings_planned.store(4, Ordering::Relaxed);
        p.listings_done.store(1, Ordering::Relaxed);
        assert_eq!(p.eta(Duration::from_secs(10)), Some(Duration::from_secs(30)));
        p.listings_done.store(4, Ordering::Relaxed);
        assert_eq!(p.eta(Duration::from_secs(10)), Some(Duration::ZERO));
    }
}
