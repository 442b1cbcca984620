//! `POST /{customers,deals,leads,partnerships,transactions,actions,rewards}`: a record
//! built from the body, validated as the research notes describe (§2.1–2.8), with a new
//! key and `created_at = updated_at = now`.
//!
//! Records are built by the same `build` functions as the generated data (so they have
//! the same shape: nested team, group, company…), then the fields a client supplies are
//! set from the body, `null` where it gave none: the API stores what it was given and
//! invents no account names or amounts.

mod money;
mod sales;

use serde_json::{json, Map, Value};

use crate::Resource;

use super::{
    build::{self, Stamp},
    fake::slug,
    lookup,
    schema::{field, fill, invalid, max_len, opt_text, pick, require, text, Ty, WriteError},
    state::State,
};

pub(super) use sales::{DEAL_FIELDS, DEAL_SOURCES};

type Body = Map<String, Value>;

/// The object types `POST` creates.
pub(super) const CREATABLE: &[Resource] =
    &[Resource::Customer, Resource::Deal, Resource::Lead, Resource::Partnership, Resource::Transaction, Resource::Action, Resource::Reward];

/// Creates a record of `kind` (one of [`CREATABLE`]) from `body`; the record as stored.
pub(super) fn create(state: &mut State, kind: Resource, body: &Body, now: i64) -> Result<Value, WriteError> {
    let record = match kind {
        Resource::Customer => customer(state, body, now)?,
        Resource::Partnership => partnership(state, body, now)?,
        Resource::Deal => sales::deal(state, body, now)?,
        Resource::Lead => sales::lead(state, body, now)?,
        Resource::Transaction => money::transaction(state, body, now)?,
        Resource::Action => money::action(state, body, now)?,
        Resource::Reward => money::reward(state, body, now)?,
        other => return Err(invalid(format!("{} records cannot be created", other.singular()))),
    };
    state.table_mut(kind).insert(record.clone());
    Ok(record)
}

/// The partnership whose `partner_key` this is (the API's "must belong to a partner in
/// your program").
pub(super) fn partner(state: &State, partner_key: &str) -> Result<Value, WriteError> {
    lookup::by_field(state.table(Resource::Partnership), "partner_key", partner_key)
        .map(|r| r.value())
        .ok_or_else(|| invalid(format!("No partnership found with partner_key '{partner_key}' in your program")))
}

pub(super) fn group(state: &State, group_key: &str) -> Result<Value, WriteError> {
    state.table(Resource::Group).get(group_key).map(|r| r.value()).ok_or_else(|| invalid(format!("No group found with key '{group_key}'")))
}

/// Where partners land when no group is named.
fn default_group(state: &State) -> Value {
    let groups = state.table(Resource::Group);
    let default = groups.newest_first().map(|r| r.value()).find(|g| g["default"] == true && g["archived"] != true);
    default.or_else(|| groups.newest_first().next().map(|r| r.value())).unwrap_or_else(|| json!({}))
}

/// Refuses a `customer_key` some customer already has (it addresses customers in paths),
/// and reserves it.
pub(super) fn unique_customer_key(state: &mut State, customer_key: &str) -> Result<(), WriteError> {
    if lookup::by_field(state.table(Resource::Customer), "customer_key", customer_key).is_some() {
        return Err(invalid(format!("A customer with customer_key '{customer_key}' already exists")));
    }
    state.fake.claim(customer_key);
    Ok(())
}

/// A new customer of `partnership`, as the create and convert endpoints make it.
pub(super) fn new_customer(state: &mut State, partnership: &Value, customer_key: Option<&str>, email: &str, now: i64) -> Value {
    let mut c = build::customer(&mut state.fake, partnership, Stamp::new(now, now));
    c["customer_key"] = customer_key.into();
    c["email"] = email.into();
    c["name"] = Value::Null;
    c["provider_key"] = Value::Null;
    c["source_type"] = "api".into();
    c["source_key"] = Value::Null;
    c["test"] = false.into();
    c["mdata"] = json!({});
    c
}

const CUSTOMER_FIELDS: &[(&str, Ty)] = &[("name", Ty::NullStr), ("provider_key", Ty::NullStr)];

fn customer(state: &mut State, body: &Body, now: i64) -> Result<Value, WriteError> {
    require(body, &["customer_key", "email", "partner_key"])?;
    let customer_key = opt_text(body, "customer_key")?;
    field(body, "email", Ty::Email)?;
    let email = text(body, "email")?;
    let partner_key = text(body, "partner_key")?;
    let picked = pick(body, CUSTOMER_FIELDS)?;
    max_len(picked.get("name").and_then(Value::as_str), 100)?;
    field(body, "member_key", Ty::NullStr)?;
    let meta = field(body, "meta", Ty::Object)?;
    let partnership = partner(state, &partner_key)?;
    if let Some(ck) = &customer_key {
        unique_customer_key(state, ck)?;
    }
    let mut c = new_customer(state, &partnership, customer_key.as_deref(), &email, now);
    fill(&mut c, &picked, CUSTOMER_FIELDS);
    // Research notes §4.2: `meta` is accepted but reads back as `{}`; its values show up
    // in `mdata`.
    c["mdata"] = meta.unwrap_or_else(|| json!({}));
    c["meta"] = json!({});
    Ok(c)
}

