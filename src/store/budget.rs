//! The `api_budget` table: the request rate learned for each API key, kept across restarts.

use super::{Store, StoreError};

impl Store {
    /// The rate learned for this API and public key by an earlier run, if any.
    pub async fn learned_rate(&self, api_url: &str, public_key: &str) -> Result<Option<f64>, StoreError> {
        Ok(sqlx::query_scalar("SELECT requests_per_second FROM api_budget WHERE api_url = $1 AND public_key = $2")
            .bind(api_url)
            .bind(public_key)
            .fetch_optional(self.pool())
            .await?)
    }

    /// Remembers the rate learned for this API and public key.
    pub async fn remember_rate(&self, api_url: &str, public_key: &str, requests_per_second: f64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO api_budget (api_url, public_key, requests_per_second) VALUES ($1, $2, $3) \
             ON CONFLICT (api_url, public_key) DO UPDATE SET requests_per_second = excluded.requests_per_second, learned_at = now()",
        )
        .bind(api_url)
        .bind(public_key)
        .bind(requests_per_second)
        .execute(self.pool())
        .await?;
        Ok(())
    }
}
