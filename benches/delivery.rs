//! Webhook delivery benchmark: `cargo bench --bench delivery`.
//!
//! 1. Throughput: BENCH_EVENTS (20,000) events over BENCH_RECORDS (2,000) records, delivered
//!    with a delivery's default settings (parallelism 8) to a local receiver that checks
//!    every signature; prints events per second (target: at least 2,000/s).
//! 2. Latency: the daemon against the simulator (sync.interval BENCH_INTERVAL = 10s,
//!    sync.settle 5s, the default), deal stages changed at BENCH_CHANGES_PER_SEC (5) for
//!    BENCH_SECONDS (60); prints the change → webhook latency, p50/p95/max (target: p95 at
//!    most interval + settle + 1 s).

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{body::Bytes, extract::State, http::HeaderMap, http::StatusCode, routing::post, Router};
use base64::Engine;
use partnerstack_mirror::{
    config::Config,
    daemon::Daemon,
    delivery::{Delivery, DeliveryCounters, DeliverySettings, Signer},
    diff::{EventSource, NewEvent},
    object::ObjectKind,
    store::{insert_events, Store},
};
use partnerstack_simulator::{Mutation, Simulator, SimulatorConfig};
use secrecy::SecretString;
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// What the receiver saw: verified webhooks, and for stage changes the delay since the change.
#[derive(Default)]
struct Seen {
    verified: u64,
    rejected: u64,
    stage_latencies: Vec<f64>,
}

struct Receiver {
    signer: Signer,
    seen: Mutex<Seen>,
}

async fn receive(State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let arrived = chrono::Utc::now();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let body = String::from_utf8_lossy(&body);
    let ok = r.signer.verify(header("webhook-id"), header("webhook-timestamp").parse().unwrap_or(0), &body, header("webhook-signature"));
    let mut seen = r.seen.lock().unwrap();
    if !ok {
        seen.rejected += 1;
        return StatusCode::UNAUTHORIZED;
    }
    seen.verified += 1;
    if body.contains("\"event_type\":\"deal.stage_updated\"") && body.contains("\"source\":\"poll\"") {
        let event: serde_json::Value = serde_json::from_str(&body).unwrap();
        let changed = chrono::DateTime::parse_from_rfc3339(event["occurred_at"].as_str().unwrap()).unwrap();
        seen.stage_latencies.push((arrived - changed.with_timezone(&chrono::Utc)).num_milliseconds() as f64 / 1000.0);
    }
    StatusCode::NO_CONTENT
}

async fn receiver(secret: &str) -> anyhow::Result<(String, Arc<Receiver>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hooks", listener.local_addr()?);
    let state = Arc::new(Receiver { signer: Signer::new(&SecretString::from(secret.to_owned()))?, seen: Mutex::default() });
    let app = Router::new().route("/hooks", post(receive)).with_state(state.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((url, state))
}

fn delivery_toml(url: &str, secret: &str, events: &str, start: &str) -> String {
    format!("[[delivery]]\nname = \"bench\"\nurl = \"{url}\"\nsecret = \"{secret}\"\nevents = {events}\nstart = \"{start}\"\n")
}

mod support;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let database = support::Database::start().await?;
    let url = database.url.clone();
    let secret = format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>()));

    throughput(&url, &secret).await?;
    latency(&url, &secret).await?;
    database.stop().await?;
    Ok(())
}

async fn throughput(url: &str, secret: &str) -> anyhow::Result<()> {
    let events = support::knob::<u64>("BENCH_EVENTS", 20_000) as usize;
    let records = support::knob::<u64>("BENCH_RECORDS", 2_000) as usize;
    let schema = format!("bench_delivery_{}", std::process::id());
    let store = Store::connect(url, &schema, 10).await?;
    store.migrate().await?;
    for chunk in (0..events).collect::<Vec<_>>().chunks(1_000) {
        let batch: Vec<NewEvent> = chunk
            .iter()
            .map(|i| NewEvent {
                event_type: "deal.stage_updated".into(),
                object_type: "deal",
                object_key: format!("deal_{}", i % records),
                occurred_ms: chrono::Utc::now().timestamp_millis(),
                source: EventSource::Backfill,
                changes: Some(json!({"stage": {"old": "Prospecting", "new": "Negotiation"}})),
                data: serde_json::value::to_raw_value(&json!({"key": format!("deal_{}", i % records), "stage": "Negotiation", "amount": 125_000, "name": "A deal of typical size with a few fields"})).unwrap(),
            })
            .collect();
        let mut tx = store.pool().begin().await?;
        insert_events(&mut tx, &batch).await?;
        tx.commit().await?;
    }
    let (hook, seen) = receiver(secret).await?;
    let config = Config::from_toml(&delivery_toml(&hook, secret, "[\"*\"]", "beginning"))?;
    let settings = DeliverySettings::from_config(&config.deliveries[0], config.sync.lease_ttl)?;
    println!(
        "throughput: {events} events over {records} records, parallelism {} (the default), receiver verifying every signature",
        settings.parallelism
    );
    let stop = CancellationToken::new();
    let delivery = Delivery::new(settings, store.clone(), "bench", DeliveryCounters::new(["bench"]))?;
    let started = Instant::now();
    let task = tokio::spawn(delivery.run(stop.clone()));
    while seen.seen.lock().unwrap().verified < events as u64 {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(600), "delivery stalled");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = started.elapsed();
    stop.cancel();
    task.await?;
    let position: i64 = sqlx::query_scalar("SELECT position FROM deliveries WHERE name = 'bench'").fetch_one(store.pool()).await?;
    let last: i64 = sqlx::query_scalar("SELECT max(id) FROM events").fetch_one(store.pool()).await?;
    let rejected = seen.seen.lock().unwrap().rejected;
    println!(
        "  delivered {events} webhooks in {:.2}s: {:.0} events/s (position {position} of {last} saved at stop; {rejected} rejected)",
        took.as_secs_f64(),
        events as f64 / took.as_secs_f64()
    );
    sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE")).execute(store.pool()).await?;
    Ok(())
}

