//! The object tables' comments and their two views each: `<table>_current` (the rows not
//! deleted) and `<table>_history` (one row per version of each record, from the events).

use super::{ident, literal, Script};
use crate::object::{join_paths, Column, ColumnType, ObjectKind};
use crate::store::epoch_ms_sql;

pub(super) fn write(script: &mut Script) {
    for kind in ObjectKind::ALL {
        let table = kind.table();
        let columns = table_columns(kind);
        script.comment("TABLE", &ident(table), kind.about());
        script.comment_columns(table, columns.iter().map(|(c, about)| (*c, about.as_str())));

        let current = format!("{table}_current");
        // `*`: the view follows the table's column order, which only grows at its end.
        script.push(&format!(
            "CREATE OR REPLACE VIEW {} AS SELECT t.* FROM {} t WHERE t.deleted_at IS NULL",
            ident(&current),
            ident(table)
        ));
        script.comment("VIEW", &ident(&current), &current_about(kind));
        script.comment_columns(&current, columns.iter().map(|(c, about)| (*c, about.as_str())));

        let history = format!("{table}_history");
        script.push(&format!("CREATE OR REPLACE VIEW {} AS {}", ident(&history), history_sql(kind)));
        script.comment("VIEW", &ident(&history), &history_about(kind));
        let docs = history_columns(kind, &columns);
        script.comment_columns(&history, docs.iter().map(|(c, about)| (*c, about.as_str())));
    }
}

/// What `<table>_current` is, for its comment.
pub fn current_about(kind: ObjectKind) -> String {
    format!(
        "The {noun} rows not deleted: `{table}` WHERE deleted_at IS NULL (neither archived at PartnerStack nor gone from \
         a complete key scan). The columns are `{table}`'s.",
        noun = kind.noun(),
        table = kind.table()
    )
}

/// Every column of an object table and what it holds: the common ones, then the typed ones.
pub fn table_columns(kind: ObjectKind) -> Vec<(&'static str, String)> {
    let noun = kind.noun();
    let table = kind.table();
    let mut key = format!("PartnerStack's internal key of the {noun} (the primary key; the API's `key`).");
    key.push_str(&joined_by(kind, "key"));
    key.push_str(&format!(" Its events: `events.object_key` WHERE `object_type = '{}'`.", kind.singular()));
    let mut columns = vec![
        ("key", key),
        ("created_at", format!("When the {noun} was created at PartnerStack (the API's epoch milliseconds, converted exactly).")),
        ("updated_at", format!("When PartnerStack last changed the {noun}.")),
        ("archived", format!("True once the {noun} is archived at PartnerStack (what the API's DELETE does).")),
        (
            "deleted_at",
            format!(
                "When the mirror first saw the {noun} archived or gone from a complete key scan; NULL while it is live. \
                 Rows are never removed: `{table}_current` has the live ones."
            ),
        ),
        ("raw", format!("The {noun} exactly as the API returned it: every field, also those without a column of their own.")),
        ("first_synced_at", "When the mirror first wrote this row.".to_owned()),
        (
            "synced_at",
            "When the mirror last changed this row (an unchanged record is not rewritten; per-object freshness is in `sync_state`)."
                .to_owned(),
        ),
    ];
    columns.extend(kind.columns().iter().map(|c| (c.name, typed_about(kind, c))));
    columns
}

/// A typed column's description with the joins it takes part in.
fn typed_about(kind: ObjectKind, c: &Column) -> String {
    let mut about = c.about.to_owned();
    if let Some(join) = c.joins {
        about.push_str(&format!(" Joins `{}.{}`.", join.kind.table(), join.column));
    }
    about.push_str(&joined_by(kind, c.name));
    about
}

