//! `webhook_inbox` and `training_completions`: PartnerStack's webhooks, kept before they are
//! answered and worked through afterwards, and the training completions they carry.

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;
use sqlx::{FromRow, Postgres, Transaction};

use super::{insert_events, Store, StoreError};
use crate::diff::{EventSource, NewEvent};

/// One accepted webhook not handled yet.
#[derive(Clone, Debug, FromRow)]
pub struct InboxRow {
    pub id: i64,
    pub event: Option<String>,
    /// The body, verbatim.
    pub payload: String,
    pub received_at: DateTime<Utc>,
}

/// What became of a webhook.
#[derive(Clone, Copy, Debug, PartialEq, Eq, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum InboxOutcome {
    ReadRequested,
    Recorded,
    Ignored,
    Quarantined,
}

impl InboxOutcome {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// What a training completion says, as far as its webhook tells it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CompletionFacts {
    pub item_id: Option<String>,
    pub item_name: Option<String>,
    pub partnership_key: Option<String>,
    pub partner_key: Option<String>,
    pub partner_email: Option<String>,
    pub company_key: Option<String>,
    pub completed_at: Option<DateTime<Utc>>,
}

/// A training completion ready to be stored.
#[derive(Clone, Debug)]
pub struct TrainingRow {
    /// What identifies it across repeated deliveries; hashed into `completion_key`.
    pub identity: String,
    pub kind: &'static str,
    pub event_type: &'static str,
    pub facts: CompletionFacts,
}

/// What the intake made of one webhook; the store carries it out in the batch's transaction.
#[derive(Clone, Debug)]
pub enum InboxDecision {
    /// An object webhook: its read is asked for once the batch commits. A webhook about a
    /// partner team makes that team due (`team`).
    ReadRequested { team: Option<String> },
    /// Nothing to do, and why if it is worth saying.
    Ignored(Option<String>),
    /// A training completion that cannot be stored, filed in `quarantine` with the reason.
    Quarantined(String),
    /// A training completion to store, with its event (once however often it is delivered).
    Recorded(TrainingRow),
}

impl Store {
    /// How long ago the last webhook was accepted, by any daemon on this mirror; `None`:
    /// none kept (never, or pruned). Reads one end of the primary key.
    pub async fn last_webhook_age(&self) -> Result<Option<std::time::Duration>, StoreError> {
        let seconds: Option<f64> = sqlx::query_scalar(
            "SELECT greatest(extract(epoch FROM now() - received_at), 0)::float8 FROM webhook_inbox ORDER BY id DESC LIMIT 1",
        )
        .fetch_optional(self.pool())
        .await?;
        Ok(seconds.map(std::time::Duration::from_secs_f64))
    }

    /// Keeps an accepted webhook; the caller answers 2xx only after this returns.
    pub async fn accept_webhook(&self, event: Option<&str>, payload: &str) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("INSERT INTO webhook_inbox (event, payload) VALUES ($1, $2) RETURNING id")
            .bind(event)
            .bind(payload)
            .fetch_one(self.pool())
            .await?)
    }
}

impl Store {
    /// One transaction: up to `limit` pending webhooks, oldest first, locked (several daemons
    /// work through one inbox without taking the same row); what `decide` makes of each carried
    /// out (team hints, training completions and their events, quarantine); each marked with
    /// its outcome. Returns the outcomes in order, once committed.
    pub async fn handle_inbox_batch(
        &self,
        limit: i64,
        mut decide: impl FnMut(&InboxRow) -> InboxDecision,
    ) -> Result<Vec<InboxOutcome>, StoreError> {
        let mut tx = self.pool().begin().await?;
        let rows = pending_webhooks_in(&mut tx, limit).await?;
        let mut outcomes = Vec::with_capacity(rows.len());
        for row in &rows {
            let (outcome, error) = match decide(row) {
                InboxDecision::ReadRequested { team } => {
                    if let Some(team) = team {
                        super::teams::team_hinted_in(&mut tx, &team).await?;
                    }
                    (InboxOutcome::ReadRequested, None)
                }
                InboxDecision::Ignored(why) => (InboxOutcome::Ignored, why),
                InboxDecision::Quarantined(error) => {
                    quarantine_webhook_in(&mut tx, "training_completions", &row.payload, &error).await?;
                    (InboxOutcome::Quarantined, Some(error))
                }
                InboxDecision::Recorded(training) => {
                    record_training_in(&mut tx, &training, &row.payload, row.received_at).await?;
                    (InboxOutcome::Recorded, None)
                }
            };
            finish_webhook_in(&mut tx, row.id, outcome, error.as_deref()).await?;
            outcomes.push(outcome);
        }
        tx.commit().await?;
        Ok(outcomes)
    }
}

