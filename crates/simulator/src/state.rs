//! Everything the simulator holds behind its one lock: the switches, the clock, the
//! records of every object type, the partner teams, the queued faults and hooks, and the
//! webhook subscriptions.

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    time::Instant,
};

use crate::Resource;

use super::{
    build::Account,
    fake::Fake,
    generate::{self, Generated},
    table::{Table, Tables},
    webhooks::Webhooks,
    Clock, Fault, PageHook, SimulatorConfig, WriteRequest,
};

pub(super) struct State {
    pub config: SimulatorConfig,
    pub clock: Clock,
    tables: Tables,
    /// Partner team key → its members' keys.
    pub teams: BTreeMap<String, BTreeSet<String>>,
    /// The one seeded generator: initial data, new records and random mutations all draw
    /// from it, so a seed replays the same history.
    pub fake: Fake,
    pub account: Account,
    /// Faults for the next requests, in order, each with how many requests it still gets.
    pub faults: VecDeque<(Fault, usize)>,
    /// Hooks with the number of list pages still to be served before they run.
    pub hooks: Vec<(usize, PageHook)>,
    bucket: Option<Bucket>,
    /// Records served broken in list pages (the poison switch).
    pub poisoned: BTreeMap<(Resource, String), super::Poison>,
    /// Write requests in arrival order; the status is filled in once answered.
    pub writes: Vec<WriteRequest>,
    /// Subscriptions, and the sending end of the webhook queue.
    pub webhooks: Webhooks,
}

impl State {
    /// A new account generated from `config.seed`.
    pub fn new(config: SimulatorConfig, webhooks: Webhooks) -> State {
        let anchor = config.history_end_ms.unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
        let Generated { fake, account, tables, teams } = generate::account(config.seed, config.records, config.history_days, anchor);
        State {
            config,
            clock: Clock::Real,
            tables,
            teams,
            fake,
            account,
            faults: VecDeque::new(),
            hooks: Vec::new(),
            bucket: None,
            poisoned: BTreeMap::new(),
            writes: Vec::new(),
            webhooks,
        }
    }

    pub fn table(&self, kind: Resource) -> &Table {
        self.tables.get(kind)
    }

    pub fn table_mut(&mut self, kind: Resource) -> &mut Table {
        self.tables.get_mut(kind)
    }

    /// The generator and one table at once (building a record while reading its parent).
    pub fn fake_and_table(&mut self, kind: Resource) -> (&mut Fake, &mut Table) {
        (&mut self.fake, self.tables.get_mut(kind))
    }

    /// The webhook side and one table at once (a training completion by a random partner).
    pub fn webhooks_and_table(&mut self, kind: Resource) -> (&mut Webhooks, &Table) {
        (&mut self.webhooks, self.tables.get(kind))
    }

    /// Epoch milliseconds by the simulator's clock.
    pub fn now(&self) -> i64 {
        match self.clock {
            Clock::Real => chrono::Utc::now().timestamp_millis(),
            Clock::Frozen(ms) => ms,
        }
    }

    /// The fault the next request gets, if any. `ApplyThenDrop` and `ApplyThenHang` wait
    /// for a write: a read meets no fault and leaves them queued.
    pub fn take_fault(&mut self, write: bool) -> Option<Fault> {
        let (fault, left) = self.faults.front_mut()?;
        if matches!(fault, Fault::ApplyThenDrop | Fault::ApplyThenHang) && !write {
            return None;
        }
        let fault = fault.clone();
        *left -= 1;
        if *left == 0 {
            self.faults.pop_front();
        }
        Some(fault)
    }

    /// Logs a write request as it arrives (status 0 until answered), after `received_before`
    /// requests of any kind; its index in the log.
    pub fn log_write(&mut self, method: &str, path: &str, received_before: u64) -> usize {
        self.writes.push(WriteRequest { method: method.to_owned(), path: path.to_owned(), status: 0, received_before });
        self.writes.len() - 1
    }

    /// Whether the rate limit lets one more request through now.
    pub fn admit(&mut self) -> bool {
        let Some(rate) = self.config.rate_limit_per_sec.filter(|r| r.is_finite() && *r > 0.0) else {
            self.bucket = None;
            return true;
        };
        let now = Instant::now();
        let bucket = match &mut self.bucket {
            Some(b) if b.rate == rate => b,
            other => other.insert(Bucket { rate, tokens: rate.max(1.0), at: now }),
        };
        bucket.take(now)
    }
}

/// A token bucket whose burst equals its rate (at least one request).
struct Bucket {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate.max(1.0));
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}
