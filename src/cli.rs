//! The command line: parses arguments, loads the configuration and runs one command.
//! Exit codes: 0 ok, 1 runtime failure, 2 bad usage or configuration.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use anyhow::Context;
use clap::{Parser, Subcommand};
use partnerstack_simulator::{Simulator, SimulatorConfig};
use tokio_util::sync::CancellationToken;

use crate::{
    config::Config,
    daemon::{self, Daemon},
    demo,
    object::ObjectKind,
    scheduler,
    telemetry::{self, LogFormat},
};

#[derive(Parser, Debug)]
#[command(name = "partnerstack-mirror", version, about = "Mirror a PartnerStack account into PostgreSQL, with change events")]
pub struct Cli {
    /// Configuration file (default ./partnerstack-mirror.toml, then /etc/partnerstack-mirror/config.toml).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Log format (default: pretty on a terminal, json otherwise).
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The daemon: migrations, then passes on schedule until SIGTERM/SIGINT.
    Run,
    /// One sync pass of the named (default: all enabled) objects, then exit.
    Sync {
        /// Object to sync (repeatable), e.g. `deals` or `deal`.
        #[arg(long = "object", value_name = "NAME")]
        objects: Vec<ObjectKind>,
        /// Read everything again instead of the next incremental window.
        #[arg(long)]
        full: bool,
    },
    /// One complete key scan per object: rows that vanished are marked deleted (within the brake).
    Reconcile {
        #[arg(long = "object", value_name = "NAME")]
        objects: Vec<ObjectKind>,
    },
    /// Apply migrations and exit.
    Migrate,
    /// Per object: cursor, last success, last error, row counts; events count.
    Status,
    /// Write-back requests (the SQL table `write_queue` is the primary interface).
    Queue {
        #[command(subcommand)]
        command: QueueCommand,
    },
    /// Print events as JSON lines.
    Events {
        #[command(subcommand)]
        command: EventsCommand,
    },
    /// PartnerStack's webhook subscriptions (`/v2/webhooks`): where PartnerStack sends webhooks.
    Webhooks {
        #[command(subcommand)]
        command: WebhooksCommand,
    },
    /// Webhook deliveries (`[[delivery]]` in the configuration): list, retry dead letters, enable.
    Delivery {
        #[command(subcommand)]
        command: DeliveryCommand,
    },
    /// Read-only probes of the configured API: credentials, clock, and each SPEC 9 question.
    Doctor,
    /// A local PartnerStack API simulator.
    Simulate {
        #[arg(long, default_value = "127.0.0.1:8787")]
        listen: SocketAddr,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, default_value_t = 2_000)]
        records: usize,
        #[arg(long, default_value_t = 0.0)]
        mutations_per_sec: f64,
        /// Answer 429 (with `Retry-After: 1`) above this many requests a second (a token
        /// bucket holding a second's worth); none by default.
        #[arg(long)]
        rate_limit: Option<f64>,
        /// Serve this many records of each object broken (NUL characters, wrong types, no
        /// key, bad timestamps, huge strings in turn), to watch quarantine work.
        #[arg(long, default_value_t = 0)]
        poison: usize,
    },
    /// Simulator + private Postgres + daemon, with live progress.
    Demo {
        #[arg(long, default_value_t = 20_000)]
        records: usize,
        #[arg(long, default_value_t = 5.0)]
        mutations_per_sec: f64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The schema the demo mirrors into.
        #[arg(long, default_value = "partnerstack")]
        schema: String,
    },
}

