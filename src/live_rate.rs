//! The rate a live progress line shows: records per second over the last few seconds, from
//! samples of a running total. A run's average would fall towards zero while the daemon idles
//! between polls (874 records/s a minute after a 28,000/s backfill), so it says nothing about
//! now.

use std::{collections::VecDeque, time::Duration};

use tokio::time::Instant;

/// What the progress lines average over.
pub const WINDOW: Duration = Duration::from_secs(5);

/// Samples of a running total within the last `window`, plus the newest one before it, so
/// the rate always spans the whole window once there is that much history.
#[derive(Debug)]
pub struct LiveRate {
    window: Duration,
    samples: VecDeque<(Instant, u64)>,
}

impl LiveRate {
    pub fn new(window: Duration) -> LiveRate {
        LiveRate { window, samples: VecDeque::new() }
    }

    /// Records the running `total` seen at `at` (not before the previous sample) and returns
    /// the rate per second over the window ending there; 0 until two samples are apart.
    pub fn sample(&mut self, at: Instant, total: u64) -> f64 {
        self.samples.push_back((at, total));
        // Drop the oldest while the next one still reaches back a whole window.
        while self.samples.len() > 2 && at.duration_since(self.samples[1].0) >= self.window {
            self.samples.pop_front();
        }
        let (since, before) = self.samples[0];
        let span = at.duration_since(since).as_secs_f64();
        if span > 0.0 {
            total.saturating_sub(before) as f64 / span
        } else {
            0.0
        }
    }
}

impl Default for LiveRate {
    fn default() -> LiveRate {
        LiveRate::new(WINDOW)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_idle_minute_after_a_fast_backfill_shows_zero_not_the_average() {
        let mut rate = LiveRate::default();
        let mut total = 0;
        assert_eq!(rate.sample(Instant::now(), total), 0.0, "one sample is no rate");
        // Two seconds of backfill at 28,000 records a second, sampled every 200 ms.
        for _ in 0..10 {
            tokio::time::advance(Duration::from_millis(200)).await;
            total += 5_600;
            let now = rate.sample(Instant::now(), total);
            assert!((now - 28_000.0).abs() < 1.0, "{now}");
        }
        // A minute of idling between polls: the run's average would still say ~900/s.
        for _ in 0..300 {
            tokio::time::advance(Duration::from_millis(200)).await;
            rate.sample(Instant::now(), total);
        }
        assert_eq!(rate.sample(Instant::now(), total), 0.0);
        assert!(rate.samples.len() <= 27, "the samples stay within the window: {}", rate.samples.len());
    }

    #[tokio::test(start_paused = true)]
    async fn the_rate_spans_the_whole_window_and_no_more() {
        let mut rate = LiveRate::new(Duration::from_secs(5));
        rate.sample(Instant::now(), 0);
        // 10 s at 100/s, then 5 s at 1,000/s: the window sees only the last 5 s.
        for (seconds, per_second) in [(10, 100), (5, 1_000)] {
            for _ in 0..seconds {
                tokio::time::advance(Duration::from_secs(1)).await;
                let total = rate.samples.back().unwrap().1 + per_second;
                rate.sample(Instant::now(), total);
            }
        }
        let total = rate.samples.back().unwrap().1;
        assert_eq!(rate.sample(Instant::now(), total), 1_000.0);
        // Sampled every 5 s (the demo's pace off a terminal), it is the rate since the last line.
        let mut slow = LiveRate::new(Duration::from_secs(5));
        slow.sample(Instant::now(), 0);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(slow.sample(Instant::now(), 2_500), 500.0);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(slow.sample(Instant::now(), 2_500), 0.0);
    }
}
