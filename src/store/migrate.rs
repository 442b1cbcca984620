//! Making and upgrading the mirror in the user's database.
//!
//! The database is rarely ours: a managed server with no superuser, a schema a DBA prepared
//! for the mirror's role, BI sessions holding long read transactions. So the schema is created
//! only where it is missing (a role that owns a prepared schema needs no CREATE on the
//! database), a missing privilege is named in words before a migration fails on it, DDL waits
//! for a lock at most [`DDL_LOCK_TIMEOUT`] (other readers queue behind a waiting DDL, so it
//! gives up and is tried again later rather than stalling every reader of a table), and every
//! function of the schema gets its `search_path` pinned, so a caller's `search_path` never
//! decides which tables a function reads (with two mirrors in one database, which one).

use sqlx::{pool::PoolConnection, Connection, PgConnection, Postgres};

use super::{quote_identifier, reporting, Store, StoreError, MIGRATOR};

/// How long DDL (migrations, the reporting layer) waits for a lock before giving up. Every
/// session asking for a lock on the same table queues behind a waiting DDL statement, so
/// this is how long a BI query's readers can be held up by the mirror.
pub const DDL_LOCK_TIMEOUT: &str = "3s";

/// SQLSTATE `lock_not_available`: `lock_timeout` ran out.
const LOCK_NOT_AVAILABLE: &str = "55P03";
/// SQLSTATE `insufficient_privilege`.
pub(super) const INSUFFICIENT_PRIVILEGE: &str = "42501";

impl Store {
    /// Creates the schema if it is missing, applies pending migrations, then the reporting
    /// layer (comments and views generated from the catalogue, see [`reporting`]), pins every
    /// function's `search_path`, and builds indexes a first load put off. Safe to run from
    /// several instances at once: sqlx serializes migrators with an advisory lock, and the
    /// reporting layer takes one of its own.
    ///
    /// # Errors
    /// [`StoreError::Privilege`] or [`StoreError::Denied`] when the role may not do what the
    /// migrations need; [`StoreError::LockBusy`] when another session held a lock longer than
    /// [`DDL_LOCK_TIMEOUT`] (nothing half-done: try again later).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.ensure_schema().await?;
        // A connection of its own, dropped afterwards: the settings below must not stay with
        // a pooled connection (RESET would bring back the role's defaults, not the mirror's).
        let mut conn = self.pool.acquire().await?;
        let migrated = migrate_on(&mut conn, &self.schema).await;
        drop(PoolConnection::detach(conn));
        match migrated? {
            reporting::Applied::Changed => {
                tracing::info!(schema = %self.schema, "generated layer applied: comments, views and the write queue's checks, from the catalogues")
            }
            reporting::Applied::AlreadyCurrent => {}
        }
        // Indexes a first load put off and did not live to build (see `deferred_indexes`).
        self.restore_indexes(None).await?;
        Ok(())
    }

    /// Whether the schema holds a mirror (migrations were applied to it once).
    pub async fn holds_mirror(&self) -> Result<bool, StoreError> {
        Ok(sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL").fetch_one(&self.pool).await?)
    }

    /// True when every embedded migration has been applied.
    pub async fn migrations_current(&self) -> Result<bool, StoreError> {
        let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success").fetch_all(&self.pool).await?;
        Ok(MIGRATOR.iter().all(|m| applied.contains(&m.version)))
    }

    /// The schema exists and the role may build in it, or it is created now. Never asks for
    /// CREATE on the database when the schema is there already.
    async fn ensure_schema(&self) -> Result<(), StoreError> {
        let access = self.schema_access().await?;
        if let Some(missing) = access.missing_privilege(&self.schema) {
            return Err(StoreError::Privilege(missing));
        }
        if !access.exists {
            sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {}", quote_identifier(&self.schema)))
                .execute(&self.pool)
                .await
                .map_err(|e| denied(e, &access.role))?;
        }
        Ok(())
    }
}

