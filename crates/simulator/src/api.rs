//! The vendor API's endpoints: which path means what, and the answer in the API's
//! envelopes. Knows nothing of sockets, faults or rate limits (see `server`).
//!
//! Reads are answered here; writes (POST/PATCH/DELETE) go to `writes`, deal attachments
//! to `files`, webhook subscriptions to `webhooks::subscriptions`. The paths are parsed in `route`; every answer is a `reply::Reply`.

use axum::http::Method;
use serde::Serialize;
use serde_json::{json, value::RawValue};

use crate::Resource;

use super::{
    files,
    listing::{self, ListQuery, Page, Scope, Span},
    lookup,
    reply::Reply,
    route::Route,
    state::State,
    webhooks, writes,
};

/// Answers an authenticated request; `origin` (`http://host:port`) prefixes the links
/// the API hands out.
pub(super) fn answer(state: &mut State, method: &Method, route: Route, params: &[(String, String)], body: &[u8], origin: &str) -> Reply {
    if route == Route::Unknown {
        return Reply::error(404, "Not found");
    }
    if writes::is_write(method) {
        return writes::answer(state, method, route, body);
    }
    if method != Method::GET {
        return Reply::error(405, "The method is not allowed for the requested URL.");
    }
    let result = match route {
        Route::List(kind) => list(state, kind, params),
        Route::TeamMembers(team) => team_members(state, &team, params),
        Route::One(kind, key) => one(state, kind, &key),
        Route::DealFiles(key) => files::listing(state, &key).map_err(Reply::from),
        Route::DealFile(key, file) => files::link(state, &key, &file, origin).map_err(Reply::from),
        Route::Webhooks => webhooks::subscriptions::list(state, params),
        Route::Webhook(key) => webhooks::subscriptions::one(state, &key),
        Route::Tags(_) | Route::Convert(..) => Err(Reply::error(405, "The method is not allowed for the requested URL.")),
        Route::Unknown => unreachable!("answered above"),
    };
    result.unwrap_or_else(|reply| reply)
}

fn query(state: &State, params: &[(String, String)]) -> Result<ListQuery, Reply> {
    let mut q = ListQuery::parse(params, state.config.bounds).map_err(|message| Reply::error(400, &message))?;
    // Records younger than the read-after-write lag are not listed yet.
    let lag = state.config.read_after_write_lag.as_millis() as i64;
    if lag > 0 {
        q.created.hi = q.created.hi.min(state.now() - lag);
    }
    Ok(q)
}

fn list(state: &State, kind: Resource, params: &[(String, String)]) -> Result<Reply, Reply> {
    let mut q = query(state, params)?;
    if kind.created_only() && state.config.created_only_ignore_updated_filter {
        q.updated = Span::ALL;
    }
    let table = state.table(kind);
    let show_archived = state.config.archived_listed;
    let mut page = listing::page(table, &q, show_archived, Scope::All).map_err(|m| Reply::error(400, &m))?;
    // Like the real API, only actions carry a total; consumers must not rely on it.
    let total = (kind == Resource::Action).then(|| listing::count(table, &q, show_archived));
    if state.poisoned.keys().any(|(k, _)| *k == kind) {
        let spoiled: Vec<Option<Box<RawValue>>> = page
            .items
            .iter()
            .map(|raw| {
                let key = super::poison::key_of(raw)?;
                state.poisoned.get(&(kind, key)).map(|p| super::poison::spoil(kind, raw, *p))
            })
            .collect();
        page.items = page.items.iter().zip(&spoiled).map(|(raw, s)| s.as_deref().unwrap_or(raw)).collect();
        return Ok(page_reply(page, total));
    }
    Ok(page_reply(page, total))
}

fn team_members(state: &State, team: &str, params: &[(String, String)]) -> Result<Reply, Reply> {
    let q = query(state, params)?;
    let members = state.teams.get(team).ok_or_else(|| Reply::error(404, &format!("No partner team found with key '{team}'")))?;
    let table = state.table(Resource::PartnerTeamMember);
    let page = listing::page(table, &q, state.config.archived_listed, Scope::Only(members)).map_err(|m| Reply::error(400, &m))?;
    Ok(page_reply(page, None))
}

/// The list envelope, serialized straight from the stored records.
#[derive(Serialize)]
struct ListEnvelope<'a> {
    data: ListData<'a>,
    message: &'static str,
    status: u16,
}

#[derive(Serialize)]
struct ListData<'a> {
    items: Vec<&'a RawValue>,
    has_more: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    total: Option<usize>,
}

pub(super) fn page_reply(page: Page<'_>, total: Option<usize>) -> Reply {
    let envelope = ListEnvelope {
        data: ListData { items: page.items, has_more: page.has_more, total },
        message: "Page returned successfully",
        status: 200,
    };
    let body = serde_json::to_vec(&envelope).expect("the envelope serializes");
    Reply { status: 200, body, headers: Vec::new(), list_page: true }
}

/// A single record by the identifier its path takes; archived ones too (hard-deleted: 404).
fn one(state: &State, kind: Resource, id: &str) -> Result<Reply, Reply> {
    let visible_from = state.now() - state.config.read_after_write_lag.as_millis() as i64;
    let row = lookup::in_path(state.table(kind), kind, id, state.config.external_ids_in_paths).filter(|row| row.created <= visible_from);
    let row = row.ok_or_else(|| Reply::error(404, &format!("No {} found with key '{id}'", kind.singular())))?;
    let body = serde_json::to_vec(&json!({"data": row.raw(), "message": "Record retrieved successfully", "status": 200}))
        .expect("JSON serializes");
    Ok(Reply { status: 200, body, headers: Vec::new(), list_page: false })
}
