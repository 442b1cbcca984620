//! The PartnerStack vendor API client. Knows the mirror's object types (the catalogue names
//! their paths) and nothing of PostgreSQL.
//!
//! One `reqwest::Client` (timeout, user agent) shared by clones; HTTP Basic auth with the
//! public key as user and the private key as password; one request budget with priorities
//! on every request sent, retries included, whose rate is found from the API's 429s; retries with capped exponential backoff and full jitter
//! that wait at least what `Retry-After` asks; list pages kept as raw JSON items so a record
//! that cannot be stored can be quarantined verbatim.
//!
//! Callers speak in domain verbs: one method per endpoint the mirror uses (`records`: a
//! record's reads and writes, `webhooks`: the subscriptions, `pagination`: the listings), so
//! paths, HTTP methods and whether a request may be sent twice are decided here only, as
//! crates.io's GitHub client does.
//!
//! - `error`: what a failure means ([`ApiError::class`]), decided once.
//! - `exchange`: one HTTP request and its answer; `retry`: when and how long to wait;
//! - `gate`: what the API said to every caller at once (429 pauses, rejected credentials);
//!   `budget`: who sends next, and how fast (docs/request-budget.md);
//!   `pagination`: list queries, pages and cursors; `purpose`: why a request was sent;
//!   `stats`: counters; `probe`: questions about the API itself (Question 3 of docs/correctness.md, 9.5).

mod budget;
mod error;
mod exchange;
mod gate;
mod pagination;
pub mod probe;
mod purpose;
mod records;
mod retry;
mod stats;
mod webhooks;

use std::{fmt, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use reqwest::Method;
use secrecy::SecretString;
use serde_json::{value::RawValue, Value};
use url::Url;

pub use budget::{current_priority, with_priority, BudgetSnapshot, LearnedRate, Priority, RateLimit, MAX_RATE, MIN_CEILING, START_RATE};
pub use error::{ApiError, ErrorClass};
pub use purpose::{current_purpose, with_purpose, Purpose};

use crate::backoff::Backoff;
pub use gate::Rejection;
pub use pagination::Collection;
pub use retry::parse_retry_after;
pub use stats::ClientStats;
pub use webhooks::Subscription;

/// How to reach the API and how hard to push it.
#[derive(Clone)]
pub struct ClientConfig {
    /// e.g. `https://api.partnerstack.com/api/v2`; request paths are appended to its path.
    pub base_url: Url,
    pub public_key: String,
    pub private_key: SecretString,
    /// How fast requests (retries included) may go: found from the API's answers, under an
    /// optional ceiling, or unlimited.
    pub rate_limit: RateLimit,
    /// Per request, connection to last byte of the body.
    pub timeout: Duration,
    /// Retries per request for retryable failures (so at most `max_retries + 1` sends).
    pub max_retries: usize,
    /// The waits between those retries (a `Retry-After` may ask for longer).
    pub backoff: Backoff,
    /// Items per list page when [`ListQuery::limit`] is `None`; 1..=250.
    pub page_size: u16,
    pub user_agent: String,
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("base_url", &self.base_url.as_str())
            .field("public_key", &self.public_key)
            .field("private_key", &"[redacted]")
            .field("rate_limit", &self.rate_limit)
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("backoff", &self.backoff)
            .field("page_size", &self.page_size)
            .field("user_agent", &self.user_agent)
            .finish()
    }
}

/// Filters of a list request, in epoch milliseconds as the API takes them.
#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    pub min_created: Option<i64>,
    pub max_created: Option<i64>,
    pub min_updated: Option<i64>,
    pub max_updated: Option<i64>,
    /// `None`: the configured page size.
    pub limit: Option<u16>,
}

/// One page of a listing.
#[derive(Clone, Debug)]
pub struct Page {
    /// Each item's exact text, so a record that cannot be stored is kept as it came.
    pub items: Vec<Box<RawValue>>,
    /// A missing `has_more` counts as false.
    pub has_more: bool,
    /// The `key` of the last item: the next `starting_after`. `None` when that item has no
    /// string key.
    pub last_key: Option<String>,
    /// The response's `Date` header.
    pub server_date: Option<DateTime<Utc>>,
}

struct Inner {
    http: reqwest::Client,
    config: ClientConfig,
    budget: budget::Budget,
    counters: stats::Counters,
    gate: gate::Gate,
}

/// The API client; clones share one connection pool, request budget and set of counters.
#[derive(Clone)]
pub struct ApiClient {
    inner: Arc<Inner>,
}

impl fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiClient").field("config", &self.inner.config).finish_non_exhaustive()
    }
}

impl ApiClient {
    /// Checks the configuration and builds the HTTP client once.
    pub fn new(config: ClientConfig) -> Result<ApiClient, ApiError> {
        if !(1..=250).contains(&config.page_size) {
            return Err(ApiError::Config(format!("page size {} is outside 1..=250", config.page_size)));
        }
        if config.base_url.cannot_be_a_base() || !matches!(config.base_url.scheme(), "http" | "https") {
            return Err(ApiError::Config(format!("base URL {} is not an http(s) URL", config.base_url)));
        }
        if config.timeout.is_zero() {
            return Err(ApiError::Config("the request timeout must be positive".into()));
        }
        if config.backoff.min > config.backoff.max {
            return Err(ApiError::Config(format!(
                "the shortest backoff {:?} is above the longest {:?}",
                config.backoff.min, config.backoff.max
            )));
        }
        check_rate_limit(config.rate_limit)?;
        let budget = budget::Budget::new(config.rate_limit);
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .user_agent(config.user_agent.clone())
            .build()
            .map_err(|e| ApiError::Config(format!("cannot build the HTTP client: {}", crate::telemetry::error_chain(&e))))?;
        Ok(ApiClient { inner: Arc::new(Inner { http, config, budget, counters: stats::Counters::default(), gate: gate::Gate::default() }) })
    }

