//! The daemon's side of systemd's `Type=notify`: `READY=1` once migrations ran and the
//! database answered, `STATUS=` lines, `WATCHDOG=1` only while the scheduler makes progress,
//! `STOPPING=1` on shutdown. Without `NOTIFY_SOCKET` every call does nothing.

use std::{
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc,
    },
    time::Duration,
};

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

/// Proof of life from the scheduler and the sync: each tick and each page beats.
#[derive(Debug, Default)]
pub struct Heartbeat {
    /// Milliseconds since the Unix epoch of the last beat.
    last: AtomicI64,
}

impl Heartbeat {
    pub fn beat(&self) {
        self.last.store(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
    }

    /// How long since the last beat.
    pub fn age(&self) -> Duration {
        let ms = chrono::Utc::now().timestamp_millis() - self.last.load(Ordering::Relaxed);
        Duration::from_millis(ms.max(0) as u64)
    }
}

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

pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// Pings the watchdog at half its period, but only while `heartbeat` is younger than the
/// period: a scheduler that hangs stops the pings, and systemd restarts the service.
pub async fn watchdog(progress: Arc<crate::sync::Progress>, shutdown: CancellationToken) {
    let heartbeat = &progress.heartbeat;
    let Some(period) = sd_notify::watchdog_enabled() else { return };
    let mut ticker = tokio::time::interval(period / 2);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {
                if heartbeat.age() < period {
                    send(&[NotifyState::Watchdog]);
                } else {
                    tracing::error!(silent_for = ?heartbeat.age(), "scheduler made no progress; withholding the watchdog ping");
                }
            }
        }
    }
}
