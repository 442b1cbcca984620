//! Why a request was sent (docs/steady-state.md): the `purpose` label of
//! `partnerstack_mirror_api_requests_total`, and the rows of `api_requests` that `status`
//! sums up. The account's rate limit is shared with the customer's other integrations, so an
//! operator must be able to see where the mirror's requests go.
//!
//! Like the budget's priority, the purpose travels with the task ([`with_purpose`]), so no
//! signature between a loop and the client carries it.

use std::future::Future;

use strum::{IntoStaticStr, VariantArray};

/// What a request was for; its label (`key_scan`) is the metrics label and the
/// `api_requests.purpose` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, IntoStaticStr, VariantArray)]
#[strum(serialize_all = "snake_case")]
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
    /// Every purpose, in the order `status` prints them: the order above.
    pub const ALL: [Purpose; Purpose::VARIANTS.len()] = every(Purpose::VARIANTS);

    /// The metrics label and the `api_requests.purpose` value.
    pub fn label(self) -> &'static str {
        self.into()
    }
}

/// `variants` as an array, so a list of every variant is derived from the enum (adding one
/// cannot leave it out) and still has a length the compiler knows.
pub(super) const fn every<T: Copy, const N: usize>(variants: &[T]) -> [T; N] {
    match variants.first_chunk() {
        Some(all) => *all,
        None => panic!("N is the number of variants"),
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
    fn the_labels_are_the_stored_values_in_status_order() {
        let labels = Purpose::ALL.map(Purpose::label);
        assert_eq!(labels, ["poll", "rescan", "key_scan", "team", "write_back", "webhook", "probe", "backfill"]);
    }
}
