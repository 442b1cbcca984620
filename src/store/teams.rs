//! Which partner teams to read (docs/steady-state.md): the API lists members one team at a time, so a
//! team is read only when it may have changed: its partnership is new or was written since
//! the team was last read, or a webhook named it. The daily key scan reads every team, which
//! finds a member who joined without the partnership changing.

use chrono::{DateTime, Utc};
use sqlx::{Postgres, Transaction};

use super::{Store, StoreError};

/// Teams to read, and the database's time before any of them is read: what each read is
/// recorded at. A partnership written after it (its `synced_at` is later) makes its team due
/// again; one written before it changed at the API before the team is read, so the read
/// sees the team after that change.
#[derive(Clone, Debug)]
pub struct TeamsToRead {
    pub keys: Vec<String>,
    pub as_of: DateTime<Utc>,
}

impl Store {
    /// Every team a mirrored partnership belongs to, in order (backfills and key scans).
    pub async fn every_team(&self) -> Result<TeamsToRead, StoreError> {
        let mut tx = self.pool().begin().await?;
        let as_of: DateTime<Utc> = sqlx::query_scalar("SELECT now()").fetch_one(&mut *tx).await?;
        let keys = sqlx::query_scalar("SELECT DISTINCT team_key FROM partnerships WHERE team_key IS NOT NULL ORDER BY 1")
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(TeamsToRead { keys, as_of })
    }

    /// The teams that may have changed since they were last read: never read (a new
    /// partnership, or named by a webhook), or a partnership of theirs written since.
    pub async fn teams_due(&self) -> Result<TeamsToRead, StoreError> {
        let mut tx = self.pool().begin().await?;
        let as_of: DateTime<Utc> = sqlx::query_scalar("SELECT now()").fetch_one(&mut *tx).await?;
        let keys = sqlx::query_scalar(
            "SELECT DISTINCT p.team_key FROM partnerships p LEFT JOIN partner_team_reads r ON r.team_key = p.team_key \
             WHERE p.team_key IS NOT NULL AND (r.read_at IS NULL OR p.synced_at > r.read_at) ORDER BY 1",
        )
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(TeamsToRead { keys, as_of })
    }

    /// The team's members were read completely as of `as_of`.
    pub async fn team_read(&self, team_key: &str, as_of: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO partner_team_reads (team_key, read_at) VALUES ($1, $2) \
             ON CONFLICT (team_key) DO UPDATE SET read_at = greatest(partner_team_reads.read_at, excluded.read_at)",
        )
        .bind(team_key)
        .bind(as_of)
        .execute(self.pool())
        .await?;
        Ok(())
    }
}

/// A webhook named this team: it is due at the next read of team members.
pub(super) async fn team_hinted_in(tx: &mut Transaction<'_, Postgres>, team_key: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM partner_team_reads WHERE team_key = $1").bind(team_key).execute(&mut **tx).await?;
    Ok(())
}
