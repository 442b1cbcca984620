//! `partnerstack-mirror demo`: the first thing a new user runs. A simulator with live
//! mutations, a private PostgreSQL server (unless `DATABASE_URL` is set), and the daemon,
//! and its write-back workers, with a live progress line. Ctrl-C stops and removes everything.
//! A webhook delivery of `deal.*` events goes to a small local receiver that checks each
//! signature, so the live line shows webhooks arriving too; a push keeps a `tier:` tag on
//! every partner from their number of customers, so the newcomer sees one converge.

mod receiver;

use std::{io::IsTerminal, process::ExitCode, sync::atomic::Ordering, time::Duration};

use anyhow::Context;
use partnerstack_simulator::{Simulator, SimulatorConfig};
use tokio_util::sync::CancellationToken;

use crate::{config::Config, daemon::Daemon, live_rate::LiveRate, private_postgres::PrivatePostgres};

/// What `demo` was asked for.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    pub records: usize,
    pub mutations_per_sec: f64,
    pub seed: u64,
    pub schema: String,
}

pub async fn run(options: DemoOptions, shutdown: CancellationToken) -> anyhow::Result<ExitCode> {
    let schema = &options.schema;
    let (database_url, private) = match std::env::var("DATABASE_URL") {
        Ok(url) => (url, None),
        Err(_) => {
            eprintln!("Starting a private PostgreSQL server…");
            let pg = PrivatePostgres::start().await.context("cannot start a private PostgreSQL server")?;
            (pg.url(), Some(pg))
        }
    };

    eprintln!("Starting the PartnerStack simulator with {} records…", options.records);
    let sim_config = SimulatorConfig {
        seed: options.seed,
        records: options.records,
        mutations_per_sec: options.mutations_per_sec,
        ..SimulatorConfig::default()
    };
    let (public_key, private_key) = (sim_config.public_key.clone(), sim_config.private_key.clone());
    let token = format!("demo-{:032x}", rand::random::<u128>());
    let simulator = Simulator::new(sim_config).start("127.0.0.1:0".parse()?).await.context("cannot start the simulator")?;

    // A webhook receiver, and a fresh signing secret it shares with the delivery.
    let secret = {
        use base64::Engine;
        format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>()))
    };
    let hooks = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("cannot open the webhook receiver")?;
    let hooks_url = format!("http://{}/webhooks", hooks.local_addr()?);
    let signer = crate::delivery::Signer::new(&secret.clone().into())?;
    let received = receiver::start(hooks, signer, shutdown.clone());

    let settings = DemoSettings {
        database_url: &database_url,
        schema,
        api_url: &simulator.base_url,
        public_key: &public_key,
        private_key: &private_key,
        token: &token,
        hooks_url: &hooks_url,
        secret: &secret,
    };
    let config = Config::from_toml(&settings.toml()?)?;
    let daemon = Daemon::build(config, shutdown.clone()).await?;
    // The daemon's endpoint, on a free port so a second demo does not collide.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("cannot open the HTTP endpoint")?;
    let endpoint = listener.local_addr()?;
    // PartnerStack (the simulator) sends every change to the daemon as a webhook, as a
    // subscription made with `partnerstack-mirror webhooks register` would.
    let intake_url = format!("http://{endpoint}/webhooks/partnerstack/{token}");
    daemon.api().subscribe(&intake_url, &["*".to_owned()]).await.context("cannot subscribe the daemon to the simulator's webhooks")?;
    let webhooks = daemon.webhook_counters();

    let psql = psql_command(&database_url, schema);
    eprintln!(
        "\nThe mirror is filling schema `{schema}`. In another terminal:\n\n  {psql}\n\n\
         Try (\\d+ deals shows what each column holds):\n  SELECT * FROM deal_pipeline ORDER BY amount DESC;\n  \
         SELECT id, event_type, object_key, changes FROM events WHERE source <> 'backfill' ORDER BY id DESC LIMIT 10;\n  \
         SELECT partner_email, count(*) AS customers FROM partner_customers GROUP BY 1 ORDER BY 2 DESC LIMIT 5;\n  \
         SELECT key, valid_from, valid_to, stage FROM deals_history WHERE valid_to IS NOT NULL ORDER BY valid_to DESC LIMIT 5;\n\n\
         Change PartnerStack from SQL (the write-back queue):\n  \
         INSERT INTO write_queue (operation, object_type, object_key, payload)\n    \
         SELECT 'update', 'deal', key, '{{\"stage\": \"Closed Won\"}}' FROM deals WHERE NOT archived LIMIT 1;\n  \
         SELECT id, status, attempts, result->>'stage' AS stage FROM write_queue ORDER BY id DESC LIMIT 5;\n  \
         SELECT id, event_type, object_key, changes FROM events WHERE source = 'write_back' ORDER BY id DESC LIMIT 5;\n\n\
         Webhooks: every deal.* event is POSTed, signed (Standard Webhooks), to a local receiver at {hooks_url}\n  \
         that checks each signature; see `SELECT * FROM deliveries;` and the live line below.\n\n\
         Changes arrive by webhook from PartnerStack too (the simulator sends one per change; `webhooks in` below):\n  \
         SELECT id, event_type, object_key, detected_at - occurred_at AS delay FROM events WHERE source = 'webhook' ORDER BY id DESC LIMIT 5;\n\n\
         A push keeps a `tier:` tag on every partner from their number of customers (docs/push.md); watch it converge:\n  \
         SELECT push, outcome, rows_read, changes, requests_queued, in_flight FROM push_runs ORDER BY id DESC LIMIT 5;\n\n\
         Metrics and readiness: curl http://{endpoint}/metrics  (and /readyz)\n\n\
         Press Ctrl-C to stop; everything the demo started is removed.\n"
    );

    let progress = daemon.progress();
    let pushes = daemon.push_counters();
    let mut daemon = tokio::spawn(daemon.run(listener));
    let mut rate = LiveRate::default();
    let terminal = std::io::stderr().is_terminal();
    // On a terminal one line, redrawn in place and cut to the terminal's width; otherwise a
    // line every few seconds.
    let bar = terminal.then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {wide_msg}").unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        bar
    });
    let mut died = None;
    let mut ticker = tokio::time::interval(if terminal { Duration::from_millis(500) } else { Duration::from_secs(5) });
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            // The daemon stopped by itself (a task died): its log says why.
            ended = &mut daemon => {
                died = Some(ended.context("the daemon task")?);
                break;
            }
            _ = ticker.tick() => {
                let records = progress.records.load(Ordering::Relaxed);
                let last = received.last_stage_change.lock().expect("no panics while holding it").clone();
                let line = format!(
                    "records {records} ({:.0}/s) · events {} · pushed {} · API {} · webhooks in {} out {} · last stage {}",
                    rate.sample(tokio::time::Instant::now(), records),
                    progress.written.events.total(),
                    pushes.requests_queued_by(DEMO_PUSH),
                    simulator.simulator.request_count(),
                    webhooks.received.get("accepted"),
                    received.verified.load(Ordering::Relaxed),
                    last.as_deref().unwrap_or("-"),
                );
                match &bar {
                    Some(bar) => bar.set_message(line),
                    None => eprintln!("{line}"),
                }
            }
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    eprintln!("\nStopping…");
    let code = match died {
        Some(code) => code,
        None => daemon.await.context("the daemon task")?,
    };
    simulator.stop().await;
    if let Some(pg) = private {
        pg.stop().await.context("cannot stop the private PostgreSQL server")?;
    }
    Ok(code)
}

