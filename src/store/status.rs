//! What `partnerstack-mirror status` reports, read in a handful of queries.

use std::fmt;

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{Store, StoreError};
use crate::object::ObjectKind;

/// One object's line.
#[derive(Clone, Debug)]
pub struct ObjectStatus {
    pub kind: ObjectKind,
    pub rows: i64,
    pub deleted: i64,
    pub quarantined: i64,
    pub cursor: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
}

/// The whole report.
#[derive(Clone, Debug)]
pub struct StatusReport {
    pub objects: Vec<ObjectStatus>,
    pub events: i64,
    pub last_event_id: Option<i64>,
    /// `(status, count)`, when the write-back queue exists.
    pub queue: Vec<(String, i64)>,
    /// The daemons working on this mirror, as they last reported themselves.
    pub daemons: Vec<super::DaemonLine>,
    /// What retention last pruned, per table.
    pub prunes: Vec<super::PruneLine>,
    /// Webhook deliveries: state, position, lag, dead letters.
    pub deliveries: Vec<super::DeliveryLine>,
    /// API requests in the last hour and day, by purpose (empty on a mirror not migrated
    /// to `api_requests` yet).
    pub requests: super::RequestTally,
    /// The last run of each push.
    pub pushes: Vec<super::PushRunLine>,
}

impl Store {
    pub async fn status(&self) -> Result<StatusReport, StoreError> {
        let mut objects = Vec::new();
        for kind in ObjectKind::ALL {
            let row = sqlx::query(&format!(
                "SELECT (SELECT count(*) FROM {t}) AS rows, (SELECT count(*) FROM {t} WHERE deleted_at IS NOT NULL) AS deleted, \
                        (SELECT count(*) FROM quarantine WHERE object = $1) AS quarantined, \
                        s.cursor, s.last_success_at, s.last_error \
                 FROM (SELECT 1) AS one LEFT JOIN sync_state s ON s.object = $1",
                t = kind.table()
            ))
            .bind(kind.table())
            .fetch_one(self.pool())
            .await?;
            objects.push(ObjectStatus {
                kind,
                rows: row.try_get("rows")?,
                deleted: row.try_get("deleted")?,
                quarantined: row.try_get("quarantined")?,
                cursor: row.try_get("cursor")?,
                last_success_at: row.try_get("last_success_at")?,
                last_error: row.try_get("last_error")?,
            });
        }
        let (events, last_event_id): (i64, Option<i64>) =
            sqlx::query_as("SELECT count(*), max(id) FROM events").fetch_one(self.pool()).await?;
        let has_queue: bool = sqlx::query_scalar("SELECT to_regclass('write_queue') IS NOT NULL").fetch_one(self.pool()).await?;
        let queue = if has_queue { self.queue_depth().await? } else { Vec::new() };
        let daemons = self.daemons().await?;
        let prunes = self.prunes().await?;
        let deliveries = self.deliveries().await?;
        let has_tally: bool = sqlx::query_scalar("SELECT to_regclass('api_requests') IS NOT NULL").fetch_one(self.pool()).await?;
        let requests = if has_tally { self.request_tally().await? } else { super::RequestTally::default() };
        let has_pushes: bool = sqlx::query_scalar("SELECT to_regclass('push_runs') IS NOT NULL").fetch_one(self.pool()).await?;
        let pushes = if has_pushes { self.last_push_runs().await? } else { Vec::new() };
        Ok(StatusReport { objects, events, last_event_id, queue, daemons, prunes, deliveries, requests, pushes })
    }
}

impl fmt::Display for StatusReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let when = |t: &Option<DateTime<Utc>>| t.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string()).unwrap_or_else(|| "-".into());
        writeln!(
            f,
            "{:<22} {:>9} {:>8} {:>6}  {:<19}  {:<19}  last error",
            "object", "rows", "deleted", "quar.", "cursor (UTC)", "last success"
        )?;
        for o in &self.objects {
            writeln!(
                f,
                "{:<22} {:>9} {:>8} {:>6}  {:<19}  {:<19}  {}",
                o.kind.table(),
                o.rows,
                o.deleted,
                o.quarantined,
                when(&o.cursor),
                when(&o.last_success_at),
                o.last_error.as_deref().unwrap_or("-")
            )?;
        }
        writeln!(f, "\nevents: {} (last id {})", self.events, self.last_event_id.map_or("-".into(), |i| i.to_string()))?;
        if !self.queue.is_empty() {
            let parts: Vec<String> = self.queue.iter().map(|(s, n)| format!("{s} {n}")).collect();
            writeln!(f, "write queue: {}", parts.join(", "))?;
        }
        if !self.requests.by_purpose.is_empty() {
            let (hour, day) = self.requests.by_purpose.iter().fold((0, 0), |(h, d), (_, hour, day)| (h + hour, d + day));
            writeln!(f, "API requests, last hour / last day: {hour} / {day}")?;
            for (purpose, hour, day) in &self.requests.by_purpose {
                writeln!(f, "  {purpose:<12} {hour:>9} / {day}")?;
            }
        }
        for d in &self.deliveries {
            writeln!(f, "{d}")?;
        }
        for p in &self.pushes {
            writeln!(f, "push {}: last run {p}", p.push)?;
        }
        for p in &self.prunes {
            writeln!(
                f,
                "pruned {}: {} at {} ({} in all){}",
                p.target,
                p.last_removed,
                when(&Some(p.last_run_at)),
                p.total_removed,
                p.note.as_deref().map(|n| format!("; {n}")).unwrap_or_default()
            )?;
        }
        if self.daemons.is_empty() {
            writeln!(f, "daemons: none running")?;
        }
        for d in &self.daemons {
            // A daemon reports every few seconds; one silent for minutes died without a clean stop.
            let silence = if d.silent_seconds > STALE_DAEMON_SECONDS {
                format!(" (silent for {:.0}s: stopped without cleaning up?)", d.silent_seconds)
            } else {
                String::new()
            };
            writeln!(f, "daemon {} v{} since {}{silence}: {}", d.holder, d.version, when(&Some(d.started_at)), d.status)?;
            if let Some(problem) = &d.problem {
                writeln!(f, "  PROBLEM: {problem}")?;
            }
        }
        Ok(())
    }
}

