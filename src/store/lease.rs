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
        let epoch = self.acquire_named_lease(kind.table(), holder, ttl).await?;
        Ok(epoch.map(|epoch| Lease { kind, holder: holder.to_owned(), epoch, ttl }))
    }

    /// Gives the lease up at once (a clean shutdown or the end of a pass).
    pub async fn release_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        self.release_named_lease(lease.kind.table(), &lease.holder, lease.epoch).await
    }

    /// The lease named `name` in `sync_leases` (an object's table, or `push:<name>`), if it is
    /// free, expired, or already `holder`'s: the epoch it is held at. `None`: another live
    /// instance holds it.
    pub(super) async fn acquire_named_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "INSERT INTO sync_leases AS l (object, holder, epoch, expires_at) \
             VALUES ($1, $2, 1, now() + make_interval(secs => $3)) \
             ON CONFLICT (object) DO UPDATE SET \
                 epoch = CASE WHEN l.holder = excluded.holder AND l.expires_at > now() THEN l.epoch ELSE l.epoch + 1 END, \
                 acquired_at = CASE WHEN l.holder = excluded.holder AND l.expires_at > now() THEN l.acquired_at ELSE now() END, \
                 holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE l.expires_at <= now() OR l.holder = excluded.holder \
             RETURNING epoch",
        )
        .bind(name)
        .bind(holder)
        .bind(ttl.as_secs_f64())
        .fetch_optional(self.pool())
        .await?)
    }

    pub(super) async fn release_named_lease(&self, name: &str, holder: &str, epoch: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE sync_leases SET expires_at = now() WHERE object = $1 AND holder = $2 AND epoch = $3")
            .bind(name)
            .bind(holder)
            .bind(epoch)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Extends the named lease by `ttl` if it is still held at `epoch`. `false`: it is not.
    pub(super) async fn renew_named_lease(&self, name: &str, holder: &str, epoch: i64, ttl: Duration) -> Result<bool, StoreError> {
        let renewed = sqlx::query(
            "UPDATE sync_leases SET expires_at = now() + make_interval(secs => $4) \
             WHERE object = $1 AND holder = $2 AND epoch = $3",
        )
        .bind(name)
        .bind(holder)
        .bind(epoch)
        .bind(ttl.as_secs_f64())
        .execute(self.pool())
        .await?;
        Ok(renewed.rows_affected() == 1)
    }
}

/// Checks, inside a write transaction, that `lease` still holds. The shared row lock lasts
/// until commit: concurrent windows of the same pass write side by side, while another
/// instance's takeover (an UPDATE of the row) waits until they have committed, so the lease
/// cannot change hands under a write. A lease past its expiry that nobody took over (same
/// holder, same epoch: a takeover changes both) still holds: a pass slowed down by a loaded
/// machine, with no one else waiting, is not fenced off for nothing.
pub async fn fence_in(tx: &mut Transaction<'_, Postgres>, lease: &Lease) -> Result<(), StoreError> {
    match fence_named_in(tx, lease.kind.table(), &lease.holder, lease.epoch).await? {
        true => Ok(()),
        false => Err(StoreError::Fenced { object: lease.kind.table().to_owned() }),
    }
}

/// [`fence_in`] for the lease named `name`: whether it is still held at `epoch`.
pub(super) async fn fence_named_in(tx: &mut Transaction<'_, Postgres>, name: &str, holder: &str, epoch: i64) -> Result<bool, StoreError> {
    let held: Option<i32> = sqlx::query_scalar("SELECT 1 FROM sync_leases WHERE object = $1 AND holder = $2 AND epoch = $3 FOR SHARE")
        .bind(name)
        .bind(holder)
        .bind(epoch)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(held.is_some())
}

impl Store {
    /// Extends the lease by its TTL, if it is still ours.
    pub async fn renew_lease(&self, lease: &Lease) -> Result<(), StoreError> {
        if !self.renew_named_lease(lease.kind.table(), &lease.holder, lease.epoch, lease.ttl).await? {
            return Err(StoreError::Fenced { object: lease.kind.table().to_owned() });
        }
        Ok(())
    }
}
