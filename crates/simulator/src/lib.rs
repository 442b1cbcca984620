//! A faithful in-memory PartnerStack vendor API v2 over real HTTP , for
//! partnerstack-mirror's demo, its `simulate` command and its tests.
//!
//! It serves the subset the mirror reads, the way the research notes describe the real
//! API: Basic auth, `{data: {items, has_more}, message, status}` envelopes, `limit` 1–250,
//! key cursors, epoch-millisecond filters, newest-first order. Every behaviour the docs
//! leave open (docs/correctness.md) is a switch in [`SimulatorConfig`], so the mirror can be tested
//! under each answer. The data is generated from a seed, so a seed always gives the same
//! account; tests then change it through [`Simulator::apply`], inject faults with
//! [`Simulator::inject`], and land changes between two pages with [`Simulator::after_pages`].
//!
//! It also takes the writes the mirror's write-back queue sends (creates, updates,
//! archives, tags, conversions) and serves deal attachments, logging every write request
//! ([`Simulator::writes`]) so tests can check that each reached the API exactly once.
//!
//! And it sends webhooks: subscriptions made with `/v2/webhooks` get one POST per event of
//! every change (and training completions on demand, [`Simulator::complete_training`]),
//! late, lost, doubled or shuffled at will ([`WebhookSwitches`]); tests read what was sent
//! with [`Simulator::webhooks_sent`].
//!
//! It fakes the vendor, so it speaks the vendor's vocabulary ([`Resource`]) and depends
//! on nothing of the mirror; the mirror converts its object types into it.
//!
//! Layout: `resource` (the vendor's record types), `state` (everything behind the lock),
//! `table` (one object type and its indexes), `listing` (queries and pages), `route` (what
//! a path names), `api` (reads and their envelopes), `reply` (an answer before HTTP),
//! `server` (HTTP, faults, rate limit, auth), `generate`/`build`/`fake` (the data),
//! `mutation` (changes); for writes `writes` (routing), `schema` (body validation),
//! `create`, `update`, `convert`, `lookup` (records by external identifiers), `files` (deal
//! attachments); `webhooks` (subscriptions, bodies, and the sender).

mod api;
mod build;
mod convert;
mod create;
mod fake;
mod files;
mod generate;
mod listing;
mod lookup;
mod mutation;
mod poison;
mod reply;
mod resource;
mod route;
mod schema;
mod server;
mod state;
mod table;
#[cfg(test)]
mod tests;
mod update;
mod webhooks;
mod writes;

