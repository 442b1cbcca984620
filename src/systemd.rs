//! systemd's notify protocol (`Type=notify`): `READY=1` once migrations ran and the database
//! answered, `STATUS=` lines saying what the daemon does or waits for, `WATCHDOG=1` while its
//! loops are alive, `STOPPING=1` on shutdown. Without `NOTIFY_SOCKET` every call does nothing.

use std::{sync::Arc, time::Duration};

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

use crate::liveness::Liveness;

fn send(states: &[NotifyState]) {
    if let Err(error) = sd_notify::notify(states) {
        tracing::warn!(%error, "cannot notify systemd");
    }
}

pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

/// A start that waits (for a lock, say): says why, and moves systemd's start timeout
/// (`TimeoutStartSec`) at least `for_at_least` ahead, so the wait is not taken for a hang.
pub fn waiting(status: &str, for_at_least: Duration) {
    let usec = u32::try_from(for_at_least.as_micros()).unwrap_or(u32::MAX);
    send(&[NotifyState::Status(status), NotifyState::ExtendTimeoutUsec(usec)]);
}

pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// How often `STATUS=` is brought up to date when there is no watchdog to pace it.
const STATUS_EVERY: Duration = Duration::from_secs(1);

/// Pings the watchdog at half its period while every loop keeps its promises (see
/// [`crate::liveness`]): a loop waiting out a `Retry-After` is alive, a loop hanging in a
/// call past its timeout is not, and then systemd restarts the service. Meanwhile keeps
/// `STATUS=` at what `describe` says the daemon does or waits for.
pub async fn watchdog(liveness: Arc<Liveness>, describe: impl Fn() -> String, shutdown: CancellationToken) {
    let period = sd_notify::watchdog_enabled();
    let mut ticker = tokio::time::interval(period.map_or(STATUS_EVERY, |p| (p / 2).min(STATUS_EVERY)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_status = String::new();
    let mut was_stuck = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let line = describe();
        if line != last_status {
            status(&line);
            last_status = line;
        }
        if period.is_none() {
            continue;
        }
        let stuck = liveness.stuck();
        match stuck.first() {
            None => {
                if was_stuck {
                    tracing::info!("every loop is alive again; resuming the watchdog pings");
                }
                send(&[NotifyState::Watchdog]);
            }
            Some(worst) if !was_stuck => tracing::error!(
                loop_name = %worst.name,
                late_s = worst.late.as_secs(),
                stuck = stuck.len(),
                "a loop is stuck past the timeout of what it was doing; withholding the watchdog ping"
            ),
            Some(_) => {}
        }
        was_stuck = !stuck.is_empty();
    }
}
