//! Leases: one instance at a time syncs an object, fenced by an epoch.

use std::time::Duration;

use sqlx::{Postgres, Transaction};

use super::{Store, StoreError};
use crate::object::ObjectKind;

/// The right to write one object, as granted at `epoch`.
#[derive(Clone, Debug)]
pub struct Lease {
    pub kind: ObjectKind,
    pub holder: String,
    pub epoch: i64,
    pub ttl: Duration,
}

impl Store {
    /// Takes the object's lease if it is free, expired, or already ours. `None`: another
    /// live instance holds it.
    pub async fn acquire_lease(&self, kind: ObjectKind, holder: &str, ttl: Duration) -> Result<Option<Lease>, StoreError> {
        let epoch: Option<i64> = sqlx::query_scalar(
            "INSERT INTO sync_leases AS l (object, holder, epoch, expires_at) \
             VALUES ($1, $2, 1, now() + make_interval(secs => $3)) \
             ON CONFLICT (object) DO UPDATE SET \
                 epoch = CASE WHEN l.holder = excluded.holder AND l.expires_at > now() THEN l.epoch ELSE l.epoch + 1 END, \
                 acquired_at = CASE WHEN l.holder = excluded.holder AND l.expires_at > now() THEN l.acquired_at ELSE now() END, \
                 holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE l.expires_at <= now() OR l.holder = excluded.holder \
             RETURNING epoch",
        )
        .bind(kind.table())
        .bind(holder)
        .bind(ttl.as_secs_f64())
        .fetch_optional(self.pool())
        .await?;
        Ok(epoch.map(|epoch| Lease { kind, holder: holder.to_owned(), epoch, ttl }))
    }

    /// Gives the lease up at once (a clean shutdown or the end of a pass).
    pub async fn release_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        sqlx::query("UPDATE sync_leases SET expires_at = now() WHERE object = $1 AND holder = $2 AND epoch = $3")
            .bind(lease.kind.table())
            .bind(&lease.holder)
            .bind(lease.epoch)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}

/// Checks, inside a write transaction, that `lease` still holds. The shared row lock lasts
/// until commit: concurrent windows of the same pass write side by side, while another
/// instance's takeover (an UPDATE of the row) waits until they have committed, so the lease
/// cannot change hands under a write. A lease past its expiry that nobody took over (same
/// holder, same epoch: a takeover changes both) still holds: a pass slowed down by a loaded
/// machine, with no one else waiting, is not fenced off for nothing.
pub async fn fence_in(tx: &mut Transaction<'_, Postgres>, lease: &Lease) -> Result<(), StoreError> {
    let held: Option<i32> = sqlx::query_scalar("SELECT 1 FROM sync_leases WHERE object = $1 AND holder = $2 AND epoch = $3 FOR SHARE")
        .bind(lease.kind.table())
        .bind(&lease.holder)
        .bind(lease.epoch)
        .fetch_optional(&mut **tx)
        .await?;
    match held {
        Some(_) => Ok(()),
        None => Err(StoreError::Fenced { object: lease.kind.table().to_owned() }),
    }
}

impl Store {
    /// Extends the lease by its TTL, if it is still ours.
    pub async fn renew_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        let renewed = sqlx::query(
            "UPDATE sync_leases SET expires_at = now() + make_interval(secs => $4) \
             WHERE object = $1 AND holder = $2 AND epoch = $3",
        )
        .bind(lease.kind.table())
        .bind(&lease.holder)
        .bind(lease.epoch)
        .bind(lease.ttl.as_secs_f64())
        .execute(self.pool())
        .await?;
        if renewed.rows_affected() == 0 {
            return Err(StoreError::Fenced { object: lease.kind.table().to_owned() });
        }
        Ok(())
    }
}
