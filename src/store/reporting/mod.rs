//! The reporting layer: a `COMMENT ON` for every table, view and column the mirror creates,
//! and the views BI users read (`<table>_current`, `<table>_history`, the partner reports).
//!
//! Generated from the catalogue (`crate::object`, the one place that knows the typed columns)
//! and applied right after the migrations, in one transaction, at every start whose generated
//! statements differ from the last applied ones (`reporting_layer.fingerprint`). Why at start
//! rather than as a generated migration: a migration is frozen when written, so every new
//! typed column would need a hand-made migration repeating its comment and recreating the
//! views it appears in, and a test to catch the one forgotten; generated at start, a column
//! added to the catalogue is documented and in its views on the next start, by construction.
//! The rules that keep this additive, as migrations are: `COMMENT ON` replaces a comment, and
//! `CREATE OR REPLACE VIEW` may only add columns at the end of a view, which is why each
//! catalogue list only grows at its end (see `object::Column`) and views over a table select
//! `*` in the table's own column order. A start with nothing new to apply takes no lock on the
//! views, so a restart never waits for a BI query.

mod bookkeeping;
mod objects;
mod views;

use sqlx::PgConnection;

pub use bookkeeping::{TableDoc, BOOKKEEPING, FUNCTIONS};
pub use objects::{current_about, history_about, history_columns, table_columns};
pub use views::{Report, REPORTS};

/// Every statement of the layer, in the order they run: object tables (comments, then their
/// `_current` and `_history` views), the reports over those views, then the bookkeeping.
pub fn statements() -> String {
    let mut script = Script::default();
    objects::write(&mut script);
    views::write(&mut script);
    bookkeeping::write(&mut script);
    script.0
}

/// Applies the layer unless the same statements were applied last, on a connection whose
/// `search_path` is the mirror's schema. Concurrent starts queue on a transaction lock, so
/// they never race on a view definition.
pub(in crate::store) async fn apply_in(conn: &mut PgConnection, schema: &str) -> Result<Applied, sqlx::Error> {
    // The write queue's checks are generated from the catalogues too, and go with the layer.
    let sql = statements() + &super::write_queue_sql::statements(schema);
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1 || '.reporting_layer'), 1838)").bind(schema).execute(&mut *tx).await?;
    let current: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM reporting_layer WHERE fingerprint = md5($1))")
        .bind(&sql)
        .fetch_one(&mut *tx)
        .await?;
    if current {
        tx.commit().await?;
        return Ok(Applied::AlreadyCurrent);
    }
    sqlx::Executor::execute(&mut *tx, sqlx::raw_sql(&sql)).await?;
    sqlx::query(
        "INSERT INTO reporting_layer (fingerprint, version) VALUES (md5($1), $2) \
         ON CONFLICT (singleton) DO UPDATE SET fingerprint = excluded.fingerprint, version = excluded.version, applied_at = now()",
    )
    .bind(&sql)
    .bind(env!("CARGO_PKG_VERSION"))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Applied::Changed)
}

/// What a start did to the reporting layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The comments and views were (re)created.
    Changed,
    /// The last applied statements were these: nothing was touched.
    AlreadyCurrent,
}

/// Statements accumulated as one script (sent as one simple query).
#[derive(Default)]
struct Script(String);

impl Script {
    fn push(&mut self, statement: &str) {
        self.0.push_str(statement);
        self.0.push_str(";\n");
    }

    /// `COMMENT ON <what> <name> IS '<about>'`; `name` is already quoted where needed.
    fn comment(&mut self, what: &str, name: &str, about: &str) {
        self.push(&format!("COMMENT ON {what} {name} IS {}", literal(about)));
    }

    fn comment_columns<'a>(&mut self, relation: &str, columns: impl IntoIterator<Item = (&'a str, &'a str)>) {
        for (column, about) in columns {
            self.comment("COLUMN", &format!("{}.{}", ident(relation), ident(column)), about);
        }
    }
}

/// A SQL string literal.
pub(in crate::store) fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A quoted SQL identifier (`type`, `value` and `default`-like names are reserved words).
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_identifiers_are_quoted() {
        assert_eq!(literal("YOUR key's value"), "'YOUR key''s value'");
        assert_eq!(ident("type"), "\"type\"");
    }

    #[test]
    fn the_layer_is_the_same_text_on_every_call() {
        // The fingerprint is only useful if generating twice gives the same statements.
        assert_eq!(statements(), statements());
        assert!(statements().contains("CREATE OR REPLACE VIEW \"deals_history\""));
    }
}
