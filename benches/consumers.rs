//! Named consumers at scale: `cargo bench --bench consumers` (BENCH_EVENTS=10000000).
//!
//! Fills the events table with BENCH_EVENTS events (one INSERT … SELECT from
//! generate_series, so the fill itself is quick), then times `next_events(consumer, 100)` and
//! `commit_events` for consumers at the start, the middle and the end of the table, and shows
//! the plan: the primary key from the position on, never a scan.

use std::time::{Duration, Instant};

use partnerstack_mirror::store::Store;

mod support;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let events: i64 = support::knob("BENCH_EVENTS", 10_000_000);
    let database = support::Database::start().await?;
    let url = database.url.clone();
    let schema = format!("bench_consumers_{}", std::process::id());
    let store = Store::connect(&url, &schema, 4).await?;
    store.migrate().await?;

    let t = Instant::now();
    sqlx::query(
        "INSERT INTO events (event_type, object_type, object_key, occurred_at, source, changes, data) \
         SELECT 'deal.updated', 'deal', 'deal_' || (g % 50000), now(), 'poll', '{\"stage\": {\"old\": \"a\", \"new\": \"b\"}}', \
                jsonb_build_object('key', 'deal_' || (g % 50000), 'stage', 'b', 'amount', g) \
         FROM generate_series(1, $1) AS g",
    )
    .bind(events)
    .execute(store.pool())
    .await?;
    sqlx::query("VACUUM ANALYZE events").execute(store.pool()).await?;
    println!("filled {events} events in {:.1}s", t.elapsed().as_secs_f64());

    for (name, position) in [("at-start", 0), ("in-the-middle", events / 2), ("near-the-end", events - 50)] {
        store.commit_events(name, position).await?;
        let calls = 500;
        let mut next = Duration::ZERO;
        let mut commit = Duration::ZERO;
        let mut worst = Duration::ZERO;
        for _ in 0..calls {
            let t = Instant::now();
            let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM next_events($1, 100)").bind(name).fetch_all(store.pool()).await?;
            let took = t.elapsed();
            next += took;
            worst = worst.max(took);
            // Commit what was read, then step back so the next call reads the same slice.
            if let Some(&last) = ids.last() {
                let t = Instant::now();
                store.commit_events(name, last).await?;
                commit += t.elapsed();
                sqlx::query("UPDATE event_consumers SET position = $2 WHERE name = $1")
                    .bind(name)
                    .bind(position)
                    .execute(store.pool())
                    .await?;
            }
        }
        println!(
            "{name:<14} next_events(…, 100): {:.2} ms average, {:.2} ms worst | commit_events: {:.2} ms average",
            next.as_secs_f64() * 1000.0 / calls as f64,
            worst.as_secs_f64() * 1000.0,
            commit.as_secs_f64() * 1000.0 / calls as f64,
        );
    }
    let plan: Vec<String> = sqlx::query_scalar("EXPLAIN SELECT * FROM next_events('in-the-middle', 100)").fetch_all(store.pool()).await?;
    println!("\nplan of next_events (inlined SQL function):");
    let inner: Vec<String> = sqlx::query_scalar(
        "EXPLAIN SELECT e.* FROM events e WHERE e.id > coalesce((SELECT c.position FROM event_consumers c WHERE c.name = 'in-the-middle'), 0) \
         ORDER BY e.id LIMIT 100",
    )
    .fetch_all(store.pool())
    .await?;
    for line in plan.iter().chain(inner.iter()) {
        println!("  {line}");
    }

    sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE")).execute(store.pool()).await?;
    database.stop().await?;
    Ok(())
}
