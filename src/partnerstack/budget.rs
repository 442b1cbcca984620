//! One request budget per API key (docs/request-budget.md): every request the client sends, retries
//! included, first takes a permit from it.
//!
//! Permits are granted one at a time, evenly spaced at the current rate (no bursts), to the
//! most urgent caller waiting: [`Priority::Urgent`] (write-backs, webhook-triggered reads),
//! then [`Priority::Normal`] (incremental polls), then [`Priority::Bulk`] (backfills,
//! rescans, key scans); first come, first served within a level. So a write-back that
//! arrives while a backfill's readers wait takes the next slot, behind at most the request
//! granted just before it. The waiters are the callers themselves: the queue is never longer
//! than the number of requests in preparation, and holds no request of its own.
//!
//! The rate is found rather than configured, the way TCP finds what a link carries (AIMD),
//! because PartnerStack publishes no limit and says "too fast" only with a 429:
//! - An answer to a request that had to wait for its slot (the budget was in full use) raises
//!   the rate: by [`INCREASE_PER_SECOND`] over each second of such use. Idle or half-used, the
//!   rate stays where it is, so it never climbs past what was tried.
//! - Until the first 429 it climbs faster ([`PROBE_GAIN`], about 65% a second), so a new
//!   mirror finds a limit of 20/s in seconds, not minutes. A rate remembered from an earlier
//!   run goes on probing from there unless it was found at a 429 ([`LearnedRate`]).
//! - A 429 cuts the rate to [`DECREASE`] of itself, once per episode (the other 429s of the
//!   same moment say nothing new), and no slot is granted before its `Retry-After` has passed.
//!
//! With a ceiling (`partnerstack.requests_per_second`), the rate never goes above it.

use std::{collections::VecDeque, future::Future, sync::Mutex, time::Duration};

use strum::{IntoStaticStr, VariantArray};
use tokio::{sync::Notify, time::Instant};

/// Who waits first when several callers want the API at once; its label (`urgent`) is the
/// metrics label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, IntoStaticStr, VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum Priority {
    /// Write-backs and webhook-triggered reads: someone is waiting for the answer.
    Urgent,
    /// Incremental polls: the mirror's freshness.
    Normal,
    /// Backfills, rescans and key scans: long reads that can yield a slot.
    Bulk,
}

impl Priority {
    /// Most urgent first: the order above.
    pub const ALL: [Priority; Priority::VARIANTS.len()] = super::purpose::every(Priority::VARIANTS);

    /// The metrics label.
    pub fn label(self) -> &'static str {
        self.into()
    }

    fn index(self) -> usize {
        self as usize
    }
}

tokio::task_local! {
    static PRIORITY: Priority;
}

/// Runs `work` with every API request inside it sent at `priority`, however deep: the
/// priority travels with the task, so no signature between the loop and the client carries
/// it. An inner call overrides an outer one (a backfill started by a webhook read is bulk).
pub async fn with_priority<F: Future>(priority: Priority, work: F) -> F::Output {
    PRIORITY.scope(priority, work).await
}

/// The priority the current task's requests are sent at; [`Priority::Normal`] outside any
/// [`with_priority`].
pub fn current_priority() -> Priority {
    PRIORITY.try_with(|p| *p).unwrap_or(Priority::Normal)
}

/// How hard the client may push the API.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RateLimit {
    /// No client-side limit at all (`requests_per_second = 0`): for a local simulator.
    Unlimited,
    /// Find the allowed rate from the API's answers, never going above `ceiling`.
    Adaptive { ceiling: Option<f64> },
}

/// The rate a client starts from when nothing was learned before: cautious, and the probe
/// climbs from it quickly.
pub const START_RATE: f64 = 5.0;
/// The lowest rate the budget falls to however many 429s come (a ceiling below it wins).
const MIN_RATE: f64 = 0.5;
/// The highest rate ever granted or accepted as a ceiling: far above any API's limit, and
/// keeps the arithmetic in range.
pub const MAX_RATE: f64 = 10_000.0;
/// The lowest ceiling accepted.
pub const MIN_CEILING: f64 = 0.01;
/// Additive increase: requests per second gained over each second of full use.
const INCREASE_PER_SECOND: f64 = 1.0;
/// Before the first 429: requests per second gained per answered request that waited for its
/// slot, so the rate grows by about half of itself each second (e^0.5 ≈ 1.65).
const PROBE_GAIN: f64 = 0.5;
/// Multiplicative decrease on a 429. With a token-bucket limit (a burst of a second's worth)
/// a cut to 0.7 ends each cycle just under the limit: the bucket refills while the
/// `Retry-After` pause lasts, and the climb back spends it, so nearly all of the allowed
/// rate is used (98% in the model of `against_a_token_bucket…`) with a 429 every several
/// seconds (under 1% of requests). Halving (TCP's 0.5) leaves the rate below the limit for
/// most of each cycle (91%); 0.9 stays above it throughout and meets 429s twice as often.
/// 0.7 is also CUBIC's factor.
const DECREASE: f64 = 0.7;