use std::{
    net::SocketAddr,
    sync::{atomic::AtomicU64, Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use mutation::{Applied, Mutation, MutationError};
pub use poison::Poison;
pub use resource::{AsResource, Resource};
pub use webhooks::{SentWebhook, TrainingCompletion, TrainingKind, WebhookStats, WebhookSwitches};

use state::State;
use webhooks::{Outbox, Webhooks};

/// How `min_/max_created` and `min_/max_updated` compare (docs/correctness.md, question 1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BoundSemantics {
    /// `min ≤ t ≤ max`.
    #[default]
    Inclusive,
    /// `min < t < max`.
    Exclusive,
}

/// What the simulator generates and how it behaves; the switches can change at runtime
/// through [`Simulator::configure`].
#[derive(Clone, Debug)]
pub struct SimulatorConfig {
    pub seed: u64,
    /// Records across object types: ~15% partnerships, 20% customers, 12% deals, 12% leads,
    /// 18% transactions, 12% rewards, 6% actions, 5% applications; plus 5–10 groups and
    /// 0–3 members per partner team.
    pub records: usize,
    /// `created_at` spreads over this many days before the end of the history, denser
    /// towards its end.
    pub history_days: u32,
    /// When the generated history ends (epoch ms); `None`: when [`Simulator::new`] runs.
    /// Fix it to get byte-identical data from one run to the next.
    pub history_end_ms: Option<i64>,
    pub public_key: String,
    pub private_key: String,
    /// Requests per second above which the answer is 429 (a token bucket whose burst is
    /// the rate); `None`: unlimited.
    pub rate_limit_per_sec: Option<f64>,
    /// Whether a 429 carries `Retry-After: 1` (docs/correctness.md, question 5).
    pub retry_after_header: bool,
    /// Question 1 of docs/correctness.md.
    pub bounds: BoundSemantics,
    /// Whether `/transactions` and `/rewards` ignore `min_updated`/`max_updated` (docs/correctness.md, question 3).
    pub created_only_ignore_updated_filter: bool,
    /// Whether archived records stay listed with `"archived": true`, or vanish from lists
    /// (docs/correctness.md, question 2). Single GETs return them either way.
    pub archived_listed: bool,
    /// Random mutations per second while the server runs (0: none).
    pub mutations_per_sec: f64,
    /// A record is served (by a single GET or in a list) only once it is this old: the real
    /// API was seen to take 2–6 minutes to show a new customer (research notes §5).
    pub read_after_write_lag: Duration,
    /// Whether single-record paths of deals, leads and partnerships also take their external
    /// identifiers (`external_key`, `partner_key`, email) besides the `key`; the docs leave
    /// it open (research notes §2). Customers always go by `customer_key`.
    pub external_ids_in_paths: bool,
    /// Whether `PATCH /partnerships/{key}/tags` understands `{"add": [...], "remove": [...]}`
    /// (Question 6 of docs/correctness.md: the body is undocumented). `false`: it answers 200 and changes nothing, as
    /// an API expecting another shape might.
    pub tags_body_understood: bool,
    /// How webhooks are sent: late, lost, doubled, shuffled, in the legacy style.
    pub webhooks: WebhookSwitches,
    /// Requests whose method and path start like one of these (`"GET /api/v2/actions"`,
    /// `"POST /api/v2/rewards"`) answer 403 with valid keys: an account whose keys may not
    /// use that part of the API.
    pub forbidden: Vec<String>,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        SimulatorConfig {
            seed: 1,
            records: 2_000,
            history_days: 730,
            history_end_ms: None,
            public_key: "pk_simulator".into(),
            private_key: "sk_simulator".into(),
            rate_limit_per_sec: None,
            retry_after_header: true,
            bounds: BoundSemantics::Inclusive,
            created_only_ignore_updated_filter: true,
            archived_listed: true,
            mutations_per_sec: 0.0,
            read_after_write_lag: Duration::ZERO,
            external_ids_in_paths: true,
            tags_body_understood: true,
            webhooks: WebhookSwitches::default(),
            forbidden: Vec::new(),
        }
    }
}

/// The simulator's notion of now, which stamps every mutation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clock {
    Real,
    /// Every mutation gets exactly this `updated_at` (epoch ms): many changes in one ms.
    Frozen(i64),
}

/// A failure injected into the next API requests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// That HTTP status with an API error body.
    ServerError(u16),
    /// 429 with `Retry-After` set to this many whole seconds: an API asking for a long wait.
    RateLimited(Duration),
    /// The connection closes without a response.
    DropConnection,
    /// The answer comes after this delay.
    Slow(Duration),
    /// Status 200 whose JSON body is cut in half.
    Truncated,
    /// Status 200 with an HTML body (a proxy's error page).
    NotJson,
    /// For the next write request (POST, PATCH, DELETE) only: the write is applied, then
    /// the connection closes without an answer, so the client cannot know it happened
    /// (the case a write-back queue must not repeat). Reads pass untouched and leave it
    /// queued.
    ApplyThenDrop,
    /// For the next write only: the write is applied and the answer never comes; the
    /// request hangs until the client gives up or the simulator stops (a worker killed
    /// while waiting for an answer).
    ApplyThenHang,
}

/// One write request (POST, PATCH or DELETE) the API received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteRequest {
    pub method: String,
    /// The request path, e.g. `/api/v2/customers`.
    pub path: String,
    /// The HTTP status answered; 0 when the connection was dropped instead.
    pub status: u16,
    /// Requests of any kind the API had received before this one (see
    /// [`Simulator::request_count`]): where the write fell among the reads.
    pub received_before: u64,
}

/// Code run between two list pages; see [`Simulator::after_pages`].
pub type PageHook = Box<dyn FnOnce(&Simulator) + Send>;

