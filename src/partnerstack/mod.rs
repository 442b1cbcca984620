//! The PartnerStack vendor API client. Knows nothing of PostgreSQL.
//!
//! One `reqwest::Client` (timeouts, user agent) shared by clones; HTTP Basic auth with the
//! public key as user and the private key as password; a client-side rate limit on every
//! request sent (governor); retries with exponential backoff and full jitter (backon's
//! delays) that wait at least what `Retry-After` asks; list pages kept as raw JSON items so
//! a record that cannot be stored can be quarantined verbatim.

mod error;

use std::{
    collections::BTreeMap,
    fmt,
    num::NonZeroU32,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use backon::{BackoffBuilder, ExponentialBuilder};
use chrono::{DateTime, Utc};
use futures::Stream;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::{header, Method};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{value::RawValue, Value};
use url::Url;

pub use error::{ApiError, ErrorClass};

/// How to reach the API.
#[derive(Clone)]
pub struct ClientConfig {
    /// e.g. `https://api.partnerstack.com/api/v2`
    pub base_url: Url,
    pub public_key: String,
    pub private_key: SecretString,
    /// Requests sent per second, retries included; `<= 0` means unlimited.
    pub requests_per_second: f64,
    pub timeout: Duration,
    pub max_retries: usize,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    pub page_size: u16,
    pub user_agent: String,
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("base_url", &self.base_url.as_str())
            .field("public_key", &self.public_key)
            .field("private_key", &"[redacted]")
            .field("requests_per_second", &self.requests_per_second)
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("page_size", &self.page_size)
            .finish()
    }
}

/// Filters of a list request (epoch milliseconds).
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
#[derive(Debug)]
pub struct Page {
    /// Each item's exact text.
    pub items: Vec<Box<RawValue>>,
    /// A missing `has_more` counts as false.
    pub has_more: bool,
    /// The `key` of the last item: the next `starting_after`.
    pub last_key: Option<String>,
    /// The response's `Date` header.
    pub server_date: Option<DateTime<Utc>>,
}

/// Requests sent, by endpoint and outcome.
#[derive(Clone, Debug, Default)]
pub struct ClientStats {
    /// `(endpoint, status)` → count; status is the HTTP code, `timeout` or `transport`.
    pub requests: BTreeMap<(String, String), u64>,
}

#[derive(Deserialize)]
struct ListEnvelope {
    data: ListData,
}

#[derive(Deserialize)]
struct ListData {
    #[serde(default)]
    items: Vec<Box<RawValue>>,
    #[serde(default)]
    has_more: Option<bool>,
}

#[derive(Deserialize)]
struct KeyOnly {
    key: Option<Value>,
}

struct Inner {
    http: reqwest::Client,
    config: ClientConfig,
    limiter: Option<DefaultDirectRateLimiter>,
    sent: AtomicU64,
    stats: Mutex<BTreeMap<(String, String), u64>>,
}

/// The API client; cheap to clone.
#[derive(Clone)]
pub struct ApiClient {
    inner: Arc<Inner>,
}

impl fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiClient").field("config", &self.inner.config).finish()
    }
}

/// A successful answer: the `Date` header and the body.
struct Answer {
    date: Option<DateTime<Utc>>,
    body: bytes::Bytes,
}

impl ApiClient {
    pub fn new(config: ClientConfig) -> Result<ApiClient, ApiError> {
        if !(1..=250).contains(&config.page_size) {
            return Err(ApiError::Config(format!("page size {} is outside 1..=250", config.page_size)));
        }
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .user_agent(config.user_agent.clone())
            .build()
            .map_err(|e| ApiError::Config(format!("cannot build the HTTP client: {e}")))?;
        let limiter = (config.requests_per_second > 0.0).then(|| {
            let period = Duration::from_secs_f64(1.0 / config.requests_per_second);
            let burst = NonZeroU32::new(config.requests_per_second.ceil().max(1.0) as u32).expect("at least 1");
            let quota = Quota::with_period(period).expect("a positive period").allow_burst(burst);
            RateLimiter::direct(quota)
        });
        Ok(ApiClient { inner: Arc::new(Inner { http, config, limiter, sent: AtomicU64::new(0), stats: Mutex::default() }) })
    }

    /// HTTP requests actually sent, retries included.
    pub fn requests_sent(&self) -> u64 {
        self.inner.sent.load(Ordering::Relaxed)
    }