async fn latency(url: &str, secret: &str) -> anyhow::Result<()> {
    let interval = support::knob::<u64>("BENCH_INTERVAL", 10);
    let seconds = support::knob::<u64>("BENCH_SECONDS", 60);
    let rate = support::knob::<u64>("BENCH_CHANGES_PER_SEC", 5);
    let sim_config = SimulatorConfig { records: 2_000, ..SimulatorConfig::default() };
    let (public_key, private_key) = (sim_config.public_key.clone(), sim_config.private_key.clone());
    let sim = Simulator::new(sim_config).start("127.0.0.1:0".parse()?).await?;
    let (hook, seen) = receiver(secret).await?;
    let schema = format!("bench_delivery_latency_{}", std::process::id());
    let config = Config::from_toml(&format!(
        "[database]\nurl = \"{url}\"\nschema = \"{schema}\"\n[partnerstack]\napi_url = \"{}\"\npublic_key = \"{public_key}\"\n\
         private_key = \"{private_key}\"\nrequests_per_second = 0\n[sync]\ninterval = \"{interval}s\"\nobjects = [\"deals\"]\n{}",
        sim.base_url,
        delivery_toml(&hook, secret, "[\"deal.stage_updated\"]", "now")
    ))?;
    let settle = config.sync.settle;
    let shutdown = CancellationToken::new();
    let daemon = Daemon::build(config, shutdown.clone()).await?;
    let store = daemon.store().clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let running = tokio::spawn(daemon.run(listener));
    // The first pass backfills; changes are made once it is done.
    while sqlx::query_scalar::<_, Option<chrono::DateTime<chrono::Utc>>>("SELECT last_success_at FROM sync_state WHERE object = 'deals'")
        .fetch_optional(store.pool())
        .await?
        .flatten()
        .is_none()
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "latency: daemon with sync.interval {interval}s, sync.settle {}s; {rate} deal stage changes/s for {seconds}s",
        settle.as_secs()
    );
    let deals = sim.simulator.keys(ObjectKind::Deal);
    let started = Instant::now();
    let mut made = 0_usize;
    while started.elapsed() < Duration::from_secs(seconds) {
        sim.simulator.apply(Mutation::DealStage { key: deals[made % deals.len()].clone() })?;
        made += 1;
        tokio::time::sleep(Duration::from_millis(1000 / rate.max(1))).await;
    }
    // Every change is read by a pass within interval + settle; wait for the last ones.
    let deadline = Instant::now() + Duration::from_secs(interval) + settle + Duration::from_secs(10);
    while Instant::now() < deadline && seen.seen.lock().unwrap().stage_latencies.len() < made {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shutdown.cancel();
    let _ = running.await;
    let mut latencies = seen.seen.lock().unwrap().stage_latencies.clone();
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies.get(((latencies.len() as f64 * q).ceil() as usize).saturating_sub(1)).copied().unwrap_or(f64::NAN);
    let bound = interval as f64 + settle.as_secs_f64() + 1.0;
    println!(
        "  {} changes, {} deal.stage_updated webhooks: change → webhook p50 {:.2}s, p95 {:.2}s, max {:.2}s (bound interval + settle + 1s = {bound:.0}s: {})",
        made,
        latencies.len(),
        at(0.5),
        at(0.95),
        at(1.0),
        if at(0.95) <= bound { "met" } else { "MISSED" }
    );
    sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE")).execute(store.pool()).await?;
    sim.stop().await;
    Ok(())
}
