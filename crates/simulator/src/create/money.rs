//! Creating transactions, actions and rewards (research notes §2.6–2.8): the records
//! that pay partners, each tied to a customer or partnership that must exist.

use serde_json::{json, Value};

use super::{
    super::{
        build::{self, Stamp},
        lookup,
        schema::repr,
    },
    field, invalid, opt_text, partner, require, text, Body, Ty, WriteError,
};
use crate::{state::State, Resource};

/// The documented range of a transaction amount, in cents.
const AMOUNT_LIMIT: i64 = 50_000_000_000;
/// The ways a transaction may name its customer; exactly one must be given.
const CUSTOMER_REFS: &[&str] = &["customer_key", "customer_external_key", "customer_email"];

fn customer_by(state: &State, reference: &str, value: &str) -> Result<Value, WriteError> {
    let customers = state.table(Resource::Customer);
    let row = match reference {
        "customer_key" => customers.get(value),
        "customer_external_key" => lookup::by_field(customers, "customer_key", value),
        _ => lookup::by_field(customers, "email", value),
    };
    row.map(|r| r.value()).ok_or_else(|| invalid(format!("No customer found with {reference} '{value}'")))
}

/// The partnership a record points at by key; a stand-in with just the key when it was
/// hard-deleted since.
fn partnership_of(state: &State, partnership_key: &Value) -> Value {
    let key = partnership_key.as_str().unwrap_or_default();
    state.table(Resource::Partnership).get(key).map_or_else(|| json!({"key": partnership_key}), |r| r.value())
}

pub(super) fn transaction(state: &mut State, body: &Body, now: i64) -> Result<Value, WriteError> {
    require(body, &["amount", "currency"])?;
    let amount = field(body, "amount", Ty::Int)?.and_then(|v| v.as_i64()).unwrap_or_default();
    if amount < -AMOUNT_LIMIT {
        return Err(invalid(format!("{amount} is less than the minimum of -{AMOUNT_LIMIT}")));
    }
    if amount > AMOUNT_LIMIT {
        return Err(invalid(format!("{amount} is greater than the maximum of {AMOUNT_LIMIT}")));
    }
    let currency = text(body, "currency")?;
    if currency.len() != 3 || !currency.chars().all(|c| c.is_ascii_alphabetic()) {
        return Err(invalid(format!("{} does not match '^[A-Za-z]{{3}}$'", repr(&Value::from(currency)))));
    }
    let given: Vec<&str> = CUSTOMER_REFS.iter().copied().filter(|r| body.get(*r).is_some_and(|v| !v.is_null())).collect();
    let [reference] = given[..] else {
        return Err(invalid("Exactly one of 'customer_key', 'customer_external_key' or 'customer_email' is required"));
    };
    let reference_value = text(body, reference)?;
    let key = opt_text(body, "key")?;
    if let Some(k) = &key {
        match k.chars().count() {
            n if n < 4 => return Err(invalid(format!("{} is too short", repr(&Value::from(k.as_str()))))),
            n if n > 255 => return Err(invalid(format!("{} is too long", repr(&Value::from(k.as_str()))))),
            _ => {}
        }
    }
    let category_key = field(body, "category_key", Ty::NullStr)?;
    let product_key = field(body, "product_key", Ty::NullStr)?;
    let metadata = field(body, "metadata", Ty::Object)?;
    if metadata.as_ref().and_then(Value::as_object).is_some_and(|m| m.len() > 25) {
        return Err(invalid("'metadata' has too many properties (at most 25)"));
    }
    let test = field(body, "test", Ty::Bool)?;
    // The docs let a client backdate a transaction.
    let created = field(body, "created_at", Ty::Int)?.and_then(|v| v.as_i64()).unwrap_or(now);
    let customer = customer_by(state, reference, &reference_value)?;
    if let Some(k) = &key {
        if state.table(Resource::Transaction).position(k).is_some() {
            return Err(invalid(format!("A transaction with key '{k}' already exists")));
        }
        state.fake.claim(k);
    }
    let mut t = build::transaction(&mut state.fake, &state.account, &customer, Stamp::new(created, now));
    if let Some(k) = key {
        t["key"] = k.into();
    }
    let currency = currency.to_ascii_uppercase();
    t["amount"] = amount.into();
    t["amount_usd"] = ((amount as f64 * build::usd_rate(&currency)).round() as i64).into();
    t["currency"] = currency.into();
    t["approved"] = true.into();
    t["test"] = test.unwrap_or_else(|| customer.get("test").cloned().unwrap_or(Value::Bool(false)));
    t["category_key"] = category_key.unwrap_or(Value::Null);
    t["product_key"] = product_key.unwrap_or(Value::Null);
    t["metadata"] = metadata.unwrap_or_else(|| json!({}));
    Ok(t)
}