    pub fn stats(&self) -> ClientStats {
        ClientStats { requests: self.inner.stats.lock().expect("no panics while holding it").clone() }
    }

    /// Requests by endpoint and status, for `/metrics`.
    pub fn request_counts(&self) -> Vec<(String, String, u64)> {
        self.stats().requests.into_iter().map(|((endpoint, status), n)| (endpoint, status, n)).collect()
    }

    /// One list page, with retries.
    pub async fn list_page(&self, path: &str, query: &ListQuery, starting_after: Option<&str>) -> Result<Page, ApiError> {
        let mut url = self.url(path)?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("limit", &query.limit.unwrap_or(self.inner.config.page_size).to_string());
            for (name, value) in [
                ("min_created", query.min_created),
                ("max_created", query.max_created),
                ("min_updated", query.min_updated),
                ("max_updated", query.max_updated),
            ] {
                if let Some(v) = value {
                    q.append_pair(name, &v.to_string());
                }
            }
            if let Some(key) = starting_after {
                q.append_pair("starting_after", key);
            }
        }
        self.with_retries(true, path, || async {
            let answer = self.send(Method::GET, url.clone(), None, path).await?;
            let envelope: ListEnvelope = serde_json::from_slice(&answer.body).map_err(|source| malformed(source, &answer.body))?;
            let last_key =
                envelope.data.items.last().and_then(|raw| serde_json::from_str::<KeyOnly>(raw.get()).ok()).and_then(|k| match k.key {
                    Some(Value::String(s)) => Some(s),
                    _ => None,
                });
            Ok(Page { items: envelope.data.items, has_more: envelope.data.has_more.unwrap_or(false), last_key, server_date: answer.date })
        })
        .await
    }

    /// Every page of a listing, following `has_more` with `starting_after`; ends after the
    /// first error.
    pub fn list<'a>(&'a self, path: &'a str, query: ListQuery) -> impl Stream<Item = Result<Page, ApiError>> + Send + 'a {
        futures::stream::unfold(Some(None::<String>), move |cursor| {
            let query = query.clone();
            async move {
                let after = cursor?;
                match self.list_page(path, &query, after.as_deref()).await {
                    Ok(page) => {
                        let next = match (&page.last_key, page.has_more) {
                            (Some(k), true) => Some(Some(k.clone())),
                            _ => None,
                        };
                        Some((Ok(page), next))
                    }
                    Err(e) => Some((Err(e), None)),
                }
            }
        })
    }

    /// Any JSON call: returns the envelope's `data` (or the whole body when there is none).
    /// Retries only when `idempotent`: a create is never sent twice by the client.
    pub async fn request_json(&self, method: Method, path: &str, body: Option<&Value>, idempotent: bool) -> Result<Value, ApiError> {
        let url = self.url(path)?;
        self.with_retries(idempotent, path, || async {
            let answer = self.send(method.clone(), url.clone(), body, path).await?;
            if answer.body.is_empty() {
                return Ok(Value::Null);
            }
            let mut value: Value = serde_json::from_slice(&answer.body).map_err(|source| malformed(source, &answer.body))?;
            Ok(match value.get_mut("data") {
                Some(data) => data.take(),
                None => value,
            })
        })
        .await
    }

    /// Downloads a file (deal attachments), with credentials only for the API's own host.
    pub async fn download(&self, url: &str) -> Result<(Vec<u8>, Option<String>), ApiError> {
        let url = Url::parse(url).or_else(|_| self.url(url)).map_err(|_| ApiError::Config(format!("bad file URL {url}")))?;
        let same_host = url.host_str() == self.inner.config.base_url.host_str();
        self.with_retries(true, "file", || async {
            self.throttle().await;
            self.inner.sent.fetch_add(1, Ordering::Relaxed);
            let mut request = self.inner.http.get(url.clone());
            if same_host {
                request = request.basic_auth(&self.inner.config.public_key, Some(self.inner.config.private_key.expose_secret()));
            }
            let response = request.send().await.map_err(transport)?;
            let status = response.status();
            let content_type = response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
            let body = response.bytes().await.map_err(transport)?;
            self.count("file", &status.as_u16().to_string());
            if !status.is_success() {
                return Err(ApiError::from_status(status.as_u16(), &body, None));
            }
            Ok((body.to_vec(), content_type))
        })
        .await
    }

    fn url(&self, path: &str) -> Result<Url, ApiError> {
        let base = self.inner.config.base_url.as_str().trim_end_matches('/');
        Url::parse(&format!("{base}/{}", path.trim_start_matches('/'))).map_err(|e| ApiError::Config(format!("bad URL for {path}: {e}")))
    }

    async fn throttle(&self) {
        if let Some(limiter) = &self.inner.limiter {
            limiter.until_ready().await;
        }
    }

    fn count(&self, path: &str, status: &str) {
        *self.inner.stats.lock().expect("no panics while holding it").entry((endpoint(path), status.to_owned())).or_default() += 1;
    }

    /// One HTTP exchange; non-2xx answers become errors.
    async fn send(&self, method: Method, url: Url, body: Option<&Value>, path: &str) -> Result<Answer, ApiError> {
        self.throttle().await;
        self.inner.sent.fetch_add(1, Ordering::Relaxed);
        let mut request = self
            .inner
            .http
            .request(method, url)
            .basic_auth(&self.inner.config.public_key, Some(self.inner.config.private_key.expose_secret()))
            .header(header::ACCEPT, "application/json");
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                self.count(path, if e.is_timeout() { "timeout" } else { "transport" });
                return Err(transport(e));
            }
        };
        let status = response.status();
        let retry_after = response.headers().get(header::RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(parse_retry_after);
        let date = response
            .headers()
            .get(header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|d| DateTime::parse_from_rfc2822(d).ok())
            .map(|d| d.with_timezone(&Utc));
        let body = match response.bytes().await {
            Ok(b) => b,
            Err(e) => {
                self.count(path, "transport");
                return Err(transport(e));
            }
        };
        self.count(path, &status.as_u16().to_string());
        if !status.is_success() {
            return Err(ApiError::from_status(status.as_u16(), &body, retry_after));
        }
        Ok(Answer { date, body })
    }

    /// Runs `attempt` until it succeeds, fails for good, or the retries run out.
    async fn with_retries<T, F, Fut>(&self, retry: bool, path: &str, attempt: F) -> Result<T, ApiError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, ApiError>>,
    {
        let c = &self.inner.config;
        let mut delays = ExponentialBuilder::default()
            .with_min_delay(c.min_backoff)
            .with_max_delay(c.max_backoff)
            .with_max_times(c.max_retries)
            .with_jitter()
            .build();
        let mut tries = 0;
        loop {
            tries += 1;
            let error = match attempt().await {
                Ok(value) => return Ok(value),
                Err(e) => e,
            };
            if !retry || error.class() != ErrorClass::Retryable {
                return Err(error);
            }
            let Some(delay) = delays.next() else { return Err(error) };
            let delay = delay.max(error.retry_after().unwrap_or_default());
            tracing::warn!(path, attempt = tries, wait_ms = delay.as_millis() as u64, error = %error, "retrying PartnerStack request");
            tokio::time::sleep(delay).await;
        }
    }
}

