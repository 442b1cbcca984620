//! Backfill benchmark: `cargo bench --bench backfill` (BENCH_RECORDS=200000,
//! BENCH_CONCURRENCY=4 by default; BENCH_EVENTS=0 loads without `created` events;
//! BENCH_CEILING=0 skips the `COPY` ceiling; BENCH_RATE_LIMIT=20 makes the simulator answer
//! 429 above 20 requests a second, which the client is not told, and prints the share of that
//! limit the backfill used).
//!
//! Starts the simulator in its own process (so its memory is not counted), a private
//! PostgreSQL server (or uses DATABASE_URL), backfills every object, and prints records per
//! second, API requests, events written and this process's peak memory. Then a second pass
//! with no changes (target: one request per object, zero rows), and PostgreSQL's own ingest
//! ceiling for the same rows: a `COPY` of key + jsonb into an unindexed, unlogged table (and,
//! for comparison, into a logged one, as the mirror's tables are).

use partnerstack_mirror::sync::Reading;
use std::{
    net::TcpListener,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use partnerstack_mirror::{
    backoff::Backoff,
    object::ObjectKind,
    partnerstack::{ApiClient, ClientConfig, RateLimit},
    scheduler,
    store::Store,
    sync::{SyncSettings, Syncer},
};
use partnerstack_simulator::SimulatorConfig;
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

/// Every object but partner-team members, which the API lists one team at a time (pages of a
/// few records): they would measure requests per team, not ingest.
fn bulk_objects() -> Vec<ObjectKind> {
    ObjectKind::ALL.into_iter().filter(|k| *k != ObjectKind::PartnerTeamMember).collect()
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

mod support;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let records: usize = support::knob("BENCH_RECORDS", 200_000);
    let concurrency: usize = support::knob("BENCH_CONCURRENCY", 4);
    let limit: Option<f64> = std::env::var("BENCH_RATE_LIMIT").ok().and_then(|v| v.parse().ok());
    // Against a limit the client must find it; without one, nothing holds the client back.
    let (rate_limit, limit_args) = match limit {
        Some(n) => (RateLimit::Adaptive { ceiling: None }, vec!["--rate-limit".to_owned(), n.to_string()]),
        None => (RateLimit::Unlimited, Vec::new()),
    };

    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let started = Instant::now();
    let simulator = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_partnerstack-mirror"))
            .args(["simulate", "--listen", &format!("127.0.0.1:{port}"), "--records", &records.to_string()])
            .args(&limit_args)
            .stdout(Stdio::null())
            .spawn()?,
    );
    let deadline = Instant::now() + Duration::from_secs(300);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        anyhow::ensure!(Instant::now() < deadline, "the simulator did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("simulator with {records} records ready in {:.1}s", started.elapsed().as_secs_f64());

    let database = support::Database::start().await?;
    let url = database.url.clone();
    let schema = format!("bench_{}", std::process::id());
    let store = Store::connect(&url, &schema, 10).await?;
    store.migrate().await?;

    let sim = SimulatorConfig::default();
    let api = ApiClient::new(ClientConfig {
        base_url: format!("http://127.0.0.1:{port}/api/v2").parse()?,
        public_key: sim.public_key,
        private_key: SecretString::from(sim.private_key),
        rate_limit,
        timeout: Duration::from_secs(30),
        max_retries: 4,
        backoff: Backoff::new(Duration::from_millis(50), Duration::from_secs(2)),
        page_size: support::knob("BENCH_PAGE_SIZE", 250),
        user_agent: "partnerstack-mirror-bench".into(),
    })?;
    let settings = SyncSettings {
        lookback: Duration::from_secs(600),
        settle: Duration::from_secs(1),
        backfill_concurrency: concurrency,
        emit_backfill_events: std::env::var("BENCH_EVENTS").map_or(true, |v| v != "0"),
        reconcile_max_delete_share: 0.1,
        lease_ttl: Duration::from_secs(30),
    };
    let syncer = Syncer::new(api.clone(), store.clone(), settings, CancellationToken::new());

    // Pass 1: backfill.
    let simulator_stat = format!("/proc/{}/stat", simulator.0.id());
    let cpu_before = (cpu_seconds(Some("postgres")), cpu_seconds(None), stat_cpu_seconds(&simulator_stat));
    let t = Instant::now();
    let summary = scheduler::poll_all(&syncer, &bulk_objects(), Reading::Changes).await;
    let elapsed = t.elapsed().as_secs_f64();
    let (pg_cpu, own_cpu) = (cpu_seconds(Some("postgres")) - cpu_before.0, cpu_seconds(None) - cpu_before.1);
    let simulator_cpu = stat_cpu_seconds(&simulator_stat) - cpu_before.2;
    anyhow::ensure!(
        summary.failures.is_empty(),
        "backfill failed: {:?}",
        summary.failures.iter().map(|(k, e)| format!("{k}: {}", e.chain())).collect::<Vec<_>>()
    );
    let read: i64 = summary.reports.iter().map(|r| i64::from(r.totals.records_read)).sum();
    let rows: i64 = summary.reports.iter().map(|r| i64::from(r.totals.rows_written)).sum();
    let events: i64 = summary.reports.iter().map(|r| i64::from(r.totals.events_written)).sum();
    let requests = api.requests_sent();
    println!("\n== backfill (concurrency {concurrency})");
    println!("records read     {read}");
    println!("rows written     {rows}");
    println!("events written   {events}");
    println!("API requests     {requests}");
    // Target: at least 90% of the page size (windows placed by volume, no probes).
    println!("records/request  {:.1} of 250 ({:.1}% of a full page)", read as f64 / requests as f64, read as f64 / requests as f64 / 2.5);
    println!("time             {elapsed:.2}s");
    println!("records/s        {:.0}", read as f64 / elapsed);
    println!("peak memory      {} MiB (this process; the simulator runs in its own)", peak_rss_kib() / 1024);
    // CPU time, unlike wall time, hardly moves with other load on the machine: compare
    // variants by it.
    println!(
        "CPU              PostgreSQL {pg_cpu:.1}s ({:.0} µs/record), this process {own_cpu:.1}s ({:.0} µs/record), simulator {simulator_cpu:.1}s",
        pg_cpu * 1e6 / read as f64,
        own_cpu * 1e6 / read as f64
    );
    // Two cores' worth of wall time: what was left idle (waits, the events lock).
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    println!("CPU busy         {:.0}% of {cores} cores", 100.0 * (pg_cpu + own_cpu + simulator_cpu) / (elapsed * cores));
    let progress = syncer.progress();
    println!(
        "time in pages    fetch {:.1}s, write {:.1}s (summed over {concurrency} concurrent readers)",
        progress.fetch_micros.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1e6,
        progress.write_micros.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1e6
    );

    if let Some(limit) = limit {
        print_budget(&api, limit, elapsed);
    }

    // Pass 2: nothing changed.
    let before = api.requests_sent();
    let summary = scheduler::poll_all(&syncer, &bulk_objects(), Reading::Changes).await;
    anyhow::ensure!(summary.failures.is_empty(), "second pass failed");
    let rows: i64 = summary.reports.iter().map(|r| i64::from(r.totals.rows_written)).sum();
    println!("\n== second pass, no changes");
    println!("API requests     {} (for {} objects)", api.requests_sent() - before, bulk_objects().len());
    println!("rows written     {rows}");

    // The ceiling: COPY the same key + raw rows into a bare table (it collects them all in
    // memory first: BENCH_CEILING=0 skips it for runs of millions).
    let mut conn = store.pool().acquire().await?;
    if std::env::var("BENCH_CEILING").map_or(true, |v| v != "0") {
        sqlx::query("CREATE UNLOGGED TABLE IF NOT EXISTS copy_ceiling (key text, raw jsonb)").execute(&mut *conn).await?;
        let mut tsv = String::new();
        for kind in ObjectKind::ALL {
            let rows: Vec<(String, String)> =
                sqlx::query_as(&format!("SELECT key, raw::text FROM {}", kind.table())).fetch_all(&mut *conn).await?;
            for (key, raw) in rows {
                tsv.push_str(&copy_escape(&key));
                tsv.push('\t');
                tsv.push_str(&copy_escape(&raw));
                tsv.push('\n');
            }
        }
        let count = tsv.lines().count();
        // The machine is shared and drifts: the best of three `COPY`s is the ceiling.
        let unlogged = best_copy_rate(&mut conn, "copy_ceiling", &tsv, count).await?;
        println!("\n== PostgreSQL ceiling: COPY of key + jsonb, same rows (best of {COPY_TRIES})");
        println!("rows             {count}");
        println!("rows/s           {unlogged:.0}");
        // Target: the backfill, events included, at half of this ceiling or more.
        println!("backfill share   {:.0}% of the COPY ceiling", 100.0 * (read as f64 / elapsed) / unlogged);
        // The same into a WAL-logged table, as the mirror's must be: what durability costs.
        sqlx::query("CREATE TABLE IF NOT EXISTS copy_ceiling_logged (key text, raw jsonb)").execute(&mut *conn).await?;
        let logged = best_copy_rate(&mut conn, "copy_ceiling_logged", &tsv, count).await?;
        println!("logged table     {logged:.0} rows/s (backfill share {:.0}%)", 100.0 * (read as f64 / elapsed) / logged);
        drop(tsv);
        let (rows, events) = same_writes_seconds(&mut conn).await?;
        let floor = rows + events;
        println!("\n== PostgreSQL alone, the backfill's own writes (rows with their indexes, events)");
        println!("time             {floor:.2}s (rows {rows:.2}s, events {events:.2}s), one statement a table, one session");
        println!("records/s        {:.0} (backfill share {:.0}%)", read as f64 / floor, 100.0 * floor / elapsed);
    }

    sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE")).execute(&mut *conn).await?;
    drop(conn);
    database.stop().await?;
    Ok(())
}

/// How much of a rate limit the client was not told the backfill used, and what it cost.
fn print_budget(api: &ApiClient, limit: f64, elapsed: f64) {
    let sent = api.requests_sent();
    let refused: u64 = api.request_counts().iter().filter(|(_, status, _, _)| status == "429").map(|(_, _, _, n)| n).sum();
    println!("\n== request budget against a limit of {limit}/s the client was not told");
    println!("requests sent    {sent} ({:.0}% of {limit}/s over {elapsed:.1}s)", 100.0 * sent as f64 / (limit * elapsed));
    println!("share used       {:.1}% (requests answered without 429)", 100.0 * (sent - refused) as f64 / (limit * elapsed));
    println!("answered 429     {refused} ({:.1}% of requests sent)", 100.0 * refused as f64 / sent.max(1) as f64);
    println!("paused by 429s   {:.1}s", api.throttled_seconds());
    println!("rate found       {:.1}/s", api.learned_rate().unwrap_or_default());
}

/// Seconds PostgreSQL alone takes (rows, events) to write again what the backfill wrote: every object's
/// rows into a copy of its table (indexes, constraints and defaults included) and the events
/// into a copy of `events`, one `INSERT … SELECT` a table, the rows' JSON through text so it
/// is parsed again as the backfill's was (a first load's events copy theirs from the rows). No HTTP, no mirror, no page transactions, no events
/// lock: what the same work costs the server on one core.
async fn same_writes_seconds(conn: &mut sqlx::PgConnection) -> anyhow::Result<(f64, f64)> {
    let mut tables: Vec<&str> = ObjectKind::ALL.iter().map(|k| k.table()).collect();
    tables.push("events");
    let mut statements = Vec::new();
    for table in tables {
        let columns: Vec<(String, String)> = sqlx::query_as(
            "SELECT column_name::text, data_type::text FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1 AND is_identity = 'NO' ORDER BY ordinal_position",
        )
        .bind(table)
        .fetch_all(&mut *conn)
        .await?;
        let names: Vec<String> = columns.iter().map(|(c, _)| format!("\"{c}\"")).collect();
        let values: Vec<String> = columns
            .iter()
            .map(|(c, ty)| match ty == "jsonb" && table != "events" {
                true => format!("\"{c}\"::text::jsonb"),
                false => format!("\"{c}\""),
            })
            .collect();
        sqlx::query(&format!("CREATE TABLE floor_{table} (LIKE {table} INCLUDING ALL)")).execute(&mut *conn).await?;
        statements.push(format!("INSERT INTO floor_{table} ({}) SELECT {} FROM {table}", names.join(", "), values.join(", ")));
    }
    let (mut rows, mut events) = (0.0, 0.0);
    for statement in &statements {
        let t = Instant::now();
        sqlx::query(statement).execute(&mut *conn).await?;
        match statement.starts_with("INSERT INTO floor_events ") {
            true => events += t.elapsed().as_secs_f64(),
            false => rows += t.elapsed().as_secs_f64(),
        }
    }
    Ok((rows, events))
}

const COPY_TRIES: usize = 3;

/// Rows a second of `COPY … FROM STDIN` of `tsv` into `table`, the best of [`COPY_TRIES`]
/// (the table emptied before each).
async fn best_copy_rate(conn: &mut sqlx::PgConnection, table: &str, tsv: &str, count: usize) -> anyhow::Result<f64> {
    let mut best = 0f64;
    for _ in 0..COPY_TRIES {
        sqlx::query(&format!("TRUNCATE {table}")).execute(&mut *conn).await?;
        let t = Instant::now();
        let mut copy = conn.copy_in_raw(&format!("COPY {table} (key, raw) FROM STDIN")).await?;
        copy.send(tsv.as_bytes()).await?;
        copy.finish().await?;
        best = best.max(count as f64 / t.elapsed().as_secs_f64());
    }
    Ok(best)
}

fn copy_escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\t', "\\t").replace('\n', "\\n").replace('\r', "\\r")
}