/// A simulated PartnerStack account. Cheap to clone: clones share one account.
#[derive(Clone)]
pub struct Simulator {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    requests: AtomicU64,
    /// Webhooks waiting to be sent, and those sent.
    outbox: Outbox,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator").field("requests", &self.request_count()).finish_non_exhaustive()
    }
}

impl Simulator {
    /// Generates the account deterministically from `config.seed`.
    pub fn new(config: SimulatorConfig) -> Simulator {
        let (webhooks, queued) = Webhooks::new(config.seed);
        let state = Mutex::new(State::new(config, webhooks));
        Simulator { shared: Arc::new(Shared { state, requests: AtomicU64::new(0), outbox: Outbox::new(queued) }) }
    }

    /// Serves the API on `addr` (port 0 picks a free one) in background tasks, with the
    /// mutation generator applying `mutations_per_sec` random changes (the rate is read
    /// afresh every tick, so [`Simulator::configure`] can start, change or stop it) and the
    /// webhook sender. Until it runs, webhooks wait in a bounded queue.
    pub async fn start(&self, addr: SocketAddr) -> std::io::Result<RunningSimulator> {
        server::start(self.clone(), addr).await
    }

    /// Changes switches at runtime (bounds, rate limit, archived_listed, …). The data is
    /// not regenerated: `seed`, `records` and `history_*` only matter to [`Simulator::new`].
    pub fn configure(&self, f: impl FnOnce(&mut SimulatorConfig)) {
        f(&mut self.lock().config);
    }

    /// The current configuration.
    pub fn config(&self) -> SimulatorConfig {
        self.lock().config.clone()
    }

    pub fn set_clock(&self, clock: Clock) {
        self.lock().clock = clock;
    }

    /// Every record that exists (archived included, hard-deleted not), newest first,
    /// exactly as the API serializes it.
    pub fn records(&self, kind: impl AsResource) -> Vec<Value> {
        self.lock().table(kind.resource()).newest_first().map(|r| r.value()).collect()
    }

    pub fn record(&self, kind: impl AsResource, key: &str) -> Option<Value> {
        self.lock().table(kind.resource()).get(key).map(|r| r.value())
    }

    /// The keys of [`Simulator::records`], in the same order.
    pub fn keys(&self, kind: impl AsResource) -> Vec<String> {
        self.lock().table(kind.resource()).newest_keys().map(str::to_owned).collect()
    }

    /// Every partner team's key (`stck_…`), teams without members included.
    pub fn team_keys(&self) -> Vec<String> {
        self.lock().teams.keys().cloned().collect()
    }

    /// Applies one change, stamped with the clock's now, and sends its webhooks.
    pub fn apply(&self, m: Mutation) -> Result<Applied, MutationError> {
        let mut state = self.lock();
        let now = state.now();
        state.apply(m, now)
    }

    /// One random mutation; over time every variant occurs. Deterministic from the seed
    /// (apart from the timestamps of a real clock).
    pub fn apply_random(&self) -> Applied {
        let mut state = self.lock();
        let now = state.now();
        apply_random_locked(&mut state, now)
    }

    /// `count` random mutations; sometimes a few share one millisecond.
    fn mutate_burst(&self, count: usize) {
        let mut state = self.lock();
        let mut done = 0;
        while done < count {
            let same_ms = if state.fake.chance(0.1) { state.fake.between(2, 4) as usize } else { 1 };
            let now = state.now();
            for _ in 0..same_ms.min(count - done) {
                apply_random_locked(&mut state, now);
            }
            done += same_ms;
        }
    }

    /// The next `times` API requests get `fault`, after any faults injected before.
    pub fn inject(&self, fault: Fault, times: usize) {
        if times > 0 {
            self.lock().faults.push_back((fault, times));
        }
    }

    /// Runs `hook` once the next `n` list pages have been computed (the n-th page's answer
    /// already fixed) and before that answer is sent: a change landing between two pages.
    pub fn after_pages(&self, n: usize, hook: PageHook) {
        if n == 0 {
            hook(self);
        } else {
            self.lock().hooks.push((n, hook));
        }
    }