/// Up to `limit` pending webhooks, oldest first, locked for this transaction (several daemons
/// work through one inbox without taking the same row).
async fn pending_webhooks_in(tx: &mut Transaction<'_, Postgres>, limit: i64) -> Result<Vec<InboxRow>, StoreError> {
    Ok(sqlx::query_as(
        "SELECT id, event, payload, received_at FROM webhook_inbox WHERE outcome = 'pending' ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
    )
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?)
}

/// Marks a webhook handled.
async fn finish_webhook_in(
    tx: &mut Transaction<'_, Postgres>,
    id: i64,
    outcome: InboxOutcome,
    error: Option<&str>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE webhook_inbox SET outcome = $2, processed_at = now(), error = $3 WHERE id = $1")
        .bind(id)
        .bind(outcome.as_str())
        .bind(error)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Stores a training completion and its event, once however often it is delivered (a repeat
/// only counts in `deliveries`); `payload` is the webhook's body, verbatim. Returns whether it
/// was new.
async fn record_training_in(
    tx: &mut Transaction<'_, Postgres>,
    t: &TrainingRow,
    payload: &str,
    received_at: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let (key, new): (String, bool) = sqlx::query_as(
        "INSERT INTO training_completions (completion_key, kind, item_id, item_name, partnership_key, partner_key, partner_email, \
                                           company_key, completed_at, payload, received_at) \
         VALUES (md5($1), $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11) \
         ON CONFLICT (completion_key) DO UPDATE SET deliveries = training_completions.deliveries + 1 \
         RETURNING completion_key, (xmax = 0)",
    )
    .bind(&t.identity)
    .bind(t.kind)
    .bind(&t.facts.item_id)
    .bind(&t.facts.item_name)
    .bind(&t.facts.partnership_key)
    .bind(&t.facts.partner_key)
    .bind(&t.facts.partner_email)
    .bind(&t.facts.company_key)
    .bind(t.facts.completed_at)
    .bind(payload)
    .bind(received_at)
    .fetch_one(&mut **tx)
    .await?;
    if new {
        let data = serde_json::json!({
            "completion_key": key, "kind": t.kind, "item_id": t.facts.item_id, "item_name": t.facts.item_name,
            "partnership_key": t.facts.partnership_key, "partner_key": t.facts.partner_key, "partner_email": t.facts.partner_email,
            "company_key": t.facts.company_key, "completed_at": t.facts.completed_at,
            "payload": serde_json::from_str::<&RawValue>(payload).ok(),
        });
        let event = NewEvent {
            event_type: t.event_type.to_owned(),
            object_type: "training",
            object_key: key,
            occurred_ms: t.facts.completed_at.unwrap_or(received_at).timestamp_millis(),
            source: EventSource::Webhook,
            changes: None,
            data: serde_json::value::to_raw_value(&data).expect("a JSON value serializes"),
        };
        insert_events(tx, &[event]).await?;
    }
    Ok(new)
}

/// Files a webhook whose content cannot be stored (e.g. a NUL character, which `jsonb` cannot
/// hold) in `quarantine`, under `object`.
async fn quarantine_webhook_in(tx: &mut Transaction<'_, Postgres>, object: &str, payload: &str, error: &str) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO quarantine (object, key, fingerprint, raw, error) VALUES ($1, NULL, md5($2), $2, $3) \
         ON CONFLICT (object, fingerprint) DO UPDATE SET error = excluded.error, last_seen_at = now(), times_seen = quarantine.times_seen + 1",
    )
    .bind(object)
    .bind(payload)
    .bind(error)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