/// " Joined by `a.b`, `c.d`." for a column other tables' typed columns join, else "".
fn joined_by(kind: ObjectKind, column: &str) -> String {
    let from: Vec<String> = join_paths()
        .filter(|(_, _, join)| join.kind == kind && join.column == column)
        .map(|(other, c, _)| format!("`{}.{}`", other.table(), c.name))
        .collect();
    if from.is_empty() {
        String::new()
    } else {
        format!(" Joined by {}.", from.join(", "))
    }
}

/// What `<table>_history` is, for its comment.
pub fn history_about(kind: ObjectKind) -> String {
    let (table, noun) = (kind.table(), kind.noun());
    format!(
        "One row per version of each {noun}, derived from the events (as far back as `events.retain` keeps them). \
         `{table}` as it stood at a time t: WHERE valid_from <= t AND (valid_to > t OR valid_to IS NULL). A version begins \
         with a backfill's `created` event, with each distinct change (one version however many events a change emits) \
         and with a restore; it ends with the next version or with a deletion (archived, or gone from a key scan), after \
         which the {noun} has no version until it is restored. A live row without any event has one version, from its \
         `updated_at`."
    )
}

/// `<table>_history`'s columns: the validity columns, the common ones, then the typed ones
/// (new typed columns only ever append).
pub fn history_columns(kind: ObjectKind, table: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
    let noun = kind.noun();
    let of_table = |name: &str| table.iter().find(|(c, _)| *c == name).map(|(_, about)| about.clone()).unwrap_or_default();
    let mut columns = vec![
        ("key", of_table("key")),
        (
            "valid_from",
            "When this version began: its first event's `occurred_at` (the record's `updated_at`, or the scan time for a \
             deletion seen by a key scan), never earlier than the version before."
                .to_owned(),
        ),
        (
            "valid_to",
            format!("When this version ended: the next version's `valid_from`, or the {noun}'s deletion. NULL for the current version."),
        ),
        (
            "event_id",
            "The event that began this version (`events.id`); NULL for a current version known only from the table (a row \
             without events: loaded with `sync.emit_backfill_events = false`, or unchanged since retention pruned them)."
                .to_owned(),
        ),
        ("created_at", of_table("created_at")),
        ("updated_at", format!("When PartnerStack had last changed the {noun}, in this version.")),
        ("raw", format!("The {noun} exactly as the API returned it, in this version (the event's `data`).")),
    ];
    columns.extend(kind.columns().iter().map(|c| (c.name, of_table(c.name))));
    columns
}

