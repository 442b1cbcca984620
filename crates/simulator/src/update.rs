//! `PATCH` and `DELETE` on customers, deals, leads and partnerships, and
//! `PATCH /partnerships/{key}/tags` (research notes §2.1–2.5): the documented fields merge
//! into the record, omitted ones stay, and every change bumps `updated_at` (through
//! `Table::modify`, which keeps the `updated` index right) so the mirror's polls see it.

use serde_json::{json, Map, Value};

use crate::Resource;

use super::{
    build::{self, DEAL_STAGES, LEAD_STATUSES},
    create::{self, DEAL_FIELDS, DEAL_SOURCES},
    lookup,
    mutation::Mutation,
    schema::{field, invalid, max_len, pick, Ty, WriteError},
    state::State,
};

type Body = Map<String, Value>;

/// The object types `PATCH` and `DELETE` address.
pub(super) const UPDATABLE: &[Resource] = &[Resource::Customer, Resource::Deal, Resource::Lead, Resource::Partnership];

/// The key of the record a path names (by key or external identifier), else a 404.
pub(super) fn target(state: &State, kind: Resource, id: &str) -> Result<String, WriteError> {
    lookup::in_path(state.table(kind), kind, id, state.config.external_ids_in_paths)
        .and_then(|row| row.value()["key"].as_str().map(str::to_owned))
        .ok_or_else(|| WriteError::NotFound(format!("No {} found with key '{id}'", kind.singular())))
}

fn stored(state: &State, kind: Resource, key: &str) -> Value {
    state.table(kind).get(key).map(|r| r.value()).unwrap_or(Value::Null)
}

/// Merges the body's updatable fields into the record; the record as it now is.
pub(super) fn update(state: &mut State, kind: Resource, id: &str, body: &Body, now: i64) -> Result<Value, WriteError> {
    let key = target(state, kind, id)?;
    let current = stored(state, kind, &key);
    let changes = match kind {
        Resource::Customer => customer(state, &current, body)?,
        Resource::Deal => deal(state, body)?,
        Resource::Lead => lead(state, &current, body)?,
        Resource::Partnership => partnership(state, &current, body)?,
        other => return Err(invalid(format!("{} records cannot be updated", other.singular()))),
    };
    state.table_mut(kind).modify(&key, now, |map| map.extend(changes));
    Ok(stored(state, kind, &key))
}

/// `DELETE` archives (`archived = true`); archiving an archived record again changes
/// nothing, so a retried DELETE is harmless.
pub(super) fn archive(state: &mut State, kind: Resource, id: &str, now: i64) -> Result<(), WriteError> {
    let key = target(state, kind, id)?;
    if state.table(kind).get(&key).is_some_and(|r| !r.archived) {
        state.table_mut(kind).modify(&key, now, |map| map.insert("archived".into(), true.into()));
    }
    Ok(())
}

/// `{"add": [...], "remove": [...]}`, either optional; the partnership as it now is.
pub(super) fn tags(state: &mut State, id: &str, body: &Body, now: i64) -> Result<Value, WriteError> {
    let key = target(state, Resource::Partnership, id)?;
    let list = |name: &str| -> Result<Vec<String>, WriteError> {
        let v = field(body, name, Ty::StrArray)?.unwrap_or_else(|| json!([]));
        Ok(v.as_array().into_iter().flatten().filter_map(|t| t.as_str().map(str::to_owned)).collect())
    };
    let (add, remove) = (list("add")?, list("remove")?);
    if !state.config.tags_body_understood {
        return Ok(stored(state, Resource::Partnership, &key));
    }
    state.apply(Mutation::PartnershipTags { key: key.clone(), add, remove }, now).map_err(|e| WriteError::NotFound(e.to_string()))?;
    Ok(stored(state, Resource::Partnership, &key))
}

/// Research notes §4.2: `meta` values read back in `mdata`, merged over what is there.
fn merged(current: &Value, into: &str, meta: Option<Value>) -> Option<(String, Value)> {
    let mut merged = current.get(into).and_then(Value::as_object).cloned().unwrap_or_default();
    merged.extend(meta?.as_object()?.clone());
    Some((into.to_owned(), Value::Object(merged)))
}

