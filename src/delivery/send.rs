//! One webhook: a signed POST of one event, and what the endpoint's answer means.
//!
//! 2xx: accepted. 410 Gone: the endpoint is gone for good, so the delivery is disabled.
//! Anything else (429, 5xx, other 4xx, 3xx, a timeout, a refused or reset connection) is a
//! failed attempt, tried again after a backoff: a 4xx is usually a receiver misconfigured for
//! a while (a wrong secret, a deploy in progress), not a verdict on the event. Redirects are
//! not followed, so a signed event never lands anywhere but the configured URL.

use std::time::Duration;

use reqwest::{header::HeaderValue, StatusCode};
use tokio::time::Instant;
use url::Url;

use super::sign::Signer;

/// What the endpoint made of one attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    Accepted,
    /// 410 Gone.
    Gone,
    /// A failed attempt; `retry_after` when the endpoint said when to come back.
    Failed {
        status: Option<u16>,
        retry_after: Option<Duration>,
        error: String,
    },
}

/// A client for one delivery: its timeout, no redirects, rustls.
pub fn client(timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("partnerstack-mirror/", env!("CARGO_PKG_VERSION"), " (webhooks)"))
        .build()
}

/// The `webhook-id` of one event sent by one delivery, the same on every attempt:
/// `schema.name.event`. A name outside ASCII has its other bytes percent-encoded: header
/// values are ASCII to most receivers, whose `webhook-id` would otherwise be unreadable.
pub fn webhook_id(schema: &str, delivery: &str, event_id: i64) -> String {
    // `CONTROLS` leaves ASCII as it is (names hold no control characters: see the config).
    let ascii = |text| percent_encoding::utf8_percent_encode(text, percent_encoding::CONTROLS);
    format!("{}.{}.{event_id}", ascii(schema), ascii(delivery))
}

/// The Standard Webhooks headers for one message sent now.
pub fn headers(signer: &Signer, webhook_id: &str, body: &str) -> [(&'static str, String); 3] {
    let timestamp = chrono::Utc::now().timestamp();
    [
        ("webhook-id", webhook_id.to_owned()),
        ("webhook-timestamp", timestamp.to_string()),
        ("webhook-signature", signer.sign(webhook_id, timestamp, body)),
    ]
}

/// POSTs `body` once; returns the answer and how long the request took.
pub async fn post(client: &reqwest::Client, url: &Url, signer: &Signer, webhook_id: &str, body: &str) -> (Answer, Duration) {
    let mut request = client.post(url.clone()).header("content-type", "application/json").body(body.to_owned());
    for (name, value) in headers(signer, webhook_id, body) {
        request = request.header(name, value);
    }
    let started = Instant::now();
    let answer = match request.send().await {
        Ok(response) => {
            let status = response.status();
            let retry_after = response.headers().get("retry-after").and_then(retry_after);
            // The body is read (bounded by the timeout) so the connection can be reused.
            let text = response.text().await.unwrap_or_default();
            classify(status, retry_after, &text)
        }
        Err(e) => Answer::Failed { status: None, retry_after: None, error: describe(e) },
    };
    (answer, started.elapsed())
}

fn retry_after(value: &HeaderValue) -> Option<Duration> {
    crate::partnerstack::parse_retry_after(value.to_str().ok()?, chrono::Utc::now())
}

fn classify(status: StatusCode, retry_after: Option<Duration>, body: &str) -> Answer {
    if status.is_success() {
        return Answer::Accepted;
    }
    if status == StatusCode::GONE {
        return Answer::Gone;
    }
    let excerpt: String = body.chars().take(200).collect();
    let excerpt = excerpt.trim();
    let error =
        if excerpt.is_empty() { format!("the endpoint answered {status}") } else { format!("the endpoint answered {status}: {excerpt}") };
    Answer::Failed { status: Some(status.as_u16()), retry_after, error }
}

/// A transport failure in words an operator acts on.
fn describe(e: reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "no answer within the delivery's timeout"
    } else if e.is_connect() {
        "cannot connect to the endpoint"
    } else {
        "the connection failed"
    };
    // The URL carries no secret, but the chain is enough to act on.
    format!("{what}: {}", crate::telemetry::error_chain(&e.without_url()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_webhook_id_is_ascii_whatever_the_delivery_is_called() {
        assert_eq!(webhook_id("partnerstack", "crm", 42), "partnerstack.crm.42");
        assert_eq!(webhook_id("partnerstack", "my delivery", 7), "partnerstack.my delivery.7", "ASCII names are kept as they are");
        assert_eq!(webhook_id("partnerstack", "café", 7), "partnerstack.caf%C3%A9.7");
        assert!(HeaderValue::from_str(&webhook_id("ps", "配信", 1)).unwrap().to_str().is_ok());
    }

    #[test]
    fn answers_are_classified_once() {
        assert_eq!(classify(StatusCode::NO_CONTENT, None, ""), Answer::Accepted);
        assert_eq!(classify(StatusCode::GONE, None, ""), Answer::Gone);
        let wait = Some(Duration::from_secs(3));
        match classify(StatusCode::TOO_MANY_REQUESTS, wait, "slow down") {
            Answer::Failed { status: Some(429), retry_after, error } => {
                assert_eq!(retry_after, wait);
                assert!(error.contains("429") && error.contains("slow down"), "{error}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(classify(StatusCode::UNAUTHORIZED, None, ""), Answer::Failed { status: Some(401), .. }));
        assert!(matches!(classify(StatusCode::MOVED_PERMANENTLY, None, ""), Answer::Failed { status: Some(301), .. }));
    }
}
