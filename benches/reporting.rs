//! Reporting benchmark: `cargo bench --bench reporting` (BENCH_DEALS=100000 by default).
//!
//! A private PostgreSQL server (or DATABASE_URL), a migrated schema, then deals written
//! straight in SQL with three versions each (a `created` event, then two stage moves of two
//! events each: five events per deal). Prints how long the reporting layer takes to apply and
//! to skip, and how long the views answer: a point in time over the whole history, one deal's
//! history, the current pipeline.

use std::time::Instant;

use partnerstack_mirror::store::Store;

const STAGES: &str = "ARRAY['Prospecting', 'Qualified', 'Demo Scheduled', 'Proposal Sent', 'Negotiation', 'Closed Won', 'Closed Lost']";

mod support;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let deals: i64 = support::knob("BENCH_DEALS", 100_000);
    let database = support::Database::start().await?;
    let url = database.url.clone();
    let schema = format!("bench_reporting_{}", std::process::id());
    let store = Store::connect(&url, &schema, 4).await?;

    let started = Instant::now();
    store.migrate().await?;
    println!("migrations + reporting layer on an empty schema: {:.0} ms", ms(started));
    sqlx::query("UPDATE reporting_layer SET fingerprint = 'older'").execute(store.pool()).await?;
    let started = Instant::now();
    store.migrate().await?;
    println!("reporting layer applied again (an upgrade): {:.0} ms", ms(started));
    let started = Instant::now();
    store.migrate().await?;
    println!("start with the layer current (nothing applied): {:.1} ms", ms(started));

    // Version n of deal i: stage (i + n) % 7, updated one day apart from 2025-09-01.
    let state = |n: i64| {
        format!(
            "jsonb_build_object('key', 'deal_' || i, 'stage', ({STAGES})[1 + (i + {n}) % 7], 'amount', (i % 5000) * 1000, \
             'created_at', 1756684800000 + i, 'updated_at', 1756684800000 + i + {n} * 86400000, 'archived', false)"
        )
    };
    let started = Instant::now();
    sqlx::query(&format!(
        "INSERT INTO deals (key, stage, amount, created_at, updated_at, raw) \
         SELECT 'deal_' || i, ({STAGES})[1 + (i + 2) % 7], (i % 5000) * 1000, epoch_ms_to_timestamptz(1756684800000 + i), \
                epoch_ms_to_timestamptz(1756684800000 + i + 2 * 86400000), {} FROM generate_series(1, $1) i",
        state(2)
    ))
    .bind(deals)
    .execute(store.pool())
    .await?;
    sqlx::query(&format!(
        "INSERT INTO events (event_type, object_type, object_key, occurred_at, source, data) \
         SELECT e.event_type, 'deal', 'deal_' || i, epoch_ms_to_timestamptz((e.data ->> 'updated_at')::bigint), e.source, e.data \
         FROM generate_series(1, $1) i, LATERAL (VALUES \
             (1, 'deal.created', 'backfill', {s0}), (2, 'deal.updated', 'poll', {s1}), (3, 'deal.stage_updated', 'poll', {s1}), \
             (4, 'deal.updated', 'poll', {s2}), (5, 'deal.stage_updated', 'poll', {s2})) AS e(n, event_type, source, data) \
         ORDER BY i, e.n",
        s0 = state(0),
        s1 = state(1),
        s2 = state(2),
    ))
    .bind(deals)
    .execute(store.pool())
    .await?;
    sqlx::raw_sql("ANALYZE deals; ANALYZE events").execute(store.pool()).await?;
    println!("{deals} deals and {} events written in {:.1} s", deals * 5, started.elapsed().as_secs_f64());

    let moment = "'2025-09-02 12:00:00Z'";
    let timed = |label: &'static str, sql: String| {
        let store = store.clone();
        async move {
            let started = Instant::now();
            let rows = sqlx::query(&sql).fetch_all(store.pool()).await?.len();
            println!("{label}: {rows} rows in {:.0} ms", ms(started));
            anyhow::Ok(())
        }
    };
    timed(
        "pipeline at a moment, from deals_history",
        format!(
            "SELECT stage, count(*), sum(amount) / 100.0 FROM deals_history \
             WHERE valid_from <= {moment} AND (valid_to > {moment} OR valid_to IS NULL) GROUP BY stage"
        ),
    )
    .await?;
    timed("one deal's history", "SELECT * FROM deals_history WHERE key = 'deal_4242'".into()).await?;
    timed("deal_pipeline now", "SELECT * FROM deal_pipeline".into()).await?;
    timed("deals_current", "SELECT key FROM deals_current".into()).await?;

    let plan: Vec<String> =
        sqlx::query_scalar("EXPLAIN SELECT * FROM deals_history WHERE key = 'deal_4242'").fetch_all(store.pool()).await?;
    let indexed = plan.iter().any(|l| l.contains("events_object_idx"));
    println!("one deal's history reads the events index: {indexed}");

    sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE")).execute(store.pool()).await?;
    database.stop().await?;
    Ok(())
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}
