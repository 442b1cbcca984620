//! Who besides the mirror may use its schema: the roles of `database.readers`,
//! `database.consumers` and `database.writers` (docs/your-database.md), granted at every start.
//!
//! The tiers nest: readers get USAGE on the schema and SELECT on every table and view (now,
//! and by default privileges on every one the mirror creates later, so a regenerated view is
//! readable the moment it exists); consumers may also call `next_events` and `commit_events`
//! (which runs as its owner, so they write no table directly); writers may also queue
//! write-backs (INSERT of the columns a request is made of) and cancel pending ones (UPDATE of
//! `status`, which a trigger limits to `cancelled` for anyone but the owner). PUBLIC gets
//! nothing. The lists are the truth for the roles they name: a role's privileges are brought
//! to its tier's, and a role taken out of the configuration loses what it was given (the roles
//! granted at the last start are kept in `granted_roles`).

use super::{quote_identifier, Store, StoreError};

/// The roles named in the configuration, by what they may do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Roles {
    pub readers: Vec<String>,
    pub consumers: Vec<String>,
    pub writers: Vec<String>,
}

/// What a role may do with the mirror's schema; each tier includes the ones before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, strum::IntoStaticStr, strum::Display)]
#[strum(serialize_all = "lowercase")]
pub enum Tier {
    Reader,
    Consumer,
    Writer,
}

impl Tier {
    fn as_str(self) -> &'static str {
        self.into()
    }
}

/// The columns a writer may give a new request; the rest (status, attempts, results) are the
/// workers'.
const REQUEST_COLUMNS: &str = "operation, object_type, object_key, payload, idempotency_key, max_attempts, run_after";

impl Roles {
    /// Every role named, with its tier.
    pub fn tiers(&self) -> Vec<(&str, Tier)> {
        let lists = [(&self.readers, Tier::Reader), (&self.consumers, Tier::Consumer), (&self.writers, Tier::Writer)];
        lists.into_iter().flat_map(|(names, tier)| names.iter().map(move |n| (n.as_str(), tier))).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.readers.is_empty() && self.consumers.is_empty() && self.writers.is_empty()
    }
}

impl Store {
    /// Roles named in `roles` that this server does not know, and a role that is the mirror's
    /// own (revoking its tier's missing privileges would take them from the tables' owner).
    /// Checked before anything is granted or migrated.
    pub async fn check_roles(&self, roles: &Roles) -> Result<(), StoreError> {
        let names: Vec<&str> = roles.tiers().into_iter().map(|(name, _)| name).collect();
        if names.is_empty() {
            return Ok(());
        }
        let (unknown, own): (Vec<String>, Option<String>) = sqlx::query_as(
            "SELECT coalesce(array_agg(n) FILTER (WHERE NOT EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = n)), '{}'), \
                    (array_agg(n) FILTER (WHERE n = current_user))[1] \
             FROM unnest($1::text[]) AS n",
        )
        .bind(&names)
        .fetch_one(&self.pool)
        .await?;
        if !unknown.is_empty() {
            return Err(StoreError::UnknownRoles(unknown));
        }
        if let Some(own) = own {
            return Err(StoreError::OwnRole(own));
        }
        Ok(())
    }

    /// Brings every named role's privileges to its tier's, takes them from roles named at the
    /// last start and no longer, and takes everything from PUBLIC. Idempotent; concurrent
    /// starts queue on a transaction lock (two GRANTs on one object at once would fail).
    pub async fn grant(&self, roles: &Roles) -> Result<(), StoreError> {
        self.check_roles(roles).await?;
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1 || '.granted_roles'), 1839)").bind(&self.schema).execute(&mut *tx).await?;
        let named: Vec<&str> = roles.tiers().into_iter().map(|(name, _)| name).collect();
        let dropped: Vec<String> = sqlx::query_scalar(
            "SELECT g.role FROM granted_roles g WHERE g.role <> ALL($1) AND EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = g.role)",
        )
        .bind(&named)
        .fetch_all(&mut *tx)
        .await?;
        sqlx::Executor::execute(&mut *tx, sqlx::raw_sql(&script(&self.schema, &roles.tiers(), &dropped))).await?;
        let tiers: Vec<&str> = roles.tiers().into_iter().map(|(_, tier)| tier.as_str()).collect();
        sqlx::query(
            "WITH named AS (SELECT * FROM unnest($1::text[], $2::text[]) AS n(role, tier)), \
                  gone AS (DELETE FROM granted_roles g WHERE g.role <> ALL($1)) \
             INSERT INTO granted_roles (role, tier) SELECT role, tier FROM named \
             ON CONFLICT (role) DO UPDATE SET tier = excluded.tier, granted_at = now() WHERE granted_roles.tier <> excluded.tier",
        )
        .bind(&named)
        .bind(&tiers)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        if !dropped.is_empty() {
            tracing::info!(roles = ?dropped, "privileges on the mirror's schema taken from roles no longer in the configuration");
        }
        Ok(())
    }
}

