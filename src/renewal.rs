//! Keeping a claim alive (an object's lease, a write-back request's lease) while the work it
//! guards runs.
//!
//! The renewal must wait beside the work, never instead of it: the work's own transaction
//! may hold the very row the renewal updates (a page's transaction holds the object's lease
//! row `FOR SHARE`; a request's final transaction updates its queue row), and that
//! transaction commits only while the work is polled. Awaiting the renewal alone would wait
//! for ever.

use std::{future::Future, time::Duration};

/// Runs `work`, calling `renew` every `period` (first after one period) and polling both
/// together while a renewal is under way; returns what `work` returns, dropping a renewal
/// still under way.
pub async fn renewing<T, R>(work: impl Future<Output = T>, period: Duration, mut renew: impl FnMut() -> R) -> T
where
    R: Future<Output = ()>,
{
    tokio::pin!(work);
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = ticks.tick() => {
                let renewal = renew();
                tokio::pin!(renewal);
                tokio::select! {
                    out = &mut work => return out,
                    () = &mut renewal => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        atomic::{AtomicU32, Ordering},
        Arc,
    };

    use tokio::sync::Notify;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_work_goes_on_while_a_renewal_waits_for_it() {
        // The renewal can finish only after the work has made progress, as when it waits
        // for the work's transaction to commit.
        let progressed = Arc::new(Notify::new());
        let renewals = Arc::new(AtomicU32::new(0));
        let work = {
            let progressed = progressed.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(150)).await;
                progressed.notify_one();
                tokio::time::sleep(Duration::from_millis(100)).await;
                "done"
            }
        };
        let out = renewing(work, Duration::from_millis(100), || {
            let (progressed, renewals) = (progressed.clone(), renewals.clone());
            async move {
                progressed.notified().await;
                renewals.fetch_add(1, Ordering::Relaxed);
            }
        })
        .await;
        assert_eq!(out, "done");
        assert_eq!(renewals.load(Ordering::Relaxed), 1, "the first renewal ended once the work progressed");
    }

    #[tokio::test(start_paused = true)]
    async fn renewals_come_once_a_period_while_the_work_runs() {
        let renewals = Arc::new(AtomicU32::new(0));
        let counted = renewals.clone();
        renewing(tokio::time::sleep(Duration::from_millis(1_050)), Duration::from_millis(100), move || {
            let counted = counted.clone();
            async move {
                counted.fetch_add(1, Ordering::Relaxed);
            }
        })
        .await;
        assert_eq!(renewals.load(Ordering::Relaxed), 10);
    }
}
