//! The composition root: builds the parts from the configuration (for the daemon and the
//! one-shot commands), starts the daemon's loops under one supervisor ([`crate::supervisor`]),
//! and stops them: the token is cancelled, every loop finishes or rolls back what it has in
//! hand, and whatever is still running at the deadline is named in the log and abandoned.

use std::{process::ExitCode, sync::Arc, time::Duration};

use futures::FutureExt;
use secrecy::{ExposeSecret, SecretString};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    backoff::Backoff,
    config::Config,
    delivery::{Delivery, DeliveryCounters, DeliverySettings},
    intake::IntakeCounters,
    liveness::Liveness,
    metrics::{Metrics, Sources},
    partnerstack::{ApiClient, ClientConfig},
    queue::{QueueSettings, WorkerCounters, WorkerPool},
    store::Store,
    supervisor::{Supervisor, Watch},
    sync::{Progress, SyncSettings, Syncer},
};

/// How long stopping may take before the loops still running are abandoned; under systemd's
/// `TimeoutStopSec=60`, with room to spare.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(45);
/// How often this daemon's line in the `daemons` table is brought up to date.
const REPORT_EVERY: Duration = Duration::from_secs(10);
/// The client's pauses between retries of one request: from 200 ms, doubling, up to 30 s.
const API_BACKOFF: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
/// Added to the longest bounded step (a request's timeout, a database call's) before a loop
/// that has not kept its promise counts as stuck.
const STEP_SLACK: Duration = Duration::from_secs(5);

