//! The `api_requests` table: API requests by minute and purpose, added up by every process
//! on this mirror, for `status` (requests in the last hour and day by purpose).
//!
//! A table of its own rather than `sync_runs.requests`: write-backs, probes and webhook reads
//! are not passes, and a pass's count includes whatever else the client sent meanwhile.

use super::{Store, StoreError};
use crate::partnerstack::Purpose;

/// Requests by purpose over the last hour and the last day.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestTally {
    /// `(purpose label, last hour, last day)`, every purpose, in [`Purpose::ALL`] order.
    pub by_purpose: Vec<(String, i64, i64)>,
}

impl Store {
    /// Adds requests sent (by purpose, since the last call) to the current minute's rows.
    pub async fn add_requests(&self, sent: &[(Purpose, u64)]) -> Result<(), StoreError> {
        let (purposes, counts): (Vec<&str>, Vec<i64>) =
            sent.iter().filter(|(_, n)| *n > 0).map(|(p, n)| (p.label(), i64::try_from(*n).unwrap_or(i64::MAX))).unzip();
        if purposes.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO api_requests (minute, purpose, requests) \
             SELECT date_trunc('minute', now()), p, n FROM unnest($1::text[], $2::bigint[]) AS t(p, n) \
             ON CONFLICT (minute, purpose) DO UPDATE SET requests = api_requests.requests + excluded.requests",
        )
        .bind(&purposes)
        .bind(&counts)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Removes at most `limit` rows of minutes older than `max_age` (kept as long as
    /// `sync_runs`).
    pub async fn prune_request_tally(&self, max_age: std::time::Duration, limit: i64) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "DELETE FROM api_requests WHERE (minute, purpose) IN (SELECT minute, purpose FROM api_requests \
                 WHERE minute < now() - make_interval(secs => $1) ORDER BY minute LIMIT $2)",
        )
        .bind(max_age.as_secs_f64())
        .bind(limit)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }

    /// Requests in the last hour and day, by purpose, 0 included.
    pub async fn request_tally(&self) -> Result<RequestTally, StoreError> {
        let labels: Vec<&str> = Purpose::ALL.iter().map(|p| p.label()).collect();
        let by_purpose = sqlx::query_as(
            "SELECT p.purpose, \
                    coalesce(sum(r.requests) FILTER (WHERE r.minute > now() - interval '1 hour'), 0)::bigint, \
                    coalesce(sum(r.requests), 0)::bigint \
             FROM unnest($1::text[]) WITH ORDINALITY AS p(purpose, n) \
             LEFT JOIN api_requests r ON r.purpose = p.purpose AND r.minute > now() - interval '1 day' \
             GROUP BY p.purpose, p.n ORDER BY p.n",
        )
        .bind(&labels)
        .fetch_all(self.pool())
        .await?;
        Ok(RequestTally { by_purpose })
    }
}
