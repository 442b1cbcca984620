//! Steady-state benchmark (docs/steady-state.md): `cargo bench --bench steady_state` (BENCH_RECORDS=10000,
//! BENCH_MINUTES=120 compressed minutes without webhooks, BENCH_WEBHOOK_MINUTES=90 with them;
//! BENCH_MODES=ignores,honours says under which answers of the API about `min_updated` on
//! transactions and rewards to run).
//!
//! Runs the daemon in this process against the simulator and a private PostgreSQL server (or
//! DATABASE_URL), every object listed (partner-team members included), on the default
//! schedules compressed 60 times: a minute is a second (`sync.interval = 1s`,
//! `sync.lookback = 10s`, hourly rescans every minute, daily key scans
//! every two, `sync.interval_with_webhooks = 5s`, `webhooks.quiet_after = 15s`), and the
//! simulator makes 1,000 changes an hour, compressed too (16.7 a second), so a poll window
//! holds as many changes as it would (`sync.settle = 1s` tells the scheduled polls from the
//! reads webhooks ask for in `sync_runs`). After the backfill it counts each pass's requests (`sync_runs`) and
//! the client's requests by purpose (`/metrics`), first with no webhooks, then with the
//! simulator sending one per change to the daemon's intake. It prints requests a day for an
//! account of 200,000 records with 5,000 partner teams and 1,000 changes an hour under the
//! default (uncompressed) schedules: a poll pass's cost times 1,440 passes (288 while
//! webhooks come in), a rescan's times 24 and a key scan's once, the complete reads scaled by
//! records (200,000 / BENCH_RECORDS) and the walk of every team by teams (5,000 / the
//! simulator's), the reads that follow changes (teams whose partnership changed, webhook
//! reads) as measured per change (a slower pass sees more changes, so not per pass).
//!
//! It uses only what the daemon had before the steady-state work (`sync_runs`, `/metrics`), so the same file
//! measures the code before it: BENCH_BEFORE=1 leaves out the configuration keys that code
//! lacks (see docs/steady-state-benchmarks.md).

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use partnerstack_mirror::{config::Config, daemon::Daemon};
use partnerstack_simulator::{Simulator, SimulatorConfig};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

mod support;

/// The account the numbers are projected to (the issue's).
const ACCOUNT_RECORDS: f64 = 200_000.0;
const ACCOUNT_TEAMS: f64 = 5_000.0;
const CHANGES_PER_HOUR: f64 = 1_000.0;
/// A compressed minute.
const MINUTE: Duration = Duration::from_secs(1);

/// Requests and passes of one kind in a measured stretch, from `sync_runs`.
#[derive(Clone, Copy, Debug, Default)]
struct Passes {
    passes: f64,
    requests: f64,
}

impl Passes {
    fn per_pass(self) -> f64 {
        if self.passes == 0.0 {
            0.0
        } else {
            self.requests / self.passes
        }
    }
}

/// What one stretch measured.
#[derive(Debug, Default)]
struct Stretch {
    polls: Passes,
    /// Team reads in poll passes (teams whose partnership changed).
    team_polls: Passes,
    rescans: Passes,
    /// Team walks in rescans (the code before the steady-state work walked every team hourly).
    team_rescans: Passes,
    key_scans: Passes,
    team_key_scans: Passes,
    /// The client's requests by purpose (`/metrics`; none before the steady-state work had purposes).
    by_purpose: BTreeMap<String, f64>,
    changes: f64,
    minutes: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let records: usize = support::knob("BENCH_RECORDS", 10_000);
    let minutes: u64 = support::knob("BENCH_MINUTES", 120);
    let webhook_minutes: u64 = support::knob("BENCH_WEBHOOK_MINUTES", 90);
    let before = support::knob("BENCH_BEFORE", 0) == 1;
    let modes: String = support::knob("BENCH_MODES", "ignores,honours".to_owned());
    let database = support::Database::start().await?;
    println!(
        "steady state: {records} records, {minutes} compressed minutes without webhooks and {webhook_minutes} with them, \
         code {}",
        if before { "before the steady-state work (BENCH_BEFORE=1)" } else { "with the steady-state work" }
    );
    for mode in modes.split(',').map(str::trim).filter(|m| !m.is_empty()) {
        let ignores = match mode {
            "ignores" => true,
            "honours" => false,
            other => anyhow::bail!("BENCH_MODES: `{other}` is neither ignores nor honours"),
        };
        let (quiet, busy, sim_teams) = run(&database.url, records, minutes, webhook_minutes, before, ignores).await?;
        report(mode, records, sim_teams, &quiet, &busy, before);
    }
    database.stop().await
}