const PARTNERSHIP_FIELDS: &[(&str, Ty)] = &[("first_name", Ty::NullStr), ("last_name", Ty::NullStr)];

fn partnership(state: &mut State, body: &Body, now: i64) -> Result<Value, WriteError> {
    require(body, &["email"])?;
    field(body, "email", Ty::Email)?;
    let email = text(body, "email")?;
    let picked = pick(body, PARTNERSHIP_FIELDS)?;
    for name in ["first_name", "last_name"] {
        max_len(picked.get(name).and_then(Value::as_str), 50)?;
    }
    let partner_key = opt_text(body, "partner_key")?;
    max_len(partner_key.as_deref(), 255)?;
    let group = match opt_text(body, "group_key")? {
        Some(key) => group(state, &key)?,
        None => default_group(state),
    };
    let tags = field(body, "tags", Ty::StrArray)?;
    let manager = manager(body, None)?;
    let tier = opt_text(body, "tier_key")?.map(|k| tier(state, &k)).transpose()?;
    let meta = field(body, "meta", Ty::Object)?;
    let partner_key = match partner_key {
        Some(pk) => {
            if lookup::by_field(state.table(Resource::Partnership), "partner_key", &pk).is_some() {
                return Err(invalid(format!("A partnership with partner_key '{pk}' already exists")));
            }
            state.fake.claim(&pk);
            pk
        }
        None => {
            let name = |f: &str| picked.get(f).and_then(Value::as_str).map(slug).unwrap_or_default();
            let base = match format!("{}{}", name("first_name"), name("last_name")) {
                b if !b.is_empty() => b,
                _ => slug(email.split('@').next().unwrap_or("partner")),
            };
            state.fake.unique(|rng| format!("{base}{}", rand::Rng::gen_range(rng, 10..100_000)))
        }
    };
    let mut p = build::partnership(&mut state.fake, &state.account, &group, Stamp::new(now, now));
    fill(&mut p, &picked, PARTNERSHIP_FIELDS);
    let full_name = [&p["first_name"], &p["last_name"]].iter().filter_map(|v| v.as_str()).collect::<Vec<_>>().join(" ");
    p["team"]["name"] = if full_name.is_empty() { email.clone().into() } else { full_name.into() };
    p["partner_key"] = partner_key.into();
    p["email"] = email.into();
    p["joined_at"] = now.into();
    p["claimed"] = false.into();
    p["tags"] = dedup(tags.unwrap_or_else(|| json!([])));
    p["manager"] = manager;
    p["tier"] = tier.unwrap_or_else(|| state.account.tiers[0].clone());
    p["mdata"] = meta.unwrap_or_else(|| json!({}));
    state.teams.insert(p["team"]["key"].as_str().unwrap_or_default().to_owned(), Default::default());
    Ok(p)
}

/// `manager_email`/`manager_name` from the body as the record's `manager` object, over
/// `current`; `null` when neither is set.
pub(super) fn manager(body: &Body, current: Option<&Value>) -> Result<Value, WriteError> {
    let email = field(body, "manager_email", Ty::NullStr)?;
    let name = field(body, "manager_name", Ty::NullStr)?;
    let mut manager = current.filter(|m| m.is_object()).cloned().unwrap_or_else(|| json!({"name": null, "email": null}));
    if let Some(email) = email {
        manager["email"] = email;
    }
    if let Some(name) = name {
        manager["name"] = name;
    }
    Ok(if manager["email"].is_null() && manager["name"].is_null() { Value::Null } else { manager })
}

/// The account's tier with this key, as a partnership's `tier` object.
pub(super) fn tier(state: &State, tier_key: &str) -> Result<Value, WriteError> {
    state
        .account
        .tiers
        .iter()
        .find(|t| t["key"] == tier_key)
        .cloned()
        .ok_or_else(|| invalid(format!("No tier found with key '{tier_key}'")))
}

/// Tags once each, in the order given.
pub(super) fn dedup(tags: Value) -> Value {
    let mut seen: Vec<Value> = Vec::new();
    for tag in tags.as_array().into_iter().flatten() {
        if !seen.contains(tag) {
            seen.push(tag.clone());
        }
    }
    Value::Array(seen)
}
