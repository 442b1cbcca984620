//! What the client did, counted: for `/metrics`, the sync's per-pass request counts, and
//! tests that check retries and waits without reading a clock.

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
    time::Duration,
};

use super::purpose::{current_purpose, Purpose};

/// A snapshot of the client's counters since it was built.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// HTTP requests sent, retries included.
    pub sent: u64,
    /// Requests sent again after a retryable failure.
    pub retries: u64,
    /// The waits chosen before those retries, added up.
    pub retry_wait: Duration,
    /// Retries whose wait was set by the server's `Retry-After` rather than the backoff.
    pub server_waits: u64,
    /// Requests that had to wait for the client-side rate limit.
    pub throttled: u64,
    /// `(endpoint, outcome, purpose)` → count; the outcome is the HTTP status, `timeout` or
    /// `transport`, the purpose [`Purpose::label`].
    pub requests: BTreeMap<(String, String, Purpose), u64>,
}

impl ClientStats {
    /// Requests sent, by purpose, every purpose included (0 when none).
    pub fn by_purpose(&self) -> [(Purpose, u64); Purpose::ALL.len()] {
        Purpose::ALL.map(|p| (p, self.requests.iter().filter(|((_, _, q), _)| *q == p).map(|(_, n)| n).sum()))
    }
}

/// The live counters behind [`ClientStats`].
#[derive(Default)]
pub(super) struct Counters {
    sent: AtomicU64,
    retries: AtomicU64,
    retry_wait_us: AtomicU64,
    server_waits: AtomicU64,
    throttled: AtomicU64,
    requests: Mutex<BTreeMap<(String, String, Purpose), u64>>,
}

impl Counters {
    pub(super) fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    pub(super) fn count_sent(&self) {
        self.sent.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn count_throttled(&self) {
        self.throttled.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn count_retry(&self, wait: Duration, set_by_server: bool) {
        self.retries.fetch_add(1, Ordering::Relaxed);
        self.retry_wait_us.fetch_add(wait.as_micros().try_into().unwrap_or(u64::MAX), Ordering::Relaxed);
        if set_by_server {
            self.server_waits.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One answered (or failed) request, under the current task's [`Purpose`].
    pub(super) fn count_outcome(&self, path: &str, outcome: &str) {
        let key = (endpoint(path), outcome.to_owned(), current_purpose());
        *self.requests.lock().expect("no panics while holding it").entry(key).or_default() += 1;
    }

    pub(super) fn snapshot(&self) -> ClientStats {
        ClientStats {
            sent: self.sent(),
            retries: self.retries.load(Ordering::Relaxed),
            retry_wait: Duration::from_micros(self.retry_wait_us.load(Ordering::Relaxed)),
            server_waits: self.server_waits.load(Ordering::Relaxed),
            throttled: self.throttled.load(Ordering::Relaxed),
            requests: self.requests.lock().expect("no panics while holding it").clone(),
        }
    }
}

/// The metrics label for a path: its resource, with record keys folded
/// (`deals/{key}/convert`), so label cardinality does not grow with the data.
pub(super) fn endpoint(path: &str) -> String {
    let mut parts = path.trim_matches('/').split('/');
    let mut label = parts.next().unwrap_or_default().to_owned();
    for (i, part) in parts.enumerate() {
        label.push('/');
        label.push_str(if i % 2 == 0 && !matches!(part, "tags" | "convert" | "files" | "file" | "member") { "{key}" } else { part });
    }
    label
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_labels_fold_record_keys() {
        assert_eq!(endpoint("deals"), "deals");
        assert_eq!(endpoint("/deals/"), "deals");
        assert_eq!(endpoint("deals/deal_1/convert"), "deals/{key}/convert");
        assert_eq!(endpoint("partner-team/stck_9"), "partner-team/{key}");
        assert_eq!(endpoint("deals/d/file/f"), "deals/{key}/file/{key}");
    }

    #[test]
    fn retries_and_their_waits_add_up() {
        let c = Counters::default();
        c.count_retry(Duration::from_millis(5), false);
        c.count_retry(Duration::from_secs(2), true);
        let s = c.snapshot();
        assert_eq!((s.retries, s.server_waits), (2, 1));
        assert_eq!(s.retry_wait, Duration::from_millis(2005));
    }
}
