//! What the API told every caller at once: "slow down" (429) and "who are you?" (401/403).
//!
//! Both are about the key, not about one request, so they are kept once per client and
//! every caller honours them:
//! - A 429 pauses the whole client until its `Retry-After` (or a second, without one) has
//!   passed; every request waits at the gate rather than hammering an API that asked for
//!   quiet. The wall-clock time paused is counted for `/metrics`.
//! - A 401/403 marks the credentials rejected. Requests still go out (a one-shot command must
//!   fail loudly), but the daemon's loops wait in [`ApiClient::until_credentials_accepted`]
//!   before taking new work, which probes the API with growing pauses and returns once it
//!   accepts the keys again.
//! - A 403 on one endpoint while the API accepts the keys elsewhere (the probe says so) means
//!   this key may not use that endpoint. It is remembered, and later 403s there fail only
//!   their own request ([`ApiError::Forbidden`]) instead of pausing everything again, pass
//!   after pass.

use std::{collections::BTreeSet, sync::Mutex, time::Duration};

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::{ApiClient, ApiError, Collection, ListQuery};
use crate::object::ObjectKind;

/// The first pause between credential probes; it doubles up to [`MAX_PROBE_PAUSE`].
const FIRST_PROBE_PAUSE: Duration = Duration::from_secs(1);
const MAX_PROBE_PAUSE: Duration = Duration::from_secs(60);
/// The pause after a 429 that gives no `Retry-After`.
const DEFAULT_RATE_LIMIT_PAUSE: Duration = Duration::from_secs(1);
/// What a probe reads: the smallest page of the list every account has (Airbyte uses the
/// same as its connection check).
const PROBE_OBJECT: ObjectKind = ObjectKind::Group;

/// The API's verdict on the credentials, when it rejected them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub status: u16,
    pub message: String,
    /// Where it was said (an endpoint label, record keys folded: `deals/{key}`).
    pub endpoint: String,
    pub since: DateTime<Utc>,
}

#[derive(Debug, Default)]
pub(super) struct Gate {
    state: Mutex<GateState>,
}

#[derive(Debug, Default)]
struct GateState {
    paused_until: Option<Instant>,
    paused_total: Duration,
    rejection: Option<Rejection>,
    next_probe: Option<Instant>,
    probe_pause: Duration,
    /// Endpoints this key may not use though the API accepts it elsewhere (a few dozen at
    /// most: the labels fold record keys).
    refused: BTreeSet<String>,
}

impl Gate {
    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().expect("no panics while holding it")
    }

    /// When the client may send again, if it is paused now.
    pub(super) fn paused_until(&self) -> Option<Instant> {
        self.lock().paused_until.filter(|t| *t > Instant::now())
    }

    /// Pauses every caller for `wait` from now (a later pause already set is kept).
    pub(super) fn pause(&self, wait: Option<Duration>) {
        let now = Instant::now();
        let until = now + wait.unwrap_or(DEFAULT_RATE_LIMIT_PAUSE);
        let mut state = self.lock();
        let current = state.paused_until.filter(|t| *t > now).unwrap_or(now);
        if until > current {
            state.paused_total += until - current;
            state.paused_until = Some(until);
        }
    }

    /// Wall-clock time the client has spent paused by 429s (including pauses still running).
    pub(super) fn paused_total(&self) -> Duration {
        let state = self.lock();
        let ahead = state.paused_until.map(|t| t.saturating_duration_since(Instant::now())).unwrap_or_default();
        state.paused_total.saturating_sub(ahead)
    }

    /// A 401/403 answer: logged once, when the credentials go from accepted to rejected.
    pub(super) fn rejected(&self, status: u16, message: &str, endpoint: String) {
        let mut state = self.lock();
        if state.rejection.is_none() {
            tracing::error!(
                status,
                api_message = message,
                endpoint,
                "PartnerStack rejected the credentials; sync and write-back pause until it accepts them again \
                 (check partnerstack.public_key and the private key)"
            );
            state.rejection = Some(Rejection { status, message: message.to_owned(), endpoint, since: Utc::now() });
            state.probe_pause = FIRST_PROBE_PAUSE;
            state.next_probe = Some(Instant::now() + FIRST_PROBE_PAUSE);
        }
    }

    /// A successful answer: the credentials work (again).
    pub(super) fn accepted(&self) {
        let mut state = self.lock();
        if let Some(r) = state.rejection.take() {
            tracing::info!(rejected_for_s = (Utc::now() - r.since).num_seconds(), "PartnerStack accepts the credentials again; resuming");
            state.next_probe = None;
        }
    }

    /// Remembers that this key may not use `endpoint`: the API refused it there (403) and
    /// accepted it elsewhere right after.
    fn refuse(&self, endpoint: &str) {
        if self.lock().refused.insert(endpoint.to_owned()) {
            tracing::warn!(
                endpoint,
                "PartnerStack refuses this key on {endpoint} (403) while it accepts it elsewhere: the key may not use it. \
                 Its 403s now fail only their own requests (leave the object out of sync.objects if it is not meant to be read)"
            );
        }
    }

    /// Whether this key was refused on `endpoint` while the API accepted it elsewhere.
    pub(super) fn is_refused(&self, endpoint: &str) -> bool {
        self.lock().refused.contains(endpoint)
    }

    pub(super) fn rejection(&self) -> Option<Rejection> {
        self.lock().rejection.clone()
    }

    /// `Ok(())`: this caller probes now. `Err(t)`: another probe is due at `t`.
    fn claim_probe(&self) -> Result<(), Instant> {
        let mut state = self.lock();
        let now = Instant::now();
        match state.next_probe {
            Some(t) if t > now => Err(t),
            _ => {
                let pause = state.probe_pause.max(FIRST_PROBE_PAUSE);
                state.next_probe = Some(now + pause);
                state.probe_pause = (pause * 2).min(MAX_PROBE_PAUSE);
                Ok(())
            }
        }
    }
}

