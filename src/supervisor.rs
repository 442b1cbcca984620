//! Supervision: the daemon's tasks by name. A task that ends on its own (a panic, or a return
//! nobody asked for) is logged and stops the daemon with exit 1, so systemd restarts it,
//! rather than leaving a daemon that looks alive without, say, its write-back workers;
//! stopping is told, then awaited with a deadline, and what is still running then is named and
//! abandoned.

use std::{collections::HashMap, sync::Arc, time::Duration};

use futures::future::BoxFuture;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::liveness::Liveness;

/// How a task's health is judged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Watch {
    /// A loop that promises its steps (see [`crate::liveness`]); the watchdog checks it.
    Liveness,
    /// Only its death counts (a server, a listener waiting for notifications).
    DeathOnly,
}

pub(crate) type Task = BoxFuture<'static, anyhow::Result<()>>;

/// The daemon's tasks, by name.
pub(crate) struct Supervisor {
    tasks: JoinSet<anyhow::Result<()>>,
    names: HashMap<tokio::task::Id, String>,
    liveness: Arc<Liveness>,
}

impl Supervisor {
    pub(crate) fn new(liveness: Arc<Liveness>) -> Supervisor {
        Supervisor { tasks: JoinSet::new(), names: HashMap::new(), liveness }
    }

    pub(crate) fn spawn(&mut self, name: &str, watch: Watch, work: Task) {
        let handle = match watch {
            Watch::Liveness => {
                let (liveness, name) = (self.liveness.clone(), name.to_owned());
                self.tasks.spawn(async move { liveness.scope(name, work).await })
            }
            Watch::DeathOnly => self.tasks.spawn(work),
        };
        self.names.insert(handle.id(), name.to_owned());
    }

    /// Waits for shutdown; a task that ends before it is logged, and its name returned.
    pub(crate) async fn until_shutdown_or_death(&mut self, shutdown: &CancellationToken) -> Option<String> {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => None,
            Some(ended) = self.tasks.join_next_with_id() => {
                // Told to stop, a task may end before this select sees the token.
                let told = shutdown.is_cancelled();
                let name = match &ended {
                    Ok((id, _)) => self.names.remove(id),
                    Err(e) => self.names.remove(&e.id()),
                }
                .unwrap_or_else(|| "unnamed task".into());
                match ended {
                    Ok((_, Ok(()))) if told => return None,
                    Ok((_, Ok(()))) => tracing::error!(task = %name, "task ended on its own"),
                    Ok((_, Err(error))) => tracing::error!(task = %name, error = format!("{error:#}"), "task failed"),
                    Err(e) if e.is_panic() => tracing::error!(task = %name, panic = panic_message(e.into_panic()), "task panicked"),
                    Err(_) => tracing::error!(task = %name, "task was cancelled"),
                }
                Some(name)
            }
        }
    }

    /// Awaits every task until `deadline`; logs each failure, and names what is left.
    pub(crate) async fn stop(mut self, deadline: Duration) {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            match tokio::time::timeout_at(until, self.tasks.join_next_with_id()).await {
                Ok(None) => return,
                Ok(Some(ended)) => {
                    let (id, outcome) = match ended {
                        Ok((id, Ok(()))) => (id, None),
                        Ok((id, Err(error))) => (id, Some(format!("{error:#}"))),
                        Err(e) if e.is_panic() => (e.id(), Some(format!("panicked: {}", panic_message(e.into_panic())))),
                        Err(e) => (e.id(), Some("cancelled".into())),
                    };
                    let name = self.names.remove(&id).unwrap_or_default();
                    if let Some(error) = outcome {
                        tracing::error!(task = %name, error, "task failed while stopping");
                    }
                }
                Err(_) => {
                    let mut left: Vec<&str> = self.names.values().map(String::as_str).collect();
                    left.sort_unstable();
                    tracing::error!(
                        deadline_s = deadline.as_secs(),
                        ?left,
                        "tasks still running at the shutdown deadline; abandoning them"
                    );
                    self.tasks.abort_all();
                    return;
                }
            }
        }
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;

    #[tokio::test]
    async fn a_task_that_panics_is_named_and_stops_the_daemon() {
        let mut supervisor = Supervisor::new(Liveness::new(Duration::from_secs(5)));
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        supervisor.spawn("steady", Watch::DeathOnly, async move { token.cancelled().await }.map(Ok).boxed());
        supervisor.spawn("fragile", Watch::Liveness, async { panic!("boom") }.boxed());
        assert_eq!(supervisor.until_shutdown_or_death(&shutdown).await.as_deref(), Some("fragile"));
        shutdown.cancel();
        supervisor.stop(Duration::from_secs(5)).await;
    }

    /// Issue 25: a pass run at a cron tick runs in the scheduler's supervised loop, not on
    /// tokio-cron-scheduler's own task, so its panic is named and stops the daemon.
    #[tokio::test]
    async fn a_scheduled_job_that_panics_is_named_and_stops_the_daemon() {
        let mut supervisor = Supervisor::new(Liveness::new(Duration::from_secs(5)));
        let shutdown = CancellationToken::new();
        let clock = tokio_cron_scheduler::JobScheduler::new().await.unwrap();
        let (tick, ticks) = tokio::sync::mpsc::channel(1);
        clock
            .add(
                tokio_cron_scheduler::Job::new_async("* * * * * *", move |_, _| {
                    let _ = tick.try_send(());
                    Box::pin(async {})
                })
                .unwrap(),
            )
            .await
            .unwrap();
        clock.start().await.unwrap();
        let job = crate::scheduler::on_ticks(ticks, shutdown.clone(), || async { panic!("a rescan broke") });
        supervisor.spawn("rescans", Watch::Liveness, job.boxed());
        let died = tokio::time::timeout(Duration::from_secs(10), supervisor.until_shutdown_or_death(&shutdown)).await;
        assert_eq!(died.expect("the next tick comes within a second or two").as_deref(), Some("rescans"));
        shutdown.cancel();
        supervisor.stop(Duration::from_secs(5)).await;
    }

    /// When the cron clock dies, its ticks stop for good: the loop waiting for them says so
    /// and stops the daemon, rather than waiting for ever.
    #[tokio::test]
    async fn a_loop_whose_ticks_stop_for_good_fails_and_is_named() {
        let mut supervisor = Supervisor::new(Liveness::new(Duration::from_secs(5)));
        let shutdown = CancellationToken::new();
        let (tick, ticks) = tokio::sync::mpsc::channel::<()>(1);
        drop(tick);
        supervisor.spawn("key scans", Watch::Liveness, crate::scheduler::on_ticks(ticks, shutdown.clone(), || async {}).boxed());
        assert_eq!(supervisor.until_shutdown_or_death(&shutdown).await.as_deref(), Some("key scans"));
        shutdown.cancel();
        supervisor.stop(Duration::from_secs(5)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn stopping_abandons_what_is_still_running_at_the_deadline() {
        let mut supervisor = Supervisor::new(Liveness::new(Duration::from_secs(5)));
        let shutdown = CancellationToken::new();
        supervisor.spawn("stubborn", Watch::DeathOnly, futures::future::pending::<()>().map(Ok).boxed());
        shutdown.cancel();
        assert_eq!(supervisor.until_shutdown_or_death(&shutdown).await, None, "shutdown is not a death");
        let started = tokio::time::Instant::now();
        supervisor.stop(Duration::from_secs(3)).await;
        assert_eq!(started.elapsed(), Duration::from_secs(3));
    }
}
