//! `POST /deals/{key}/convert` and `POST /leads/{key}/convert` (research notes §2.4,
//! §2.5): a new customer under the deal's or lead's partner, returned as `data`; a deal
//! then points at it through `customer_key`.

use serde_json::{json, Map, Value};

use crate::Resource;

use super::{
    create,
    schema::{field, invalid, opt_text, require, text, Ty, WriteError},
    state::State,
    update,
};

/// Converts the deal or lead `id` (key or external_key); the new customer.
pub(super) fn convert(state: &mut State, kind: Resource, id: &str, body: &Map<String, Value>, now: i64) -> Result<Value, WriteError> {
    let key = update::target(state, kind, id)?;
    let source = state.table(kind).get(&key).map(|r| r.value()).unwrap_or(Value::Null);
    let external_key = source["external_key"].as_str().map(str::to_owned);
    let (email, customer_key, name, company) = if kind == Resource::Deal {
        // Deals: `email` required, `customer_key` optional.
        require(body, &["email"])?;
        field(body, "email", Ty::Email)?;
        let name = [&source["contact_first_name"], &source["contact_last_name"]].map(|v| v.as_str().unwrap_or_default().to_owned());
        (text(body, "email")?, opt_text(body, "customer_key")?, name, source["account_name"].clone())
    } else {
        // Leads: both default to the lead's external_key (usually its email).
        let email = match field(body, "email", Ty::Email)? {
            Some(e) => e.as_str().map(str::to_owned),
            None => external_key.clone(),
        };
        let email = email.ok_or_else(|| invalid("'email' is a required property"))?;
        let customer_key = if body.contains_key("customer_key") { opt_text(body, "customer_key")? } else { external_key };
        let meta = &source["meta"];
        let name = [&meta["first_name"], &meta["last_name"]].map(|v| v.as_str().unwrap_or_default().to_owned());
        (email, customer_key, name, meta["company"].clone())
    };
    let partner_key = source["partner_key"].as_str().ok_or_else(|| {
        invalid(format!("The {} '{id}' has no partner_key, so there is no partner to create the customer under", kind.singular()))
    })?;
    let partnership = create::partner(state, partner_key)?;
    if let Some(ck) = &customer_key {
        create::unique_customer_key(state, ck)?;
    }
    let mut customer = create::new_customer(state, &partnership, customer_key.as_deref(), &email, now);
    let name = name.join(" ").trim().to_owned();
    customer["name"] = if name.is_empty() { Value::Null } else { name.into() };
    if company.is_string() {
        customer["mdata"] = json!({"company_name": company});
    }
    state.table_mut(Resource::Customer).insert(customer.clone());
    if kind == Resource::Deal {
        let customer_key = customer["key"].clone();
        state.table_mut(kind).modify(&key, now, |map| map.insert("customer_key".into(), customer_key));
    }
    Ok(customer)
}