/// Why the parts could not be built.
#[derive(Debug, thiserror::Error)]
pub enum WiringError {
    #[error("`database.url` is not set (or DATABASE_URL)")]
    NoDatabase,
    #[error("`partnerstack.public_key` and `partnerstack.private_key` (or PARTNERSTACK_PUBLIC_KEY / PARTNERSTACK_PRIVATE_KEY, or private_key_file) are required")]
    NoCredentials,
    #[error(
        "schema `{schema}` holds no mirror: check `database.schema` (PSM_DATABASE__SCHEMA), or create the mirror with \
         `partnerstack-mirror migrate` (the daemon and `sync` create it too)"
    )]
    NoMirror { schema: String },
    #[error("cannot connect to the database")]
    Store(#[from] crate::store::StoreError),
    /// The server is older than the migrations allow (`store::OLDEST_SERVER`).
    #[error("PostgreSQL 14 or newer is required; this server is {version}")]
    ServerTooOld { version: String },
    #[error("cannot build the PartnerStack client")]
    Api(#[from] crate::partnerstack::ApiError),
    #[error("`delivery[{name}].secret`: {source}")]
    DeliverySecret {
        name: String,
        #[source]
        source: crate::delivery::BadSecret,
    },
    #[error("cannot set up a webhook delivery")]
    Delivery(#[from] crate::delivery::DeliveryError),
    /// A push's query does not fit it, or the database cannot prepare it.
    #[error(transparent)]
    Push(#[from] crate::push::PushError),
}

impl WiringError {
    /// Configuration the operator must fix: exit code 2, and systemd does not restart.
    pub fn is_configuration(&self) -> bool {
        matches!(
            self,
            WiringError::NoDatabase
                | WiringError::NoCredentials
                | WiringError::NoMirror { .. }
                | WiringError::DeliverySecret { .. }
                | WiringError::ServerTooOld { .. }
        ) || matches!(self, WiringError::Push(e) if e.is_configuration() || matches!(e, crate::push::PushError::Query { .. }))
    }
}

// ---- the parts --------------------------------------------------------------------------

/// Connects to the configured database (migrations are the caller's choice).
pub async fn store(config: &Config) -> Result<Store, WiringError> {
    let url = config.database.url.as_ref().ok_or(WiringError::NoDatabase)?;
    let d = &config.database;
    match Store::connect_with_statement_timeout(url.expose_secret(), &d.schema, d.max_connections, Some(d.statement_timeout)).await {
        Err(crate::store::StoreError::ServerTooOld { version }) => Err(WiringError::ServerTooOld { version }),
        connected => Ok(connected?),
    }
}

/// The configured mirror, for the operator's commands: never created by them, so a mistyped
/// `database.schema` is reported instead of becoming a new, empty mirror (migrations are
/// the caller's choice: a read-only role can still run `status`).
pub async fn existing_mirror(config: &Config) -> Result<Store, WiringError> {
    let store = store(config).await?;
    if !store.holds_mirror().await? {
        return Err(WiringError::NoMirror { schema: store.schema().to_owned() });
    }
    Ok(store)
}

/// Brings an existing mirror up to this binary's migrations, for the operator's commands
/// (`queue`, `events consumers`, `delivery`); nothing when it is current, so a role that may
/// only use the mirror (`database.writers`, say) can run them.
pub async fn catch_up(store: &Store) -> Result<(), WiringError> {
    if !store.migrations_current().await? {
        store.migrate().await?;
    }
    Ok(())
}

/// The API client for the configured account.
pub fn api_client(config: &Config) -> Result<ApiClient, WiringError> {
    let p = &config.partnerstack;
    let private_key = p.private_key.clone().filter(|_| !p.public_key.is_empty()).ok_or(WiringError::NoCredentials)?;
    Ok(ApiClient::new(client_config(config, private_key))?)
}

fn client_config(config: &Config, private_key: SecretString) -> ClientConfig {
    let p = &config.partnerstack;
    ClientConfig {
        base_url: p.api_url.clone(),
        public_key: p.public_key.clone(),
        private_key,
        rate_limit: p.rate_limit,
        timeout: p.timeout,
        max_retries: p.max_retries,
        backoff: API_BACKOFF,
        page_size: p.page_size,
        user_agent: concat!("partnerstack-mirror/", env!("CARGO_PKG_VERSION")).to_owned(),
    }
}

/// How long a start keeps trying migrations that wait for locks other sessions hold (a long
/// BI transaction); each try gives up after `store::DDL_LOCK_TIMEOUT`, so the other readers of
/// those tables never queue behind the mirror for longer than that.
const MIGRATION_PATIENCE: Duration = Duration::from_secs(600);
/// The pause between two tries: from 5 s, doubling, up to a minute.
const MIGRATION_RETRY: Backoff = Backoff::new(Duration::from_secs(5), Duration::from_secs(60));

/// Migrates the mirror and grants the configured roles their privileges: what `migrate` does
/// and every start. A migration that cannot take its lock is tried again, with a backoff,
/// for up to [`MIGRATION_PATIENCE`], saying each time which sessions hold the tables.
pub async fn migrate(store: &Store, config: &Config) -> Result<(), WiringError> {
    store.check_roles(&config.database.roles).await?;
    let started = tokio::time::Instant::now();
    for attempt in 0.. {
        match store.migrate().await {
            Err(crate::store::StoreError::LockBusy { step }) if started.elapsed() < MIGRATION_PATIENCE => {
                let pause = MIGRATION_RETRY.delay(attempt);
                let holders = store.sessions_holding_locks().await.unwrap_or_default();
                let line =
                    format!("waiting for locks other sessions hold on the mirror's tables ({step}); trying again in {} s", pause.as_secs());
                tracing::warn!(holders = ?holders, "{line}");
                crate::systemd::waiting(&line, pause + Duration::from_secs(30));
                tokio::time::sleep(pause).await;
            }
            migrated => {
                migrated?;
                break;
            }
        }
    }
    store.grant(&config.database.roles).await?;
    Ok(())
}

/// Store (migrated) + client + syncer. The client starts from the request rate an earlier
/// run found for this key, if any.
pub async fn syncer(config: &Config, shutdown: CancellationToken) -> Result<Syncer, WiringError> {
    let api = api_client(config)?;
    let store = store(config).await?;
    migrate(&store, config).await?;
    let p = &config.partnerstack;
    if let Some(learned) = store.learned_rate(p.api_url.as_str(), &p.public_key).await?.filter(|_| api.learned_rate().is_some()) {
        api.start_from(learned);
        tracing::info!(
            learned = learned.requests_per_second,
            found_at_429 = learned.found_at_429,
            starting_at = api.learned_rate(),
            "starting from the request rate learned before ({})",
            if learned.found_at_429 { "found at a 429: additive increase" } else { "a floor: probing on upward" }
        );
    }
    Ok(Syncer::new(api, store, SyncSettings::from(&config.sync), shutdown))
}

/// The longest one bounded step of a loop may take: an API request, or a database call
/// (waiting for a pooled connection, then the statement, each within the statement timeout).
fn step_budget(config: &Config) -> Duration {
    config.partnerstack.timeout + 2 * config.database.statement_timeout + STEP_SLACK
}

/// Every configured push, its query described and checked against what a write-back can
/// set: a column that is not a writable field stops the start, naming the push and the column.
async fn pushers(config: &Config, syncer: &Syncer) -> Result<(Vec<crate::push::Pusher>, crate::push::PushCounters), WiringError> {
    let counters = crate::push::PushCounters::new(config.pushes.iter().map(|p| p.name.as_str()));
    let mut pushers = Vec::with_capacity(config.pushes.len());
    for push in &config.pushes {
        let pusher = crate::push::Pusher::prepare(syncer.store(), push, syncer.holder(), counters.clone()).await?;
        pushers.push(pusher.leased_for(config.sync.lease_ttl));
    }
    Ok((pushers, counters))
}

// ---- the daemon -------------------------------------------------------------------------

/// The daemon, built and migrated, not yet running.
pub struct Daemon {
    config: Config,
    syncer: Syncer,
    liveness: Arc<Liveness>,
    queue_counters: WorkerCounters,
    intake_counters: IntakeCounters,
    deliveries: Vec<Delivery>,
    pushers: Vec<crate::push::Pusher>,
    push_counters: crate::push::PushCounters,
    /// The one registry, holding clones of every part's counters.
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
}

impl Daemon {
    /// Connects, migrates and builds every part.
    pub async fn build(config: Config, shutdown: CancellationToken) -> Result<Daemon, WiringError> {
        let syncer = syncer(&config, shutdown.clone()).await?;
        let liveness = Liveness::new(step_budget(&config));
        let delivery_counters = DeliveryCounters::new(config.deliveries.iter().map(|d| d.name.as_str()));
        let mut deliveries = Vec::with_capacity(config.deliveries.len());
        for d in &config.deliveries {
            let settings = DeliverySettings::from_config(d, config.sync.lease_ttl)
                .map_err(|source| WiringError::DeliverySecret { name: d.name.clone(), source })?;
            deliveries.push(Delivery::new(settings, syncer.store().clone(), syncer.holder(), delivery_counters.clone())?);
        }
        let (pushers, push_counters) = pushers(&config, &syncer).await?;
        let (queue_counters, intake_counters) = (WorkerCounters::default(), IntakeCounters::default());
        let metrics = Arc::new(Metrics::new(Sources {
            written: &syncer.progress().written,
            api: syncer.api(),
            queue: &queue_counters,
            intake: &intake_counters,
            deliveries: &delivery_counters,
            pushes: &push_counters,
        }));
        Ok(Daemon { config, syncer, liveness, queue_counters, intake_counters, deliveries, pushers, push_counters, metrics, shutdown })
    }

    /// What the daemon has done so far (the demo's live line).
    pub fn progress(&self) -> Arc<Progress> {
        self.syncer.progress()
    }

    pub fn store(&self) -> &Store {
        self.syncer.store()
    }

    pub fn api(&self) -> &ApiClient {
        self.syncer.api()
    }

    /// What this daemon's pushes have done (the demo's live line).
    pub fn push_counters(&self) -> crate::push::PushCounters {
        self.push_counters.clone()
    }

    /// What the webhook endpoint and the inbox have done (the demo's live line).
    pub fn webhook_counters(&self) -> IntakeCounters {
        self.intake_counters.clone()
    }

    /// Runs every loop until the shutdown token is cancelled or a loop dies; serves the HTTP
    /// endpoint on `listener`.
    pub async fn run(self, listener: TcpListener) -> ExitCode {
        let Daemon { config, syncer, liveness, queue_counters, intake_counters, deliveries, pushers, push_counters: _, metrics, shutdown } =
            self;
        let holder = syncer.holder().to_owned();
        let api = syncer.api().clone();
        let store = syncer.store().clone();
        let progress = syncer.progress();
        let http_address = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
        let mut supervisor = Supervisor::new(liveness.clone());
        // Migrations ran and the listener is bound: ready, before any loop reports a status.
        let objects = config.sync.objects.len();
        crate::systemd::ready(&format!("migrations applied; syncing {objects} objects as {holder}"));

        let intake = crate::intake::Intake {
            store: store.clone(),
            reads: Arc::default(),
            objects: config.sync.objects.clone(),
            counters: intake_counters.clone(),
            wake: Arc::default(),
        };
        let endpoint = crate::http::Endpoint {
            store: store.clone(),
            api: api.clone(),
            metrics,
            freshness: config.sync.freshness,
            objects: config.sync.objects.clone(),
            intake: config.webhooks.token.clone().map(|token| crate::http::WebhookIntake {
                token,
                counters: intake_counters.clone(),
                wake: intake.wake.clone(),
            }),
        };
        supervisor.spawn(
            "HTTP endpoint",
            Watch::DeathOnly,
            crate::http::serve(listener, endpoint, shutdown.clone()).map(|r| Ok(r?)).boxed(),
        );
        let pool = WorkerPool {
            api: api.clone(),
            store: store.clone(),
            settings: QueueSettings::from_config(&config.queue),
            holder: holder.clone(),
            counters: queue_counters,
        };
        // One LISTEN connection wakes the write-back workers and the deliveries. It waits for
        // notifications for as long as there are none, on purpose; those it wakes are watched.
        let wakeups = crate::store::Wakeups::default();
        supervisor.spawn("wake-ups", Watch::DeathOnly, {
            let (store, wakeups, shutdown) = (store.clone(), wakeups.clone(), shutdown.clone());
            async move {
                store.fan_out_wakeups(wakeups, shutdown).await;
                Ok(())
            }
            .boxed()
        });
        for (name, work) in pool.loops(wakeups.queue.clone(), &shutdown) {
            supervisor.spawn(&name, Watch::Liveness, work.map(Ok).boxed());
        }
        for delivery in deliveries {
            let name = format!("delivery {}", delivery.name());
            let woken = delivery.woken_by(wakeups.events.subscribe());
            supervisor.spawn(&name, Watch::Liveness, woken.run(shutdown.clone()).map(Ok).boxed());
        }
        for pusher in pushers {
            let name = format!("push {}", pusher.config().name);
            supervisor.spawn(&name, Watch::Liveness, crate::push::run_on_schedule(pusher, shutdown.clone()).boxed());
        }
        let describe = {
            let (api, progress) = (api.clone(), progress.clone());
            move || describe(&api, &progress)
        };
        supervisor.spawn(
            "systemd watchdog",
            Watch::DeathOnly,
            crate::systemd::watchdog(liveness.clone(), describe.clone(), shutdown.clone()).map(Ok).boxed(),
        );
        supervisor.spawn(
            "webhook reads",
            Watch::Liveness,
            crate::scheduler::read_on_request(syncer.clone(), intake.reads.clone(), shutdown.clone()).boxed(),
        );
        supervisor.spawn("webhook inbox", Watch::Liveness, intake.run(shutdown.clone()).boxed());
        supervisor.spawn(
            "retention",
            Watch::Liveness,
            crate::retention::run(store.clone(), crate::retention::RetentionSettings::from(&config), shutdown.clone()).boxed(),
        );
        supervisor.spawn(
            "request budget",
            Watch::Liveness,
            crate::request_books::keep(config.partnerstack.clone(), api.clone(), store.clone(), shutdown.clone()).boxed(),
        );
        supervisor.spawn("daemon report", Watch::Liveness, report(store.clone(), holder.clone(), describe, shutdown.clone()).boxed());
        let mut scheduler = crate::scheduler::Scheduler::new(syncer, config.sync.clone());
        if config.webhooks.token.is_some() {
            scheduler = scheduler.with_webhooks(crate::scheduler::WebhookHealth { quiet_after: config.webhooks.quiet_after });
        }
        match scheduler.loops(shutdown.clone()).await {
            Ok(loops) => {
                for l in loops {
                    supervisor.spawn(l.name, if l.watched { Watch::Liveness } else { Watch::DeathOnly }, l.work);
                }
            }
            Err(error) => {
                // The cron clock cannot start: a daemon without its passes is no daemon.
                let error = anyhow::Error::from(error);
                supervisor.spawn("scheduler", Watch::DeathOnly, async move { Err(error.context("cannot start the scheduler")) }.boxed());
            }
        }
        tracing::info!(objects, holder = %holder, http = %http_address, "daemon started");

        let died = supervisor.until_shutdown_or_death(&shutdown).await;
        crate::systemd::stopping();
        shutdown.cancel();
        supervisor.stop(SHUTDOWN_DEADLINE).await;
        if let Err(error) = store.forget_daemon(&holder).await {
            tracing::warn!(error = %crate::telemetry::error_chain(&error), "cannot remove this daemon's line from `daemons`");
        }
        match died {
            Some(name) => {
                tracing::error!(task = %name, "daemon stopped because a task died; exit 1 (systemd restarts it)");
                ExitCode::from(1)
            }
            None => {
                tracing::info!("daemon stopped");
                ExitCode::SUCCESS
            }
        }
    }
}

/// What the daemon does or waits for, in one line: systemd's `STATUS=` and `status`.
fn describe(api: &ApiClient, progress: &Progress) -> String {
    if let Some(r) = api.credentials_rejected() {
        return format!(
            "paused: PartnerStack rejected the credentials ({}) since {} UTC: {}; resuming when it accepts them",
            r.status,
            r.since.format("%Y-%m-%d %H:%M:%S"),
            r.message
        );
    }
    if let Some(until) = api.rate_limited_until() {
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        return format!("PartnerStack rate limit: resuming in {} s", left.as_secs().max(1));
    }
    progress.summary().unwrap_or_else(|| "running the first pass".to_owned())
}

/// Keeps this daemon's line in `daemons` current, for `status` in another process: at once
/// when what it does changes (a pause for rejected credentials shows within a second),
/// otherwise every [`REPORT_EVERY`].
async fn report(store: Store, holder: String, describe: impl Fn() -> String, shutdown: CancellationToken) -> anyhow::Result<()> {
    const LOOK_EVERY: Duration = Duration::from_secs(1);
    let mut reported: Option<(String, tokio::time::Instant)> = None;
    while !shutdown.is_cancelled() {
        let line = describe();
        let due = reported.as_ref().is_none_or(|(last, at)| *last != line || at.elapsed() >= REPORT_EVERY);
        if due {
            crate::liveness::step();
            let problem = line.starts_with("paused:").then_some(line.as_str());
            match store.report_daemon(&holder, env!("CARGO_PKG_VERSION"), &line, problem).await {
                Ok(()) => reported = Some((line, tokio::time::Instant::now())),
                Err(error) => {
                    tracing::debug!(error = %crate::telemetry::error_chain(&error), "cannot update this daemon's line in `daemons`")
                }
            }
        }
        crate::liveness::wait_for(LOOK_EVERY);
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = tokio::time::sleep(LOOK_EVERY) => {}
        }
    }
    Ok(())
}
