//! A push's SQL: describing its query, the comparison with the mirror ([`compare`]), queueing
//! what differs in one batched INSERT under the push's lease, and `push_runs`.

mod compare;

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{FromRow, Postgres, Transaction};

use super::{lease::fence_named_in, Store, StoreError};
use crate::{object::ObjectKind, push::QueryColumn};

pub use compare::{PlannedRequest, PushPlan};

/// The right to run one push, as granted at `epoch` (a row of `sync_leases` named
/// `push:<name>`): one run of a push at a time across daemons and shells.
#[derive(Clone, Debug)]
pub struct PushLease {
    pub push: String,
    pub holder: String,
    pub epoch: i64,
    pub ttl: Duration,
}

impl PushLease {
    fn name(&self) -> String {
        lease_name(&self.push)
    }
}

fn lease_name(push: &str) -> String {
    format!("push:{push}")
}

/// One row of `push_runs`: what a run found and did.
#[derive(Clone, Debug, Default, FromRow, PartialEq, Eq)]
pub struct PushRunLine {
    pub push: String,
    pub holder: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub forced: bool,
    /// `changed`, `unchanged`, `braked` or `failed`.
    pub outcome: String,
    pub rows_read: i64,
    pub unchanged: i64,
    pub changes: i64,
    pub requests_queued: i64,
    pub refused_by_brake: i64,
    pub max_changes: Option<i64>,
    pub in_flight: i64,
    pub held: i64,
    pub skipped: i64,
    pub not_found: i64,
    pub error: Option<String>,
}

