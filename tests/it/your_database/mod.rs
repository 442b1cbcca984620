//! The mirror in databases as its users have them (docs/your-database.md): TLS, a role without superuser
//! or CREATE on the database, a schema a DBA prepared, BI sessions with the default
//! `search_path` naming tables with their schema, read-only roles, a DBA's timeouts, poolers.
//!
//! Every test here works in a database of its own ([`Scratch`]) with roles of its own, and
//! connects as those roles: never as the superuser the rest of the suite uses, and never with
//! a `search_path` set for it.

mod dba_script;
mod locks;
mod pooler;
mod privileges;
mod qualified_names;
mod roles;
mod settings;
mod tls;

use std::sync::atomic::{AtomicUsize, Ordering};

use partnerstack_mirror::store::Store;
use partnerstack_simulator::RunningSimulator;
use sqlx::{Connection, PgConnection};

use crate::support;

/// A database of its own on the test server, for tests that create roles and grant on the
/// database. Roles are the cluster's: their names carry the test process's id and a counter.
pub struct Scratch {
    pub database: String,
}

impl Scratch {
    pub async fn new() -> Scratch {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let database = format!("users_db_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let mut admin = PgConnection::connect(&support::database_url()).await.unwrap();
        sqlx::raw_sql(&format!("CREATE DATABASE {database}")).execute(&mut admin).await.unwrap();
        Scratch { database }
    }

    /// The URL of this database as `role` (the test server trusts loopback connections).
    pub fn url_as(&self, role: &str) -> String {
        url_as(&support::database_url(), &self.database, role)
    }

    /// A connection as the superuser, for the DBA's part of a test.
    pub async fn dba(&self) -> PgConnection {
        PgConnection::connect(&self.url_as("postgres")).await.unwrap()
    }

    /// A fresh connection as `role`, with the server's default `search_path`: as a BI tool or
    /// an application connects.
    pub async fn connect_as(&self, role: &str) -> PgConnection {
        PgConnection::connect(&self.url_as(role)).await.unwrap_or_else(|e| panic!("connect as {role}: {e}"))
    }

    /// A new login role (no superuser, no CREATE anywhere), named after `purpose`.
    pub async fn role(&self, purpose: &str) -> String {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!("{purpose}_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        sqlx::raw_sql(&format!("CREATE ROLE {name} LOGIN")).execute(&mut self.dba().await).await.unwrap();
        name
    }

    /// The mirror's role with a schema a DBA prepared for it: it owns `schema` and has no
    /// CREATE on the database.
    pub async fn prepared_schema(&self, schema: &str) -> String {
        let mirror = self.role("mirror").await;
        sqlx::raw_sql(&format!("CREATE SCHEMA {schema} AUTHORIZATION {mirror}")).execute(&mut self.dba().await).await.unwrap();
        mirror
    }

    /// A store in `schema`, connected as `role`, migrated.
    pub async fn store_as(&self, role: &str, schema: &str) -> Store {
        let store = Store::connect(&self.url_as(role), schema, 4).await.unwrap_or_else(|e| panic!("connect as {role}: {e:?}"));
        store.migrate().await.unwrap_or_else(|e| panic!("migrate as {role}: {e:?}"));
        store
    }
}

/// `url` pointing at `database` as `user`.
pub fn url_as(url: &str, database: &str, user: &str) -> String {
    let mut url: url::Url = url.parse().unwrap();
    url.set_username(user).unwrap();
    url.set_path(database);
    url.into()
}

/// The binary as an operator runs it, against `scratch`'s database as `role`, in `schema`.
pub fn binary_as(scratch: &Scratch, role: &str, schema: &str, sim: &RunningSimulator, args: &[&str]) -> tokio::process::Command {
    let defaults = partnerstack_simulator::SimulatorConfig::default();
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_partnerstack-mirror"));
    command
        .args(["--log-format", "json", "--config", "/dev/null"])
        .args(args)
        .env("DATABASE_URL", scratch.url_as(role))
        .env("PSM_DATABASE__SCHEMA", schema)
        .env("PSM_PARTNERSTACK__API_URL", &sim.base_url)
        .env("PARTNERSTACK_PUBLIC_KEY", defaults.public_key)
        .env("PARTNERSTACK_PRIVATE_KEY", defaults.private_key)
        .env("PSM_PARTNERSTACK__PAGE_SIZE", "50")
        .env("PSM_PARTNERSTACK__REQUESTS_PER_SECOND", "0")
        .env("PSM_SYNC__SETTLE", "0s")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    command
}

/// What a statement run as some role came to: `Ok(())`, or PostgreSQL's SQLSTATE and message.
pub async fn attempt(conn: &mut PgConnection, sql: &str) -> Result<(), (String, String)> {
    match sqlx::raw_sql(sql).execute(&mut *conn).await {
        Ok(_) => Ok(()),
        Err(e) => {
            let db = e.as_database_error().unwrap_or_else(|| panic!("{sql}: {e}"));
            Err((db.code().unwrap_or_default().into_owned(), db.message().to_owned()))
        }
    }
}

/// Asserts `sql` is refused for lack of a privilege (SQLSTATE 42501).
pub async fn refused(conn: &mut PgConnection, sql: &str) {
    match attempt(conn, sql).await {
        Err((code, _)) if code == "42501" => {}
        other => panic!("expected `{sql}` to be refused for lack of a privilege, got {other:?}"),
    }
}

/// Asserts `sql` runs.
pub async fn allowed(conn: &mut PgConnection, sql: &str) {
    if let Err(e) = attempt(conn, sql).await {
        panic!("expected `{sql}` to run, got {e:?}");
    }
}
