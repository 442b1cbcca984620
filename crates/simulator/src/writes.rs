//! The write endpoints (POST, PATCH, DELETE): which path and method mean which change,
//! and their answers in the API's envelopes, `{data, message, status}` or, for a DELETE,
//! the bare `{message, status}` (research notes §3.1).

use axum::http::Method;
use serde_json::{json, Value};

use super::{
    convert, create,
    reply::Reply,
    route::Route,
    schema::{parse_body, WriteError},
    state::State,
    update,
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
            Ok(data(record, &format!("The {} was created", kind.singular())))
        }
        (Method::PATCH, Route::One(kind, id)) if update::UPDATABLE.contains(&kind) => {
            let record = update::update(state, kind, &id, &body, now)?;
            Ok(data(record, &format!("The {} was updated", kind.singular())))
        }
        (Method::DELETE, Route::One(kind, id)) if update::UPDATABLE.contains(&kind) => {
            update::archive(state, kind, &id, now)?;
            Ok(Reply::json(200, &json!({"message": format!("The {} was archived", kind.singular()), "status": 200})))
        }
        (Method::PATCH, Route::Tags(id)) => Ok(data(update::tags(state, &id, &body, now)?, "The partnership's tags were updated")),
        (Method::POST, Route::Convert(kind, id)) => {
            let customer = convert::convert(state, kind, &id, &body, now)?;
            Ok(data(customer, &format!("The {} was converted to a customer", kind.singular())))
        }
        _ => Ok(Reply::error(405, "The method is not allowed for the requested URL.")),
    }
}

fn data(record: Value, message: &str) -> Reply {
    Reply::json(200, &json!({"data": record, "message": message, "status": 200}))
}
