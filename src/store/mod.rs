//! PostgreSQL access: the mirror tables, events and bookkeeping. Knows nothing of HTTP.
//!
//! Every connection has `search_path` set to the configured schema, so all SQL here and in
//! the migrations is unqualified.

mod access;
mod budget;
mod copy;
mod daemons;
mod deferred_indexes;
mod deliveries;
mod events;
mod first_load;
mod grants;
mod inbox;
mod lease;
mod lookup;
mod migrate;
mod page;
mod push;
mod queue;
mod reconcile;
pub mod reporting;
mod request;
mod retention;
mod state;
mod status;
mod tail;
mod wakeups;
mod write_queue_sql;

use std::{str::FromStr, time::Duration};

use sqlx::{
    migrate::Migrator,
    postgres::{PgConnectOptions, PgPoolOptions},
    Connection, PgConnection, PgPool,
};

pub use access::MissingPrivilege;
pub use daemons::DaemonLine;
pub use deliveries::{Checkpoint, DeadLetter, DeadLetterLine, DeliveryClaim, DeliveryLease, DeliveryLine, GiveUp};
pub use events::{ConsumerLine, EventRow, EVENT_COLUMNS};
pub use first_load::FirstLoadWrite;
pub use grants::{Roles, Tier};
pub use inbox::{finish_webhook_in, pending_webhooks_in, quarantine_webhook_in, record_training_in, InboxOutcome, InboxRow, TrainingRow};
pub use lease::Lease;
pub use migrate::DDL_LOCK_TIMEOUT;
pub use page::{insert_events, PageOutcome, PageWrite};
pub use push::{PlannedRequest, PushLease, PushPlan, PushRunLine, QueryFailure};
pub use queue::{DealFile, FailedAttempt, QueueRow, Success};
pub use reconcile::ReconcileOutcome;
pub use request::{Claim, QueuedRequest};
pub use retention::{EventBatch, Protection, PruneLine};
pub use state::{CursorAdvance, ObjectState, RunKind, RunTotals};
pub use status::{MetricsSnapshot, ObjectFreshness, ObjectStatus, StatusReport};
pub use tail::{like_pattern, TailOptions};
pub use wakeups::{Wakeups, EVENTS_CHANNEL};

/// The migrations, embedded in the binary.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// A database failure, classified once.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot parse database.url")]
    Url(#[source] sqlx::Error),
    #[error("connecting failed")]
    Connect(#[source] sqlx::Error),
    /// The server's certificate was refused (name, CA) or TLS was refused: never retried in
    /// plain text.
    #[error(
        "the TLS handshake with the database failed (check sslmode, sslrootcert, and that the certificate names the host of database.url)"
    )]
    Tls(#[source] sqlx::Error),
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
    /// Roles named by `database.readers`, `.consumers` or `.writers` that do not exist.
    #[error("{}", unknown_roles(.0))]
    UnknownRoles(Vec<String>),
    #[error("role \"{0}\" is the mirror's own (it owns the schema): name only other roles in database.readers, database.consumers and database.writers")]
    OwnRole(String),
    /// A privilege the role lacks, found before anything was changed.
    #[error("{0}")]
    Privilege(MissingPrivilege),
    /// PostgreSQL refused a statement for lack of a privilege (its words name the object).
    #[error("role \"{role}\" was refused: {message}")]
    Denied { role: String, message: String },
    /// DDL waited [`DDL_LOCK_TIMEOUT`] for a lock another session holds, and gave up so as not
    /// to keep that table's other readers queued behind it.
    #[error("{step} waited {DDL_LOCK_TIMEOUT} for a lock another session holds on the mirror's tables, and gave up for now")]
    LockBusy { step: &'static str },
    #[error("this sync lost its lease on {object} to another instance")]
    Fenced { object: String },
    #[error("this daemon lost the lease of delivery {delivery} to another instance")]
    LostDelivery { delivery: String },
}

impl StoreError {
    /// The database is not set up as the mirror needs (too old, a privilege missing): a
    /// person must act, so a command exits 2 and systemd does not restart the daemon.
    pub fn needs_the_operator(&self) -> bool {
        matches!(
            self,
            StoreError::ServerTooOld { .. }
                | StoreError::Privilege(_)
                | StoreError::Denied { .. }
                | StoreError::UnknownRoles(_)
                | StoreError::OwnRole(_)
        )
    }

    /// A unique constraint refused the write (PostgreSQL's 23505).
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, StoreError::Database(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23505"))
    }
}

fn unknown_roles(names: &[String]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    format!(
        "database.readers, database.consumers or database.writers names {} that this server does not know ({}): create {} or remove {} from the list",
        if names.len() == 1 { "a role" } else { "roles" },
        quoted.join(", "),
        if names.len() == 1 { "it" } else { "them" },
        if names.len() == 1 { "it" } else { "them" },
    )
}

/// How long the first connection may take to be set up before the database counts as not
/// answering.
const FIRST_CONNECTION_WAIT: Duration = Duration::from_secs(10);

/// A connection that failed in its TLS handshake (rustls's error inside sqlx's I/O error).
fn is_tls_failure(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Tls(_) => true,
        sqlx::Error::Io(io) => io.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()),
        _ => false,
    }
}

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

/// The API's epoch milliseconds in `expr` (a bigint) as a timestamptz, exactly: what the
/// schema's `epoch_ms_to_timestamptz` returns, written out so that the page writes and the
/// views need no call per row (a function with a pinned `search_path` is never inlined).
pub(crate) fn epoch_ms_sql(expr: &str) -> String {
    format!("(timestamptz 'epoch' + ({expr}) * interval '1 millisecond')")
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
            let mut first = PgConnection::connect_with(&options).await.map_err(|e| match is_tls_failure(&e) {
                true => StoreError::Tls(e),
                false => StoreError::Connect(e),
            })?;
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

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn schema(&self) -> &str {
        &self.schema
    }
}