fn customer(state: &mut State, current: &Value, body: &Body) -> Result<Map<String, Value>, WriteError> {
    let mut changes =
        pick(body, &[("customer_key", Ty::NullStr), ("email", Ty::Email), ("name", Ty::NullStr), ("provider_key", Ty::NullStr)])?;
    max_len(changes.get("name").and_then(Value::as_str), 100)?;
    field(body, "member_key", Ty::NullStr)?;
    let meta = field(body, "meta", Ty::Object)?;
    if let Some(ck) = changes.get("customer_key").and_then(Value::as_str) {
        if current["customer_key"] != ck {
            create::unique_customer_key(state, ck)?;
        }
    }
    changes.extend(merged(current, "mdata", meta));
    Ok(changes)
}

fn deal(state: &State, body: &Body) -> Result<Map<String, Value>, WriteError> {
    let mut changes = pick(body, DEAL_FIELDS)?;
    changes.extend(pick(body, &[("stage", Ty::Enum(DEAL_STAGES)), ("source", Ty::Enum(DEAL_SOURCES)), ("mold_key", Ty::NullStr)])?);
    if let Some(group_key) = field(body, "group_key", Ty::NullStr)? {
        if let Some(gk) = group_key.as_str() {
            create::group(state, gk)?;
        }
        changes.insert("group_key".into(), group_key);
    }
    if let Some(partner_key) = field(body, "partner_key", Ty::NullStr)? {
        // The deal's team is its partner's team.
        let team = match partner_key.as_str() {
            Some(pk) => create::partner(state, pk)?["team"].clone(),
            None => Value::Null,
        };
        changes.insert("partner_key".into(), partner_key);
        changes.insert("team".into(), team);
    }
    Ok(changes)
}

fn lead(state: &State, current: &Value, body: &Body) -> Result<Map<String, Value>, WriteError> {
    let mut changes = pick(
        body,
        &[
            ("amount", Ty::NullInt),
            ("approved", Ty::NullBool),
            ("external_key", Ty::Str),
            ("mold_key", Ty::NullStr),
            ("status", Ty::Enum(LEAD_STATUSES)),
        ],
    )?;
    if let Some(group_key) = field(body, "group_key", Ty::NullStr)? {
        if let Some(gk) = group_key.as_str() {
            create::group(state, gk)?;
        }
        changes.insert("group_key".into(), group_key);
    }
    if let Some(partner_key) = field(body, "partner_key", Ty::Str)? {
        create::partner(state, partner_key.as_str().unwrap_or_default())?;
        changes.insert("partner_key".into(), partner_key);
    }
    changes.extend(merged(current, "meta", field(body, "meta", Ty::Object)?));
    Ok(changes)
}

fn partnership(state: &mut State, current: &Value, body: &Body) -> Result<Map<String, Value>, WriteError> {
    let mut changes = pick(body, &[("email", Ty::Email), ("first_name", Ty::NullStr), ("last_name", Ty::NullStr)])?;
    for name in ["first_name", "last_name"] {
        max_len(changes.get(name).and_then(Value::as_str), 50)?;
    }
    if let Some(pk) = field(body, "partner_key", Ty::Str)? {
        let pk = pk.as_str().unwrap_or_default().to_owned();
        max_len(Some(&pk), 255)?;
        if current["partner_key"] != pk.as_str() {
            if lookup::by_field(state.table(Resource::Partnership), "partner_key", &pk).is_some() {
                return Err(invalid(format!("A partnership with partner_key '{pk}' already exists")));
            }
            state.fake.claim(&pk);
        }
        changes.insert("partner_key".into(), pk.into());
    }
    if let Some(gk) = field(body, "group_key", Ty::Str)? {
        // Partnerships carry their group as a nested object.
        let group = create::group(state, gk.as_str().unwrap_or_default())?;
        changes.insert("group".into(), build::group_ref(&group));
    }
    if let Some(tk) = field(body, "tier_key", Ty::Str)? {
        changes.insert("tier".into(), create::tier(state, tk.as_str().unwrap_or_default())?);
    }
    if body.contains_key("manager_email") || body.contains_key("manager_name") {
        changes.insert("manager".into(), create::manager(body, current.get("manager"))?);
    }
    if let Some(tags) = field(body, "tags", Ty::StrArray)? {
        changes.insert("tags".into(), create::dedup(tags));
    }
    changes.extend(merged(current, "mdata", field(body, "meta", Ty::Object)?));
    Ok(changes)
}
