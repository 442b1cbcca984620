//! One HTTP exchange: wait out a 429 pause and take a permit from the request budget, send,
//! read the whole body, classify, and tell the gate and the budget what the answer says.
//!
//! Every request the client sends goes through [`ApiClient::exchange`], so the budget, the
//! request counters and the status classification cannot be skipped by a new caller.

use chrono::{DateTime, Utc};
use reqwest::{header, Method, RequestBuilder};
use secrecy::ExposeSecret;
use serde_json::Value;
use url::Url;

use super::{budget::Verdict, retry::parse_retry_after, stats::endpoint, ApiClient, ApiError};

/// A successful (2xx) answer.
pub(super) struct Answer {
    /// The `Date` header: the server's clock, which the sync uses instead of ours.
    pub date: Option<DateTime<Utc>>,
    pub content_type: Option<String>,
    pub body: bytes::Bytes,
}

impl ApiClient {
    /// An authenticated JSON request to the API.
    pub(super) async fn send(&self, method: Method, url: Url, body: Option<&Value>, path: &str) -> Result<Answer, ApiError> {
        let mut request = self.authenticated(self.inner.http.request(method, url)).header(header::ACCEPT, "application/json");
        if let Some(body) = body {
            request = request.json(body);
        }
        self.exchange(request, path).await
    }

    /// Adds HTTP Basic auth: public key as user, private key as password.
    pub(super) fn authenticated(&self, request: RequestBuilder) -> RequestBuilder {
        let config = &self.inner.config;
        request.basic_auth(&config.public_key, Some(config.private_key.expose_secret()))
    }

    /// Sends `request` once and reads all of its answer; a non-2xx status becomes an error.
    pub(super) async fn exchange(&self, request: RequestBuilder, path: &str) -> Result<Answer, ApiError> {
        self.wait_out_rate_limit().await;
        let permit = self.inner.budget.permit().await;
        // From here the step is bounded by the request timeout.
        crate::liveness::step();
        let counters = &self.inner.counters;
        if permit.waited {
            counters.count_throttled();
        }
        counters.count_sent();
        let failed = |e: reqwest::Error| {
            counters.count_outcome(path, if e.is_timeout() { "timeout" } else { "transport" });
            ApiError::from_reqwest(e)
        };
        let response = request.send().await.map_err(failed)?;
        let status = response.status();
        let headers = response.headers();
        let text = |name| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let retry_after = text(header::RETRY_AFTER).and_then(|v| parse_retry_after(&v, Utc::now()));
        let date = text(header::DATE).and_then(|d| DateTime::parse_from_rfc2822(&d).ok()).map(|d| d.with_timezone(&Utc));
        let content_type = text(header::CONTENT_TYPE);
        // Reading the body is part of the exchange: a connection dropped halfway through is
        // transport trouble like any other, and retried as such.
        let body = response.bytes().await.map_err(failed)?;
        counters.count_outcome(path, status.as_str());
        let error = (!status.is_success()).then(|| match ApiError::from_status(status.as_u16(), &body, retry_after) {
            // A 403 where this key was refused before while the API accepted it elsewhere:
            // the key may not use this endpoint; it says nothing about the keys.
            ApiError::Unauthorized { status: 403, message } => match endpoint(path) {
                label if self.inner.gate.is_refused(&label) => ApiError::Forbidden { endpoint: label, message },
                _ => ApiError::Unauthorized { status: 403, message },
            },
            error => error,
        });
        // What the answer says about the rate: any answer but a 429 or a server error shows
        // the API took the request at this pace.
        let verdict = match &error {
            Some(ApiError::RateLimited { retry_after }) => {
                self.inner.gate.pause(*retry_after);
                Verdict::TooFast { until: self.inner.gate.paused_until() }
            }
            Some(ApiError::Server { .. }) => Verdict::Unclear,
            Some(ApiError::Unauthorized { status, message }) => {
                self.inner.gate.rejected(*status, message, endpoint(path));
                Verdict::Accepted
            }
            Some(_) | None => Verdict::Accepted,
        };
        self.inner.budget.answered(&permit, verdict);
        if let Some(error) = error {
            return Err(error);
        }
        self.inner.gate.accepted();
        Ok(Answer { date, content_type, body })
    }
}
