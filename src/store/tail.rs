//! Reading the events table the way a consumer should: by id, in order, woken by `NOTIFY`.

use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

use super::{EventRow, Store, StoreError, EVENT_COLUMNS};

/// What `events tail` prints.
#[derive(Clone, Debug, Default)]
pub struct TailOptions {
    /// Start after this id (0: from the beginning).
    pub after: i64,
    /// Keep waiting for new events.
    pub follow: bool,
    /// `deal.*`, `*.deleted`, `lead.approved`: `*` matches anything.
    pub type_pattern: Option<String>,
    /// Resume from this consumer's committed position and commit after each line.
    pub consumer: Option<String>,
}

const BATCH: i64 = 1000;
/// Polling covers a missed notification (a reconnect, a listener started late).
const POLL: Duration = Duration::from_secs(5);

/// `deal.*` → `deal.%` with LIKE's own wildcards escaped.
pub fn like_pattern(pattern: &str) -> String {
    pattern.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_").replace('*', "%")
}

impl Store {
    /// Calls `emit` with each event as one line of compact JSON, in id order, until caught up
    /// (or, with `follow`, until `shutdown`); `emit` returns `false` to stop (a closed pipe).
    /// With a consumer, starts after its committed position and commits each event once
    /// `emit` has written it: at least once, never skipping. Returns the last id emitted.
    pub async fn tail(
        &self,
        options: &TailOptions,
        shutdown: &CancellationToken,
        mut emit: impl FnMut(&str) -> bool,
    ) -> Result<i64, StoreError> {
        let pattern = options.type_pattern.as_deref().map(like_pattern);
        let mut listener = if options.follow {
            let mut l = PgListener::connect_with(self.pool()).await?;
            l.listen(super::EVENTS_CHANNEL).await?;
            Some(l)
        } else {
            None
        };
        let mut last = match &options.consumer {
            Some(name) => self.consumer_position(name).await?.unwrap_or(0).max(options.after),
            None => options.after,
        };
        loop {
            // Everything up to the ceiling is committed (ids are handed out in commit order),
            // so the position may pass events the pattern left out, but never one not yet read.
            let ceiling = self.last_event_id().await?;
            let rows: Vec<EventRow> = sqlx::query_as(&format!(
                "SELECT {EVENT_COLUMNS} FROM events WHERE id > $1 AND id <= $2 AND ($3::text IS NULL OR event_type LIKE $3) \
                 ORDER BY id LIMIT $4"
            ))
            .bind(last)
            .bind(ceiling)
            .bind(pattern.as_deref())
            .bind(BATCH)
            .fetch_all(self.pool())
            .await?;
            let full = rows.len() as i64 == BATCH;
            for row in rows {
                if !emit(&row.to_json()) {
                    return Ok(last);
                }
                last = row.id;
                if let Some(name) = &options.consumer {
                    self.commit_events(name, last).await?;
                }
            }
            if !full && ceiling > last {
                if let Some(name) = &options.consumer {
                    self.commit_events(name, ceiling).await?;
                }
                last = ceiling;
            }
            if full {
                continue;
            }
            let Some(listener) = listener.as_mut() else { return Ok(last) };
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(last),
                _ = listener.recv() => {}
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// The largest event id committed so far (0: none).
    pub async fn last_event_id(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM events").fetch_one(self.pool()).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::like_pattern;

    #[test]
    fn stars_become_like_wildcards_and_like_wildcards_are_escaped() {
        assert_eq!(like_pattern("deal.*"), "deal.%");
        assert_eq!(like_pattern("*.deleted"), "%.deleted");
        assert_eq!(like_pattern("partner_team.*"), "partner\\_team.%");
    }
}