/// Migrations, the reporting layer and the pinned functions, on one connection whose DDL
/// waits [`DDL_LOCK_TIMEOUT`] at most.
async fn migrate_on(conn: &mut PoolConnection<Postgres>, schema: &str) -> Result<reporting::Applied, StoreError> {
    // A migration over a large table may take longer than any statement should.
    let settings = format!("SET statement_timeout = 0; SET lock_timeout = '{DDL_LOCK_TIMEOUT}'");
    sqlx::Executor::execute(&mut **conn, sqlx::raw_sql(&settings)).await?;
    let role: String = sqlx::query_scalar("SELECT current_user::text").fetch_one(&mut **conn).await?;
    let conn: &mut PgConnection = conn;
    // `run_direct`: `run` takes an `Acquire`, which makes this future not `Send`.
    MIGRATOR.run_direct(&mut *conn).await.map_err(|e| match e {
        sqlx::migrate::MigrateError::Execute(e) | sqlx::migrate::MigrateError::ExecuteMigration(e, _) => {
            classified(e, &role, "applying the migrations").unwrap_or_else(|e| StoreError::Migrate(e.into()))
        }
        other => StoreError::Migrate(other),
    })?;
    let applied = reporting::apply_in(conn, schema)
        .await
        .map_err(|e| classified(e, &role, "applying the reporting layer").unwrap_or_else(StoreError::Reporting))?;
    pin_functions(conn, schema).await.map_err(|e| classified(e, &role, "pinning the functions' search_path").unwrap_or_else(Into::into))?;
    Ok(applied)
}

/// A lock wait that ran out or a refused privilege, as the error that says so; any other
/// error back as it was.
fn classified(e: sqlx::Error, role: &str, step: &'static str) -> Result<StoreError, sqlx::Error> {
    match e.as_database_error().and_then(|d| d.code()).as_deref() {
        Some(LOCK_NOT_AVAILABLE) => Ok(StoreError::LockBusy { step }),
        Some(INSUFFICIENT_PRIVILEGE) => Ok(denied(e, role)),
        _ => Err(e),
    }
}

/// A refusal by PostgreSQL (its words name the object), with the role it refused.
pub(super) fn denied(e: sqlx::Error, role: &str) -> StoreError {
    match e.as_database_error().and_then(|d| d.code()).as_deref() {
        Some(INSUFFICIENT_PRIVILEGE) => {
            let message = e.as_database_error().map(|d| d.message().to_owned()).unwrap_or_default();
            StoreError::Denied { role: role.to_owned(), message }
        }
        _ => e.into(),
    }
}

/// Pins the `search_path` of every function in the schema that is not pinned yet (a
/// migration's `CREATE OR REPLACE FUNCTION` drops the setting): the schema, then `pg_catalog`,
/// and `pg_temp` last for SECURITY DEFINER functions (so a caller's temporary table cannot
/// stand in for one of the schema's). Returns how many were pinned.
async fn pin_functions(conn: &mut PgConnection, schema: &str) -> Result<usize, sqlx::Error> {
    let unpinned: Vec<(String, String)> = sqlx::query_as(
        "SELECT p.oid::regprocedure::text, w.path FROM pg_proc p \
         CROSS JOIN LATERAL (SELECT quote_ident($1) || ', pg_catalog' || CASE WHEN p.prosecdef THEN ', pg_temp' ELSE '' END AS path) w \
         WHERE p.pronamespace = (SELECT oid FROM pg_namespace WHERE nspname = $1) \
           AND NOT coalesce('search_path=' || w.path = ANY (p.proconfig), false)",
    )
    .bind(schema)
    .fetch_all(&mut *conn)
    .await?;
    if unpinned.is_empty() {
        return Ok(0);
    }
    let script: String = unpinned.iter().map(|(routine, path)| format!("ALTER ROUTINE {routine} SET search_path = {path};\n")).collect();
    let mut tx = conn.begin().await?;
    sqlx::Executor::execute(&mut *tx, sqlx::raw_sql(&script)).await?;
    tx.commit().await?;
    Ok(unpinned.len())
}
