//! PostgreSQL access: the mirror tables, events and bookkeeping. Knows nothing of HTTP.
//!
//! Every connection has `search_path` set to the configured schema, so all SQL here and in
//! the migrations is unqualified.

mod budget;
mod copy;
mod daemons;
mod deferred_indexes;
mod deliveries;
mod events;
mod first_load;
mod inbox;
mod lease;
mod lookup;
mod page;
mod queue;
mod reconcile;
pub mod reporting;
mod request;
mod retention;
mod state;
mod status;
mod tail;
mod tally;
mod teams;
mod wakeups;

use std::{str::FromStr, time::Duration};

use sqlx::{
    migrate::Migrator,
    postgres::{PgConnectOptions, PgPoolOptions},
    Connection, PgConnection, PgPool,
};

pub use daemons::DaemonLine;
pub use deliveries::{Checkpoint, DeadLetter, DeadLetterLine, DeliveryClaim, DeliveryLease, DeliveryLine, GiveUp};
pub use events::{ConsumerLine, EventRow, EVENT_COLUMNS};
pub use first_load::FirstLoadWrite;
pub use inbox::{finish_webhook_in, pending_webhooks_in, quarantine_webhook_in, record_training_in, InboxOutcome, InboxRow, TrainingRow};
pub use lease::Lease;
pub use page::{insert_events, PageOutcome, PageWrite};
pub use queue::{DealFile, FailedAttempt, QueueRow, Success};
pub use reconcile::ReconcileOutcome;
pub use request::{Claim, Operation, QueuedRequest, UnknownOperation};
pub use retention::{EventBatch, Protection, PruneLine};
pub use state::{CursorAdvance, ObjectState, RunKind, RunTotals, UpdatedFilter};
pub use status::{MetricsSnapshot, ObjectFreshness, ObjectStatus, StatusReport};
pub use tail::{like_pattern, TailOptions};
pub use tally::RequestTally;
pub use teams::{team_hinted_in, TeamsToRead};
pub use wakeups::QueueWakeups;

