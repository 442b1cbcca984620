//! What the mirror's role may do in its database, read from the catalogs: whether it may
//! create or build in its schema, which objects of the schema it does not own, whether every
//! function is pinned, and whether its connection is encrypted. Migrations check the first
//! before changing anything; `doctor` reports them all, in words a DBA can act on.

use super::{quote_identifier, Store, StoreError};

/// A privilege the mirror's role lacks, in words: which role, which privilege, on what, and
/// what a DBA runs to give it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MissingPrivilege {
    pub role: String,
    pub privilege: String,
    pub object: String,
    pub remedy: String,
}

impl std::fmt::Display for MissingPrivilege {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "role \"{}\" lacks {} on {}; {}", self.role, self.privilege, self.object, self.remedy)
    }
}

/// What the mirror's role may do with its schema, read from the catalogs.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct SchemaAccess {
    pub(super) role: String,
    database: String,
    pub(super) exists: bool,
    owner: Option<String>,
    owns: bool,
    usage: bool,
    create: bool,
    may_create_schema: bool,
}

impl Store {
    pub(super) async fn schema_access(&self) -> Result<SchemaAccess, StoreError> {
        Ok(sqlx::query_as(
            "SELECT current_user::text AS role, current_database()::text AS database, n.oid IS NOT NULL AS exists, \
                    pg_get_userbyid(n.nspowner)::text AS owner, \
                    coalesce(pg_has_role(n.nspowner, 'USAGE'), false) AS owns, \
                    coalesce(has_schema_privilege(n.oid, 'USAGE'), false) AS usage, \
                    coalesce(has_schema_privilege(n.oid, 'CREATE'), false) AS create, \
                    has_database_privilege(current_database(), 'CREATE') AS may_create_schema \
             FROM (SELECT $1::name AS name) s LEFT JOIN pg_namespace n ON n.nspname = s.name",
        )
        .bind(&self.schema)
        .fetch_one(&self.pool)
        .await?)
    }

    /// The other sessions holding locks on the schema's tables, one line each (pid,
    /// application, user, state and for how long), for the log of a migration that waits.
    pub async fn sessions_holding_locks(&self) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT format('pid %s (%s, user %s, %s for %s)', a.pid, coalesce(nullif(a.application_name, ''), 'no application name'), \
                           coalesce(a.usename::text, '?'), coalesce(a.state, '?'), \
                           coalesce(date_trunc('second', now() - coalesce(a.xact_start, a.query_start))::text, '?')) \
             FROM pg_stat_activity a \
             WHERE a.pid <> pg_backend_pid() \
               AND a.pid IN (SELECT l.pid FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
                              WHERE l.granted AND c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = $1)) \
             ORDER BY a.pid",
        )
        .bind(&self.schema)
        .fetch_all(&self.pool)
        .await?)
    }

    /// What the migrations would be refused for lack of, in words; `None` when the role may
    /// create or build in its schema. For `doctor`.
    pub async fn missing_schema_privilege(&self) -> Result<Option<MissingPrivilege>, StoreError> {
        Ok(self.schema_access().await?.missing_privilege(&self.schema))
    }

    /// Objects of the schema owned by a role the mirror's is not a member of: migrations and
    /// grants on them would be refused. One line each (`table deals, owned by postgres`).
    pub async fn objects_owned_by_others(&self) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT format('%s %s, owned by %s', CASE c.relkind WHEN 'v' THEN 'view' WHEN 'S' THEN 'sequence' WHEN 'i' THEN 'index' \
                                                 ELSE 'table' END, c.relname, pg_get_userbyid(c.relowner)) \
             FROM pg_class c WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = $1) \
               AND c.relkind IN ('r', 'v', 'S', 'p') AND NOT pg_has_role(c.relowner, 'USAGE') \
             UNION ALL \
             SELECT format('function %s, owned by %s', p.oid::regprocedure, pg_get_userbyid(p.proowner)) \
             FROM pg_proc p WHERE p.pronamespace = (SELECT oid FROM pg_namespace WHERE nspname = $1) \
               AND NOT pg_has_role(p.proowner, 'USAGE') \
             ORDER BY 1",
        )
        .bind(&self.schema)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Functions of the schema whose `search_path` is not pinned (each would read the
    /// caller's tables): none once `migrate` has run.
    pub async fn unpinned_functions(&self) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT p.oid::regprocedure::text FROM pg_proc p \
             WHERE p.pronamespace = (SELECT oid FROM pg_namespace WHERE nspname = $1) \
               AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) AS setting WHERE setting LIKE 'search_path=%') \
             ORDER BY 1",
        )
        .bind(&self.schema)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The TLS protocol and cipher of this store's connections (`None`: plain text), and the
    /// server's version.
    pub async fn connection_security(&self) -> Result<(Option<String>, String), StoreError> {
        Ok(sqlx::query_as(
            "SELECT (SELECT s.version || ', ' || s.cipher FROM pg_stat_ssl s WHERE s.pid = pg_backend_pid() AND s.ssl), \
                    current_setting('server_version')",
        )
        .fetch_one(&self.pool)
        .await?)
    }
}

impl SchemaAccess {
    pub(super) fn missing_privilege(&self, schema: &str) -> Option<MissingPrivilege> {
        let (role, quoted_role, quoted_schema) = (&self.role, quote_identifier(&self.role), quote_identifier(schema));
        let missing = |privilege: &str, object: String, remedy: String| {
            Some(MissingPrivilege { role: role.clone(), privilege: privilege.into(), object, remedy })
        };
        if !self.exists {
            return match self.may_create_schema {
                true => None,
                false => missing(
                    "CREATE",
                    format!("database \"{}\" (schema \"{schema}\" does not exist, and creating it needs that)", self.database),
                    format!(
                        "a DBA can create the schema for it, `CREATE SCHEMA {quoted_schema} AUTHORIZATION {quoted_role};`, \
                         or grant `GRANT CREATE ON DATABASE {} TO {quoted_role};`",
                        quote_identifier(&self.database)
                    ),
                ),
            };
        }
        if self.owns || (self.usage && self.create) {
            return None;
        }
        missing(
            if self.usage { "CREATE" } else { "USAGE and CREATE" },
            format!("schema \"{schema}\" (owned by \"{}\")", self.owner.as_deref().unwrap_or("?")),
            format!("a DBA can make it the owner, `ALTER SCHEMA {quoted_schema} OWNER TO {quoted_role};`"),
        )
    }
}
