//! The daemon's loop for one push: a run at once, then one after each `interval` pause or at
//! each `schedule` time, until shutdown. One loop per push, each supervised as a task of its
//! own; a run that fails is recorded and logged, and the loop goes on.

use std::time::Duration;

use chrono::Utc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::{PushError, Pusher};
use crate::{config::Schedule, liveness, telemetry::error_chain};

/// How soon a push waiting for its object's first load looks again (at most its interval).
const LOADED_YET: Duration = Duration::from_secs(10);

/// When a push is due next.
#[derive(Clone, Debug)]
enum Due {
    Every(Duration),
    Cron(Box<croner::Cron>),
}

impl Due {
    fn of(schedule: &Schedule) -> anyhow::Result<Due> {
        Ok(match schedule {
            Schedule::Every(every) => Due::Every(*every),
            Schedule::Cron(expr) => Due::Cron(Box::new(croner::Cron::new(expr).with_seconds_required().with_dom_and_dow().parse()?)),
        })
    }

    /// The next run after one that started or ended now. `None`: the cron expression never
    /// matches again.
    fn next(&self) -> Option<Instant> {
        match self {
            Due::Every(every) => Some(Instant::now() + *every),
            Due::Cron(cron) => {
                let now = Utc::now();
                let at = cron.find_next_occurrence(&now, false).ok()?;
                Some(Instant::now() + (at - now).to_std().unwrap_or_default())
            }
        }
    }
}

/// Runs `pusher` until `shutdown`: at once for an `interval` (the first run of a new push is
/// its first check), at the next matching time for a `schedule`.
pub async fn run_on_schedule(pusher: Pusher, shutdown: CancellationToken) -> anyhow::Result<()> {
    let due = Due::of(&pusher.config().schedule)?;
    let mut next = match due {
        Due::Every(_) => Some(Instant::now()),
        Due::Cron(_) => due.next(),
    };
    while let Some(at) = next {
        liveness::wait_until(at);
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep_until(at) => {}
        }
        let push = &pusher.config().name;
        match pusher.run(false).await {
            Ok(_) => {}
            Err(PushError::Busy { .. }) => debug!(push = %push, "another instance is running this push; skipping this turn"),
            Err(e @ PushError::NotLoaded { .. }) => {
                debug!(push = %push, "{e}");
                // A first start: run as soon as the mirror is loaded, not an interval later.
                if let Due::Every(every) = due {
                    next = Some(Instant::now() + every.min(LOADED_YET));
                    continue;
                }
            }
            // Failed runs are recorded in push_runs and logged where they fail.
            Err(PushError::Query { .. } | PushError::Duplicate { .. }) => {}
            Err(error) => warn!(push = %push, error = %error_chain(&error), "push run failed; trying again at its next turn"),
        }
        next = due.next();
    }
    // A cron expression that never matches again: nothing left to do until shutdown.
    while !shutdown.is_cancelled() {
        liveness::wait_for(Duration::from_secs(1));
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cron_schedule_is_due_at_its_next_matching_second() {
        let due = Due::of(&Schedule::Cron("* * * * * *".into())).unwrap();
        let wait = due.next().unwrap() - Instant::now();
        assert!(wait <= Duration::from_secs(1), "{wait:?}");
        let due = Due::of(&Schedule::Cron("0 0 0 1 1 *".into())).unwrap();
        assert!(due.next().unwrap() - Instant::now() > Duration::from_secs(60), "once a year is not due now");
        assert!(Due::of(&Schedule::Cron("not a cron".into())).is_err());
    }
}