/// A daemon silent for longer than this is reported as possibly dead.
const STALE_DAEMON_SECONDS: f64 = 120.0;

/// What `/metrics` reads from the database at each scrape: cheap queries only.
#[derive(Clone, Debug, Default)]
pub struct MetricsSnapshot {
    pub objects: Vec<ObjectFreshness>,
    pub queue: Vec<(String, i64)>,
    /// How long the oldest due pending request has waited past its `run_after` (0: none).
    pub queue_oldest_due_seconds: f64,
    pub quarantine: Vec<(String, i64)>,
    pub last_event_id: i64,
    pub deliveries: Vec<super::DeliveryLine>,
}

#[derive(Clone, Debug)]
pub struct ObjectFreshness {
    pub object: String,
    pub lag_seconds: Option<f64>,
    pub last_success_unix: Option<f64>,
    pub last_success_age_seconds: Option<f64>,
    /// When a pass of the object last failed (an alert compares it with the last success).
    pub last_error_unix: Option<f64>,
}

impl Store {
    /// Write-back requests by status, every status in its order of life and 0 included: a
    /// dashboard or an alert on `{status="pending"}` needs the series while it is empty.
    async fn queue_depth(&self) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT s.status, count(q.id) \
             FROM unnest(ARRAY['pending', 'running', 'succeeded', 'failed', 'cancelled']) WITH ORDINALITY AS s(status, n) \
             LEFT JOIN write_queue q ON q.status = s.status GROUP BY s.status, s.n ORDER BY s.n",
        )
        .fetch_all(self.pool())
        .await?)
    }

    pub async fn metrics_snapshot(&self) -> Result<MetricsSnapshot, StoreError> {
        let objects = sqlx::query_as::<_, (String, Option<f64>, Option<f64>, Option<f64>, Option<f64>)>(
            "SELECT object, extract(epoch FROM now() - cursor)::float8, extract(epoch FROM last_success_at)::float8, \
                    extract(epoch FROM now() - last_success_at)::float8, extract(epoch FROM last_error_at)::float8 \
             FROM sync_state ORDER BY object",
        )
        .fetch_all(self.pool())
        .await?
        .into_iter()
        .map(|(object, lag_seconds, last_success_unix, last_success_age_seconds, last_error_unix)| ObjectFreshness {
            object,
            lag_seconds,
            last_success_unix,
            last_success_age_seconds,
            last_error_unix,
        })
        .collect();
        let has_queue: bool = sqlx::query_scalar("SELECT to_regclass('write_queue') IS NOT NULL").fetch_one(self.pool()).await?;
        let (queue, queue_oldest_due_seconds) = if has_queue {
            let depth = self.queue_depth().await?;
            // Reads the claimable index: cheap however many finished requests the table keeps.
            let oldest: f64 = sqlx::query_scalar(
                "SELECT coalesce(extract(epoch FROM now() - min(run_after)), 0)::float8 FROM write_queue \
                 WHERE status = 'pending' AND run_after <= now()",
            )
            .fetch_one(self.pool())
            .await?;
            (depth, oldest)
        } else {
            (Vec::new(), 0.0)
        };
        // Every object synced or quarantined, 0 included.
        let quarantine = sqlx::query_as(
            "SELECT o.object, count(q.object) FROM (SELECT object FROM sync_state UNION SELECT object FROM quarantine) AS o(object) \
             LEFT JOIN quarantine q ON q.object = o.object GROUP BY o.object ORDER BY o.object",
        )
        .fetch_all(self.pool())
        .await?;
        // max(id) reads one end of the primary key index.
        let last_event_id: i64 = sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM events").fetch_one(self.pool()).await?;
        let deliveries = self.deliveries().await?;
        Ok(MetricsSnapshot { objects, queue, queue_oldest_due_seconds, quarantine, last_event_id, deliveries })
    }
}
