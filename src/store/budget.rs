//! The `api_budget` table: the request rate learned for each API key, kept across restarts.

use super::{Store, StoreError};
use crate::partnerstack::LearnedRate;

impl Store {
    /// The rate learned for this API and public key by an earlier run, if any.
    pub async fn learned_rate(&self, api_url: &str, public_key: &str) -> Result<Option<LearnedRate>, StoreError> {
        let row: Option<(f64, bool)> =
            sqlx::query_as("SELECT requests_per_second, found_at_429 FROM api_budget WHERE api_url = $1 AND public_key = $2")
                .bind(api_url)
                .bind(public_key)
                .fetch_optional(self.pool())
                .await?;
        Ok(row.map(|(requests_per_second, found_at_429)| LearnedRate { requests_per_second, found_at_429 }))
    }

    /// Remembers the rate learned for this API and public key.
    pub async fn remember_rate(&self, api_url: &str, public_key: &str, learned: LearnedRate) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO api_budget (api_url, public_key, requests_per_second, found_at_429) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (api_url, public_key) DO UPDATE SET requests_per_second = excluded.requests_per_second, \
             found_at_429 = excluded.found_at_429, learned_at = now()",
        )
        .bind(api_url)
        .bind(public_key)
        .bind(learned.requests_per_second)
        .bind(learned.found_at_429)
        .execute(self.pool())
        .await?;
        Ok(())
    }
}
