//! The `daemons` table: each running daemon's line, for `status` in another process.

use chrono::{DateTime, Utc};
use sqlx::FromRow;

use super::{Store, StoreError};

/// One daemon as it last reported itself.
#[derive(Clone, Debug, FromRow)]
pub struct DaemonLine {
    pub holder: String,
    pub version: String,
    pub started_at: DateTime<Utc>,
    pub seen_at: DateTime<Utc>,
    pub status: String,
    pub problem: Option<String>,
    /// Seconds since `seen_at`, by the database's clock.
    pub silent_seconds: f64,
}

impl Store {
    /// Creates or refreshes this daemon's line.
    pub async fn report_daemon(&self, holder: &str, version: &str, status: &str, problem: Option<&str>) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO daemons (holder, version, status, problem) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (holder) DO UPDATE SET version = excluded.version, seen_at = now(), status = excluded.status, \
                 problem = excluded.problem",
        )
        .bind(holder)
        .bind(version)
        .bind(status)
        .bind(problem)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Removes this daemon's line (a clean stop).
    pub async fn forget_daemon(&self, holder: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM daemons WHERE holder = $1").bind(holder).execute(self.pool()).await?;
        Ok(())
    }

    /// Every daemon's line, most recently seen first.
    pub async fn daemons(&self) -> Result<Vec<DaemonLine>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT holder, version, started_at, seen_at, status, problem, extract(epoch FROM now() - seen_at)::float8 AS silent_seconds \
             FROM daemons ORDER BY seen_at DESC",
        )
        .fetch_all(self.pool())
        .await?)
    }
}