    /// HTTP requests actually sent, retries included.
    pub fn requests_sent(&self) -> u64 {
        self.inner.counters.sent()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> ClientStats {
        self.inner.counters.snapshot()
    }

    /// The request rate found so far (requests per second); `None` without a client-side
    /// limit.
    pub fn learned_rate(&self) -> Option<f64> {
        self.inner.budget.rate()
    }

    /// The rate found so far and whether a 429 told it, to remember across restarts; `None`
    /// without a client-side limit.
    pub fn learned(&self) -> Option<LearnedRate> {
        self.inner.budget.learned()
    }

    /// Starts from a rate learned by an earlier run instead of the cautious
    /// [`START_RATE`] (kept under the ceiling; ignored without a client-side limit): in
    /// additive increase if it was found at a 429, still probing upward otherwise.
    pub fn start_from(&self, learned: LearnedRate) {
        self.inner.budget.start_from(learned);
    }

    /// The request budget now: rate, and callers waiting by priority.
    pub fn budget(&self) -> BudgetSnapshot {
        self.inner.budget.snapshot()
    }

    /// Requests by endpoint, outcome and purpose, for `/metrics`.
    pub fn request_counts(&self) -> Vec<(String, String, Purpose, u64)> {
        self.stats().requests.into_iter().map(|((endpoint, outcome, purpose), n)| (endpoint, outcome, purpose, n)).collect()
    }

    /// Requests sent since the client was built, by purpose (every purpose, 0 included).
    pub fn requests_by_purpose(&self) -> [(Purpose, u64); Purpose::ALL.len()] {
        self.stats().by_purpose()
    }

    /// Any JSON call (a single GET, a write): returns the envelope's `data`, or the whole
    /// body when it has none, or `null` for an empty body. Retries only when `idempotent`:
    /// a create whose answer was lost must be looked up, not sent again. Private: each
    /// endpoint's method decides its path, its HTTP method and `idempotent`.
    async fn request_json(&self, method: Method, path: &str, body: Option<&Value>, idempotent: bool) -> Result<Value, ApiError> {
        let url = self.url(path)?;
        self.with_retries(idempotent, path, || async {
            let answer = self.send(method.clone(), url.clone(), body, path).await?;
            if answer.body.iter().all(u8::is_ascii_whitespace) {
                return Ok(Value::Null);
            }
            let mut value: Value = serde_json::from_slice(&answer.body).map_err(|source| ApiError::malformed(source, &answer.body))?;
            Ok(match value.get_mut("data") {
                Some(data) => data.take(),
                None => value,
            })
        })
        .await
    }

    /// Downloads a file (deal attachments) with retries; returns its bytes and content type.
    /// `url` may be absolute or a path under the API. The credentials go only to the API's
    /// own origin, never to a storage host the API links to.
    pub async fn download(&self, url: &str) -> Result<(Vec<u8>, Option<String>), ApiError> {
        let url = match Url::parse(url) {
            Ok(absolute) => absolute,
            Err(_) => self.url(url)?,
        };
        let own_origin = url.origin() == self.inner.config.base_url.origin();
        self.with_retries(true, "file", || async {
            let mut request = self.inner.http.get(url.clone());
            if own_origin {
                request = self.authenticated(request);
            }
            let answer = self.exchange(request, "file").await?;
            Ok((answer.body.to_vec(), answer.content_type))
        })
        .await
    }

    /// `path` appended to the base URL's path segment by segment (so `/api/v2` is kept and
    /// a key with `?`, `#` or a space cannot change the URL's meaning). Segments made with
    /// [`segment`] keep a `/` or `%` of their own.
    fn url(&self, path: &str) -> Result<Url, ApiError> {
        let mut url = self.inner.config.base_url.clone();
        url.set_query(None);
        url.set_fragment(None);
        url.path_segments_mut()
            .map_err(|()| ApiError::Config(format!("base URL {} cannot take a path", self.inner.config.base_url)))?
            .pop_if_empty()
            .extend(path.trim_matches('/').split('/').map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy()));
        Ok(url)
    }
}

/// An identifier as one path segment of a request path, whatever it holds: a user's external
/// key may contain `/` or `%`, which would otherwise split the path or read as an escape.
fn segment(id: &str) -> String {
    const SPLITS: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS.add(b'/').add(b'%');
    percent_encoding::utf8_percent_encode(id, SPLITS).to_string()
}

/// A ceiling must be a number of requests a second the budget can pace.
fn check_rate_limit(limit: RateLimit) -> Result<(), ApiError> {
    match limit {
        RateLimit::Adaptive { ceiling: Some(c) } if !(MIN_CEILING..=MAX_RATE).contains(&c) => Err(ApiError::Config(format!(
            "requests_per_second {c} is out of range: between {MIN_CEILING} and {MAX_RATE}, or 0 for no limit"
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
