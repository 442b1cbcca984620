//! Wake-ups for the write-back workers: the `NOTIFY` that an INSERT into `write_queue` sends
//! (payload: the schema), heard on one `LISTEN` connection.

use sqlx::postgres::PgListener;

use super::{Store, StoreError};

/// The channel the `write_queue` trigger notifies.
const QUEUE_CHANNEL: &str = "partnerstack_write_queue";

/// A `LISTEN` on the queue's channel, for this schema only.
pub struct QueueWakeups {
    listener: PgListener,
    schema: String,
}

impl Store {
    /// Opens a connection of its own (outside the pool's count) and listens on it.
    pub async fn queue_wakeups(&self) -> Result<QueueWakeups, StoreError> {
        let mut listener = PgListener::connect_with(self.pool()).await?;
        listener.listen(QUEUE_CHANNEL).await?;
        Ok(QueueWakeups { listener, schema: self.schema().to_owned() })
    }
}

impl QueueWakeups {
    /// Returns once a request was queued in this schema (other mirrors sharing the database
    /// notify the same channel). An error means the connection is gone: listen again.
    pub async fn next(&mut self) -> Result<(), StoreError> {
        loop {
            if self.listener.recv().await?.payload() == self.schema {
                return Ok(());
            }
        }
    }
}
