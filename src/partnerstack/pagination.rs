//! Cursor pagination: the listings, the list query string, the page envelope, and the walk
//! from page to page with `starting_after` (research notes §3).

use std::fmt;

use chrono::{DateTime, Utc};
use futures::Stream;
use reqwest::Method;
use serde::Deserialize;
use serde_json::{value::RawValue, Value};
use url::Url;

use super::{segment, ApiClient, ApiError, ListQuery, Page};
use crate::object::ObjectKind;

/// A listing the API serves page by page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Collection {
    /// Every record of an object listed on its own (`/deals`, …); partner-team members are
    /// listed per team instead.
    Objects(ObjectKind),
    /// The members of one partner team (`/partner-team/{team_key}`).
    TeamMembers(String),
}

impl Collection {
    /// The path under the base URL, keys as one segment each.
    fn path(&self) -> String {
        match self {
            Collection::Objects(kind) => kind.api_path().to_owned(),
            Collection::TeamMembers(team) => format!("{}/{}", ObjectKind::PartnerTeamMember.api_path(), segment(team)),
        }
    }
}

/// The path under the API, for messages: `/deals`.
impl fmt::Display for Collection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/{}", self.path())
    }
}

/// `{"data": {"items": [...], "has_more": bool}, ...}`; other fields (`total`, `message`)
/// are not relied on.
#[derive(Deserialize)]
struct ListEnvelope {
    data: ListData,
}

#[derive(Deserialize)]
struct ListData {
    #[serde(default)]
    items: Vec<Box<RawValue>>,
    /// Missing or `null` counts as false, as the other known consumers treat it.
    #[serde(default)]
    has_more: Option<bool>,
}

/// Just the `key` of an item; the rest of it is skipped unparsed.
#[derive(Deserialize)]
struct KeyOnly {
    key: Option<Value>,
}

impl ApiClient {
    /// One page of a listing, with retries. A body that is not the list envelope (not JSON,
    /// cut short) is retried like a dropped connection.
    pub async fn list_page(&self, listing: &Collection, query: &ListQuery, starting_after: Option<&str>) -> Result<Page, ApiError> {
        self.page(&listing.path(), query, starting_after).await
    }

    /// Every page of a listing, following `has_more` with `starting_after` = the last key.
    /// Ends after the last page or after the first error (retries are already spent by
    /// then). A page that claims more but gives no cursor that moves is followed by an
    /// error, never a silent end: a listing cut short would look like deleted records to a
    /// key scan.
    pub fn list<'a>(&'a self, listing: &Collection, query: ListQuery) -> impl Stream<Item = Result<Page, ApiError>> + Send + 'a {
        self.pages(listing.path(), query)
    }

    /// [`ApiClient::list_page`] of the listing at `path`.
    async fn page(&self, path: &str, query: &ListQuery, starting_after: Option<&str>) -> Result<Page, ApiError> {
        let mut url = self.url(path)?;
        add_query(&mut url, query, self.inner.config.page_size, starting_after);
        self.with_retries(true, path, || async {
            let answer = self.send(Method::GET, url.clone(), None, path).await?;
            parse_page(&answer.body, answer.date)
        })
        .await
    }

    /// [`ApiClient::list`] of the listing at `path`.
    pub(super) fn pages(&self, path: String, query: ListQuery) -> impl Stream<Item = Result<Page, ApiError>> + Send + '_ {
        futures::stream::unfold(Walk::From(None), move |walk| {
            let (path, query) = (path.clone(), query.clone());
            async move {
                let after = match walk {
                    Walk::Done => return None,
                    Walk::Broken(e) => return Some((Err(e), Walk::Done)),
                    Walk::From(after) => after,
                };
                let page = match self.page(&path, &query, after.as_deref()).await {
                    Ok(page) => page,
                    Err(e) => return Some((Err(e), Walk::Done)),
                };
                let next = match next_cursor(&path, &page, after.as_deref()) {
                    Ok(Some(key)) => Walk::From(Some(key)),
                    Ok(None) => Walk::Done,
                    Err(e) => Walk::Broken(e),
                };
                Some((Ok(page), next))
            }
        })
    }
}

/// Where a listing stands between two pages.
enum Walk {
    /// The next page starts after this key (`None`: the first page).
    From(Option<String>),
    /// The last page was delivered but the listing cannot go on.
    Broken(ApiError),
    Done,
}

/// `limit`, the time filters (epoch ms) and the cursor; absent filters are left out.
fn add_query(url: &mut Url, query: &ListQuery, page_size: u16, starting_after: Option<&str>) {
    let mut pairs = url.query_pairs_mut();
    pairs.append_pair("limit", &query.limit.unwrap_or(page_size).to_string());
    for (name, value) in [
        ("min_created", query.min_created),
        ("max_created", query.max_created),
        ("min_updated", query.min_updated),
        ("max_updated", query.max_updated),
    ] {
        if let Some(v) = value {
            pairs.append_pair(name, &v.to_string());
        }
    }
    if let Some(key) = starting_after {
        pairs.append_pair("starting_after", key);
    }
}

