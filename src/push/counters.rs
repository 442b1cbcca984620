//! What this process's pushes did, for `/metrics`: runs by outcome, requests queued, rows
//! read and changes the brake refused, per push. The pushers count into clones of the
//! families the process's one registry holds.

use prometheus_client::metrics::{counter::Counter, family::Family};

use super::{PushError, RunReport};

pub type PushLabels = Vec<(&'static str, String)>;

/// The outcomes a run is counted under: `push_runs.outcome`'s, and `busy` (another instance
/// was running the push, so this one did not start).
pub const OUTCOMES: [&str; 5] = ["changed", "unchanged", "braked", "failed", "busy"];

#[derive(Clone, Debug, Default)]
pub struct PushCounters {
    pub runs: Family<PushLabels, Counter>,
    pub requests_queued: Family<PushLabels, Counter>,
    pub rows_read: Family<PushLabels, Counter>,
    pub refused_by_brake: Family<PushLabels, Counter>,
}

impl PushCounters {
    /// Counters for the configured pushes, each series present (at zero) from the start, so
    /// `rate()` and `increase()` see the first run.
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> PushCounters {
        let counters = PushCounters::default();
        for name in names {
            for outcome in OUTCOMES {
                drop(counters.runs.get_or_create(&run_labels(name, outcome)));
            }
            drop(counters.requests_queued.get_or_create(&labels(name)));
            drop(counters.rows_read.get_or_create(&labels(name)));
            drop(counters.refused_by_brake.get_or_create(&labels(name)));
        }
        counters
    }

    /// Requests `push`'s runs in this process queued so far (the demo's live line).
    pub fn requests_queued_by(&self, push: &str) -> u64 {
        self.requests_queued.get_or_create(&labels(push)).get()
    }

    /// Counts one run of `push`.
    pub fn count(&self, push: &str, outcome: &Result<RunReport, PushError>) {
        match outcome {
            Ok(report) => {
                let line = &report.line;
                self.runs.get_or_create(&run_labels(push, &line.outcome)).inc();
                self.requests_queued.get_or_create(&labels(push)).inc_by(line.requests_queued.max(0) as u64);
                self.rows_read.get_or_create(&labels(push)).inc_by(line.rows_read.max(0) as u64);
                self.refused_by_brake.get_or_create(&labels(push)).inc_by(line.refused_by_brake.max(0) as u64);
            }
            // Waiting for the mirror's first load is not a run.
            Err(PushError::NotLoaded { .. }) => {}
            Err(PushError::Busy { .. }) => {
                self.runs.get_or_create(&run_labels(push, "busy")).inc();
            }
            Err(_) => {
                self.runs.get_or_create(&run_labels(push, "failed")).inc();
            }
        }
    }
}

pub fn labels(push: &str) -> PushLabels {
    vec![("push", push.to_owned())]
}

fn run_labels(push: &str, outcome: &str) -> PushLabels {
    vec![("push", push.to_owned()), ("outcome", outcome.to_owned())]
}
