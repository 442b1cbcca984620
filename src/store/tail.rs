//! Reading the events table the way a consumer should: by id, in order, woken by `NOTIFY`.

use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

use super::{Store, StoreError};

/// What `events tail` prints.
#[derive(Clone, Debug, Default)]
pub struct TailOptions {
    /// Start after this id (0: from the beginning).
    pub after: i64,
    /// Keep waiting for new events.
    pub follow: bool,
    /// `deal.*`, `*.deleted`, `lead.approved`: `*` matches anything.
    pub type_pattern: Option<String>,
}

const BATCH: i64 = 1000;
/// Polling covers a missed notification (a reconnect, a listener started late).
const POLL: Duration = Duration::from_secs(5);

/// `deal.*` → `deal.%` with LIKE's own wildcards escaped.
pub fn like_pattern(pattern: &str) -> String {
    pattern.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_").replace('*', "%")
}

impl Store {
    /// Calls `emit` with each event as one JSON line, in id order, until caught up (or, with
    /// `follow`, until `shutdown`). Returns the last id emitted.
    pub async fn tail(&self, options: &TailOptions, shutdown: &CancellationToken, mut emit: impl FnMut(&str)) -> Result<i64, StoreError> {
        let pattern = options.type_pattern.as_deref().map(like_pattern);
        let mut listener = if options.follow {
            let mut l = PgListener::connect_with(self.pool()).await?;
            l.listen("partnerstack_events").await?;
            Some(l)
        } else {
            None
        };
        let mut last = options.after;
        loop {
            let rows: Vec<(i64, String)> = sqlx::query_as(
                "SELECT id, json_build_object('id', id, 'event_type', event_type, 'object_type', object_type, \
                        'object_key', object_key, 'occurred_at', occurred_at, 'detected_at', detected_at, \
                        'source', source, 'changes', changes, 'data', data)::text \
                 FROM events WHERE id > $1 AND ($2::text IS NULL OR event_type LIKE $2) ORDER BY id LIMIT $3",
            )
            .bind(last)
            .bind(pattern.as_deref())
            .bind(BATCH)
            .fetch_all(self.pool())
            .await?;
            let full = rows.len() as i64 == BATCH;
            for (id, line) in rows {
                emit(&line);
                last = id;
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
