//! Single reads of mirrored rows that the sync and the write-back need to address the API:
//! the identifiers a request's path or lookup wants.

use super::{Store, StoreError};

impl Store {
    /// The mirrored customer's `customer_key` (what PartnerStack addresses customers by).
    /// `None`: no such customer is mirrored; `Some(None)`: it is, without a `customer_key`.
    pub async fn customer_key(&self, key: &str) -> Result<Option<Option<String>>, StoreError> {
        Ok(sqlx::query_scalar("SELECT customer_key FROM customers WHERE key = $1").bind(key).fetch_optional(self.pool()).await?)
    }

    /// The mirrored lead's `external_key`, if the lead is mirrored and has one.
    pub async fn lead_external_key(&self, key: &str) -> Result<Option<String>, StoreError> {
        let found: Option<Option<String>> =
            sqlx::query_scalar("SELECT raw->>'external_key' FROM leads WHERE key = $1").bind(key).fetch_optional(self.pool()).await?;
        Ok(found.flatten())
    }
}
