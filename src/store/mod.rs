//! PostgreSQL access: the mirror tables, events and bookkeeping. Knows nothing of HTTP.
//!
//! Every connection of the store sets `search_path` to the configured schema (see `connect`),
//! so the SQL here and in the migrations is unqualified; what users call from their own
//! sessions (functions, triggers) pins its own `search_path` (see `migrate`).

mod access;
mod budget;
mod connect;
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
mod tally;
mod teams;
mod wakeups;
mod write_queue_sql;

use std::time::Duration;

use sqlx::{migrate::Migrator, PgPool};

pub use access::MissingPrivilege;
pub use connect::OLDEST_SERVER;
pub use daemons::DaemonLine;
pub use deliveries::{Checkpoint, DeadLetter, DeadLetterLine, DeliveryClaim, DeliveryLease, DeliveryLine, GiveUp};
pub use events::{ConsumerLine, EventRow, EVENT_COLUMNS};
pub use first_load::FirstLoadWrite;
pub use grants::{Roles, Tier};
pub use inbox::{CompletionFacts, InboxDecision, InboxOutcome, InboxRow, TrainingRow};
pub use lease::Lease;
pub use migrate::DDL_LOCK_TIMEOUT;
pub use page::{insert_events, PageOutcome, PageWrite};
pub use push::{PlannedRequest, PushLease, PushPlan, PushRunLine, QueryFailure};
pub use queue::{DealFile, FailedAttempt, QueueRow, Success};
pub use reconcile::ReconcileOutcome;
pub use request::{Claim, QueuedRequest};
pub use retention::{EventBatch, Protection, PruneLine};
pub use state::{CursorAdvance, ObjectState, RunKind, RunTotals, UpdatedFilter};
pub use status::{MetricsSnapshot, ObjectFreshness, ObjectStatus, StatusReport};
pub use tail::{like_pattern, TailOptions};
pub use tally::RequestTally;
pub use teams::TeamsToRead;
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
    #[error("cannot apply the generated layer (the comments, views and write queue checks generated from the catalogues)")]
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
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn schema(&self) -> &str {
        &self.schema
    }
}