/// The statements that bring the schema's privileges to `roles`.
fn script(schema: &str, roles: &[(&str, Tier)], dropped: &[String]) -> String {
    let s = quote_identifier(schema);
    // A mirror in the database's `public` schema shares it with everything else there: what
    // PUBLIC may do in it is the DBA's to decide, not the mirror's.
    let mut sql = if schema == "public" {
        Vec::new()
    } else {
        vec![
            format!("REVOKE ALL ON SCHEMA {s} FROM PUBLIC"),
            format!("REVOKE ALL ON ALL TABLES IN SCHEMA {s} FROM PUBLIC"),
            format!("REVOKE ALL ON ALL SEQUENCES IN SCHEMA {s} FROM PUBLIC"),
            format!("REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA {s} FROM PUBLIC"),
        ]
    };
    let consuming = format!("{s}.next_events(text, integer), {s}.commit_events(text, bigint)");
    let queueing = format!("{s}.write_queue_touches(text, text, text, jsonb)");
    for &(role, tier) in roles {
        let r = quote_identifier(role);
        sql.push(format!("GRANT USAGE ON SCHEMA {s} TO {r}"));
        sql.push(format!("GRANT SELECT ON ALL TABLES IN SCHEMA {s} TO {r}"));
        sql.push(format!("ALTER DEFAULT PRIVILEGES IN SCHEMA {s} GRANT SELECT ON TABLES TO {r}"));
        sql.push(format!("GRANT EXECUTE ON FUNCTION {s}.epoch_ms_to_timestamptz(bigint) TO {r}"));
        sql.push(match tier >= Tier::Consumer {
            true => format!("GRANT EXECUTE ON FUNCTION {consuming} TO {r}"),
            false => format!("REVOKE EXECUTE ON FUNCTION {consuming} FROM {r}"),
        });
        if tier == Tier::Writer {
            sql.push(format!("GRANT INSERT ({REQUEST_COLUMNS}), UPDATE (status) ON {s}.write_queue TO {r}"));
            // Called by the INSERT trigger with the writer's rights.
            sql.push(format!("GRANT EXECUTE ON FUNCTION {queueing} TO {r}"));
        } else {
            sql.push(format!("REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON {s}.write_queue FROM {r}"));
            sql.push(format!("REVOKE EXECUTE ON FUNCTION {queueing} FROM {r}"));
        }
    }
    for role in dropped {
        let r = quote_identifier(role);
        sql.push(format!("REVOKE ALL ON ALL TABLES IN SCHEMA {s} FROM {r}"));
        sql.push(format!("REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA {s} FROM {r}"));
        sql.push(format!("ALTER DEFAULT PRIVILEGES IN SCHEMA {s} REVOKE SELECT ON TABLES FROM {r}"));
        sql.push(format!("REVOKE ALL ON SCHEMA {s} FROM {r}"));
    }
    sql.join(";\n") + ";\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_is_granted_reading_and_refused_consuming_and_queueing() {
        let sql = script("ps", &[("bi", Tier::Reader)], &[]);
        assert!(sql.contains("GRANT SELECT ON ALL TABLES IN SCHEMA \"ps\" TO \"bi\""));
        assert!(
            sql.contains("REVOKE EXECUTE ON FUNCTION \"ps\".next_events(text, integer), \"ps\".commit_events(text, bigint) FROM \"bi\"")
        );
        assert!(sql.contains("REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON \"ps\".write_queue FROM \"bi\""));
    }

    #[test]
    fn public_is_refused_everything_except_in_the_schema_it_shares_with_everything_else() {
        assert!(script("ps", &[], &[]).contains("REVOKE ALL ON SCHEMA \"ps\" FROM PUBLIC"));
        assert!(!script("public", &[], &[]).contains("FROM PUBLIC"), "the public schema's PUBLIC privileges are the DBA's");
    }

    #[test]
    fn tiers_nest_in_the_order_readers_consumers_writers() {
        let roles = Roles { readers: vec!["a".into()], consumers: vec!["b".into()], writers: vec!["c".into()] };
        assert_eq!(roles.tiers(), vec![("a", Tier::Reader), ("b", Tier::Consumer), ("c", Tier::Writer)]);
        assert!(Tier::Writer > Tier::Consumer && Tier::Consumer > Tier::Reader);
    }
}
