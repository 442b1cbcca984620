//! Whether the daemon's loops are alive: the basis of systemd's watchdog.
//!
//! A loop is alive while it keeps its promises. Each loop runs inside [`Liveness::scope`]
//! and, deep inside whatever it calls, says what it is about to do: [`step`] before a step
//! that is bounded by its own timeout (an API request, a database call), [`wait_until`]
//! before a wait whose end is known (a `Retry-After`, a backoff, the pause between passes).
//! Each promise moves the loop's deadline to the end of the step or the wait, plus the
//! step budget (the longest a bounded step may take). A loop is stuck only when the deadline
//! passes: a call hanging past its own timeout. Waiting out a 40-second `Retry-After` is
//! keeping a promise, so the watchdog keeps pinging through it.
//!
//! The promises travel in a task-local, so the API client and the sync need no handle to
//! report them, and code running outside any loop (the one-shot commands) reports nothing.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::time::Instant;

tokio::task_local! {
    static CURRENT: Arc<Pulse>;
}

/// The loops of one process.
#[derive(Debug)]
pub struct Liveness {
    /// The longest one bounded step may take: a request's timeout, a database call's.
    step_budget: Duration,
    loops: Mutex<Vec<Arc<Pulse>>>,
}

/// One loop's promise.
#[derive(Debug)]
struct Pulse {
    name: String,
    deadline: Mutex<Instant>,
    budget: Duration,
}

/// A loop that broke its promise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stuck {
    pub name: String,
    /// How long past its deadline.
    pub late: Duration,
}

impl Liveness {
    pub fn new(step_budget: Duration) -> Arc<Liveness> {
        Arc::new(Liveness { step_budget, loops: Mutex::default() })
    }

    /// Runs `work` as the loop `name`: registered while it runs, its promises checked by
    /// [`Liveness::stuck`]. Whatever `work` awaits reports through [`step`] and
    /// [`wait_until`].
    pub async fn scope<F: std::future::Future>(&self, name: impl Into<String>, work: F) -> F::Output {
        let pulse =
            Arc::new(Pulse { name: name.into(), deadline: Mutex::new(Instant::now() + self.step_budget), budget: self.step_budget });
        self.loops.lock().expect("no panics while holding it").push(pulse.clone());
        let _registered = Registered { liveness: self, pulse: pulse.clone() };
        CURRENT.scope(pulse, work).await
    }

    /// The loops whose deadline has passed, most late first. Empty: every loop is alive.
    pub fn stuck(&self) -> Vec<Stuck> {
        let now = Instant::now();
        let mut stuck: Vec<Stuck> = self
            .loops
            .lock()
            .expect("no panics while holding it")
            .iter()
            .filter_map(|p| {
                let deadline = *p.deadline.lock().expect("no panics while holding it");
                (now > deadline).then(|| Stuck { name: p.name.clone(), late: now - deadline })
            })
            .collect();
        stuck.sort_by_key(|s| std::cmp::Reverse(s.late));
        stuck
    }

    /// The loops running now, by name.
    pub fn loops(&self) -> Vec<String> {
        self.loops.lock().expect("no panics while holding it").iter().map(|p| p.name.clone()).collect()
    }
}

/// Deregisters a loop when its scope ends, however it ends.
struct Registered<'a> {
    liveness: &'a Liveness,
    pulse: Arc<Pulse>,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        let mut loops = self.liveness.loops.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        loops.retain(|p| !Arc::ptr_eq(p, &self.pulse));
    }
}

impl Pulse {
    /// Never moves the deadline back: with several steps in flight in one loop (concurrent
    /// backfill windows), the loop is alive until the last promise made runs out.
    fn promise(&self, until: Instant) {
        let mut deadline = self.deadline.lock().expect("no panics while holding it");
        *deadline = (*deadline).max(until + self.budget);
    }
}

/// The current loop is about to take a bounded step (or just made progress).
pub fn step() {
    let _ = CURRENT.try_with(|p| p.promise(Instant::now()));
}

/// The current loop is about to wait until `until`, on purpose.
pub fn wait_until(until: Instant) {
    let _ = CURRENT.try_with(|p| p.promise(until));
}

/// [`wait_until`] for a wait of `wait` from now.
pub fn wait_for(wait: Duration) {
    wait_until(Instant::now() + wait);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_loop_that_keeps_stepping_is_alive() {
        let liveness = Liveness::new(Duration::from_secs(10));
        liveness
            .scope("poll", async {
                for _ in 0..5 {
                    step();
                    tokio::time::sleep(Duration::from_secs(8)).await;
                    assert!(liveness.stuck().is_empty());
                }
            })
            .await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_announced_wait_is_alive_and_a_silent_hang_is_stuck() {
        let liveness = Liveness::new(Duration::from_secs(10));
        liveness
            .scope("worker", async {
                wait_for(Duration::from_secs(40));
                tokio::time::sleep(Duration::from_secs(45)).await;
                assert!(liveness.stuck().is_empty(), "a 40 s Retry-After is waiting, not hanging");
                step();
                tokio::time::sleep(Duration::from_secs(11)).await;
                let stuck = liveness.stuck();
                assert_eq!(stuck.len(), 1);
                assert_eq!(stuck[0].name, "worker");
            })
            .await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_shorter_promise_does_not_cut_a_longer_one() {
        let liveness = Liveness::new(Duration::from_secs(1));
        liveness
            .scope("backfill", async {
                wait_for(Duration::from_secs(30));
                step();
                tokio::time::sleep(Duration::from_secs(20)).await;
                assert!(liveness.stuck().is_empty());
            })
            .await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_finished_loop_is_no_longer_watched_and_outside_any_loop_nothing_is_reported() {
        let liveness = Liveness::new(Duration::from_secs(1));
        liveness.scope("rescan", async { step() }).await;
        assert!(liveness.loops().is_empty());
        step();
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(liveness.stuck().is_empty());
    }
}
