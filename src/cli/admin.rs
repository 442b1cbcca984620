//! The operator's commands that run once and print: `migrate`, `status`, `queue`, `events`,
//! `webhooks`, `delivery`, `doctor`, and `simulate`, which serves until stopped.

use std::process::ExitCode;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use super::{DeliveryCommand, QueueCommand, WebhooksCommand};
use crate::{config::Config, daemon};

pub(super) async fn migrate(config: Config) -> anyhow::Result<ExitCode> {
    let store = daemon::store(&config).await?;
    daemon::migrate(&store, &config).await?;
    println!("migrations applied to schema {}", store.schema());
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn status(config: Config) -> anyhow::Result<ExitCode> {
    let store = daemon::existing_mirror(&config).await?;
    print!("{}", store.status().await.context("cannot read the mirror's state")?);
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn queue(config: Config, command: QueueCommand) -> anyhow::Result<ExitCode> {
    let store = daemon::existing_mirror(&config).await?;
    daemon::catch_up(&store).await?;
    match command {
        QueueCommand::Add { operation, object_type, object_key, payload, idempotency_key } => {
            let key = idempotency_key.as_deref();
            let id = match store.enqueue(&operation, &object_type, object_key.as_deref(), &payload, key).await {
                Ok(id) => id,
                Err(e) => return Err(not_queued(&store, key, e).await),
            };
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
            if !store.requeue(id).await? {
                anyhow::bail!(refused(&store, id, "only failed or cancelled requests run again").await?);
            }
            println!("request {id} queued again");
        }
        QueueCommand::Cancel { id } => {
            if !store.cancel(id).await? {
                anyhow::bail!(refused(&store, id, "only pending requests can be cancelled").await?);
            }
            println!("request {id} cancelled");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Why `queue add` queued nothing. The idempotency key's point is that a request is not
/// queued twice: when it is taken, say which request holds it.
async fn not_queued(store: &crate::store::Store, key: Option<&str>, e: crate::store::StoreError) -> anyhow::Error {
    if let Some(key) = key.filter(|_| e.is_unique_violation()) {
        if let Ok(Some((id, status))) = store.request_by_idempotency_key(key).await {
            return anyhow::anyhow!("idempotency key {key} is taken: request {id} ({status}) was queued with it");
        }
    }
    anyhow::anyhow!(crate::telemetry::error_chain(&e))
}

/// Why `queue retry` or `queue cancel` left request `id` alone.
async fn refused(store: &crate::store::Store, id: i64, rule: &str) -> anyhow::Result<String> {
    Ok(match store.request_status(id).await? {
        None => format!("there is no request {id}"),
        Some(status) => format!("request {id} is {status}: {rule}"),
    })
}

pub(super) async fn tail(config: Config, options: crate::store::TailOptions, shutdown: CancellationToken) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    let store = daemon::existing_mirror(&config).await?;
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

pub(super) async fn consumers(config: Config) -> anyhow::Result<ExitCode> {
    let store = daemon::existing_mirror(&config).await?;
    daemon::catch_up(&store).await?;
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

pub(super) async fn webhooks(config: Config, command: WebhooksCommand) -> anyhow::Result<ExitCode> {
    let api = daemon::api_client(&config)?;
    match command {
        WebhooksCommand::Register { url, events } => {
            let events = if events.is_empty() { crate::subscriptions::MIRRORED_EVENTS.map(str::to_owned).to_vec() } else { events };
            let s = api.subscribe(&url, &events).await.context("PartnerStack did not register the subscription")?;
            println!("registered {} → {} for {}", s.key, s.target.as_deref().unwrap_or(&url), s.events.join(", "));
        }
        WebhooksCommand::List => {
            let live = api.subscriptions().await.context("cannot list the subscriptions")?;
            for s in &live {
                println!("{:<24} {:<60} {}", s.key, s.target.as_deref().unwrap_or("-"), s.events.join(", "));
            }
            if live.is_empty() {
                println!("no webhook subscriptions (add one with `partnerstack-mirror webhooks register --url …`)");
            }
        }
        WebhooksCommand::Remove { key } => {
            api.unsubscribe(&key).await.with_context(|| format!("cannot remove subscription {key}"))?;
            println!("removed {key}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn delivery(config: Config, command: DeliveryCommand) -> anyhow::Result<ExitCode> {
    let store = daemon::existing_mirror(&config).await?;
    daemon::catch_up(&store).await?;
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
        DeliveryCommand::DeadLetters { name, limit } => {
            anyhow::ensure!(store.has_delivery(&name).await?, "there is no delivery {name}");
            let lines = store.dead_letter_lines(&name, limit.max(1)).await?;
            for line in &lines {
                println!("{line}");
            }
            if lines.is_empty() {
                println!("delivery {name} has no dead letters");
            }
        }
        DeliveryCommand::Retry { name, event } => {
            anyhow::ensure!(store.has_delivery(&name).await?, "there is no delivery {name}");
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

/// The database's findings (when `database.url` is set), then the API's (when the keys are).
pub(super) async fn doctor(config: Config) -> anyhow::Result<ExitCode> {
    let api = match daemon::api_client(&config) {
        // Without a database either there is nothing to examine: exit 2 naming the keys.
        Err(e) if config.database.url.is_none() => return Err(e.into()),
        api => api,
    };
    let mut report = crate::doctor::DoctorReport::default();
    if config.database.url.is_some() {
        report.findings.extend(crate::doctor::database::examine(&config).await);
    }
    match api {
        Ok(api) => report.findings.extend(crate::doctor::examine(&api, &config.partnerstack).await.findings),
        Err(e) => report.findings.push(crate::doctor::Finding {
            question: "PartnerStack keys configured?",
            answer: crate::doctor::Answer::Problem,
            detail: crate::telemetry::error_chain(&e),
            recommendation: "set them to examine the API as well".into(),
        }),
    }
    print!("{report}");
    Ok(if report.healthy() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