/// The query failed where the database checks it: it does not parse, names what does not
/// exist, ran out of time, or failed on a row. The database's words, for the user.
#[derive(Debug, thiserror::Error)]
pub enum QueryFailure {
    #[error("{message}")]
    Refused {
        message: String,
        #[source]
        source: sqlx::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for QueryFailure {
    /// An error the database raised about the statement is the query's; the rest (a lost
    /// connection, a pool timeout) is the store's.
    fn from(e: sqlx::Error) -> QueryFailure {
        match e.as_database_error() {
            Some(db) => {
                let message = match db.code().as_deref() {
                    Some("57014") => "the query was cancelled by its statement timeout (`timeout` of the push)".to_owned(),
                    _ => db.message().to_owned(),
                };
                QueryFailure::Refused { message, source: e }
            }
            None => QueryFailure::Store(e.into()),
        }
    }
}

/// The statements of a push's read-only transaction: its timeout, and the mirror's schema
/// first on the `search_path` (the connection's already; said again so no earlier statement
/// of the session matters).
async fn read_only_in(tx: &mut Transaction<'_, Postgres>, schema: &str, timeout: Duration) -> Result<(), sqlx::Error> {
    let settings = format!(
        "SET TRANSACTION READ ONLY; SET LOCAL statement_timeout = {}; SET LOCAL search_path = {}, pg_catalog",
        timeout.as_millis().max(1),
        super::quote_identifier(schema)
    );
    sqlx::Executor::execute(&mut **tx, sqlx::raw_sql(&settings)).await?;
    Ok(())
}

impl Store {
    /// Takes the push's lease if it is free, expired or already ours. `None`: another live
    /// instance is running the push.
    pub async fn acquire_push_lease(&self, push: &str, holder: &str, ttl: Duration) -> Result<Option<PushLease>, StoreError> {
        let epoch = self.acquire_named_lease(&lease_name(push), holder, ttl).await?;
        Ok(epoch.map(|epoch| PushLease { push: push.to_owned(), holder: holder.to_owned(), epoch, ttl }))
    }

    /// Extends the lease; `false`: another instance took it over.
    pub async fn renew_push_lease(&self, lease: &PushLease) -> Result<bool, StoreError> {
        self.renew_named_lease(&lease.name(), &lease.holder, lease.epoch, lease.ttl).await
    }

    pub async fn release_push_lease(&self, lease: &PushLease) -> Result<(), StoreError> {
        self.release_named_lease(&lease.name(), &lease.holder, lease.epoch).await
    }

    /// The query's columns and their types, as PostgreSQL describes the prepared statement
    /// (nothing is executed), in a read-only transaction.
    pub async fn describe_push_query(&self, query: &str, timeout: Duration) -> Result<Vec<QueryColumn>, QueryFailure> {
        use sqlx::{Column, Executor, Statement};
        let mut tx = self.pool().begin().await.map_err(StoreError::from)?;
        read_only_in(&mut tx, self.schema(), timeout).await?;
        let wrapped = compare::wrapped(query);
        let statement = (&mut *tx).prepare(&wrapped).await?;
        let columns: Vec<(String, i64)> =
            statement.columns().iter().map(|c| (c.name().to_owned(), c.type_info().oid().map_or(0, |o| i64::from(o.0)))).collect();
        let oids: Vec<i64> = columns.iter().map(|(_, oid)| *oid).collect();
        let types: Vec<(i64, String, String, Option<String>)> = sqlx::query_as(
            "SELECT t.oid::int8, format_type(t.oid, NULL), t.typcategory::text, e.typcategory::text \
             FROM pg_type t LEFT JOIN pg_type e ON e.oid = t.typelem AND t.typcategory = 'A' \
             WHERE t.oid::int8 = ANY ($1)",
        )
        .bind(&oids)
        .fetch_all(&mut *tx)
        .await?;
        tx.rollback().await.map_err(StoreError::from)?;
        let first = |text: &str| text.chars().next().unwrap_or('X');
        Ok(columns
            .into_iter()
            .map(|(name, oid)| {
                let found = types.iter().find(|(o, ..)| *o == oid);
                QueryColumn {
                    name,
                    type_name: found.map_or_else(|| "unknown".to_owned(), |(_, name, ..)| name.clone()),
                    category: found.map_or('X', |(_, _, c, _)| first(c)),
                    element_category: found.and_then(|(.., e)| e.as_deref().map(first)),
                }
            })
            .collect())
    }

    /// Queues the planned requests in one INSERT, records them in `push_records` and the run
    /// in `push_runs`, in one transaction, as long as `lease` still holds (a run whose lease
    /// another instance took over queues nothing). An idempotency key already taken queues
    /// nothing for that request. Returns how many requests were queued.
    pub async fn queue_push(
        &self,
        lease: &PushLease,
        kind: ObjectKind,
        requests: &[&PlannedRequest],
        run: &PushRunLine,
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool().begin().await?;
        if !fence_named_in(&mut tx, &lease.name(), &lease.holder, lease.epoch).await? {
            return Err(StoreError::Fenced { object: lease.name() });
        }
        let column = |f: fn(&PlannedRequest) -> String| requests.iter().map(|r| f(r)).collect::<Vec<String>>();
        let keys: Vec<String> = requests.iter().map(|r| r.idempotency_key(&lease.push)).collect();
        let queued: i64 = sqlx::query_scalar(
            "WITH input AS ( \
                 SELECT * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::int[], $9::int[]) \
                     WITH ORDINALITY AS i(operation, record, object_key, payload, idempotency_key, digest, seq, failures, n)), \
             queued AS ( \
                 INSERT INTO write_queue (operation, object_type, object_key, payload, idempotency_key) \
                 SELECT operation, $10, object_key, payload::jsonb, idempotency_key FROM input ORDER BY n \
                 ON CONFLICT (idempotency_key) DO NOTHING RETURNING id, idempotency_key), \
             recorded AS ( \
                 INSERT INTO push_records AS p (push, record, operation, digest, seq, request_id, failures) \
                 SELECT $1, i.record, i.operation, i.digest, i.seq, q.id, i.failures FROM input i JOIN queued q USING (idempotency_key) \
                 ON CONFLICT (push, record, operation) DO UPDATE SET digest = excluded.digest, seq = excluded.seq, \
                     request_id = excluded.request_id, failures = excluded.failures, queued_at = now()) \
             SELECT count(*) FROM queued",
        )
        .bind(&lease.push)
        .bind(column(|r| r.operation.clone()))
        .bind(column(|r| r.record.clone()))
        .bind(requests.iter().map(|r| r.object_key.clone()).collect::<Vec<Option<String>>>())
        .bind(column(|r| r.payload.to_string()))
        .bind(&keys)
        .bind(column(|r| r.digest.clone()))
        .bind(requests.iter().map(|r| r.seq).collect::<Vec<i32>>())
        .bind(requests.iter().map(|r| r.failures).collect::<Vec<i32>>())
        .bind(kind.singular())
        .fetch_one(&mut *tx)
        .await?;
        let run = PushRunLine { requests_queued: queued, ..run.clone() };
        insert_run_in(&mut tx, &run).await?;
        tx.commit().await?;
        Ok(queued as u64)
    }

    /// Whether the mirror finished its first load of `kind` (a push waits for it).
    pub async fn object_loaded(&self, kind: ObjectKind) -> Result<bool, StoreError> {
        Ok(sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM sync_state WHERE object = $1 AND backfill_completed_at IS NOT NULL)")
            .bind(kind.table())
            .fetch_one(self.pool())
            .await?)
    }

    /// Records a run that queued nothing (unchanged, braked, failed).
    pub async fn record_push_run(&self, run: &PushRunLine) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        insert_run_in(&mut tx, run).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The last run of each push that has run, by name.
    pub async fn last_push_runs(&self) -> Result<Vec<PushRunLine>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT DISTINCT ON (push) push, holder, started_at, finished_at, forced, outcome, rows_read, unchanged, changes, \
                    requests_queued, refused_by_brake, max_changes, in_flight, held, skipped, not_found, error \
             FROM push_runs ORDER BY push, id DESC",
        )
        .fetch_all(self.pool())
        .await?)
    }

    /// Removes up to `batch` runs older than `age` (retention, with `sync.retain_runs`).
    pub async fn prune_push_runs(&self, age: Duration, batch: i64) -> Result<u64, StoreError> {
        Ok(sqlx::query(
            "DELETE FROM push_runs WHERE id IN (SELECT id FROM push_runs WHERE finished_at < now() - make_interval(secs => $1) \
                                                ORDER BY id LIMIT $2)",
        )
        .bind(age.as_secs_f64())
        .bind(batch)
        .execute(self.pool())
        .await?
        .rows_affected())
    }
}