    /// Serves `key` broken (see [`Poison`]) in list pages from now on, with a new
    /// `updated_at` so polls list it.
    pub fn poison(&self, kind: impl AsResource, key: &str, poison: Poison) {
        let kind = kind.resource();
        let _ = self.apply(Mutation::Touch { kind, key: key.to_owned() });
        self.lock().poisoned.insert((kind, key.to_owned()), poison);
    }

    /// Serves `key` clean again, changed, so the next poll brings its clean copy.
    pub fn cure(&self, kind: impl AsResource, key: &str) {
        let kind = kind.resource();
        self.lock().poisoned.remove(&(kind, key.to_owned()));
        let _ = self.apply(Mutation::Touch { kind, key: key.to_owned() });
    }

    /// Every write request received, in arrival order, failed and dropped ones included,
    /// for asserting that a change reached the API exactly once.
    pub fn writes(&self) -> Vec<WriteRequest> {
        self.lock().writes.clone()
    }

    /// The webhooks sent (the latest 10,000), in send order, failed ones included.
    pub fn webhooks_sent(&self) -> Vec<SentWebhook> {
        self.shared.outbox.sent()
    }

    /// Every webhook subscription, archived ones included, newest first, as
    /// `GET /v2/webhooks/{key}` serves it.
    pub fn webhook_subscriptions(&self) -> Vec<Value> {
        webhooks::subscriptions::all(&self.lock())
    }

    /// How many webhooks were sent, and how many were not (lost on purpose, or dropped
    /// from a full queue).
    pub fn webhook_stats(&self) -> WebhookStats {
        let (lost, dropped) = self.lock().webhooks.counts();
        WebhookStats { sent: self.shared.outbox.sent_count(), lost, dropped }
    }

    /// Sends `training.course_completed` or `training.learning_path_completed` to their
    /// subscribers: SAP Litmos completions, which PartnerStack reports only as webhooks.
    pub fn complete_training(&self, completion: TrainingCompletion) {
        self.lock().announce_training(&completion);
    }

    /// A completion, now, of a random course or learning path by a random partnership;
    /// `None` when there is no partnership. Drawn from the seed.
    pub fn random_training_completion(&self, kind: TrainingKind) -> Option<TrainingCompletion> {
        self.lock().random_training_completion(kind)
    }

    /// Every HTTP request received, failed ones included.
    pub fn request_count(&self) -> u64 {
        self.shared.requests.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Counts one served list page and runs the hooks it makes due, outside the lock.
    fn page_served(&self) {
        let due: Vec<PageHook> = {
            let mut state = self.lock();
            let hooks = std::mem::take(&mut state.hooks);
            let (due, waiting): (Vec<_>, Vec<_>) = hooks.into_iter().map(|(n, h)| (n - 1, h)).partition(|(n, _)| *n == 0);
            state.hooks = waiting;
            due.into_iter().map(|(_, h)| h).collect()
        };
        for hook in due {
            hook(self);
        }
    }

    /// The state, also after a panic elsewhere while it was held (tests keep going).
    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A random mutation that applies (drawing again when one does not fit its target).
fn apply_random_locked(state: &mut State, now: i64) -> Applied {
    for _ in 0..16 {
        let m = state.random_mutation();
        if let Ok(applied) = state.apply(m, now) {
            return applied;
        }
    }
    state.apply(Mutation::Create(Resource::Group), now).expect("a group needs no parent")
}

/// A simulator serving HTTP; stops when [`RunningSimulator::stop`] is awaited or it drops.
pub struct RunningSimulator {
    /// E.g. `http://127.0.0.1:41234/api/v2`.
    pub base_url: String,
    pub simulator: Simulator,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningSimulator {
    /// Stops serving and waits (a few seconds at most) for open requests to finish.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        for task in std::mem::take(&mut self.tasks) {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), task).await.is_err() {
                abort.abort();
            }
        }
    }
}

impl Drop for RunningSimulator {
    fn drop(&mut self) {
        self.shutdown.cancel();
        for task in &self.tasks {
            task.abort();
        }
    }
}
