//! Write-back load benchmark: `cargo bench --bench queue` (BENCH_REQUESTS=5000,
//! BENCH_WORKERS=4 by default). Queues updates with one INSERT each, drains them with the
//! daemon's workers against the simulator, and prints requests per second.

use std::time::{Duration, Instant};

use partnerstack_mirror::{
    backoff::Backoff,
    object::ObjectKind,
    partnerstack::{ApiClient, ClientConfig, RateLimit},
    queue::{self, QueueSettings},
    store::Store,
};
use partnerstack_simulator::{Simulator, SimulatorConfig};
use secrecy::SecretString;
use serde_json::json;
use tokio_util::sync::CancellationToken;

mod support;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let requests: usize = support::knob("BENCH_REQUESTS", 5_000);
    let workers: usize = support::knob("BENCH_WORKERS", 4);

    let sim_config = SimulatorConfig { records: 5_000, ..SimulatorConfig::default() };
    let (public_key, private_key) = (sim_config.public_key.clone(), sim_config.private_key.clone());
    let sim = Simulator::new(sim_config).start("127.0.0.1:0".parse()?).await?;
    let database = support::Database::start().await?;
    let url = database.url.clone();
    let schema = format!("bench_queue_{}", std::process::id());
    let store = Store::connect(&url, &schema, (workers as u32 + 4).max(8)).await?;
    store.migrate().await?;
    let api = ApiClient::new(ClientConfig {
        base_url: sim.base_url.parse()?,
        public_key,
        private_key: SecretString::from(private_key),
        rate_limit: RateLimit::Unlimited,
        timeout: Duration::from_secs(30),
        max_retries: 4,
        backoff: Backoff::new(Duration::from_millis(20), Duration::from_secs(1)),
        page_size: 250,
        user_agent: "partnerstack-mirror-bench".into(),
    })?;

    let deals = sim.simulator.keys(ObjectKind::Deal);
    let t = Instant::now();
    for i in 0..requests {
        let deal = &deals[i % deals.len()];
        sqlx::query("INSERT INTO write_queue (operation, object_type, object_key, payload) VALUES ('update', 'deal', $1, $2)")
            .bind(deal)
            .bind(json!({"amount": i as i64 * 100}))
            .execute(store.pool())
            .await?;
    }
    println!("queued {requests} requests with one INSERT each in {:.2}s", t.elapsed().as_secs_f64());

    let shutdown = CancellationToken::new();
    let settings = QueueSettings {
        workers,
        max_attempts: 10,
        lease: Duration::from_secs(60),
        poll: Duration::from_millis(50),
        backoff: Backoff::new(Duration::from_millis(20), Duration::from_secs(1)),
        lookup_grace: Duration::from_secs(600),
    };
    let t = Instant::now();
    let workers_pool =
        queue::WorkerPool { api: api.clone(), store: store.clone(), settings, holder: "bench".into(), counters: Default::default() };
    let pool = tokio::spawn(workers_pool.run(shutdown.clone()));
    loop {
        let open: i64 =
            sqlx::query_scalar("SELECT count(*) FROM write_queue WHERE status IN ('pending', 'running')").fetch_one(store.pool()).await?;
        if open == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = t.elapsed().as_secs_f64();
    shutdown.cancel();
    pool.await?;
    let (succeeded, events): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM write_queue WHERE status = 'succeeded'), (SELECT count(*) FROM events WHERE source = 'write_back')",
    )
    .fetch_one(store.pool())
    .await?;
    println!("\n== write-back, {workers} workers");
    println!("requests         {requests}");
    println!("succeeded        {succeeded}");
    println!("API requests     {}", api.requests_sent());
    println!("events written   {events}");
    println!("time             {elapsed:.2}s");
    println!("requests/s       {:.0}", requests as f64 / elapsed);

    sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE")).execute(store.pool()).await?;
    sim.stop().await;
    database.stop().await?;
    Ok(())
}
