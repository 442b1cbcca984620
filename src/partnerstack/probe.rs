//! Whether a list honours `min_updated` (SPEC 9.3): two requests, asked by `doctor` and by
//! the daemon (at start and daily) about transactions and rewards, whose lists are
//! documented by created time only.

use chrono::Utc;

use super::{ApiClient, ApiError, ListQuery};

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

/// One record of `path`, then the same list with `min_updated` a year ahead: an API that
/// honours the filter returns nothing.
pub async fn updated_filter(api: &ApiClient, path: &str) -> FilterProbe {
    let one = ListQuery { limit: Some(1), ..ListQuery::default() };
    match api.list_page(path, &one, None).await {
        Ok(p) if p.items.is_empty() => return FilterProbe::Empty,
        Ok(_) => {}
        Err(e) => return FilterProbe::Failed(e),
    }
    let future = Utc::now().timestamp_millis() + 365 * 86_400_000;
    let filtered = ListQuery { min_updated: Some(future), limit: Some(1), ..ListQuery::default() };
    match api.list_page(path, &filtered, None).await {
        Ok(p) if p.items.is_empty() => FilterProbe::Honoured,
        Ok(_) => FilterProbe::Ignored,
        Err(e) => FilterProbe::Failed(e),
    }
}
