//! The vendor API's endpoints: which path means what, and the answer in the API's
//! envelopes. Knows nothing of sockets, faults or rate limits (see `server`).
//!
//! Only reads exist so far; writes (POST/PATCH/DELETE) become more `Route` variants and
//! arms of `answer`, built on `State::apply`.

use axum::http::Method;
use serde::Serialize;
use serde_json::{json, value::RawValue, Value};

use crate::object::{ChangeFilter, ObjectKind};

use super::{
    listing::{self, ListQuery, Page, Scope, Span},
    state::State,
};

/// What a request path names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Route {
    /// `GET /api/v2/{deals,…}`
    List(ObjectKind),
    /// `GET /api/v2/partner-team/{team_key}`: that team's members.
    TeamMembers(String),
    /// `GET /api/v2/{deals,…}/{key}`
    One(ObjectKind, String),
    Unknown,
}

/// An answer before it becomes an HTTP response.
#[derive(Debug)]
pub(super) struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
    /// A list page was computed (counts towards `after_pages` hooks).
    pub list_page: bool,
}

impl Reply {
    fn json(status: u16, body: &Value) -> Reply {
        Reply { status, body: serde_json::to_vec(body).expect("JSON values serialize"), headers: Vec::new(), list_page: false }
    }

    /// The API's error body: `{"message", "status"}` with the same HTTP status.
    pub fn error(status: u16, message: &str) -> Reply {
        Reply::json(status, &json!({"message": message, "status": status}))
    }
}

/// The listed object types by their path segment.
fn collection(segment: &str) -> Option<ObjectKind> {
    ObjectKind::ALL.into_iter().find(|k| *k != ObjectKind::PartnerTeamMember && k.api_path() == segment)
}

/// Parses a request path (the base path included).
pub(super) fn route(path: &str) -> Route {
    let Some(rest) = path.strip_prefix("/api/v2/") else { return Route::Unknown };
    let segments: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    match segments.as_slice() {
        // The docs are unsure between `partner-team` and `partner_team`; accept both.
        ["partner-team" | "partner_team", team] if !team.is_empty() => Route::TeamMembers(percent_decode(team)),
        [name] => collection(name).map_or(Route::Unknown, Route::List),
        [name, key] if !key.is_empty() => collection(name).map_or(Route::Unknown, |k| Route::One(k, percent_decode(key))),
        _ => Route::Unknown,
    }
}

/// Answers an authenticated request.
pub(super) fn answer(state: &State, method: &Method, route: Route, params: &[(String, String)]) -> Reply {
    if route == Route::Unknown {
        return Reply::error(404, "Not found");
    }
    if method != Method::GET {
        return Reply::error(405, "Method not allowed (the simulator serves reads only)");
    }
    let result = match route {
        Route::List(kind) => list(state, kind, params),
        Route::TeamMembers(team) => team_members(state, &team, params),
        Route::One(kind, key) => one(state, kind, &key),
        Route::Unknown => unreachable!("answered above"),
    };
    result.unwrap_or_else(|reply| reply)
}

fn query(state: &State, params: &[(String, String)]) -> Result<ListQuery, Reply> {
    ListQuery::parse(params, state.config.bounds).map_err(|message| Reply::error(400, &message))
}

fn list(state: &State, kind: ObjectKind, params: &[(String, String)]) -> Result<Reply, Reply> {
    let mut q = query(state, params)?;
    if kind.change_filter() == ChangeFilter::CreatedOnly && state.config.created_only_ignore_updated_filter {
        q.updated = Span::ALL;
    }
    let table = state.table(kind);
    let show_archived = state.config.archived_listed;
    let mut page = listing::page(table, &q, show_archived, Scope::All).map_err(|m| Reply::error(400, &m))?;
    // Like the real API, only actions carry a total; consumers must not rely on it.
    let total = (kind == ObjectKind::Action).then(|| listing::count(table, &q, show_archived));
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
    let table = state.table(ObjectKind::PartnerTeamMember);
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

fn page_reply(page: Page<'_>, total: Option<usize>) -> Reply {
    let envelope = ListEnvelope {
        data: ListData { items: page.items, has_more: page.has_more, total },
        message: "Page returned successfully",
        status: 200,
    };
    let body = serde_json::to_vec(&envelope).expect("the envelope serializes");
    Reply { status: 200, body, headers: Vec::new(), list_page: true }
}

/// The fields a path may name a record by besides its `key` (research notes §4.11).
fn external_ids(kind: ObjectKind) -> &'static [&'static str] {
    match kind {
        ObjectKind::Customer => &["customer_key"],
        ObjectKind::Partnership => &["partner_key", "email"],
        ObjectKind::Deal | ObjectKind::Lead => &["external_key"],
        _ => &[],
    }
}

/// A single record by key or external identifier; archived ones too (hard-deleted: 404).
fn one(state: &State, kind: ObjectKind, id: &str) -> Result<Reply, Reply> {
    let table = state.table(kind);
    let by_field = |field: &&str| {
        // Records are stored as compact JSON, so a match contains `"field":"id"`; the
        // substring test spares parsing every record.
        let needle = format!("\"{field}\":{}", Value::from(id));
        table.newest_first().find(|r| r.raw().get().contains(&needle) && r.value().get(*field).and_then(Value::as_str) == Some(id))
    };
    let row = table.get(id).or_else(|| external_ids(kind).iter().find_map(by_field));
    let row = row.ok_or_else(|| Reply::error(404, &format!("No {} found with key '{id}'", kind.singular())))?;
    let body = serde_json::to_vec(&json!({"data": row.raw(), "message": "Record retrieved successfully", "status": 200}))
        .expect("JSON serializes");
    Ok(Reply { status: 200, body, headers: Vec::new(), list_page: false })
}

/// `%XX` escapes decoded (invalid ones kept as they are), for identifiers in paths.
fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_lists_single_records_and_partner_teams() {
        assert_eq!(route("/api/v2/deals"), Route::List(ObjectKind::Deal));
        assert_eq!(route("/api/v2/deals/"), Route::List(ObjectKind::Deal));
        assert_eq!(route("/api/v2/customers/cust_1"), Route::One(ObjectKind::Customer, "cust_1".into()));
        assert_eq!(route("/api/v2/partner-team/stck_1"), Route::TeamMembers("stck_1".into()));
        assert_eq!(route("/api/v2/partner_team/stck_1"), Route::TeamMembers("stck_1".into()));
        assert_eq!(route("/api/v2/partnerships/ava%2Bx%40a.io"), Route::One(ObjectKind::Partnership, "ava+x@a.io".into()));
        assert_eq!(percent_decode("100%"), "100%");
        for unknown in ["/api/v2/partner-team", "/api/v2/partner_team_members", "/api/v1/deals", "/api/v2/widgets", "/api/v2/deals/a/b"] {
            assert_eq!(route(unknown), Route::Unknown, "{unknown}");
        }
    }
}
