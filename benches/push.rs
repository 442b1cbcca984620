//! Push benchmark: `cargo bench --bench push` (BENCH_PARTNERSHIPS=100000, BENCH_DIFFER_EVERY=100
//! by default). Puts the partnerships straight into the mirror with SQL (the plan phase needs
//! no API), a "warehouse" table that wants another tier tag for one partner in
//! `BENCH_DIFFER_EVERY`, and times a push's plan phase (query, comparison, queueing), then a
//! second run that finds every change already queued, then `push plan` alone.

use std::time::Instant;

use partnerstack_mirror::{
    config::Config,
    push::{PushCounters, Pusher},
    store::Store,
};

mod support;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let partnerships: i64 = support::knob("BENCH_PARTNERSHIPS", 100_000);
    let differ_every: i64 = support::knob("BENCH_DIFFER_EVERY", 100);

    let database = support::Database::start().await?;
    let schema = format!("bench_push_{}", std::process::id());
    let store = Store::connect(&database.url, &schema, 8).await?;
    store.migrate().await?;

    let t = Instant::now();
    fill(&store, partnerships, differ_every).await?;
    println!("{partnerships} partnerships and the warehouse table written in {:.2}s", t.elapsed().as_secs_f64());

    let query = format!(
        "SELECT p.key, ARRAY['tier:' || w.tier] AS tags, w.group_key \
         FROM {schema}.partnerships p JOIN {schema}_warehouse.partner_tiers w ON w.partner_key = p.partner_key \
         WHERE p.deleted_at IS NULL"
    );
    let toml = format!(
        "[[push]]\nname = \"tiers\"\nobject = \"partnerships\"\nmanage_tags = [\"tier:*\"]\nquery = {}\n",
        toml::Value::String(query)
    );
    let config = Config::from_toml(&toml)?.pushes.remove(0);
    let pusher = Pusher::prepare(&store, &config, "bench", PushCounters::default()).await?;

    let t = Instant::now();
    let first = pusher.run(false).await?;
    let queued = t.elapsed();
    let l = &first.line;
    println!(
        "plan phase (query, compare, queue): {:.2}s for {} rows: {} changes, {} requests queued, {} unchanged ({})",
        queued.as_secs_f64(),
        l.rows_read,
        l.changes,
        l.requests_queued,
        l.unchanged,
        l.outcome
    );

    let t = Instant::now();
    let second = pusher.run(false).await?;
    println!(
        "a second run before the write-backs land: {:.2}s: {} in flight, {} requests queued",
        t.elapsed().as_secs_f64(),
        second.line.in_flight,
        second.line.requests_queued
    );

    let t = Instant::now();
    let plan = pusher.plan().await?;
    println!("push plan alone: {:.2}s ({} requests looked at)", t.elapsed().as_secs_f64(), plan.requests.len());

    sqlx::query(&format!("DROP SCHEMA {schema}_warehouse CASCADE")).execute(store.pool()).await?;
    sqlx::query(&format!("DROP SCHEMA {schema} CASCADE")).execute(store.pool()).await?;
    database.stop().await?;
    Ok(())
}

/// The mirror's partnerships (each `tier:gold` in group `grup_1`, the first load done) and
/// the warehouse's wishes: `tier:silver` for one partner in `differ_every`.
async fn fill(store: &Store, partnerships: i64, differ_every: i64) -> anyhow::Result<()> {
    let schema = store.schema();
    sqlx::raw_sql(&format!(
        "INSERT INTO partnerships (key, partner_key, email, group_key, tags, raw)
         SELECT 'part_' || i, 'partner' || i, 'partner' || i || '@example.test', 'grup_1', ARRAY['newsletter', 'tier:gold'],
                jsonb_build_object('key', 'part_' || i, 'partner_key', 'partner' || i, 'tags', ARRAY['newsletter', 'tier:gold'])
         FROM generate_series(1, {partnerships}) AS i;
         INSERT INTO sync_state (object, backfill_completed_at) VALUES ('partnerships', now());
         CREATE SCHEMA {schema}_warehouse;
         CREATE TABLE {schema}_warehouse.partner_tiers AS
         SELECT 'partner' || i AS partner_key, CASE WHEN i % {differ_every} = 0 THEN 'silver' ELSE 'gold' END AS tier,
                'grup_1'::text AS group_key
         FROM generate_series(1, {partnerships}) AS i;
         ANALYZE partnerships; ANALYZE {schema}_warehouse.partner_tiers;"
    ))
    .execute(store.pool())
    .await?;
    Ok(())
}
