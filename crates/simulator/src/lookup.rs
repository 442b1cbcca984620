//! Finding records by the identifiers the API accepts in paths and bodies besides the
//! `key`: a customer's `customer_key`, a partnership's `partner_key`, a deal's or lead's
//! `external_key` (research notes §4.11).

use serde_json::Value;

use crate::Resource;

use super::table::{Row, Table};

/// The fields a path may name a record by besides its `key`.
pub(super) fn external_ids(kind: Resource) -> &'static [&'static str] {
    match kind {
        Resource::Customer => &["customer_key"],
        Resource::Partnership => &["partner_key", "email"],
        Resource::Deal | Resource::Lead => &["external_key"],
        _ => &[],
    }
}

/// The newest record whose top-level `field` is the string `value`.
pub(super) fn by_field<'a>(table: &'a Table, field: &str, value: &str) -> Option<&'a Row> {
    // Records are stored as compact JSON, so a match contains `"field":"value"`; the
    // substring test spares parsing every record (nested objects may match too, hence
    // the check on the parsed record).
    let needle = format!("\"{field}\":{}", Value::from(value));
    table.newest_first().find(|r| r.raw().get().contains(&needle) && r.value().get(field).and_then(Value::as_str) == Some(value))
}

/// A record by key or external identifier; archived ones too.
pub(super) fn find<'a>(table: &'a Table, kind: Resource, id: &str) -> Option<&'a Row> {
    table.get(id).or_else(|| external_ids(kind).iter().find_map(|field| by_field(table, field, id)))
}

/// The record a URL path names. Customers are addressed by their `customer_key` only
/// (`/v2/customers/{customer_key}`, research notes §4.11), so a client that puts
/// PartnerStack's `key` there gets a 404, as it would for real; other kinds by key, and by
/// external identifier when `external_ids` (`SimulatorConfig::external_ids_in_paths`).
pub(super) fn in_path<'a>(table: &'a Table, kind: Resource, id: &str, external_ids: bool) -> Option<&'a Row> {
    match kind {
        Resource::Customer => by_field(table, "customer_key", id),
        _ if external_ids => find(table, kind, id),
        _ => table.get(id),
    }
}
