//! The command line: parses arguments, loads the configuration and runs one command.
//! Exit codes: 0 ok, 1 runtime failure, 2 bad usage or configuration.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::{
    config::Config,
    daemon::{self, Daemon},
    object::ObjectKind,
    telemetry::{self, LogFormat},
};

mod admin;
mod passes;
mod push;
mod simulator;

#[cfg(feature = "simulator")]
use crate::demo::DemoOptions;
use admin::{consumers, delivery, doctor, migrate, queue, status, tail, webhooks};
use passes::{reconcile, sync};
#[cfg(not(feature = "simulator"))]
use simulator::DemoOptions;

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
    /// Pushes (`[[push]]` in the configuration): what a run would change, one run, the last runs.
    Push {
        #[command(subcommand)]
        command: PushCommand,
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
    /// Read-only probes of the configured API: credentials, clock, and each open question of docs/correctness.md.
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
    /// The reference pages generated from the code, as markdown (`docs/configuration.md`, `docs/schema.md`).
    Docs {
        #[command(subcommand)]
        command: DocsCommand,
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
    #[command(visible_alias = "enqueue")]
    Add {
        operation: String,
        object_type: String,
        /// The record's key in the mirror (omit for `create`).
        object_key: Option<String>,
        /// The API request body, as JSON.
        #[arg(long, default_value = "{}", value_parser = json_argument)]
        payload: serde_json::Value,
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// The newest requests.
    List {
        #[arg(long, value_parser = ["pending", "running", "succeeded", "failed", "cancelled"])]
        status: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
    /// Run a failed or cancelled request again.
    Retry { id: i64 },
    /// Cancel a request that has not started.
    Cancel { id: i64 },
}

/// A JSON argument, refused by the parser (usage error, exit 2) when it is not JSON.
fn json_argument(text: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(text).map_err(|e| format!("not valid JSON: {e}"))
}

/// A URL PartnerStack will call: https, as it carries the intake token in its path (plain
/// http only on loopback, for local tests).
fn webhook_target(text: &str) -> Result<String, String> {
    let url = url::Url::parse(text).map_err(|e| format!("not a URL: {e}"))?;
    match url.scheme() {
        "https" => Ok(text.to_owned()),
        "http" if crate::config::is_loopback(&url) => Ok(text.to_owned()),
        _ => Err("must be https (the URL carries the webhook token), or http on loopback".to_owned()),
    }
}

#[derive(Subcommand, Debug)]
enum PushCommand {
    /// What a run would change now, per record (field: mirror value → desired value), and the totals; changes nothing.
    Plan {
        name: String,
        /// Show at most this many records.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Run the push once, now.
    Run {
        name: String,
        /// Queue the changes even when there are more than `max_changes` (this run only).
        #[arg(long)]
        force: bool,
    },
    /// Each push with its last run.
    List,
}

#[derive(Subcommand, Debug)]
enum WebhooksCommand {
    /// Subscribe a URL (the daemon's `https://…/webhooks/partnerstack/<token>` behind a TLS proxy).
    Register {
        #[arg(long, value_parser = webhook_target)]
        url: String,
        /// An event name to subscribe to (repeatable), e.g. `deal.updated`,
        /// `training.course_completed`; without one, every event the mirror acts on.
        #[arg(long = "event", value_name = "NAME")]
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
    /// A delivery's dead letters: event, attempts, status and last error, oldest first.
    DeadLetters {
        name: String,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
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
enum DocsCommand {
    /// Every configuration key: type, default, environment variable, what it does.
    Config,
    /// Every table, view, column and function the mirror creates, as their comments describe them.
    Schema,
    /// Write every generated page into a directory.
    Write {
        #[arg(default_value = "docs")]
        dir: PathBuf,
    },
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

    let needs_config = !matches!(cli.command, Command::Simulate { .. } | Command::Demo { .. } | Command::Docs { .. });
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
        Command::Push { command } => push::push(config.expect("loaded"), command).await,
        Command::Events { command: EventsCommand::Tail { after, follow, type_pattern, consumer } } => {
            tail(config.expect("loaded"), crate::store::TailOptions { after, follow, type_pattern, consumer }, shutdown).await
        }
        Command::Events { command: EventsCommand::Consumers } => consumers(config.expect("loaded")).await,
        Command::Simulate { listen, seed, records, mutations_per_sec, rate_limit, poison } => {
            simulator::simulate(simulator::SimulateOptions { listen, seed, records, mutations_per_sec, rate_limit, poison }, shutdown).await
        }
        Command::Docs { command } => docs(command),
        Command::Demo { records, mutations_per_sec, seed, schema } => {
            simulator::demo(DemoOptions { records, mutations_per_sec, seed, schema }, shutdown).await
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", telemetry::error_chain(e.as_ref()));
            let for_the_operator = |c: &(dyn std::error::Error + 'static)| {
                c.downcast_ref::<daemon::WiringError>().is_some_and(daemon::WiringError::is_configuration)
                    || c.downcast_ref::<crate::store::StoreError>().is_some_and(crate::store::StoreError::needs_the_operator)
                    || c.downcast_ref::<crate::push::PushError>().is_some_and(crate::push::PushError::is_configuration)
            };
            if e.chain().any(for_the_operator) {
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

/// Prints a generated reference page, or writes them all.
fn docs(command: DocsCommand) -> anyhow::Result<ExitCode> {
    match command {
        DocsCommand::Config => print!("{}", crate::reference::configuration()),
        DocsCommand::Schema => print!("{}", crate::reference::schema()),
        DocsCommand::Write { dir } => {
            for path in crate::reference::write_all(&dir).with_context(|| format!("cannot write the pages into {}", dir.display()))? {
                println!("wrote {}", path.display());
            }
        }
    }
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