/// One daemon against one simulator: backfill, a stretch without webhooks, a stretch with.
async fn run(
    url: &str,
    records: usize,
    minutes: u64,
    webhook_minutes: u64,
    before: bool,
    ignores: bool,
) -> anyhow::Result<(Stretch, Stretch, f64)> {
    let sim_config = SimulatorConfig { records, created_only_ignore_updated_filter: ignores, ..SimulatorConfig::default() };
    let (public_key, private_key) = (sim_config.public_key.clone(), sim_config.private_key.clone());
    let sim = Simulator::new(sim_config).start("127.0.0.1:0".parse()?).await?;
    let schema = format!("bench_steady_{}_{}", std::process::id(), if ignores { "ignores" } else { "honours" });
    let token = "bench-token-0123456789abcdef";
    let quiet_keys = if before { "" } else { "interval_with_webhooks = \"5s\"\n" };
    let quiet_after = if before { "" } else { "quiet_after = \"15s\"\n" };
    let config = Config::from_toml(&format!(
        "[database]\nurl = \"{url}\"\nschema = \"{schema}\"\n\
         [partnerstack]\napi_url = \"{}\"\npublic_key = \"{public_key}\"\nprivate_key = \"{private_key}\"\nrequests_per_second = 0\n\
         [sync]\nobjects = [\"groups\", \"partnerships\", \"applications\", \"customers\", \"deals\", \"leads\", \"actions\", \
         \"transactions\", \"rewards\", \"partner_team_members\"]\ninterval = \"1s\"\nlookback = \"10s\"\nsettle = \"1s\"\n{quiet_keys}\
         rescan_schedule = \"30 * * * * *\"\nreconcile_schedule = \"0 */2 * * * *\"\n\
         [webhooks]\ntoken = \"{token}\"\n{quiet_after}",
        sim.base_url
    ))?;
    let shutdown = CancellationToken::new();
    let daemon = Daemon::build(config, shutdown.clone()).await?;
    let store = daemon.store().clone();
    let api = daemon.api().clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let running = tokio::spawn(daemon.run(listener));

    let started = Instant::now();
    let pool = store.pool().clone();
    loop {
        let done: i64 =
            sqlx::query_scalar("SELECT count(*) FROM sync_state WHERE backfill_completed_at IS NOT NULL").fetch_one(&pool).await?;
        if done >= 10 {
            break;
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(900), "the backfill did not finish");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "\n[{}] backfilled {records} records in {:.0}s",
        if ignores { "ignores min_updated" } else { "honours min_updated" },
        started.elapsed().as_secs_f64()
    );
    let sim_teams = sim.simulator.team_keys().len() as f64;

    // 1,000 changes an hour, compressed: 16.7 a (compressed) minute.
    let per_second = CHANGES_PER_HOUR / 60.0 / MINUTE.as_secs_f64();
    sim.simulator.configure(|c| c.mutations_per_sec = per_second);
    // Let the first passes after the backfill (which read what changed during it) go by.
    tokio::time::sleep(MINUTE * 5).await;
    let quiet = measure(&pool, address, MINUTE * minutes as u32, per_second).await?;

    let intake = format!("http://{address}/webhooks/partnerstack/{token}");
    api.subscribe(&intake, &["*".to_owned()]).await?;
    // Until polls have slowed (the first webhook came) and a slow pass ran.
    tokio::time::sleep(MINUTE * 10).await;
    let busy = measure(&pool, address, MINUTE * webhook_minutes as u32, per_second).await?;

    shutdown.cancel();
    running.await?;
    sim.stop().await;
    sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE")).execute(&pool).await?;
    Ok((quiet, busy, sim_teams))
}