/// The push the demo runs.
const DEMO_PUSH: &str = "tiers";

/// What the demo's configuration is made of.
struct DemoSettings<'a> {
    database_url: &'a str,
    schema: &'a str,
    api_url: &'a str,
    public_key: &'a str,
    private_key: &'a str,
    token: &'a str,
    hooks_url: &'a str,
    secret: &'a str,
}

impl DemoSettings<'_> {
    /// The configuration as TOML, built as a value: keys, URLs and secrets are quoted by the
    /// serializer, so none can break the file (or say more than it should) whatever it holds.
    fn toml(&self) -> anyhow::Result<String> {
        use toml::{Table, Value};
        fn table<const N: usize>(entries: [(&str, Value); N]) -> Value {
            Value::Table(entries.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
        }
        let schema = self.schema;
        // Each partner's tier from their customers; the first run tags every partner, so the
        // brake is raised above the 10% it allows by default.
        let tiers = format!(
            "SELECT p.key, ARRAY['tier:' || CASE WHEN count(c.key) >= 5 THEN 'gold' WHEN count(c.key) >= 2 THEN 'silver' \
             ELSE 'bronze' END] AS tags \
             FROM {schema}.partnerships p LEFT JOIN {schema}.customers c ON c.partner_key = p.partner_key AND c.deleted_at IS NULL \
             WHERE p.deleted_at IS NULL GROUP BY p.key"
        );
        let root: Table = [
            ("database", table([("url", self.database_url.into()), ("schema", schema.into()), ("max_connections", Value::Integer(10))])),
            (
                "partnerstack",
                table([
                    ("api_url", self.api_url.into()),
                    ("public_key", self.public_key.into()),
                    ("private_key", self.private_key.into()),
                    ("requests_per_second", Value::Integer(0)),
                ]),
            ),
            (
                "sync",
                table([
                    ("interval", "3s".into()),
                    ("lookback", "1m".into()),
                    ("settle", "1s".into()),
                    ("rescan_schedule", "0 * * * * *".into()),
                    ("backfill_concurrency", Value::Integer(4)),
                ]),
            ),
            ("webhooks", table([("token", self.token.into())])),
            (
                "delivery",
                Value::Array(vec![table([
                    ("name", "demo".into()),
                    ("url", self.hooks_url.into()),
                    ("events", Value::Array(vec!["deal.*".into()])),
                    ("secret", self.secret.into()),
                ])]),
            ),
            (
                "push",
                Value::Array(vec![table([
                    ("name", DEMO_PUSH.into()),
                    ("object", "partnerships".into()),
                    ("query", tiers.into()),
                    ("manage_tags", Value::Array(vec!["tier:*".into()])),
                    ("max_changes", Value::Integer(1_000_000)),
                    ("interval", "10s".into()),
                ])]),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        Ok(toml::to_string(&root)?)
    }
}

fn psql_command(database_url: &str, schema: &str) -> String {
    format!("PGOPTIONS='-c search_path={schema}' psql '{database_url}'")
}