/// The right to send one request now.
#[derive(Clone, Copy, Debug)]
pub(super) struct Permit {
    granted_at: Instant,
    /// The caller waited for its slot: the budget was in full use, the only use that earns
    /// an increase.
    pub waited: bool,
}

/// What the API's answer to a permitted request says about the rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Answered, not with a 429: the rate was fine.
    Accepted,
    /// 429: too fast. The pause it asks for (the client's gate) ends at `until`.
    TooFast { until: Option<Instant> },
    /// A timeout, a dropped connection, a 5xx: nothing learned.
    Unclear,
}

/// The budget as `/metrics` shows it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BudgetSnapshot {
    /// Requests per second allowed now; `None` without a client-side limit.
    pub rate: Option<f64>,
    waiting: [usize; Priority::ALL.len()],
    waited: [Duration; Priority::ALL.len()],
}

impl BudgetSnapshot {
    /// Callers waiting for a permit now at `priority`.
    pub fn waiting(&self, priority: Priority) -> usize {
        self.waiting[priority.index()]
    }

    /// The time callers at `priority` have waited for their permits, added up.
    pub fn waited(&self, priority: Priority) -> Duration {
        self.waited[priority.index()]
    }
}

pub(super) struct Budget {
    state: Mutex<State>,
    /// Woken when a permit is granted or a waiter leaves: the next in line takes over.
    turn: Notify,
}

struct State {
    /// `None`: unlimited.
    pace: Option<Pace>,
    /// No permit is granted before this.
    next_slot: Instant,
    /// Tickets of the waiting callers, by priority, in arrival order.
    waiting: [VecDeque<u64>; Priority::ALL.len()],
    next_ticket: u64,
    waited: [Duration; Priority::ALL.len()],
}

/// A rate found for a key, to start the next run from (table `api_budget`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LearnedRate {
    pub requests_per_second: f64,
    /// Found at a 429: the API's limit, give or take. Otherwise only a floor: the traffic
    /// never needed more, and the limit may be far above it.
    pub found_at_429: bool,
}

/// The rate and how it moves (AIMD): the arithmetic, apart from any waiting.
#[derive(Clone, Debug, PartialEq)]
struct Pace {
    rate: f64,
    floor: f64,
    ceiling: f64,
    /// Climbing fast toward the first 429 (TCP's slow start): no 429 has told where the
    /// limit is, in this run or the one the rate was learned in.
    probing: bool,
    /// The last cut: answers to permits granted before it describe the old rate.
    cut_at: Option<Instant>,
}

impl Pace {
    fn new(ceiling: Option<f64>) -> Pace {
        let ceiling = ceiling.unwrap_or(MAX_RATE);
        let floor = MIN_RATE.min(ceiling);
        Pace { rate: START_RATE.clamp(floor, ceiling), floor, ceiling, probing: true, cut_at: None }
    }

    /// Starts from a rate learned earlier. Found at a 429, it is about the limit: additive
    /// increase from there. Found without one, it is a floor: probing goes on from it, as
    /// from the cautious start (a first small `sync` that never filled the budget must not
    /// hold every later start to its few requests a second).
    fn start_from(&mut self, learned: LearnedRate) {
        if learned.requests_per_second.is_finite() {
            self.rate = learned.requests_per_second.clamp(self.floor, self.ceiling);
            self.probing = !learned.found_at_429;
        }
    }

    fn learned(&self) -> LearnedRate {
        LearnedRate { requests_per_second: self.rate, found_at_429: !self.probing }
    }

    fn interval(&self) -> Duration {
        Duration::from_secs_f64(1.0 / self.rate)
    }

    fn outdated(&self, permit: &Permit) -> bool {
        self.cut_at.is_some_and(|cut| permit.granted_at < cut)
    }

    /// The request of `permit` was answered without a 429.
    fn accepted(&mut self, permit: &Permit) {
        if !permit.waited || self.outdated(permit) {
            return;
        }
        // One answered request per slot: `rate` of them a second, so `INCREASE_PER_SECOND`
        // spread over them adds that much per second of full use.
        let gain = if self.probing { PROBE_GAIN } else { INCREASE_PER_SECOND / self.rate };
        self.rate = (self.rate + gain).min(self.ceiling);
    }

    /// The request of `permit` was answered 429 at `now`. True when the rate was cut.
    fn too_fast(&mut self, permit: &Permit, now: Instant) -> bool {
        if self.outdated(permit) {
            return false;
        }
        self.rate = (self.rate * DECREASE).max(self.floor);
        self.probing = false;
        self.cut_at = Some(now);
        true
    }
}