/// Counts what the daemon does over `length`.
async fn measure(pool: &PgPool, daemon: std::net::SocketAddr, length: Duration, changes_per_second: f64) -> anyhow::Result<Stretch> {
    let from: i64 = sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM sync_runs").fetch_one(pool).await?;
    let purposes_before = scrape(daemon).await?;
    let t = Instant::now();
    tokio::time::sleep(length).await;
    let purposes_after = scrape(daemon).await?;
    let until: i64 = sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM sync_runs").fetch_one(pool).await?;
    let elapsed = t.elapsed();
    // Runs that started in the stretch and finished; a pass is counted by its first object.
    let passes = |kind: &'static str, first: &'static str, team: bool| {
        let pool = pool.clone();
        async move {
            // A read a webhook asked for opens a poll run too, but its window ends at its start
            // (no settle): a scheduled poll's ends `settle` (1 s here) before.
            let (passes, requests): (i64, i64) = sqlx::query_as(
                "SELECT count(*) FILTER (WHERE object = $4 AND (kind <> 'poll' OR started_at - window_end > interval '0.5 seconds')), \
                        coalesce(sum(requests) FILTER (WHERE (object = 'partner_team_members') = $5), 0) \
                 FROM sync_runs WHERE id > $1 AND id <= $2 AND kind = $3 AND finished_at IS NOT NULL",
            )
            .bind(from)
            .bind(until)
            .bind(kind)
            .bind(first)
            .bind(team)
            .fetch_one(&pool)
            .await?;
            anyhow::Ok(Passes { passes: passes as f64, requests: requests as f64 })
        }
    };
    let polls = passes("poll", "groups", false).await?;
    let key_scans = passes("reconcile", "groups", false).await?;
    // Rescans read transactions first (or only team members, before the steady-state work with rewards).
    let rescans = passes("rescan", "transactions", false).await?;
    let team_rescans = passes("rescan", "partner_team_members", true).await?;
    let team_polls = Passes { passes: polls.passes, requests: passes("poll", "groups", true).await?.requests };
    let team_key_scans = Passes { passes: key_scans.passes, requests: passes("reconcile", "groups", true).await?.requests };
    let by_purpose = purposes_after
        .iter()
        .map(|(p, n)| (p.clone(), n - purposes_before.get(p).copied().unwrap_or(0.0)))
        .filter(|(_, n)| *n > 0.0)
        .collect();
    Ok(Stretch {
        polls,
        team_polls,
        rescans,
        team_rescans: Passes { passes: team_rescans.passes, requests: team_rescans.requests },
        key_scans,
        team_key_scans,
        by_purpose,
        changes: changes_per_second * elapsed.as_secs_f64(),
        minutes: elapsed.as_secs_f64() / MINUTE.as_secs_f64(),
    })
}

/// `partnerstack_mirror_api_requests_total` from the daemon's `/metrics`, by purpose (all of
/// it under `unlabelled` when the series has no purpose).
async fn scrape(daemon: std::net::SocketAddr) -> anyhow::Result<BTreeMap<String, f64>> {
    let text = reqwest::get(format!("http://{daemon}/metrics")).await?.text().await?;
    let mut by_purpose = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("partnerstack_mirror_api_requests_total{")) {
        let Some((labels, value)) = line.rsplit_once(' ') else { continue };
        let purpose = labels.split("purpose=\"").nth(1).and_then(|rest| rest.split('"').next()).unwrap_or("unlabelled");
        *by_purpose.entry(purpose.to_owned()).or_insert(0.0) += value.parse::<f64>().unwrap_or(0.0);
    }
    Ok(by_purpose)
}