fn transport(e: reqwest::Error) -> ApiError {
    if e.is_timeout() {
        ApiError::Timeout(e)
    } else {
        ApiError::Transport(e)
    }
}

fn malformed(source: serde_json::Error, body: &[u8]) -> ApiError {
    ApiError::Malformed { source, snippet: error::shorten(&String::from_utf8_lossy(body), 80) }
}

/// `Retry-After` in seconds or as an HTTP date.
fn parse_retry_after(value: &str) -> Option<Duration> {
    if let Ok(seconds) = value.trim().parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds.min(3600.0)));
    }
    let when = DateTime::parse_from_rfc2822(value.trim()).ok()?.with_timezone(&Utc);
    Some((when - Utc::now()).to_std().unwrap_or_default())
}

/// The metrics label for a path: its resource, with record keys folded (`deals/{key}/convert`).
fn endpoint(path: &str) -> String {
    let mut parts = path.trim_matches('/').split('/');
    let mut label = parts.next().unwrap_or_default().to_owned();
    for (i, part) in parts.enumerate() {
        label.push('/');
        label.push_str(if i % 2 == 0 && !matches!(part, "tags" | "convert" | "files" | "file" | "member") { "{key}" } else { part });
    }
    label
}

#[cfg(test)]
mod tests;
