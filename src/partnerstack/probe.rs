//! Questions the mirror asks about the API itself: whether a list honours `min_updated`
//! (Question 3 of docs/correctness.md; two requests, asked by `doctor` and by the daemon at start and daily about
//! transactions and rewards, whose lists are documented by created time only), and whether a
//! 429 carries `Retry-After` (Question 5 of docs/correctness.md, asked by `doctor`).

use std::time::Duration;

use chrono::Utc;
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use super::{ApiClient, ApiError, Collection, ListQuery};
use crate::object::ObjectKind;

/// What the probe found.
#[derive(Debug)]
pub enum FilterProbe {
    /// `min_updated` a year ahead returned nothing: the filter is honoured.
    Honoured,
    /// It still returned records: the filter is ignored.
    Ignored,
    /// The list is empty: nothing to tell by.
    Empty,
    /// A request failed.
    Failed(ApiError),
}

/// One record of `kind`, then the same list with `min_updated` a year ahead: an API that
/// honours the filter returns nothing.
pub async fn updated_filter(api: &ApiClient, kind: ObjectKind) -> FilterProbe {
    let listing = Collection::Objects(kind);
    let one = ListQuery { limit: Some(1), ..ListQuery::default() };
    match api.list_page(&listing, &one, None).await {
        Ok(p) if p.items.is_empty() => return FilterProbe::Empty,
        Ok(_) => {}
        Err(e) => return FilterProbe::Failed(e),
    }
    let future = Utc::now().timestamp_millis() + 365 * 86_400_000;
    let filtered = ListQuery { min_updated: Some(future), limit: Some(1), ..ListQuery::default() };
    match api.list_page(&listing, &filtered, None).await {
        Ok(p) if p.items.is_empty() => FilterProbe::Honoured,
        Ok(_) => FilterProbe::Ignored,
        Err(e) => FilterProbe::Failed(e),
    }
}

/// What a burst of requests drew.
#[derive(Debug)]
pub enum Burst {
    /// The `sent`-th request was answered 429, with this `Retry-After` header, if any.
    Limited { sent: usize, retry_after: Option<String> },
    /// `sent` requests drew no 429.
    Unlimited { sent: usize },
    /// A request (or building the HTTP client) failed.
    Failed(String),
}

/// Up to `most` tiny requests (`GET /groups?limit=1`), one after the other and as fast as
/// they go, until the first 429. A client of its own, outside the request budget and without
/// retries, on purpose: the point is to reach the API's limit.
pub async fn burst(base_url: &Url, public_key: &str, private_key: Option<&SecretString>, most: usize) -> Burst {
    let http = match reqwest::Client::builder().timeout(Duration::from_secs(10)).build() {
        Ok(c) => c,
        Err(e) => return Burst::Failed(e.to_string()),
    };
    let url = format!("{}/{}?limit=1", base_url.as_str().trim_end_matches('/'), ObjectKind::Group.api_path());
    for sent in 1..=most {
        match http.get(&url).basic_auth(public_key, private_key.map(|k| k.expose_secret())).send().await {
            Ok(r) if r.status().as_u16() == 429 => {
                let retry_after = r.headers().get(reqwest::header::RETRY_AFTER).and_then(|v| v.to_str().ok()).map(str::to_owned);
                return Burst::Limited { sent, retry_after };
            }
            Ok(_) => {}
            Err(e) => return Burst::Failed(e.to_string()),
        }
    }
    Burst::Unlimited { sent: most }
}
