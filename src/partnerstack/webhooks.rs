//! PartnerStack's webhook subscriptions (`/v2/webhooks`): subscribe, list, unsubscribe. The
//! request body's field names are not settled (research notes §2.11: `target` + `events` only
//! from low-confidence sources), so [`ApiClient::subscribe`] sends `target` and, if the API
//! says it wants `url`, sends that instead; `doctor` reports which field the subscriptions the
//! API lists carry ([`Subscription::url_field`]).

use futures::TryStreamExt;
use reqwest::Method;
use serde_json::{json, Value};

use super::{segment, ApiClient, ApiError, ListQuery};

const PATH: &str = "webhooks";

/// One subscription as the API lists it.
#[derive(Clone, Debug, PartialEq)]
pub struct Subscription {
    pub key: String,
    /// Where PartnerStack sends (the `target` field, or `url`).
    pub target: Option<String>,
    pub events: Vec<String>,
    pub raw: Value,
}

impl Subscription {
    fn from_value(raw: Value) -> Subscription {
        let text = |f: &str| raw.get(f).and_then(Value::as_str).map(str::to_owned);
        Subscription {
            key: text("key").unwrap_or_default(),
            target: text("target").or_else(|| text("url")),
            events: raw
                .get("events")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|e| e.as_str().map(str::to_owned)).collect())
                .unwrap_or_default(),
            raw,
        }
    }

    /// Which field holds the URL in the API's answer, if any.
    pub fn url_field(&self) -> Option<&'static str> {
        ["target", "url"].into_iter().find(|f| self.raw.get(*f).is_some_and(Value::is_string))
    }
}

impl ApiClient {
    /// `POST /webhooks`: subscribes `url` to `events` (at least one name; the mirror's are
    /// `subscriptions::MIRRORED_EVENTS`). Sent once: a lost answer is looked up with
    /// [`ApiClient::subscriptions`], never sent again blindly.
    pub async fn subscribe(&self, url: &str, events: &[String]) -> Result<Subscription, ApiError> {
        let attempt = |field: &str| json!({ field: url, "events": events });
        match self.request_json(Method::POST, PATH, Some(&attempt("target")), false).await {
            Err(ApiError::Rejected { status: 400, message }) if message.contains("url") && !message.contains("target") => {
                self.request_json(Method::POST, PATH, Some(&attempt("url")), false).await.map(Subscription::from_value)
            }
            other => other.map(Subscription::from_value),
        }
    }

    /// `GET /webhooks`: every live subscription, newest first.
    pub async fn subscriptions(&self) -> Result<Vec<Subscription>, ApiError> {
        let pages: Vec<_> = self.pages(PATH.to_owned(), ListQuery::default()).try_collect().await?;
        Ok(pages
            .iter()
            .flat_map(|p| p.items.iter())
            .filter_map(|raw| serde_json::from_str::<Value>(raw.get()).ok())
            .map(Subscription::from_value)
            .collect())
    }

    /// `DELETE /webhooks/{key}`: archives a subscription, so PartnerStack sends nothing more to
    /// it. Retried: archiving twice ends the same.
    pub async fn unsubscribe(&self, key: &str) -> Result<(), ApiError> {
        self.request_json(Method::DELETE, &format!("{PATH}/{}", segment(key)), None, true).await.map(drop)
    }
}
