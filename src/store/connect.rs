//! Connecting to the user's database: one connection first, to name a failure at once
//! (refused, unknown database, wrong password, TLS refused or unverified, a server too old),
//! then the pool, each of whose sessions sets what the mirror needs whatever the role's
//! defaults say.

use std::{str::FromStr, time::Duration};

use sqlx::{
    postgres::{PgConnectOptions, PgPoolOptions},
    Connection, PgConnection,
};

use super::{quote_identifier, Store, StoreError};

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
}
