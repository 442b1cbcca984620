//! The daemon's one `LISTEN` connection. The triggers of `write_queue` and `events` send a
//! `NOTIFY` (payload: the schema) when a request is queued or events commit; one connection
//! listens on both channels and tells whoever waits: the write-back workers and the webhook
//! deliveries. A lost connection is made again after a pause; meanwhile every waiter's own
//! poll covers, so a missed notification only costs latency.

use std::{sync::Arc, time::Duration};

use sqlx::postgres::PgListener;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

use super::{Store, StoreError};
use crate::telemetry::error_chain;

/// The channel the `write_queue` trigger notifies.
const QUEUE_CHANNEL: &str = "partnerstack_write_queue";
/// The channel the `events` trigger notifies (docs/events.md).
pub const EVENTS_CHANNEL: &str = "partnerstack_events";
/// The pause before listening again after the connection was lost.
const RELISTEN_AFTER: Duration = Duration::from_secs(1);

/// Who is told when a `NOTIFY` for this schema arrives.
#[derive(Clone, Debug)]
pub struct Wakeups {
    /// A request was queued: every idle worker looks for work.
    pub queue: Arc<Notify>,
    /// Events were committed: the count goes up, and every delivery looks.
    pub events: watch::Sender<u64>,
}

impl Default for Wakeups {
    fn default() -> Self {
        Wakeups { queue: Arc::new(Notify::new()), events: watch::channel(0).0 }
    }
}

impl Store {
    /// Listens on both channels on one connection (outside the pool's count) until
    /// `shutdown`, and tells `wakeups` about notifications of this schema (other mirrors
    /// sharing the database notify the same channels).
    pub async fn fan_out_wakeups(&self, wakeups: Wakeups, shutdown: CancellationToken) {
        let mut listener: Option<PgListener> = None;
        while !shutdown.is_cancelled() {
            let received = async {
                if listener.is_none() {
                    let mut l = PgListener::connect_with(self.pool()).await?;
                    l.listen_all([QUEUE_CHANNEL, EVENTS_CHANNEL]).await?;
                    listener = Some(l);
                }
                Ok::<_, StoreError>(listener.as_mut().expect("listening").recv().await?)
            };
            let received = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = received => r,
            };
            match received {
                Ok(n) if n.payload() != self.schema() => {}
                Ok(n) if n.channel() == QUEUE_CHANNEL => wakeups.queue.notify_waiters(),
                Ok(_) => {
                    wakeups.events.send_modify(|n| *n = n.wrapping_add(1));
                }
                Err(error) => {
                    tracing::warn!(error = %error_chain(&error), "wake-ups: LISTEN failed; polling until it is back");
                    listener = None;
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(RELISTEN_AFTER) => {}
                    }
                }
            }
        }
    }
}
