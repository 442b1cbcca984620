//! One record's endpoints, for the write-back queue (research notes §2): read it, write it,
//! and the deal attachments.
//!
//! Whether the client may send a request again is decided here, once per endpoint: reads are
//! retried; writes go once per call, because the queue retries them durably (counted in
//! `write_queue.attempts`) and a create whose answer was lost must be looked up, not sent
//! again.

use reqwest::Method;
use serde_json::Value;

use super::{segment, ApiClient, ApiError};
use crate::object::ObjectKind;

/// A write: sent once per call.
const ONCE: bool = false;
/// A read: retried by the client.
const RETRIED: bool = true;

impl ApiClient {
    /// `GET /{objects}/{id}`: the record as the API has it now.
    pub async fn record(&self, kind: ObjectKind, id: &str) -> Result<Value, ApiError> {
        self.request_json(Method::GET, &one(kind, id), None, RETRIED).await
    }

    /// `POST /{objects}`: the record created.
    pub async fn create(&self, kind: ObjectKind, body: &Value) -> Result<Value, ApiError> {
        self.request_json(Method::POST, kind.api_path(), Some(body), ONCE).await
    }

    /// `PATCH /{objects}/{id}`: the record updated.
    pub async fn update(&self, kind: ObjectKind, id: &str, body: &Value) -> Result<Value, ApiError> {
        self.request_json(Method::PATCH, &one(kind, id), Some(body), ONCE).await
    }

    /// `DELETE /{objects}/{id}`, which archives the record (or deletes it): the API's answer,
    /// which says little, so callers read the record back.
    pub async fn archive(&self, kind: ObjectKind, id: &str) -> Result<Value, ApiError> {
        self.request_json(Method::DELETE, &one(kind, id), None, ONCE).await
    }

    /// `PATCH /partnerships/{key}/tags`, whose body is undocumented (docs/correctness.md, question 6): the API's
    /// answer, whatever its shape.
    pub async fn modify_tags(&self, partnership_key: &str, body: &Value) -> Result<Value, ApiError> {
        let path = format!("{}/tags", one(ObjectKind::Partnership, partnership_key));
        self.request_json(Method::PATCH, &path, Some(body), ONCE).await
    }

    /// `POST /{leads|deals}/{key}/convert`: the customer the lead or deal became.
    pub async fn convert(&self, kind: ObjectKind, key: &str, body: &Value) -> Result<Value, ApiError> {
        self.request_json(Method::POST, &format!("{}/convert", one(kind, key)), Some(body), ONCE).await
    }

    /// `GET /deals/{key}/files`: the deal's attachments as the API describes them (`deal_files`),
    /// without their content.
    pub async fn deal_files(&self, deal_key: &str) -> Result<Vec<Value>, ApiError> {
        let listing = self.request_json(Method::GET, &format!("{}/files", one(ObjectKind::Deal, deal_key)), None, RETRIED).await?;
        Ok(listing.get("deal_files").and_then(Value::as_array).cloned().unwrap_or_default())
    }

    /// `GET /deals/{key}/file/{file_key}`: where to [`download`](ApiClient::download) one
    /// attachment; `None` when the answer gives no link.
    pub async fn deal_file_link(&self, deal_key: &str, file_key: &str) -> Result<Option<String>, ApiError> {
        let path = format!("{}/file/{}", one(ObjectKind::Deal, deal_key), segment(file_key));
        let link = self.request_json(Method::GET, &path, None, RETRIED).await?;
        Ok(link.get("url").and_then(Value::as_str).map(str::to_owned))
    }
}

/// The path of one record: `{objects}/{id}`.
fn one(kind: ObjectKind, id: &str) -> String {
    format!("{}/{}", kind.api_path(), segment(id))
}
