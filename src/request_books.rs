//! What the daemon writes down about its API requests: the rate the client found for the key
//! (`api_budget`, so the next start begins from it) and the requests sent by purpose
//! (`api_requests`, for `status`), every minute and once more when it stops; the one-shot
//! commands write both when they end.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::{
    config::PartnerStackConfig,
    partnerstack::{ApiClient, Purpose},
    store::Store,
};

/// How often the books are written (and once more when the daemon stops).
const EVERY: Duration = Duration::from_secs(60);

/// Requests by purpose already written: what the next write adds to.
pub type Tallied = [(Purpose, u64); Purpose::ALL.len()];

/// Nothing written yet.
pub fn nothing_tallied() -> Tallied {
    Purpose::ALL.map(|p| (p, 0))
}

/// Writes the request rate the client has found for the configured key to `api_budget`, so
/// the next start begins from it rather than from a cautious guess. Nothing to write without
/// a client-side limit; a failure is logged (the rate is only a head start).
pub async fn remember_rate(partnerstack: &PartnerStackConfig, api: &ApiClient, store: &Store) {
    let Some(learned) = api.learned() else { return };
    crate::liveness::step();
    if let Err(error) = store.remember_rate(partnerstack.api_url.as_str(), &partnerstack.public_key, learned).await {
        tracing::warn!(error = %crate::telemetry::error_chain(&error), "cannot remember the learned request rate in `api_budget`");
    }
}

/// Adds the requests sent since `tallied`, by purpose, to `api_requests`, and moves
/// `tallied` forward only when the write succeeded, so a failed write is carried to the next.
/// Logged on failure: it is only a tally.
pub async fn tally_requests(api: &ApiClient, store: &Store, tallied: &mut Tallied) {
    let now = api.requests_by_purpose();
    let new: Vec<_> = now.iter().zip(tallied.iter()).map(|((p, n), (_, before))| (*p, n.saturating_sub(*before))).collect();
    crate::liveness::step();
    match store.add_requests(&new).await {
        Ok(()) => *tallied = now,
        Err(error) => tracing::debug!(error = %crate::telemetry::error_chain(&error), "cannot add up the requests in `api_requests`"),
    }
}

/// [`remember_rate`] and [`tally_requests`] every [`EVERY`], and once more when the daemon
/// stops.
pub async fn keep(partnerstack: PartnerStackConfig, api: ApiClient, store: Store, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut tallied = nothing_tallied();
    loop {
        crate::liveness::wait_for(EVERY);
        let stopping = tokio::select! {
            _ = shutdown.cancelled() => true,
            _ = tokio::time::sleep(EVERY) => false,
        };
        remember_rate(&partnerstack, &api, &store).await;
        tally_requests(&api, &store, &mut tallied).await;
        if stopping {
            return Ok(());
        }
    }
}
