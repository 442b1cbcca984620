//! Retention beside a backfill: `cargo bench --bench retention` (BENCH_RECORDS=100000,
//! BENCH_OLD_EVENTS=1000000).
//!
//! Four backfills of the same simulated account into fresh schemas whose events table already
//! holds BENCH_OLD_EVENTS events a hundred days old, alternately alone and while retention
//! prunes those old events (in its small batches), and prints each backfill's rate and how
//! much pruning slowed it (target: at most 20%).

use partnerstack_mirror::sync::Reading;
use std::time::{Duration, Instant};

use partnerstack_mirror::{
    config::{Config, Retention},
    daemon,
    object::ObjectKind,
    retention::{prune_once, RetentionSettings},
    scheduler,
};
use partnerstack_simulator::{Simulator, SimulatorConfig};
use tokio_util::sync::CancellationToken;

mod support;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let records: usize = support::knob("BENCH_RECORDS", 100_000);
    let old_events: i64 = support::knob("BENCH_OLD_EVENTS", 1_000_000);
    let sim_config = SimulatorConfig { records, ..SimulatorConfig::default() };
    let (public_key, private_key) = (sim_config.public_key.clone(), sim_config.private_key.clone());
    let sim = Simulator::new(sim_config).start("127.0.0.1:0".parse()?).await?;
    let database = support::Database::start().await?;
    let url = database.url.clone();
    let keep_90_days = RetentionSettings {
        events: Retention::Keep(Duration::from_secs(90 * 86_400)),
        finished_requests: Retention::Forever,
        runs: Retention::Forever,
    };

    let mut alone = Vec::new();
    let mut pruning = Vec::new();
    for (round, prune) in [false, true, false, true].into_iter().enumerate() {
        let schema = format!("bench_retention_{}_{round}", std::process::id());
        let config = Config::from_toml(&format!(
            "[database]\nurl = \"{url}\"\nschema = \"{schema}\"\n[partnerstack]\napi_url = \"{}\"\npublic_key = \"{public_key}\"\n\
             private_key = \"{private_key}\"\nrequests_per_second = 0\n[sync]\nsettle = \"1s\"\n",
            sim.base_url
        ))?;
        let syncer = daemon::syncer(&config, CancellationToken::new()).await?;
        let store = syncer.store().clone();
        sqlx::query(
            "INSERT INTO events (event_type, object_type, object_key, occurred_at, detected_at, source, data) \
             SELECT 'deal.updated', 'deal', 'old_' || g, now() - interval '100 days', now() - interval '100 days', 'poll', \
                    jsonb_build_object('key', 'old_' || g, 'amount', g) FROM generate_series(1, $1) AS g",
        )
        .bind(old_events)
        .execute(store.pool())
        .await?;
        sqlx::query("VACUUM ANALYZE events").execute(store.pool()).await?;

        let pruner = prune.then(|| {
            let store = store.clone();
            tokio::spawn(async move {
                let t = Instant::now();
                prune_once(&store, keep_90_days, &CancellationToken::new()).await.map(|()| t.elapsed())
            })
        });
        let t = Instant::now();
        let summary = scheduler::poll_all(&syncer, &ObjectKind::default_set(), Reading::Changes).await;
        let elapsed = t.elapsed();
        anyhow::ensure!(summary.failures.is_empty(), "backfill failed");
        let read: i64 = summary.reports.iter().map(|r| i64::from(r.totals.records_read)).sum();
        let rate = read as f64 / elapsed.as_secs_f64();
        match pruner {
            Some(p) => {
                let took = p.await??;
                let left: i64 =
                    sqlx::query_scalar("SELECT count(*) FROM events WHERE object_key LIKE 'old\\_%'").fetch_one(store.pool()).await?;
                anyhow::ensure!(left == 0, "{left} old events were not pruned");
                println!(
                    "backfill while pruning {old_events} events: {rate:>8.0} records/s ({:.1}s); pruning took {:.1}s",
                    elapsed.as_secs_f64(),
                    took.as_secs_f64()
                );
                pruning.push(rate);
            }
            None => {
                println!("backfill alone:                     {rate:>8.0} records/s ({:.1}s)", elapsed.as_secs_f64());
                alone.push(rate);
            }
        }
        sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE")).execute(store.pool()).await?;
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    println!(
        "\nbackfill rate while pruning: {:.0}% of alone ({:.0} vs {:.0} records/s)",
        100.0 * mean(&pruning) / mean(&alone),
        mean(&pruning),
        mean(&alone)
    );

    sim.stop().await;
    database.stop().await?;
    Ok(())
}
