//! Why a request was sent (SPEC 14): the `purpose` label of
//! `partnerstack_mirror_api_requests_total`, and the rows of `api_requests` that `status`
//! sums up. The account's rate limit is shared with the customer's other integrations, so an
//! operator must be able to see where the mirror's requests go.
//!
//! Like the budget's priority, the purpose travels with the task ([`with_purpose`]), so no
//! signature between a loop and the client carries it.

use std::future::Future;

/// What a request was for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Purpose {
    /// An incremental window of a scheduled poll.
    Poll,
    /// A complete read of an object whose later changes no window finds (transactions and
    /// rewards while the API ignores `min_updated` on them).
    Rescan,
    /// A complete key scan (deletes).
    KeyScan,
    /// One partner team's members: a team whose partnership changed, or the daily walk of
    /// every team.
    Team,
    /// A write-back request from `write_queue`.
    WriteBack,
    /// A read asked for by a PartnerStack webhook.
    Webhook,
    /// A question the mirror asks about the API itself: whether it honours `min_updated`,
    /// whether it accepts the keys; and the operator's one-off commands (`doctor`).
    Probe,
    /// The first complete read of an object (a new mirror, or `sync --full`).
    Backfill,
}

impl Purpose {
    /// Every purpose, in the order `status` prints them.
    pub const ALL: [Purpose; 8] = [
        Purpose::Poll,
        Purpose::Rescan,
        Purpose::KeyScan,
        Purpose::Team,
        Purpose::WriteBack,
        Purpose::Webhook,
        Purpose::Probe,
        Purpose::Backfill,
    ];

    /// The metrics label and the `api_requests.purpose` value.
    pub fn label(self) -> &'static str {
        match self {
            Purpose::Poll => "poll",
            Purpose::Rescan => "rescan",
            Purpose::KeyScan => "key_scan",
            Purpose::Team => "team",
            Purpose::WriteBack => "write_back",
            Purpose::Webhook => "webhook",
            Purpose::Probe => "probe",
            Purpose::Backfill => "backfill",
        }
    }
}

tokio::task_local! {
    static PURPOSE: Purpose;
}

/// Runs `work` with every API request inside it counted under `purpose`, however deep. An
/// inner call overrides an outer one (a team read inside a key scan is `team`).
pub async fn with_purpose<F: Future>(purpose: Purpose, work: F) -> F::Output {
    PURPOSE.scope(purpose, work).await
}

/// The purpose the current task's requests are counted under; [`Purpose::Probe`] outside any
/// [`with_purpose`]: the daemon scopes every loop that sends requests, so only the
/// operator's one-off commands (`doctor`, `webhooks register`) go unscoped.
pub fn current_purpose() -> Purpose {
    PURPOSE.try_with(|p| *p).unwrap_or(Purpose::Probe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_innermost_purpose_wins_and_outside_any_it_is_probe() {
        assert_eq!(current_purpose(), Purpose::Probe);
        let inner = with_purpose(Purpose::KeyScan, async { with_purpose(Purpose::Team, async { current_purpose() }).await }).await;
        assert_eq!(inner, Purpose::Team);
        assert_eq!(with_purpose(Purpose::Poll, async { current_purpose() }).await, Purpose::Poll);
    }

    #[test]
    fn every_label_is_distinct() {
        let labels: std::collections::HashSet<_> = Purpose::ALL.iter().map(|p| p.label()).collect();
        assert_eq!(labels.len(), Purpose::ALL.len());
    }
}
