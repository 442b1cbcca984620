//! `/v2/webhooks` (research notes §2.11): subscriptions `{key, target, events, created_at,
//! updated_at, archived}`. The body's field names (`target`, `events`) come only from
//! low-confidence sources, so `url` is taken for `target` too. `DELETE` archives ("events
//! will no longer be delivered"); archived subscriptions leave the list but a single GET
//! still shows them, as with records.

use serde_json::{json, Map, Value};

use crate::{
    api,
    create::dedup,
    listing::{self, ListQuery, Scope},
    reply::Reply,
    schema::{field, invalid, repr, require, Ty, WriteError},
    state::State,
};

type Body = Map<String, Value>;

/// `POST /webhooks`: a new live subscription.
pub(crate) fn create(state: &mut State, body: &Body) -> Result<Value, WriteError> {
    let target = target(body)?.ok_or_else(|| invalid("'target' is a required property"))?;
    require(body, &["events"])?;
    let events = events(body)?.unwrap_or_default();
    let now = state.now();
    let key = state.webhooks.fake.key("whk_");
    let subscription = json!({"key": key, "target": target, "events": events, "created_at": now, "updated_at": now, "archived": false});
    state.webhooks.subscriptions.insert(subscription.clone());
    Ok(subscription)
}

/// `PATCH /webhooks/{key}`: a new target or events list, either optional.
pub(crate) fn update(state: &mut State, key: &str, body: &Body) -> Result<Value, WriteError> {
    let (target, events) = (target(body)?, events(body)?);
    let now = state.now();
    state
        .webhooks
        .subscriptions
        .modify(key, now, |s| {
            s.extend(target.map(|t| ("target".to_owned(), t.into())));
            s.extend(events.map(|e| ("events".to_owned(), e)));
        })
        .ok_or_else(|| not_found(key))?;
    Ok(stored(state, key))
}

/// `DELETE /webhooks/{key}`: no more deliveries to it; archiving it again changes nothing.
pub(crate) fn archive(state: &mut State, key: &str) -> Result<(), WriteError> {
    let archived = state.webhooks.subscriptions.get(key).ok_or_else(|| not_found(key))?.archived;
    if !archived {
        let now = state.now();
        state.webhooks.subscriptions.modify(key, now, |s| s.insert("archived".into(), true.into()));
    }
    Ok(())
}

/// `GET /webhooks`: live subscriptions, newest first, in the usual list envelope.
pub(crate) fn list(state: &State, params: &[(String, String)]) -> Result<Reply, Reply> {
    let q = ListQuery::parse(params, state.config.bounds).map_err(|m| Reply::error(400, &m))?;
    let page = listing::page(&state.webhooks.subscriptions, &q, false, Scope::All).map_err(|m| Reply::error(400, &m))?;
    let mut reply = api::page_reply(page, None);
    // Not a page of records: it does not count towards `Simulator::after_pages`.
    reply.list_page = false;
    Ok(reply)
}

/// `GET /webhooks/{key}`, archived ones too.
pub(crate) fn one(state: &State, key: &str) -> Result<Reply, Reply> {
    let row = state.webhooks.subscriptions.get(key).ok_or_else(|| Reply::from(not_found(key)))?;
    Ok(Reply::json(200, &json!({"data": row.value(), "message": "Webhook retrieved successfully", "status": 200})))
}

/// Every subscription, archived ones included, newest first.
pub(crate) fn all(state: &State) -> Vec<Value> {
    state.webhooks.subscriptions.newest_first().map(|r| r.value()).collect()
}

fn stored(state: &State, key: &str) -> Value {
    state.webhooks.subscriptions.get(key).map(|r| r.value()).unwrap_or(Value::Null)
}

fn not_found(key: &str) -> WriteError {
    WriteError::NotFound(format!("No webhook found with key '{key}'"))
}

/// `target` (or its alias `url`) if present: an http(s) URL.
fn target(body: &Body) -> Result<Option<String>, WriteError> {
    let name = if body.contains_key("target") || !body.contains_key("url") { "target" } else { "url" };
    let Some(value) = field(body, name, Ty::Str)? else { return Ok(None) };
    let url = value.as_str().unwrap_or_default();
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(rest) if !rest.is_empty() && !rest.starts_with('/') && !rest.contains(char::is_whitespace) => Ok(Some(url.to_owned())),
        _ => Err(invalid(format!("{} is not a 'uri'", repr(&value)))),
    }
}

/// `events` if present: a non-empty array of strings, each kept once.
fn events(body: &Body) -> Result<Option<Value>, WriteError> {
    let Some(events) = field(body, "events", Ty::StrArray)? else { return Ok(None) };
    if events.as_array().is_some_and(Vec::is_empty) {
        return Err(invalid("[] is too short"));
    }
    Ok(Some(dedup(events)))
}
