//! The write endpoints (POST, PATCH, DELETE): which path and method mean which change,
//! and their answers in the API's envelopes, `{data, message, status}` or, for a DELETE,
//! the bare `{message, status}` (research notes §3.1). Every change is announced to webhook
//! subscribers, with the events the record's change makes.

use axum::http::Method;
use serde_json::{json, Value};

use crate::Resource;

use super::{
    convert, create,
    reply::Reply,
    route::Route,
    schema::{parse_body, WriteError},
    state::State,
    update,
    webhooks::subscriptions,
};

/// Whether a request changes the account (and so is logged, and meets `ApplyThenDrop`).
pub(super) fn is_write(method: &Method) -> bool {
    *method == Method::POST || *method == Method::PATCH || *method == Method::DELETE
}

/// Answers an authenticated write request, stamping changes with the clock's now.
pub(super) fn answer(state: &mut State, method: &Method, route: Route, body: &[u8]) -> Reply {
    apply(state, method, route, body).unwrap_or_else(Reply::from)
}

fn apply(state: &mut State, method: &Method, route: Route, body: &[u8]) -> Result<Reply, WriteError> {
    let now = state.now();
    let body = if *method == Method::DELETE { Default::default() } else { parse_body(body)? };
    match (method.clone(), route) {
        (Method::POST, Route::List(kind)) if create::CREATABLE.contains(&kind) => {
            let record = create::create(state, kind, &body, now)?;
            announce_created(state, kind, &record);
            Ok(data(record, &format!("The {} was created", kind.singular())))
        }
        (Method::PATCH, Route::One(kind, id)) if update::UPDATABLE.contains(&kind) => {
            let before = before(state, kind, &id);
            let record = update::update(state, kind, &id, &body, now)?;
            announce_change(state, kind, before);
            Ok(data(record, &format!("The {} was updated", kind.singular())))
        }
        (Method::DELETE, Route::One(kind, id)) if update::UPDATABLE.contains(&kind) => {
            let before = before(state, kind, &id);
            update::archive(state, kind, &id, now)?;
            announce_change(state, kind, before);
            Ok(Reply::json(200, &json!({"message": format!("The {} was archived", kind.singular()), "status": 200})))
        }
        // Announced by the mutation it applies.
        (Method::PATCH, Route::Tags(id)) => Ok(data(update::tags(state, &id, &body, now)?, "The partnership's tags were updated")),
        (Method::POST, Route::Convert(kind, id)) => {
            let before = before(state, kind, &id);
            let customer = convert::convert(state, kind, &id, &body, now)?;
            announce_created(state, Resource::Customer, &customer);
            announce_change(state, kind, before);
            Ok(data(customer, &format!("The {} was converted to a customer", kind.singular())))
        }
        (Method::POST, Route::Webhooks) => Ok(data(subscriptions::create(state, &body)?, "The webhook was created")),
        (Method::PATCH, Route::Webhook(key)) => Ok(data(subscriptions::update(state, &key, &body)?, "The webhook was updated")),
        (Method::DELETE, Route::Webhook(key)) => {
            subscriptions::archive(state, &key)?;
            Ok(Reply::json(200, &json!({"message": "The webhook was archived", "status": 200})))
        }
        _ => Ok(Reply::error(405, "The method is not allowed for the requested URL.")),
    }
}

fn data(record: Value, message: &str) -> Reply {
    Reply::json(200, &json!({"data": record, "message": message, "status": 200}))
}

/// The key and record a path names before a change, when someone is listening for it.
fn before(state: &State, kind: Resource, id: &str) -> Option<(String, Value)> {
    if !state.webhooks.any_live() {
        return None;
    }
    let key = update::target(state, kind, id).ok()?;
    let record = state.table(kind).get(&key)?.value();
    Some((key, record))
}

fn announce_created(state: &mut State, kind: Resource, record: &Value) {
    let key = record["key"].as_str().unwrap_or_default();
    state.announce(kind, key, &[format!("{}.created", kind.singular())], None);
}

/// Announces what changed in the record `before` names.
fn announce_change(state: &mut State, kind: Resource, before: Option<(String, Value)>) {
    let Some((key, before)) = before else { return };
    let Some(after) = state.table(kind).get(&key).map(|r| r.value()) else { return };
    let events = changed_events(kind, &before, &after);
    state.announce(kind, &key, &events, None);
}

/// The events a written change makes, named as the mutations name theirs: `updated`, then
/// what the change was about, then `deleted` or `restored`. Nothing when nothing changed.
fn changed_events(kind: Resource, before: &Value, after: &Value) -> Vec<String> {
    if before == after {
        return Vec::new();
    }
    let changed = |field: &str| before.get(field) != after.get(field);
    let mut names = vec!["updated"];
    match kind {
        Resource::Deal if changed("stage") => names.push("stage_updated"),
        Resource::Lead => {
            match (changed("approved"), &after["approved"]) {
                (true, Value::Bool(true)) => names.push("approved"),
                (true, Value::Bool(false)) => names.push("declined"),
                _ => {}
            }
            if changed("status") {
                names.push("status_updated");
            }
        }
        Resource::Partnership => {
            if changed("group") {
                names.push("group_updated");
            }
            let tags = |v: &Value| {
                let mut tags: Vec<String> =
                    v["tags"].as_array().into_iter().flatten().filter_map(|t| t.as_str().map(str::to_owned)).collect();
                tags.sort();
                tags
            };
            if tags(before) != tags(after) {
                names.push("tags_updated");
            }
        }
        _ => {}
    }
    match (before["archived"] == true, after["archived"] == true) {
        (false, true) => names.push("deleted"),
        (true, false) => names.push("restored"),
        _ => {}
    }
    names.into_iter().map(|n| format!("{}.{n}", kind.singular())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(kind: Resource, before: Value, after: Value) -> Vec<String> {
        changed_events(kind, &before, &after)
    }

    #[test]
    fn a_written_change_makes_the_events_the_mutations_would() {
        let deal = json!({"key": "d", "stage": "Qualified", "archived": false, "updated_at": 1});
        assert_eq!(names(Resource::Deal, deal.clone(), deal.clone()), Vec::<String>::new());
        let moved = json!({"key": "d", "stage": "Closed Won", "archived": false, "updated_at": 2});
        assert_eq!(names(Resource::Deal, deal.clone(), moved), ["deal.updated", "deal.stage_updated"]);
        let archived = json!({"key": "d", "stage": "Qualified", "archived": true, "updated_at": 2});
        assert_eq!(names(Resource::Deal, deal, archived), ["deal.updated", "deal.deleted"]);
        let lead = json!({"approved": null, "status": "open"});
        assert_eq!(
            names(Resource::Lead, lead, json!({"approved": false, "status": "dead"})),
            ["lead.updated", "lead.declined", "lead.status_updated"]
        );
        let p = json!({"group": {"key": "g1"}, "tags": ["a", "b"]});
        assert_eq!(
            names(Resource::Partnership, p.clone(), json!({"group": {"key": "g1"}, "tags": ["b", "a"], "x": 1})),
            ["partnership.updated"]
        );
        assert_eq!(
            names(Resource::Partnership, p, json!({"group": {"key": "g2"}, "tags": ["a"]})),
            ["partnership.updated", "partnership.group_updated", "partnership.tags_updated"]
        );
    }
}