/// Requests a day by purpose for the account, without and with webhooks. Where the
/// client counts purposes (`/metrics`), they are exact: a pass's `sync_runs.requests` also
/// counts what the client sent meanwhile (webhook reads, which open poll runs of their own).
fn report(mode: &str, records: usize, sim_teams: f64, quiet: &Stretch, busy: &Stretch, before: bool) {
    let scale = ACCOUNT_RECORDS / records as f64;
    let teams = sim_teams.max(1.0);
    let changes_per_day = CHANGES_PER_HOUR * 24.0;
    let labelled = !quiet.by_purpose.contains_key("unlabelled");
    let purpose = |s: &Stretch, p: &str| s.by_purpose.get(p).copied().unwrap_or(0.0);
    // Rescans and key scans cost the same with or without webhooks: measured without.
    let rescan = quiet.rescans.per_pass() * 24.0 * scale;
    let key_scan = quiet.key_scans.per_pass() * scale;
    // Before the steady-state work the hourly rescan walked every team, and the daily key scan once more.
    let (walk, walks_per_day) = if before {
        (quiet.team_rescans.per_pass().max(quiet.team_key_scans.per_pass()), 25.0)
    } else {
        (quiet.team_key_scans.per_pass(), 1.0)
    };
    let walks = walk / teams * ACCOUNT_TEAMS * walks_per_day;
    let probes = if before { 0.0 } else { 4.0 };
    println!("\n== {mode} min_updated on transactions and rewards: measured per compressed cycle");
    for (name, s) in [("without webhooks", quiet), ("with webhooks", busy)] {
        println!(
            "{name}: {:.0} min, {:.0} changes; {:.0} poll passes, {:.2} requests a pass in sync_runs; rescan {:.1} ({:.0} passes), \
             key scan {:.1} ({:.0}), walk {:.2} requests per team ({:.0} teams); by purpose {:?}",
            s.minutes,
            s.changes,
            s.polls.passes,
            s.polls.per_pass(),
            s.rescans.per_pass(),
            s.rescans.passes,
            s.key_scans.per_pass(),
            s.key_scans.passes,
            walk / teams,
            teams,
            s.by_purpose
        );
    }
    // Per change, not per pass: a pass that took longer saw more changes.
    let per_day = |requests: f64, s: &Stretch| requests / s.changes.max(1.0) * changes_per_day;
    let rows = |s: &Stretch, passes_per_day: f64, webhooks: bool| {
        let walked = s.team_key_scans.requests + if before { s.team_rescans.requests } else { 0.0 };
        let (poll, team_changed, webhook) = if labelled {
            let poll = purpose(s, "poll") / s.polls.passes.max(1.0) * passes_per_day;
            (poll, per_day((purpose(s, "team") - walked).max(0.0), s), if webhooks { per_day(purpose(s, "webhook"), s) } else { 0.0 })
        } else {
            (s.polls.per_pass() * passes_per_day, per_day(s.team_polls.requests, s), 0.0)
        };
        vec![
            ("poll", poll),
            ("rescan", rescan),
            ("key_scan", key_scan),
            ("team: walk of every team", walks),
            ("team: partnership changed", team_changed),
            ("webhook", webhook),
            ("probe", probes),
        ]
    };
    let quiet_rows = rows(quiet, 1_440.0, false);
    let busy_rows = rows(busy, if before { 1_440.0 } else { 288.0 }, true);
    println!(
        "\n== requests a day, {ACCOUNT_RECORDS} records with {ACCOUNT_TEAMS} partner teams, {CHANGES_PER_HOUR} changes an hour, \
         default schedules ({mode} min_updated)"
    );
    println!("{:<28} {:>16} {:>16}", "purpose", "no webhooks", "webhooks healthy");
    for ((name, a), (_, b)) in quiet_rows.iter().zip(&busy_rows) {
        println!("{name:<28} {a:>16.0} {b:>16.0}");
    }
    let total = |rows: &[(&str, f64)]| rows.iter().map(|(_, n)| n).sum::<f64>();
    let webhook_reads = busy_rows.iter().find(|(n, _)| *n == "webhook").map_or(0.0, |(_, n)| *n);
    println!("{:<28} {:>16.0} {:>16.0}", "total", total(&quiet_rows), total(&busy_rows));
    println!("{:<28} {:>16.0} {:>16.0}", "total but webhook reads", total(&quiet_rows), total(&busy_rows) - webhook_reads);
}