/// An action targets a partnership (by `partner_key`) or a customer (by `customer_key`).
pub(super) fn action(state: &mut State, body: &Body, now: i64) -> Result<Value, WriteError> {
    require(body, &["target_type", "target_key", "type", "value"])?;
    field(body, "target_type", Ty::Enum(&["partnership", "customer"]))?;
    let target_type = text(body, "target_type")?;
    let target_key = text(body, "target_key")?;
    let action_type = text(body, "type")?;
    let value = field(body, "value", Ty::Int)?.and_then(|v| v.as_i64()).unwrap_or_default();
    if value < 1 {
        return Err(invalid(format!("{value} is less than the minimum of 1")));
    }
    let external_key = field(body, "external_key", Ty::NullStr)?;
    let (partnership, customer) = if target_type == "partnership" {
        let by_key = state.table(Resource::Partnership).get(&target_key).map(|r| r.value());
        let p = match by_key {
            Some(p) => p,
            None => partner(state, &target_key)?,
        };
        (p, None)
    } else {
        let c = lookup::find(state.table(Resource::Customer), Resource::Customer, &target_key)
            .map(|r| r.value())
            .ok_or_else(|| invalid(format!("No customer found with customer_key '{target_key}'")))?;
        (partnership_of(state, &c["partnership_key"]), Some(c))
    };
    let mut a = build::action(&mut state.fake, &state.account, &partnership, customer.as_ref(), Stamp::new(now, now));
    a["type"] = action_type.into();
    a["value"] = value.into();
    a["external_key"] = external_key.unwrap_or(Value::Null);
    Ok(a)
}

/// A manual reward: `amount` (USD cents), optionally for a `target` customer or
/// transaction, or for a partner by `partner_key` (as some client libraries send it).
pub(super) fn reward(state: &mut State, body: &Body, now: i64) -> Result<Value, WriteError> {
    require(body, &["amount"])?;
    let amount = field(body, "amount", Ty::Int)?.and_then(|v| v.as_i64()).unwrap_or_default();
    let description = opt_text(body, "description")?;
    let partner_key = opt_text(body, "partner_key")?;
    let target = field(body, "target", Ty::Object)?;
    let (mut partnership, mut customer, mut transaction) = (None, None, Value::Null);
    if let Some(target) = target.as_ref().and_then(Value::as_object) {
        require(target, &["key", "type"])?;
        let key = text(target, "key")?;
        field(target, "type", Ty::Enum(&["customer", "transaction"]))?;
        let (source, customer_key) = if text(target, "type")? == "transaction" {
            let t = state.table(Resource::Transaction).get(&key).map(|r| r.value());
            let t = t.ok_or_else(|| invalid(format!("No transaction found with key '{key}'")))?;
            transaction = json!({"key": t["key"], "amount": t["amount"], "currency": t["currency"]});
            let customer_key = t["customer_key"].as_str().unwrap_or_default().to_owned();
            (t, customer_key)
        } else {
            let c = lookup::find(state.table(Resource::Customer), Resource::Customer, &key).map(|r| r.value());
            let c = c.ok_or_else(|| invalid(format!("No customer found with key '{key}'")))?;
            let customer_key = c["key"].as_str().unwrap_or_default().to_owned();
            (c, customer_key)
        };
        customer = state.table(Resource::Customer).get(&customer_key).map(|r| r.value());
        partnership = Some(partnership_of(state, &source["partnership_key"]));
    }
    if let Some(pk) = partner_key {
        partnership = Some(partner(state, &pk)?);
    }
    let customer = customer
        .map_or(Value::Null, |c| json!({"key": c["key"], "email": c["email"], "name": c["name"], "external_key": c["customer_key"]}));
    let partnership = partnership.map_or(Value::Null, |p| {
        let name = [&p["first_name"], &p["last_name"]].iter().filter_map(|v| v.as_str()).collect::<Vec<_>>().join(" ");
        json!({"key": p["key"], "name": name, "group": p.get("group").cloned().unwrap_or(Value::Null)})
    });
    let f = &mut state.fake;
    Ok(json!({
        "key": f.key("rwd_"), "created_at": now, "updated_at": now, "archived": false,
        "amount": amount, "description": description.unwrap_or_else(|| "Manual reward".into()), "reward_status": "pending",
        "action": null, "customer": customer, "transaction": transaction,
        "invoice": build::invoice(f, "pending", None, now),
        "offer": null, "partnership": partnership, "trigger": null,
    }))
}