/// The page in a list body, items kept as their exact text.
fn parse_page(body: &[u8], server_date: Option<DateTime<Utc>>) -> Result<Page, ApiError> {
    let envelope: ListEnvelope = serde_json::from_slice(body).map_err(|source| ApiError::malformed(source, body))?;
    let ListData { items, has_more } = envelope.data;
    // The last item that has a key: a broken record without one (it goes to quarantine)
    // must not end the listing; the next page starts after the last good key and lists the
    // broken record again, which is harmless.
    let last_key = items.iter().rev().find_map(|raw| match serde_json::from_str::<KeyOnly>(raw.get()).ok()?.key {
        Some(Value::String(s)) if !s.is_empty() => Some(s),
        _ => None,
    });
    Ok(Page { items, has_more: has_more.unwrap_or(false), last_key, server_date })
}

/// Where the next page starts, or `None` after the last page.
fn next_cursor(path: &str, page: &Page, current: Option<&str>) -> Result<Option<String>, ApiError> {
    if !page.has_more {
        return Ok(None);
    }
    let broken = |reason| Err(ApiError::Pagination { path: path.to_owned(), reason });
    match page.last_key.as_deref() {
        None if page.items.is_empty() => broken("the page says has_more but has no items"),
        None => broken("the page says has_more but none of its items has a string key"),
        Some(key) if Some(key) == current => broken("the next page would start from the same key again"),
        Some(key) => Ok(Some(key.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(body: &str) -> Page {
        parse_page(body.as_bytes(), None).unwrap()
    }

    #[test]
    fn items_keep_their_exact_text() {
        let p = page(r#"{"data": {"items": [{"key": "a", "amount": 1.50, "x": "\u00e9"}], "has_more": true}, "status": 200}"#);
        assert_eq!(p.items[0].get(), r#"{"key": "a", "amount": 1.50, "x": "\u00e9"}"#);
        assert_eq!(p.last_key.as_deref(), Some("a"));
        assert!(p.has_more);
    }

    #[test]
    fn a_missing_or_null_has_more_means_the_last_page() {
        assert!(!page(r#"{"data": {"items": []}}"#).has_more);
        assert!(!page(r#"{"data": {"items": [], "has_more": null}}"#).has_more);
    }

    #[test]
    fn the_last_key_is_none_unless_it_is_a_string() {
        assert_eq!(page(r#"{"data": {"items": [{"key": 7}]}}"#).last_key, None);
        assert_eq!(page(r#"{"data": {"items": [{"name": "no key"}]}}"#).last_key, None);
        assert_eq!(page(r#"{"data": {"items": [{"key": "a"}, {"name": "no key"}]}}"#).last_key.as_deref(), Some("a"));
        assert_eq!(page(r#"{"data": {"items": ["not an object"]}}"#).last_key, None);
        assert_eq!(page(r#"{"data": {"items": [{"key": "a"}, {"key": "b", "k": {"key": "c"}}]}}"#).last_key.as_deref(), Some("b"));
    }

    #[test]
    fn a_body_that_is_not_the_envelope_is_malformed_and_retryable() {
        for body in ["<html>", r#"{"data": {"items": [{"key": "#, r#"{"message": "ok"}"#, r#"{"data": [1, 2]}"#] {
            let e = parse_page(body.as_bytes(), None).unwrap_err();
            assert!(matches!(e, ApiError::Malformed { .. }), "{body}: {e:?}");
            assert_eq!(e.class(), super::super::ErrorClass::Retryable);
        }
    }

    #[test]
    fn the_cursor_must_move_while_there_is_more() {
        assert_eq!(
            next_cursor("deals", &page(r#"{"data": {"items": [{"key": "b"}], "has_more": true}}"#), Some("a")).unwrap(),
            Some("b".into())
        );
        assert_eq!(next_cursor("deals", &page(r#"{"data": {"items": [{"key": "b"}]}}"#), None).unwrap(), None);
        for (body, current) in [
            (r#"{"data": {"items": [], "has_more": true}}"#, None),
            (r#"{"data": {"items": [{"id": 1}], "has_more": true}}"#, None),
            (r#"{"data": {"items": [{"key": "b"}], "has_more": true}}"#, Some("b")),
        ] {
            let e = next_cursor("deals", &page(body), current).unwrap_err();
            assert!(matches!(e, ApiError::Pagination { .. }), "{body}: {e:?}");
        }
    }

    #[test]
    fn absent_filters_are_left_out_of_the_query() {
        let mut url: Url = "http://h/api/v2/deals".parse().unwrap();
        add_query(&mut url, &ListQuery { min_updated: Some(1_700_000_000_000), ..ListQuery::default() }, 250, Some("deal a&b"));
        assert_eq!(url.query(), Some("limit=250&min_updated=1700000000000&starting_after=deal+a%26b"));
        let mut url: Url = "http://h/api/v2/deals".parse().unwrap();
        add_query(&mut url, &ListQuery { max_created: Some(5), limit: Some(1), ..ListQuery::default() }, 250, None);
        assert_eq!(url.query(), Some("limit=1&max_created=5"));
    }
}
