//! One backoff for everything that retries: the API client, the write-back queue, webhook
//! deliveries. Exponential with "full jitter" (a uniformly random wait between the floor and
//! the exponential step, capped), which spreads retrying clients apart and never exceeds the
//! cap; a server's `Retry-After` is a floor on the wait, never a ceiling.

use std::time::Duration;

use rand::Rng;

/// Waits that grow as `min · 2^attempt`, up to `max`, each drawn at random below its step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The shortest wait, and the first step.
    pub min: Duration,
    /// No wait is longer (unless the server asks for longer).
    pub max: Duration,
}

impl Backoff {
    pub const fn new(min: Duration, max: Duration) -> Backoff {
        Backoff { min, max }
    }

    /// The step for retry number `attempt` (0 for the first retry): `min · 2^attempt`, capped.
    pub fn step(&self, attempt: u32) -> Duration {
        self.min.saturating_mul(1_u32 << attempt.min(20)).min(self.max).max(self.min)
    }

    /// The wait before retry number `attempt`: random between `min` and its step.
    pub fn delay(&self, attempt: u32) -> Duration {
        let step = self.step(attempt);
        if step <= self.min {
            return step;
        }
        rand::thread_rng().gen_range(self.min..=step)
    }

    /// [`Backoff::delay`], or longer when the server asked for longer.
    pub fn delay_honouring(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let backoff = self.delay(attempt);
        retry_after.map_or(backoff, |server| backoff.max(server))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BACKOFF: Backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(600));

    #[test]
    fn steps_double_up_to_the_cap() {
        assert_eq!(BACKOFF.step(0), Duration::from_secs(1));
        assert_eq!(BACKOFF.step(3), Duration::from_secs(8));
        assert_eq!(BACKOFF.step(12), Duration::from_secs(600));
        assert_eq!(BACKOFF.step(u32::MAX), Duration::from_secs(600));
    }

    #[test]
    fn waits_are_jittered_between_the_floor_and_the_step() {
        for attempt in 0..30 {
            for _ in 0..50 {
                let wait = BACKOFF.delay(attempt);
                assert!(wait >= BACKOFF.min && wait <= BACKOFF.step(attempt), "attempt {attempt}: {wait:?}");
            }
        }
        let late: Vec<Duration> = (0..200).map(|_| BACKOFF.delay(12)).collect();
        assert!(late.iter().any(|w| *w > Duration::from_secs(300)), "late attempts can wait long");
        assert!(late.iter().any(|w| *w != late[0]), "waits are jittered");
    }

    #[test]
    fn the_server_wait_is_a_floor_not_a_ceiling() {
        let quick = Backoff::new(Duration::from_millis(10), Duration::from_millis(20));
        assert!(quick.delay_honouring(0, Some(Duration::from_secs(5))) == Duration::from_secs(5));
        assert!(quick.delay_honouring(0, Some(Duration::ZERO)) >= quick.min);
        assert!(quick.delay_honouring(4, None) <= quick.max);
    }
}