#[derive(Subcommand, Debug)]
enum QueueCommand {
    /// Queue a request, e.g. `queue add update deal deal_abc --payload '{"amount": 1}'`.
    Add {
        operation: String,
        object_type: String,
        /// The record's key in the mirror (omit for `create`).
        object_key: Option<String>,
        /// The API request body, as JSON.
        #[arg(long, default_value = "{}")]
        payload: String,
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// The newest requests.
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
    /// Run a failed or cancelled request again.
    Retry { id: i64 },
    /// Cancel a request that has not started.
    Cancel { id: i64 },
}

#[derive(Subcommand, Debug)]
enum WebhooksCommand {
    /// Subscribe a URL (the daemon's `https://…/webhooks/partnerstack/<token>` behind a TLS proxy).
    Register {
        #[arg(long)]
        url: String,
        /// An event name to subscribe to (repeatable), e.g. `deal.updated`,
        /// `training.course_completed`.
        #[arg(long = "event", value_name = "NAME", required = true)]
        events: Vec<String>,
    },
    /// The live subscriptions.
    List,
    /// Archive a subscription by its key.
    Remove { key: String },
}

#[derive(Subcommand, Debug)]
enum DeliveryCommand {
    /// Each delivery: state, position, lag, dead letters, last error.
    List,
    /// Send a delivery's dead letters (or one of them) again.
    Retry {
        name: String,
        /// Only this event's dead letter.
        #[arg(long = "event", value_name = "ID")]
        event: Option<i64>,
    },
    /// Turn a delivery disabled by a 410 Gone (or holding) back on.
    Enable { name: String },
}

#[derive(Subcommand, Debug)]
enum EventsCommand {
    /// Events after an id, in commit order; with --follow, keep printing new ones.
    Tail {
        /// Start after this event id.
        #[arg(long, default_value_t = 0)]
        after: i64,
        /// Wait for new events (woken by LISTEN partnerstack_events).
        #[arg(long)]
        follow: bool,
        /// Only these event types; `*` matches anything, e.g. 'deal.*'.
        #[arg(long = "type", value_name = "PATTERN")]
        type_pattern: Option<String>,
        /// Resume from this named consumer's position and commit it after each line
        /// (`commit_events` in SQL); created on first use.
        #[arg(long, value_name = "NAME", conflicts_with = "after")]
        consumer: Option<String>,
    },
    /// Each named consumer: its position, lag in events, and the age of its oldest unread event.
    Consumers,
}

/// Runs the parsed command line.
pub async fn main(cli: Cli) -> ExitCode {
    // The demo's live progress line is its output; logs would scroll it away.
    telemetry::init(cli.log_format, if matches!(cli.command, Command::Demo { .. }) { "warn" } else { "info" });
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));

    let needs_config = !matches!(cli.command, Command::Simulate { .. } | Command::Demo { .. });
    let config = if needs_config {
        match Config::load(cli.config.as_deref()) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("error: {}", telemetry::error_chain(&e));
                return ExitCode::from(2);
            }
        }
    } else {
        None
    };

    let result = match cli.command {
        Command::Run => run(config.expect("loaded"), shutdown).await,
        Command::Sync { objects, full } => sync(config.expect("loaded"), objects, full, shutdown).await,
        Command::Reconcile { objects } => reconcile(config.expect("loaded"), objects, shutdown).await,
        Command::Migrate => migrate(config.expect("loaded")).await,
        Command::Status => status(config.expect("loaded")).await,
        Command::Doctor => doctor(config.expect("loaded")).await,
        Command::Webhooks { command } => webhooks(config.expect("loaded"), command).await,
        Command::Delivery { command } => delivery(config.expect("loaded"), command).await,
        Command::Queue { command } => queue(config.expect("loaded"), command).await,
        Command::Events { command: EventsCommand::Tail { after, follow, type_pattern, consumer } } => {
            tail(config.expect("loaded"), crate::store::TailOptions { after, follow, type_pattern, consumer }, shutdown).await
        }
        Command::Events { command: EventsCommand::Consumers } => consumers(config.expect("loaded")).await,
        Command::Simulate { listen, seed, records, mutations_per_sec, rate_limit, poison } => {
            let config = SimulatorConfig { seed, records, mutations_per_sec, rate_limit_per_sec: rate_limit, ..SimulatorConfig::default() };
            simulate(listen, config, poison, shutdown).await
        }
        Command::Demo { records, mutations_per_sec, seed, schema } => {
            demo::run(demo::DemoOptions { records, mutations_per_sec, seed, schema }, shutdown).await
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.chain().any(|c| c.downcast_ref::<daemon::WiringError>().is_some_and(daemon::WiringError::is_configuration)) {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<ExitCode> {
    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("cannot listen on http.listen {}", config.http.listen))?;
    let daemon = Daemon::build(config, shutdown).await?;
    Ok(daemon.run(listener).await)
}

async fn sync(config: Config, objects: Vec<ObjectKind>, full: bool, shutdown: CancellationToken) -> anyhow::Result<ExitCode> {
    let syncer = daemon::syncer(&config, shutdown).await?;
    let objects = if objects.is_empty() { config.sync.objects.clone() } else { objects };
    let bar = progress_bar(&syncer);
    let summary = scheduler::poll_all(&syncer, &objects, full).await;
    bar.finish();
    daemon::remember_rate(&config.partnerstack, syncer.api(), syncer.store()).await;
    print_summary(&summary)
}

/// A live line on a terminal while a long pass (a backfill) runs: pages, records, the rate
/// of the last few seconds ([`crate::live_rate`]).
/// Nothing when stderr is not a terminal.
struct ProgressLine {
    bar: Option<indicatif::ProgressBar>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl ProgressLine {
    fn finish(self) {
        if let Some(task) = self.task {
            task.abort();
        }
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

fn progress_bar(syncer: &crate::sync::Syncer) -> ProgressLine {
    use std::{io::IsTerminal, sync::atomic::Ordering};
    if !std::io::stderr().is_terminal() {
        return ProgressLine { bar: None, task: None };
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    let progress = syncer.progress();
    let ticker = bar.clone();
    let started = std::time::Instant::now();
    let task = tokio::spawn(async move {
        let mut rate = crate::live_rate::LiveRate::default();
        loop {
            let records = progress.records.load(Ordering::Relaxed);
            let eta = progress.eta(started.elapsed()).map(|d| format!(" | ETA {}s", d.as_secs())).unwrap_or_default();
            ticker.set_message(format!(
                "pages {} | records {} ({:.0}/s over the last {}s) | rows written {} | events {}{eta}",
                progress.pages.load(Ordering::Relaxed),
                records,
                rate.sample(tokio::time::Instant::now(), records),
                crate::live_rate::WINDOW.as_secs(),
                progress.rows_written.load(Ordering::Relaxed),
                progress.events_written.load(Ordering::Relaxed),
            ));
            ticker.tick();
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    });
    ProgressLine { bar: Some(bar), task: Some(task) }
}

async fn reconcile(config: Config, objects: Vec<ObjectKind>, shutdown: CancellationToken) -> anyhow::Result<ExitCode> {
    let syncer = daemon::syncer(&config, shutdown).await?;
    let objects = if objects.is_empty() { config.sync.objects.clone() } else { objects };
    let bar = progress_bar(&syncer);
    let summary = scheduler::reconcile_all(&syncer, &objects).await;
    bar.finish();
    print_summary(&summary)
}

fn print_summary(summary: &scheduler::PassSummary) -> anyhow::Result<ExitCode> {
    for r in &summary.reports {
        if r.held_elsewhere {
            println!("{:<22} skipped: another instance holds its lease (it is syncing it now, or died and its lease lapses within sync.lease_ttl)", r.kind.table());
            continue;
        }
        println!(
            "{:<22} {:<9} pages {:>6}  records {:>8}  rows written {:>8}  events {:>8}",
            r.kind.table(),
            r.run.as_str(),
            r.totals.pages,
            r.totals.records_read,
            r.totals.rows_written,
            r.totals.events_written
        );
    }
    for (kind, e) in &summary.failures {
        eprintln!("error: {kind}: {}", e.chain());
    }
    Ok(if summary.failures.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

async fn migrate(config: Config) -> anyhow::Result<ExitCode> {
    let store = daemon::store(&config).await?;
    store.migrate().await?;
    println!("migrations applied to schema {}", store.schema());
    Ok(ExitCode::SUCCESS)
}

async fn status(config: Config) -> anyhow::Result<ExitCode> {
    let store = daemon::store(&config).await?;
    print!("{}", store.status().await.context("cannot read the mirror's state (run `partnerstack-mirror migrate` first?)")?);
    Ok(ExitCode::SUCCESS)
}

async fn queue(config: Config, command: QueueCommand) -> anyhow::Result<ExitCode> {
    let store = daemon::store(&config).await?;
    store.migrate().await?;
    match command {
        QueueCommand::Add { operation, object_type, object_key, payload, idempotency_key } => {
            let payload: serde_json::Value = serde_json::from_str(&payload).context("--payload is not valid JSON")?;
            let id = store
                .enqueue(&operation, &object_type, object_key.as_deref(), &payload, idempotency_key.as_deref())
                .await
                .map_err(|e| anyhow::anyhow!(crate::telemetry::error_chain(&e)))?;
            println!("queued request {id}");
        }
        QueueCommand::List { status, limit } => {
            println!(
                "{:>8}  {:<17} {:<12} {:<24} {:<10} {:>3}  {:<19}  last error",
                "id", "operation", "object", "key", "status", "try", "run after (UTC)"
            );
            for r in store.list_queue(status.as_deref(), limit).await? {
                println!(
                    "{:>8}  {:<17} {:<12} {:<24} {:<10} {:>3}  {:<19}  {}",
                    r.id,
                    r.operation,
                    r.object_type,
                    r.object_key.as_deref().unwrap_or("-"),
                    r.status,
                    r.attempts,
                    r.run_after.format("%Y-%m-%d %H:%M:%S"),
                    r.last_error
                        .as_deref()
                        .map(|e| format!("{}{}", r.http_status.map(|s| format!("[{s}] ")).unwrap_or_default(), e))
                        .unwrap_or_else(|| "-".into())
                );
            }
        }
        QueueCommand::Retry { id } => {
            anyhow::ensure!(store.requeue(id).await?, "request {id} is not failed or cancelled");
            println!("request {id} queued again");
        }
        QueueCommand::Cancel { id } => {
            anyhow::ensure!(store.cancel(id).await?, "request {id} is not pending (only pending requests can be cancelled)");
            println!("request {id} cancelled");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn tail(config: Config, options: crate::store::TailOptions, shutdown: CancellationToken) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    let store = daemon::store(&config).await?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    // A consumer's position is committed after each line: the line must have left the buffer.
    let flush_each = options.follow || options.consumer.is_some();
    store
        .tail(&options, &shutdown, |line| {
            // `| head` closing the pipe ends the command quietly.
            writeln!(out, "{line}").is_ok() && (!flush_each || out.flush().is_ok())
        })
        .await?;
    let _ = out.flush();
    Ok(ExitCode::SUCCESS)
}

async fn consumers(config: Config) -> anyhow::Result<ExitCode> {
    let store = daemon::store(&config).await?;
    store.migrate().await?;
    println!("{:<24} {:>12} {:>10}  {:<19}  oldest unread", "consumer", "position", "lag", "last commit (UTC)");
    for c in store.consumers().await? {
        println!(
            "{:<24} {:>12} {:>10}  {:<19}  {}",
            c.name,
            c.position,
            c.lag,
            c.updated_at.format("%Y-%m-%d %H:%M:%S"),
            c.oldest_unread_age_seconds.map_or("caught up".into(), |s| format!("{s:.0}s old"))
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn webhooks(config: Config, command: WebhooksCommand) -> anyhow::Result<ExitCode> {
    use crate::subscriptions;
    let api = daemon::api_client(&config)?;
    match command {
        WebhooksCommand::Register { url, events } => {
            let s = subscriptions::register(&api, &url, &events).await.context("PartnerStack did not register the subscription")?;
            println!("registered {} → {} for {}", s.key, s.target.as_deref().unwrap_or(&url), s.events.join(", "));
        }
        WebhooksCommand::List => {
            for s in subscriptions::list(&api).await.context("cannot list the subscriptions")? {
                println!("{:<24} {:<60} {}", s.key, s.target.as_deref().unwrap_or("-"), s.events.join(", "));
            }
        }
        WebhooksCommand::Remove { key } => {
            subscriptions::remove(&api, &key).await.with_context(|| format!("cannot remove subscription {key}"))?;
            println!("removed {key}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn delivery(config: Config, command: DeliveryCommand) -> anyhow::Result<ExitCode> {
    let store = daemon::store(&config).await?;
    store.migrate().await?;
    let configured = |name: &str| config.deliveries.iter().any(|d| d.name == name);
    match command {
        DeliveryCommand::List => {
            let lines = store.deliveries().await?;
            for d in &lines {
                let note = if configured(&d.name) { "" } else { " (not in this configuration)" };
                println!("{d}{note}");
            }
            for d in config.deliveries.iter().filter(|d| !lines.iter().any(|l| l.name == d.name)) {
                println!("delivery {}: configured, not started yet (the daemon creates it)", d.name);
            }
        }
        DeliveryCommand::Retry { name, event } => {
            let n = store.requeue_dead_letters(&name, event).await?;
            match event {
                Some(id) => anyhow::ensure!(n == 1, "delivery {name} has no dead letter for event {id} waiting to be retried"),
                None => println!("{n} dead letter(s) of delivery {name} queued again; the delivering daemon sends them"),
            }
            if event.is_some() {
                println!("dead letter queued again; the delivering daemon sends it");
            }
        }
        DeliveryCommand::Enable { name } => {
            anyhow::ensure!(store.enable_delivery(&name).await?, "there is no delivery {name}");
            println!("delivery {name} enabled; a daemon resumes it from its position within seconds");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn doctor(config: Config) -> anyhow::Result<ExitCode> {
    let api = daemon::api_client(&config)?;
    let report = crate::doctor::examine(&api, &config.partnerstack).await;
    print!("{report}");
    Ok(if report.healthy() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

async fn simulate(listen: SocketAddr, config: SimulatorConfig, poison: usize, shutdown: CancellationToken) -> anyhow::Result<ExitCode> {
    use partnerstack_simulator::Poison;
    let (public_key, private_key) = (config.public_key.clone(), config.private_key.clone());
    let simulator = Simulator::new(config);
    let kinds = [Poison::NulCharacter, Poison::WrongType, Poison::MissingKey, Poison::BadTimestamp, Poison::Huge];
    for kind in ObjectKind::ALL {
        for (i, key) in simulator.keys(kind).into_iter().take(poison).enumerate() {
            simulator.poison(kind, &key, kinds[i % kinds.len()]);
        }
    }
    let running = simulator.start(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    println!("PartnerStack simulator at {}", running.base_url);
    println!("  public key {public_key}  private key {private_key}");
    println!("  curl -u {public_key}:{private_key} '{}/deals?limit=2'", running.base_url);
    shutdown.cancelled().await;
    running.stop().await;
    Ok(ExitCode::SUCCESS)
}

/// Cancels `token` on SIGINT or SIGTERM: every task finishes or rolls back its page and exits.
pub async fn cancel_on_signal(token: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown requested");
    token.cancel();
}