impl Budget {
    pub(super) fn new(limit: RateLimit) -> Budget {
        let pace = match limit {
            RateLimit::Unlimited => None,
            RateLimit::Adaptive { ceiling } => Some(Pace::new(ceiling)),
        };
        let state = State { pace, next_slot: Instant::now(), waiting: Default::default(), next_ticket: 0, waited: Default::default() };
        Budget { state: Mutex::new(state), turn: Notify::new() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("no panics while holding it")
    }

    /// Waits for this task's turn (see [`current_priority`]) and the next slot. Waiting is
    /// announced to the loop's liveness, so the watchdog knows it is on purpose.
    pub(super) async fn permit(&self) -> Permit {
        let priority = current_priority();
        let arrived = Instant::now();
        let ticket = {
            let mut state = self.lock();
            if state.pace.is_none() {
                return Permit { granted_at: arrived, waited: false };
            }
            let ticket = state.next_ticket;
            state.next_ticket += 1;
            state.waiting[priority.index()].push_back(ticket);
            ticket
        };
        let mut place = Place { budget: self, priority, ticket, granted: false };
        let mut waited = false;
        loop {
            let turn = self.turn.notified();
            tokio::pin!(turn);
            turn.as_mut().enable();
            let now = Instant::now();
            let granted = {
                let mut state = self.lock();
                let granted = state.try_grant(priority, ticket, now);
                if granted.is_ok() {
                    state.waited[priority.index()] += now - arrived;
                }
                granted
            };
            let until = match granted {
                Ok(()) => {
                    place.granted = true;
                    self.turn.notify_waiters();
                    return Permit { granted_at: now, waited };
                }
                Err(until) => until,
            };
            waited = true;
            crate::liveness::wait_until(until);
            tokio::select! {
                _ = tokio::time::sleep_until(until) => {}
                _ = turn => {}
            }
        }
    }

    /// Learns from the answer to a permitted request.
    pub(super) fn answered(&self, permit: &Permit, verdict: Verdict) {
        let mut state = self.lock();
        let State { pace: Some(pace), next_slot, .. } = &mut *state else { return };
        match verdict {
            Verdict::Accepted => pace.accepted(permit),
            Verdict::TooFast { until } => {
                let now = Instant::now();
                if pace.too_fast(permit, now) {
                    tracing::debug!(rate = pace.rate, "PartnerStack answered 429; request rate lowered");
                }
                // Nobody waiting here goes before the pause the API asked for is over.
                *next_slot = (*next_slot).max(until.unwrap_or(now));
            }
            Verdict::Unclear => {}
        }
    }

    /// Requests per second allowed now; `None` when unlimited.
    pub(super) fn rate(&self) -> Option<f64> {
        self.lock().pace.as_ref().map(|p| p.rate)
    }

    /// The rate found so far and whether a 429 told it; `None` when unlimited.
    pub(super) fn learned(&self) -> Option<LearnedRate> {
        self.lock().pace.as_ref().map(Pace::learned)
    }

    /// Starts from a rate learned before (by an earlier run); ignored when unlimited.
    pub(super) fn start_from(&self, learned: LearnedRate) {
        if let Some(pace) = &mut self.lock().pace {
            pace.start_from(learned);
        }
    }

    pub(super) fn snapshot(&self) -> BudgetSnapshot {
        let state = self.lock();
        BudgetSnapshot {
            rate: state.pace.as_ref().map(|p| p.rate),
            waiting: state.waiting.each_ref().map(VecDeque::len),
            waited: state.waited,
        }
    }
}

impl State {
    /// Grants `ticket` its permit if it is first in line and its slot has come; otherwise
    /// says until when it should wait before looking again (an estimate for those behind
    /// others: every grant wakes them to look again).
    fn try_grant(&mut self, priority: Priority, ticket: u64, now: Instant) -> Result<(), Instant> {
        let interval = self.pace.as_ref().expect("only a paced budget queues").interval();
        let ahead = self.ahead_of(priority, ticket);
        if ahead == 0 && now >= self.next_slot {
            self.waiting[priority.index()].pop_front();
            // A waiter woken a little late keeps the schedule, so timer lateness does not
            // lower the rate; after idleness the schedule starts afresh, so no burst is saved.
            let base = if now.saturating_duration_since(self.next_slot) < interval / 2 { self.next_slot } else { now };
            self.next_slot = base + interval;
            return Ok(());
        }
        Err(self.next_slot.max(now) + interval * u32::try_from(ahead).unwrap_or(u32::MAX))
    }

    /// How many waiters come before `ticket`.
    fn ahead_of(&self, priority: Priority, ticket: u64) -> usize {
        let before: usize = self.waiting[..priority.index()].iter().map(VecDeque::len).sum();
        before + self.waiting[priority.index()].iter().position(|t| *t == ticket).unwrap_or(0)
    }
}

/// A caller's place in line, given up if it stops waiting (its future dropped: shutdown, a
/// timeout around it), so the next in line takes over.
struct Place<'a> {
    budget: &'a Budget,
    priority: Priority,
    ticket: u64,
    granted: bool,
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        if !self.granted {
            let mut state = self.budget.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            state.waiting[self.priority.index()].retain(|t| *t != self.ticket);
            drop(state);
            self.budget.turn.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests;