/// VmHWM: the resident set's high-water mark.
/// CPU seconds (user + system) used so far by the live processes named `comm`, or by this
/// process when `None`, from `/proc` (Linux; 100 clock ticks a second). A server backend
/// that exits is no longer counted, so measure with the pool's connections open.
fn cpu_seconds(comm: Option<&str>) -> f64 {
    let ticks = |stat: &str| -> Option<u64> {
        let (name, rest) = stat.split_once(" (")?.1.rsplit_once(") ")?;
        if comm.is_some_and(|c| name != c) {
            return None;
        }
        let fields: Vec<&str> = rest.split_whitespace().collect();
        Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
    };
    let total: u64 = match comm {
        None => std::fs::read_to_string("/proc/self/stat").ok().as_deref().and_then(ticks).unwrap_or(0),
        Some(_) => std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
            .filter_map(|stat| ticks(&stat))
            .sum(),
    };
    total as f64 / 100.0
}

/// CPU seconds (user + system) of the process whose `/proc/<pid>/stat` this is.
fn stat_cpu_seconds(path: &str) -> f64 {
    let ticks = std::fs::read_to_string(path).ok().and_then(|stat| {
        let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split_whitespace().collect();
        Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
    });
    ticks.unwrap_or(0) as f64 / 100.0
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}