impl ApiClient {
    /// The API's last word on the credentials, if it rejected them.
    pub fn credentials_rejected(&self) -> Option<Rejection> {
        self.inner.gate.rejection()
    }

    /// When a 429 pause ends, if the client is paused now.
    pub fn rate_limited_until(&self) -> Option<Instant> {
        self.inner.gate.paused_until()
    }

    /// Seconds the client has spent paused by the API's rate limit.
    pub fn throttled_seconds(&self) -> f64 {
        self.inner.gate.paused_total().as_secs_f64()
    }

    /// Asks the API at once whether it accepts the keys (the probe's smallest page). A 401
    /// or 403 on one path can mean that this key may not use that path while the keys are
    /// fine: callers that met one ask here before they pause everything. Only a clear yes
    /// counts (and ends a recorded rejection, as any success does); a yes after a 403
    /// marks the 403's endpoint refused to this key.
    pub async fn credentials_work(&self) -> bool {
        let suspect = self.inner.gate.rejection();
        let works = self.probe().await.is_ok();
        if let Some(r) = suspect.filter(|r| works && r.status == 403 && r.endpoint != PROBE_OBJECT.api_path()) {
            self.inner.gate.refuse(&r.endpoint);
        }
        works
    }

    /// One probe: the smallest page of the list every account has. A success ends a recorded
    /// rejection, as any success does.
    async fn probe(&self) -> Result<(), ApiError> {
        let query = ListQuery { limit: Some(1), ..ListQuery::default() };
        super::with_purpose(super::Purpose::Probe, self.list_page(&Collection::Objects(PROBE_OBJECT), &query, None)).await.map(drop)
    }

    /// Returns at once while the credentials are accepted; otherwise waits, probing the API
    /// now and then (one probe at a time for all callers, the pause growing to a minute),
    /// until it accepts them. For loops about to take new work: a write-back request must
    /// stay queued, not be charged an attempt, while the keys are wrong.
    pub async fn until_credentials_accepted(&self) {
        while self.inner.gate.rejection().is_some() {
            match self.inner.gate.claim_probe() {
                Ok(()) => {
                    crate::liveness::step();
                    match self.probe().await {
                        Ok(()) => {}
                        Err(ApiError::Unauthorized { .. }) => {}
                        // The keys may be fine while the API has other trouble: only a clear
                        // yes ends the pause, so keep probing.
                        Err(error) => tracing::debug!(error = %crate::telemetry::error_chain(&error), "credential probe failed"),
                    }
                }
                Err(next) => {
                    crate::liveness::wait_until(next);
                    tokio::time::sleep_until(next).await;
                }
            }
        }
    }

    /// Waits while the client is paused by a 429.
    pub(super) async fn wait_out_rate_limit(&self) {
        while let Some(until) = self.inner.gate.paused_until() {
            crate::liveness::wait_until(until);
            tokio::time::sleep_until(until).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn overlapping_pauses_count_wall_clock_time_once() {
        let gate = Gate::default();
        gate.pause(Some(Duration::from_secs(10)));
        gate.pause(Some(Duration::from_secs(4)));
        tokio::time::advance(Duration::from_secs(5)).await;
        gate.pause(Some(Duration::from_secs(10)));
        tokio::time::advance(Duration::from_secs(20)).await;
        assert_eq!(gate.paused_total(), Duration::from_secs(15));
        assert_eq!(gate.paused_until(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_rejection_is_kept_until_an_answer_is_accepted() {
        let gate = Gate::default();
        gate.rejected(401, "bad key", "deals".into());
        gate.rejected(403, "still bad", "deals".into());
        assert_eq!(gate.rejection().map(|r| (r.status, r.message)), Some((401, "bad key".to_owned())), "the first rejection is kept");
        gate.accepted();
        assert_eq!(gate.rejection(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn probes_are_one_at_a_time_with_a_growing_pause() {
        let gate = Gate::default();
        gate.rejected(401, "bad key", "deals".into());
        assert!(gate.claim_probe().is_err(), "the first probe waits a second");
        tokio::time::advance(FIRST_PROBE_PAUSE).await;
        assert!(gate.claim_probe().is_ok());
        let next = gate.claim_probe().unwrap_err();
        assert_eq!(next - Instant::now(), FIRST_PROBE_PAUSE);
        tokio::time::advance(FIRST_PROBE_PAUSE).await;
        assert!(gate.claim_probe().is_ok());
        assert_eq!(gate.claim_probe().unwrap_err() - Instant::now(), FIRST_PROBE_PAUSE * 2);
    }
}