async fn insert_run_in(tx: &mut Transaction<'_, Postgres>, run: &PushRunLine) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO push_runs (push, holder, started_at, forced, outcome, rows_read, unchanged, changes, requests_queued, \
             refused_by_brake, max_changes, in_flight, held, skipped, not_found, error) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
    )
    .bind(&run.push)
    .bind(&run.holder)
    .bind(run.started_at)
    .bind(run.forced)
    .bind(&run.outcome)
    .bind(run.rows_read)
    .bind(run.unchanged)
    .bind(run.changes)
    .bind(run.requests_queued)
    .bind(run.refused_by_brake)
    .bind(run.max_changes)
    .bind(run.in_flight)
    .bind(run.held)
    .bind(run.skipped)
    .bind(run.not_found)
    .bind(&run.error)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl std::fmt::Display for PushRunLine {
    /// `2026-01-02 03:04:05 UTC changed: 1000 rows read, …` and, for a braked or failed run, why.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let when = self.finished_at.unwrap_or(self.started_at).format("%Y-%m-%d %H:%M:%S");
        write!(
            f,
            "{when} UTC {}{}: {} rows read, {} changes ({} requests queued), {} unchanged, {} in flight, {} held, {} skipped, {} not found",
            self.outcome,
            if self.forced { " (forced)" } else { "" },
            self.rows_read,
            self.changes,
            self.requests_queued,
            self.unchanged,
            self.in_flight,
            self.held,
            self.skipped,
            self.not_found
        )?;
        if let Some(error) = &self.error {
            write!(f, "; {error}")?;
        }
        Ok(())
    }
}
