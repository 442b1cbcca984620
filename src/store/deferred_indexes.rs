//! Secondary indexes put off while a first load fills an empty table (migration 0013).
//!
//! PostgreSQL keeps every index of a table up to date row by row; for a table filled from
//! empty it is cheaper to drop the secondary indexes, load, and build each index once by
//! sorting. The definitions go into `deferred_indexes` in the transaction that drops the
//! indexes, and are built again when the load ends, or at the next start after a crash
//! ([`Store::migrate`]). Primary keys and unique indexes stay: the load relies on them.

use sqlx::{Postgres, Transaction};

use super::{Store, StoreError};
use crate::object::ObjectKind;

/// How long a first load waits to drop its table's indexes. A session reading the table (a
/// report, a dump) wins: the load then keeps the indexes and is merely slower.
const DROP_LOCK_TIMEOUT: &str = "1s";

/// Indexes built at once: sorting is CPU-bound, and a first load ends with nothing else to do.
const BUILDERS: usize = 2;

/// SQLSTATE `lock_not_available`: `lock_timeout` ran out.
const LOCK_NOT_AVAILABLE: &str = "55P03";

impl Store {
    /// Drops the secondary indexes of `kind`'s table and records their definitions, in one
    /// transaction. Returns how many; none when another session held the table too long.
    pub async fn defer_indexes(&self, kind: ObjectKind) -> Result<usize, StoreError> {
        let mut tx = self.pool().begin().await?;
        sqlx::query(&format!("SET LOCAL lock_timeout = '{DROP_LOCK_TIMEOUT}'")).execute(&mut *tx).await?;
        match drop_secondary_indexes(&mut tx, kind).await {
            Ok(names) => {
                tx.commit().await?;
                if !names.is_empty() {
                    tracing::info!(object = %kind, indexes = ?names, "secondary indexes put off until the first load ends");
                }
                Ok(names.len())
            }
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some(LOCK_NOT_AVAILABLE) => {
                tracing::info!(object = %kind, "another session holds the table; the first load keeps its indexes");
                Ok(0)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Builds the indexes listed in `deferred_indexes`, each in its own transaction that
    /// also forgets it: those of `kind`'s table (its sync lease held by the caller), or,
    /// with `None`, those of every table no live sync lease holds (a load in progress
    /// elsewhere builds its own). An index that cannot be built is logged and kept for the
    /// next try; one another session is building is left to it. Returns how many were built.
    pub async fn restore_indexes(&self, kind: Option<ObjectKind>) -> Result<usize, StoreError> {
        let table = kind.map(ObjectKind::table);
        let builders = (0..BUILDERS).map(|_| self.build_listed(table));
        Ok(futures::future::try_join_all(builders).await?.into_iter().sum())
    }

    /// One builder: takes listed indexes one at a time (skipping those another builder holds)
    /// until none is left. Returns how many it built.
    async fn build_listed(&self, table: Option<&str>) -> Result<usize, StoreError> {
        let mut failed: Vec<String> = Vec::new();
        let mut built = 0;
        loop {
            let mut tx = self.pool().begin().await?;
            // Sorting a large table's index may take longer than any ordinary statement.
            sqlx::query("SET LOCAL statement_timeout = 0").execute(&mut *tx).await?;
            let next: Option<(String, String)> = sqlx::query_as(
                "DELETE FROM deferred_indexes
                  WHERE name = (SELECT name FROM deferred_indexes
                                 WHERE CASE WHEN $1::text IS NULL
                                            THEN NOT EXISTS (SELECT 1 FROM sync_leases l
                                                              WHERE l.object = table_name AND l.expires_at > now())
                                            ELSE table_name = $1 END
                                   AND name <> ALL($2)
                                 ORDER BY name LIMIT 1 FOR UPDATE SKIP LOCKED)
              RETURNING name, definition",
            )
            .bind(table)
            .bind(&failed)
            .fetch_optional(&mut *tx)
            .await?;
            let Some((name, definition)) = next else { return Ok(built) };
            let statement = definition.replacen("CREATE INDEX ", "CREATE INDEX IF NOT EXISTS ", 1);
            match sqlx::query(&statement).persistent(false).execute(&mut *tx).await {
                Ok(_) => {
                    tx.commit().await?;
                    built += 1;
                    tracing::info!(index = %name, "built a secondary index a first load had put off");
                }
                Err(e) => {
                    tracing::error!(index = %name, %definition, error = %e, "cannot build a secondary index a first load put off; will try again at the next start");
                    drop(tx);
                    failed.push(name);
                }
            }
        }
    }
}

/// The secondary indexes of `kind`'s table (neither primary nor unique, backing no
/// constraint), recorded and dropped; their names.
async fn drop_secondary_indexes(tx: &mut Transaction<'_, Postgres>, kind: ObjectKind) -> Result<Vec<String>, sqlx::Error> {
    // With the schema on the search_path, names and definitions come unqualified.
    let (names, definitions): (Vec<String>, Vec<String>) = sqlx::query_as::<_, (String, String)>(
        "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
           FROM pg_index i
          WHERE i.indrelid = $1::regclass AND NOT i.indisprimary AND NOT i.indisunique
            AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
          ORDER BY 1",
    )
    .bind(kind.table())
    .fetch_all(&mut **tx)
    .await?
    .into_iter()
    .unzip();
    if names.is_empty() {
        return Ok(names);
    }
    sqlx::query(
        "INSERT INTO deferred_indexes (name, table_name, definition)
         SELECT name, $1, definition FROM unnest($2::text[], $3::text[]) AS d(name, definition)
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(kind.table())
    .bind(&names)
    .bind(&definitions)
    .execute(&mut **tx)
    .await?;
    sqlx::query(&format!("DROP INDEX {}", names.join(", "))).persistent(false).execute(&mut **tx).await?;
    Ok(names)
}
