//! Retries: which failures, how long to wait, and what to tell the operator.
//!
//! The schedule is backon's capped exponential one. Its own jitter adds up to one more
//! delay on top, which can overshoot `max_backoff`, so the jitter is applied here instead:
//! "full jitter" between `min_backoff` and the scheduled delay, which spreads clients out
//! and never exceeds the cap. A `Retry-After` from the server is a floor on the wait.

use std::{future::Future, time::Duration};

use backon::{BackoffBuilder, ExponentialBuilder, Retryable};
use chrono::{DateTime, Utc};
use rand::Rng;

use super::{ApiClient, ApiError, ErrorClass};

/// The longest `Retry-After` taken at its word; beyond it a server is more likely confused.
const MAX_SERVER_WAIT: Duration = Duration::from_secs(3600);

impl ApiClient {
    /// Runs `attempt` until it succeeds, fails for good, or the retries run out. Only
    /// [`ErrorClass::Retryable`] failures are retried, and only when `retry` is set: the
    /// client never sends a create twice on its own.
    pub(super) async fn with_retries<T, F, Fut>(&self, retry: bool, path: &str, attempt: F) -> Result<T, ApiError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        let config = &self.inner.config;
        let schedule = ExponentialBuilder::default()
            .with_min_delay(config.min_backoff)
            .with_max_delay(config.max_backoff)
            .with_max_times(config.max_retries);
        let mut failed_attempts = 0_usize;
        attempt
            .retry(schedule.build())
            .sleep(tokio::time::sleep)
            .when(|e| retry && e.class() == ErrorClass::Retryable)
            .adjust(|e, scheduled| scheduled.map(|d| wait(full_jitter(config.min_backoff, d), e.retry_after())))
            .notify(|e, wait| {
                failed_attempts += 1;
                crate::liveness::wait_for(wait);
                self.inner.counters.count_retry(wait, e.retry_after() == Some(wait));
                tracing::warn!(
                    path,
                    attempt = failed_attempts,
                    wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                    error = %crate::telemetry::error_chain(e),
                    "PartnerStack request failed; retrying"
                );
            })
            .await
    }
}

/// A random delay between `floor` and `scheduled` (both included).
fn full_jitter(floor: Duration, scheduled: Duration) -> Duration {
    if scheduled <= floor {
        return scheduled;
    }
    rand::thread_rng().gen_range(floor..=scheduled)
}

/// The backoff, or longer when the server asked for longer.
fn wait(backoff: Duration, server: Option<Duration>) -> Duration {
    server.map_or(backoff, |s| backoff.max(s))
}

/// `Retry-After` as delay-seconds or as an HTTP date (relative to `now`); `None` when it is
/// neither. Capped at [`MAX_SERVER_WAIT`].
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    let wait = if let Ok(seconds) = value.parse::<f64>() {
        if !seconds.is_finite() || seconds < 0.0 {
            return None;
        }
        Duration::from_secs_f64(seconds.min(MAX_SERVER_WAIT.as_secs_f64()))
    } else {
        let when = DateTime::parse_from_rfc2822(value).ok()?.with_timezone(&Utc);
        (when - now).to_std().unwrap_or_default()
    };
    Some(wait.min(MAX_SERVER_WAIT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_delay_seconds() {
        let now = Utc::now();
        assert_eq!(parse_retry_after("2", now), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("86400", now), Some(MAX_SERVER_WAIT));
        assert_eq!(parse_retry_after("-3", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn retry_after_reads_http_dates_relative_to_now() {
        let now = DateTime::parse_from_rfc2822("Wed, 21 Oct 2015 07:28:00 GMT").unwrap().with_timezone(&Utc);
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now), Some(Duration::ZERO), "a date in the past means now");
    }

    #[test]
    fn jitter_stays_between_the_floor_and_the_scheduled_delay() {
        let (floor, scheduled) = (Duration::from_millis(200), Duration::from_secs(30));
        for _ in 0..1000 {
            let d = full_jitter(floor, scheduled);
            assert!(d >= floor && d <= scheduled, "{d:?}");
        }
        assert_eq!(full_jitter(floor, floor), floor);
    }

    #[test]
    fn the_server_wait_is_a_floor_not_a_ceiling() {
        let backoff = Duration::from_secs(3);
        assert_eq!(wait(backoff, None), backoff);
        assert_eq!(wait(backoff, Some(Duration::from_secs(1))), backoff);
        assert_eq!(wait(backoff, Some(Duration::from_secs(10))), Duration::from_secs(10));
    }
}
