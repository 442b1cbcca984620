//! The vendor API's endpoints: which path means what, and the answer in the API's
//! envelopes. Knows nothing of sockets, faults or rate limits (see `server`).
//!
//! Reads are answered here; writes (POST/PATCH/DELETE) go to `writes`, deal attachments
//! to `files`.

use axum::http::Method;
use serde::Serialize;
use serde_json::{json, value::RawValue, Value};

use crate::object::{ChangeFilter, ObjectKind};

use super::{
    files,
    listing::{self, ListQuery, Page, Scope, Span},
    lookup,
    schema::WriteError,
    state::State,
    writes,
};

/// What a request path names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Route {
    /// `GET /api/v2/{deals,…}`
    List(ObjectKind),
    /// `GET /api/v2/partner-team/{team_key}`: that team's members.
    TeamMembers(String),
    /// `GET`, `PATCH` or `DELETE /api/v2/{deals,…}/{key}`
    One(ObjectKind, String),
    /// `GET /api/v2/deals/{key}/files`
    DealFiles(String),
    /// `GET /api/v2/deals/{key}/file/{file_key}`
    DealFile(String, String),
    /// `PATCH /api/v2/partnerships/{key}/tags`
    Tags(String),
    /// `POST /api/v2/{deals,leads}/{key}/convert`
    Convert(ObjectKind, String),
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
    pub fn json(status: u16, body: &Value) -> Reply {
        Reply { status, body: serde_json::to_vec(body).expect("JSON values serialize"), headers: Vec::new(), list_page: false }
    }

    /// The API's error body: `{"message", "status"}` with the same HTTP status.
    pub fn error(status: u16, message: &str) -> Reply {
        Reply::json(status, &json!({"message": message, "status": status}))
    }
}

impl From<WriteError> for Reply {
    fn from(e: WriteError) -> Reply {
        Reply::error(e.status(), &e.to_string())
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
    let id = |segment: &str| percent_decode(segment);
    match segments.as_slice() {
        ["deals", key, "files"] if !key.is_empty() => Route::DealFiles(id(key)),
        ["deals", key, "file", file] if !key.is_empty() && !file.is_empty() => Route::DealFile(id(key), id(file)),
        ["partnerships", key, "tags"] if !key.is_empty() => Route::Tags(id(key)),
        [name @ ("deals" | "leads"), key, "convert"] if !key.is_empty() => {
            collection(name).map_or(Route::Unknown, |k| Route::Convert(k, id(key)))
        }
        // The docs are unsure between `partner-team` and `partner_team`; accept both.
        ["partner-team" | "partner_team", team] if !team.is_empty() => Route::TeamMembers(percent_decode(team)),
        [name] => collection(name).map_or(Route::Unknown, Route::List),
        [name, key] if !key.is_empty() => collection(name).map_or(Route::Unknown, |k| Route::One(k, percent_decode(key))),
        _ => Route::Unknown,
    }
}

/// The storage link of a deal attachment, `/files/{deal_key}/{file_key}` (outside the API).
pub(super) fn storage_route(path: &str) -> Option<(String, String)> {
    let rest = path.strip_prefix("/files/")?;
    match rest.split('/').collect::<Vec<_>>().as_slice() {
        [deal, file] if !deal.is_empty() && !file.is_empty() => Some((percent_decode(deal), percent_decode(file))),
        _ => None,
    }
}

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

/// A single record by the identifier its path takes; archived ones too (hard-deleted: 404).
fn one(state: &State, kind: ObjectKind, id: &str) -> Result<Reply, Reply> {
    let visible_from = state.now() - state.config.read_after_write_lag.as_millis() as i64;
    let row = lookup::in_path(state.table(kind), kind, id, state.config.external_ids_in_paths).filter(|row| row.created <= visible_from);
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

    #[test]
    fn paths_name_deal_files_tags_conversions_and_storage_links() {
        assert_eq!(route("/api/v2/deals/deal_1/files"), Route::DealFiles("deal_1".into()));
        assert_eq!(route("/api/v2/deals/deal_1/file/dfil_2"), Route::DealFile("deal_1".into(), "dfil_2".into()));
        assert_eq!(route("/api/v2/partnerships/part_1/tags"), Route::Tags("part_1".into()));
        assert_eq!(route("/api/v2/leads/a%40b.io/convert"), Route::Convert(ObjectKind::Lead, "a@b.io".into()));
        assert_eq!(route("/api/v2/customers/c/convert"), Route::Unknown);
        assert_eq!(storage_route("/files/deal_1/dfil_2"), Some(("deal_1".into(), "dfil_2".into())));
        assert_eq!(storage_route("/files/deal_1"), None);
    }
}
