//! Retries: which failures, how long to wait, and what to tell the operator.
//!
//! The waits are the one [`Backoff`](crate::backoff::Backoff) every retry in the mirror uses
//! (capped exponential, full jitter); a `Retry-After` from the server is a floor on the wait.

use std::{future::Future, time::Duration};

use chrono::{DateTime, Utc};

use super::{ApiClient, ApiError, ErrorClass};

/// The longest `Retry-After` taken at its word; beyond it a server is more likely confused.
const MAX_SERVER_WAIT: Duration = Duration::from_secs(3600);

impl ApiClient {
    /// Runs `attempt` until it succeeds, fails for good, or the retries run out. Only
    /// [`ErrorClass::Retryable`] failures are retried, and only when `retry` is set: the
    /// client never sends a create twice on its own.
    pub(super) async fn with_retries<T, F, Fut>(&self, retry: bool, path: &str, mut attempt: F) -> Result<T, ApiError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        let config = &self.inner.config;
        let mut retries = 0_usize;
        loop {
            let error = match attempt().await {
                Ok(value) => return Ok(value),
                Err(e) if retry && e.class() == ErrorClass::Retryable && retries < config.max_retries => e,
                Err(e) => return Err(e),
            };
            let server_wait = error.retry_after();
            let wait = config.backoff.delay_honouring(u32::try_from(retries).unwrap_or(u32::MAX), server_wait);
            retries += 1;
            self.inner.counters.count_retry(wait, server_wait == Some(wait));
            let (wait_ms, said) = (u64::try_from(wait.as_millis()).unwrap_or(u64::MAX), crate::telemetry::error_chain(&error));
            // A 429 now and then is how the budget finds the allowed rate (counted on /metrics,
            // alerted on when it becomes most of the time): not worth a warning each.
            if matches!(error, ApiError::RateLimited { .. }) {
                tracing::debug!(path, attempt = retries, wait_ms, error = %said, "PartnerStack asked to slow down; retrying");
            } else {
                tracing::warn!(path, attempt = retries, wait_ms, error = %said, "PartnerStack request failed; retrying");
            }
            crate::liveness::wait_for(wait);
            tokio::time::sleep(wait).await;
        }
    }
}

/// `Retry-After` as delay-seconds or as an HTTP date (relative to `now`); `None` when it is
/// neither. Capped at `MAX_SERVER_WAIT` (an hour).
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
}