/// The migrations, embedded in the binary.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// A database failure, classified once.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot parse database.url")]
    Url(#[source] sqlx::Error),
    #[error("connecting failed")]
    Connect(#[source] sqlx::Error),
    #[error("the database did not answer within {}s", .0.as_secs())]
    NoAnswer(Duration),
    #[error("PostgreSQL 14 or newer is required; this server is {version}")]
    ServerTooOld { version: String },
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("cannot apply the reporting layer (the comments and views generated from the catalogue)")]
    Reporting(#[source] sqlx::Error),
    #[error("this sync lost its lease on {object} to another instance")]
    Fenced { object: String },
    #[error("this daemon lost the lease of delivery {delivery} to another instance")]
    LostDelivery { delivery: String },
}

impl StoreError {
    /// A unique constraint refused the write (PostgreSQL's 23505).
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, StoreError::Database(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23505"))
    }
}

/// How long the first connection may take to be set up before the database counts as not
/// answering.
const FIRST_CONNECTION_WAIT: Duration = Duration::from_secs(10);

/// The oldest PostgreSQL server the migrations run on (`server_version_num`): SQL-standard
/// function bodies and the `pg_catalog` functions they use came with 14.
pub const OLDEST_SERVER: i32 = 140_000;

/// Refuses a server older than [`OLDEST_SERVER`], naming both versions, before any migration
/// can fail on it with a syntax error that tells the user nothing.
async fn check_server(conn: &mut PgConnection) -> Result<(), StoreError> {
    let (number, version): (String, String) =
        sqlx::query_as("SELECT current_setting('server_version_num'), current_setting('server_version')").fetch_one(&mut *conn).await?;
    if number.parse::<i32>().is_ok_and(|n| n >= OLDEST_SERVER) {
        return Ok(());
    }
    // `13.23 (Debian 13.23-1.pgdg120+1)` reads as 13.23.
    let version = version.split_whitespace().next().unwrap_or(&version).to_owned();
    Err(StoreError::ServerTooOld { version })
}

/// What every session of the mirror's sets for itself, whatever the role's or database's
/// defaults say: its schema first on the `search_path` (the store's SQL is unqualified), the
/// configured statement timeout, and no `lock_timeout` or `idle_in_transaction_session_timeout`
/// of a DBA's (the statement timeout bounds waits; DDL sets a short `lock_timeout` of its own
/// where it runs). Sent as statements after connecting rather than as the `options` startup
/// parameter, which PgBouncer refuses.
#[derive(Clone, Debug)]
struct Session {
    schema: String,
    statement_timeout: Option<Duration>,
}

impl Session {
    fn settings(&self) -> String {
        let timeout_ms = self.statement_timeout.map_or(0, |t| t.as_millis().max(1));
        format!(
            "SET search_path = {}; SET statement_timeout = {timeout_ms}; SET lock_timeout = 0; \
             SET idle_in_transaction_session_timeout = 0",
            quote_identifier(&self.schema)
        )
    }
}

/// A quoted SQL identifier.
pub(crate) fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The mirror's database.
#[derive(Clone, Debug)]
pub struct Store {
    pool: PgPool,
    schema: String,
}

impl Store {
    /// Connects a pool whose every connection works in `schema`.
    pub async fn connect(url: &str, schema: &str, max_connections: u32) -> Result<Store, StoreError> {
        Self::connect_with_statement_timeout(url, schema, max_connections, None).await
    }

    /// [`Store::connect`], with every statement cut off after `statement_timeout` (migrations
    /// excepted): a call that hangs fails instead, and the daemon's watchdog can tell a call
    /// still within its time from a stuck one.
    ///
    /// Refuses a server older than [`OLDEST_SERVER`] before anything else runs on it.
    pub async fn connect_with_statement_timeout(
        url: &str,
        schema: &str,
        max_connections: u32,
        statement_timeout: Option<Duration>,
    ) -> Result<Store, StoreError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(StoreError::Url)?
            // Names the mirror and the process in pg_stat_activity.
            .application_name(&format!("partnerstack-mirror/{schema}/{}", std::process::id()))
            // A startup parameter PgBouncer refuses unless told to ignore it; the binary
            // protocol the mirror reads floats with does not need it.
            .extra_float_digits(None);
        let session = Session { schema: schema.to_owned(), statement_timeout };
        // One connection first, on its own: the pool retries a refused connection until its
        // acquire timeout and then says only that it timed out; this says why, at once
        // (refused, unknown host or database, wrong password, TLS refused or unverified).
        let first = async {
            let mut first = PgConnection::connect_with(&options).await.map_err(StoreError::Connect)?;
            let checked = check_server(&mut first).await;
            let _ = first.close().await;
            checked
        };
        match tokio::time::timeout(FIRST_CONNECTION_WAIT, first).await {
            Ok(checked) => checked?,
            Err(_) => return Err(StoreError::NoAnswer(FIRST_CONNECTION_WAIT)),
        }
        // Waiting for a pooled connection is bounded like a statement.
        let acquire_timeout = statement_timeout.unwrap_or(Duration::from_secs(30));
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(acquire_timeout)
            .after_connect(move |conn, _| {
                let settings = session.settings();
                Box::pin(async move { sqlx::Executor::execute(&mut *conn, sqlx::raw_sql(&settings)).await.map(drop) })
            })
            .connect_with(options)
            .await?;
        Ok(Store { pool, schema: schema.to_owned() })
    }

    /// Creates the schema if needed, applies pending migrations, then the reporting layer
    /// (comments and views generated from the catalogue, see [`reporting`]). Safe to run from
    /// several instances at once: sqlx serializes migrators with an advisory lock, and the
    /// reporting layer takes one of its own.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS \"{}\"", self.schema)).execute(&self.pool).await?;
        // A migration over a large table may take longer than any statement should.
        let mut conn = self.pool.acquire().await?;
        sqlx::query("SET statement_timeout = 0").execute(&mut *conn).await?;
        let migrated = match MIGRATOR.run(&mut *conn).await {
            Ok(()) => reporting::apply(&mut conn, &self.schema).await,
            Err(e) => Err(e.into()),
        };
        sqlx::query("RESET statement_timeout").execute(&mut *conn).await?;
        if migrated? == reporting::Applied::Changed {
            tracing::info!(schema = %self.schema, "reporting layer applied: comments and views generated from the catalogue");
        }
        // Indexes a first load put off and did not live to build (see `deferred_indexes`).
        self.restore_indexes(None).await?;
        Ok(())
    }

    /// True when every embedded migration has been applied.
    /// Whether the schema holds a mirror (migrations were applied to it once).
    pub async fn holds_mirror(&self) -> Result<bool, StoreError> {
        Ok(sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL").fetch_one(&self.pool).await?)
    }

    pub async fn migrations_current(&self) -> Result<bool, StoreError> {
        let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success").fetch_all(&self.pool).await?;
        Ok(MIGRATOR.iter().all(|m| applied.contains(&m.version)))
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn schema(&self) -> &str {
        &self.schema
    }
}