/// The history of one object type from `events`. Each event's state is its `data`, or none
/// for a deletion (a `deleted` event's `data` is the record before it, and an archived record
/// is deleted too); a version starts wherever the state differs from the event before, so
/// `deal.updated` + `deal.stage_updated` with the same data are one version. `valid_from`
/// is the running maximum of `occurred_at`, so a version never begins before the one it
/// follows (a record restored by a later listing keeps its old `updated_at`).
/// Every window is partitioned by the key alone: a `WHERE key = …` on the view reaches the
/// events' `(object_type, object_key)` index. Live rows without any event (see below) add
/// their current version from the table.
fn history_sql(kind: ObjectKind) -> String {
    let object_type = literal(kind.singular());
    let deleted = literal(&format!("{}.deleted", kind.singular()));
    let mut selects = vec![
        "v.object_key AS key".to_owned(),
        "v.at AS valid_from".into(),
        "v.until AS valid_to".into(),
        "v.id AS event_id".into(),
        format!("{} AS created_at", epoch_ms_sql("(v.state ->> 'created_at')::bigint")),
        format!("{} AS updated_at", epoch_ms_sql("(v.state ->> 'updated_at')::bigint")),
        "v.state AS raw".into(),
    ];
    selects.extend(kind.columns().iter().map(|c| format!("{} AS {}", from_json(c, "v.state"), ident(c.name))));
    // A live row with no events at all (loaded with `sync.emit_backfill_events = false`, or
    // unchanged since retention pruned its events) is in its current version since its
    // `updated_at`, as far as anyone can tell.
    let mut table_selects = vec![
        "t.key".to_owned(),
        "coalesce(t.updated_at, t.created_at, t.first_synced_at)".into(),
        "NULL::timestamptz".into(),
        "NULL::bigint".into(),
        "t.created_at".into(),
        "t.updated_at".into(),
        "t.raw".into(),
    ];
    table_selects.extend(kind.columns().iter().map(|c| format!("t.{}", ident(c.name))));
    format!(
        "WITH states AS ( \
             SELECT e.id, e.object_key, max(e.occurred_at) OVER w AS at, \
                    CASE WHEN e.event_type = {deleted} OR lower(e.data ->> 'archived') = 'true' THEN NULL ELSE e.data END AS state \
             FROM events e WHERE e.object_type = {object_type} \
             WINDOW w AS (PARTITION BY e.object_key ORDER BY e.id) \
         ), changes AS ( \
             SELECT s.*, lag(s.state) OVER (PARTITION BY s.object_key ORDER BY s.id) AS before \
             FROM states s \
         ), versions AS ( \
             SELECT c.id, c.object_key, c.at, c.state, lead(c.at) OVER (PARTITION BY c.object_key ORDER BY c.id) AS until \
             FROM changes c WHERE c.state IS DISTINCT FROM c.before \
         ) \
         SELECT {selects} FROM versions v WHERE v.state IS NOT NULL \
         UNION ALL \
         SELECT {table_selects} FROM {table} t WHERE t.deleted_at IS NULL \
           AND NOT EXISTS (SELECT 1 FROM events e WHERE e.object_type = {object_type} AND e.object_key = t.key)",
        selects = selects.join(", "),
        table_selects = table_selects.join(", "),
        table = ident(kind.table()),
    )
}

/// A typed column's value read from a record's JSON, as the page writes store it
/// (`store::page` binds the values `record::check` converted; the same rules in SQL).
pub(super) fn from_json(c: &Column, json: &str) -> String {
    let path = c.path.iter().map(|p| literal(p)).collect::<Vec<_>>().join(", ");
    let text = format!("({json} #>> ARRAY[{path}])");
    match c.ty {
        ColumnType::Text => text,
        ColumnType::BigInt => format!("{text}::bigint"),
        ColumnType::Bool => format!("{text}::boolean"),
        ColumnType::Timestamp => epoch_ms_sql(&format!("{text}::bigint")),
        ColumnType::Date => format!("{text}::date"),
        ColumnType::TextArray => format!(
            "CASE WHEN jsonb_typeof({json} #> ARRAY[{path}]) = 'array' THEN ARRAY(SELECT jsonb_array_elements_text({json} #> ARRAY[{path}])) END"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_column_of_an_object_table_is_described_once() {
        for kind in ObjectKind::ALL {
            let columns = table_columns(kind);
            let mut names: Vec<&str> = columns.iter().map(|(c, _)| *c).collect();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), columns.len(), "{kind}");
            assert!(columns.iter().all(|(_, about)| !about.is_empty()), "{kind}");
        }
    }

    #[test]
    fn keys_name_the_columns_that_join_them() {
        let customers = table_columns(ObjectKind::Customer);
        let key = &customers.iter().find(|(c, _)| *c == "key").unwrap().1;
        assert!(key.contains("`transactions.customer_key`") && key.contains("`rewards.customer_key`"), "{key}");
        let transactions = table_columns(ObjectKind::Transaction);
        let customer_key = &transactions.iter().find(|(c, _)| *c == "customer_key").unwrap().1;
        assert!(customer_key.contains("Joins `customers.key`"), "{customer_key}");
    }

    #[test]
    fn nested_fields_are_read_by_their_path() {
        let team = ObjectKind::Deal.columns().iter().find(|c| c.name == "team_key").unwrap();
        assert_eq!(from_json(team, "d"), "(d #>> ARRAY['team', 'key'])");
    }
}
