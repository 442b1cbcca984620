//! Webhook intake benchmark: `cargo bench --bench webhooks` (BENCH_RECORDS=20000,
//! BENCH_CHANGES=100 by default).
//!
//! Runs the daemon in this process against the simulator (which sends one webhook per change
//! to the daemon's intake) and a private PostgreSQL server (or DATABASE_URL), with the
//! default `sync.interval` (60 s) and `settle`: every change mirrored within the minute came in
//! by webhook. Prints, per change, the time from the change at the simulator to its
//! `deal.stage_updated` event being committed (p50, p95, max), next to one API round trip;
//! then the API reads that a burst of 1,000 webhooks about deals costs.

use std::time::{Duration, Instant};

use partnerstack_mirror::{config::Config, daemon::Daemon, object::ObjectKind};
use partnerstack_simulator::{Mutation, Simulator, SimulatorConfig};
use tokio_util::sync::CancellationToken;

mod support;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let records: usize = support::knob("BENCH_RECORDS", 20_000);
    let changes: usize = support::knob("BENCH_CHANGES", 100);
    let sim_config = SimulatorConfig { records, ..SimulatorConfig::default() };
    let (public_key, private_key) = (sim_config.public_key.clone(), sim_config.private_key.clone());
    let sim = Simulator::new(sim_config).start("127.0.0.1:0".parse()?).await?;
    let database = support::Database::start().await?;
    let url = database.url.clone();
    let schema = format!("bench_webhooks_{}", std::process::id());
    let token = "bench-token-0123456789abcdef";
    let config = Config::from_toml(&format!(
        "[database]\nurl = \"{url}\"\nschema = \"{schema}\"\n[partnerstack]\napi_url = \"{}\"\npublic_key = \"{public_key}\"\n\
         private_key = \"{private_key}\"\nrequests_per_second = 0\n[webhooks]\ntoken = \"{token}\"\n",
        sim.base_url
    ))?;
    let shutdown = CancellationToken::new();
    let daemon = Daemon::build(config, shutdown.clone()).await?;
    let store = daemon.store().clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let intake = format!("http://{}/webhooks/partnerstack/{token}", listener.local_addr()?);
    daemon.api().subscribe(&intake, &["*".to_owned()]).await?;
    let running = tokio::spawn(daemon.run(listener));

    let t = Instant::now();
    loop {
        let done: i64 =
            sqlx::query_scalar("SELECT count(*) FROM sync_state WHERE backfill_completed_at IS NOT NULL").fetch_one(store.pool()).await?;
        if done >= 9 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("backfilled {records} records in {:.1}s", t.elapsed().as_secs_f64());

    // One API round trip, for scale.
    let probe = Instant::now();
    reqwest::Client::new()
        .get(format!("{}/deals?limit=250", sim.base_url))
        .basic_auth("pk_simulator", Some("sk_simulator"))
        .send()
        .await?
        .bytes()
        .await?;
    let round_trip = probe.elapsed();

    let deals = sim.simulator.keys(ObjectKind::Deal);
    let mut latencies = Vec::with_capacity(changes);
    for deal in deals.iter().take(changes) {
        let last: i64 = sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM events").fetch_one(store.pool()).await?;
        let changed = Instant::now();
        sim.simulator.apply(Mutation::DealStage { key: deal.clone() }).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        loop {
            let seen: bool = sqlx::query_scalar(
                "SELECT count(*) > 0 FROM events WHERE id > $1 AND object_key = $2 AND event_type = 'deal.stage_updated'",
            )
            .bind(last)
            .bind(deal)
            .fetch_one(store.pool())
            .await?;
            if seen {
                break;
            }
            anyhow::ensure!(changed.elapsed() < Duration::from_secs(120), "change of {deal} never arrived");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        latencies.push(changed.elapsed());
    }
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1];
    println!("\n== change at PartnerStack → event committed, by webhook ({changes} changes, sync.interval 60s)");
    println!("p50              {:.0} ms", at(0.5).as_secs_f64() * 1000.0);
    println!("p95              {:.0} ms", at(0.95).as_secs_f64() * 1000.0);
    println!("max              {:.0} ms", at(1.0).as_secs_f64() * 1000.0);
    println!("API round trip   {:.0} ms (one page of 250 deals)", round_trip.as_secs_f64() * 1000.0);

    // A burst of 1,000 webhooks about deals: how many reads does it cost?
    let reads_before: i64 = sqlx::query_scalar("SELECT count(*) FROM sync_runs WHERE object = 'deals'").fetch_one(store.pool()).await?;
    let requests_before = sim.simulator.request_count();
    let client = reqwest::Client::new();
    let body = serde_json::json!({"event": "deal.updated", "data": {"key": deals[0]}}).to_string();
    let sends = (0..1000).map(|_| client.post(&intake).body(body.clone()).send());
    for answer in futures::future::join_all(sends).await {
        anyhow::ensure!(answer?.status().is_success(), "a webhook was refused");
    }
    loop {
        let pending: i64 =
            sqlx::query_scalar("SELECT count(*) FROM webhook_inbox WHERE outcome = 'pending'").fetch_one(store.pool()).await?;
        if pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await; // let the coalesced reads finish
    let reads: i64 = sqlx::query_scalar("SELECT count(*) FROM sync_runs WHERE object = 'deals'").fetch_one(store.pool()).await?;
    println!("\n== a burst of 1,000 webhooks about deals");
    println!("reads of deals   {}", reads - reads_before);
    println!("API requests     {}", sim.simulator.request_count() - requests_before);

    shutdown.cancel();
    running.await?;
    sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE")).execute(store.pool()).await?;
    sim.stop().await;
    database.stop().await?;
    Ok(())
}
