//! Push (docs/push.md): a query says what PartnerStack should hold, and the mirror queues a
//! write-back for what differs, exactly once, against the real database and the simulator.

use std::time::Duration;

use partnerstack_mirror::{
    config::{Config, PushConfig},
    object::ObjectKind,
    push::{PushCounters, Pusher, RunReport},
    store::Store,
    sync::Syncer,
};
use partnerstack_simulator::RunningSimulator;
use serde_json::Value;

use crate::{queue, support};

mod bad_input;
mod brake;
mod converge;
mod crash;
mod daemon;

/// A simulator with `records` records, mirrored once.
pub(super) async fn mirrored(records: usize) -> (RunningSimulator, Store, Syncer) {
    let sim = support::simulator(records, |_| {}).await;
    let store = support::store().await;
    let syncer = support::syncer(&store, &sim, 250, support::settings());
    support::sync_all(&syncer).await;
    (sim, store, syncer)
}

/// One `[[push]]` from its keys (TOML lines).
pub(super) fn push_config(name: &str, body: &str) -> PushConfig {
    Config::from_toml(&format!("[[push]]\nname = \"{name}\"\n{body}")).unwrap_or_else(|e| panic!("{e}")).pushes.remove(0)
}

/// The push, described and checked against the mirror in `store`.
pub(super) async fn pusher(store: &Store, config: &PushConfig) -> Pusher {
    Pusher::prepare(store, config, "test", PushCounters::default()).await.unwrap_or_else(|e| panic!("{e}"))
}

/// One run, which must succeed.
pub(super) async fn run(pusher: &Pusher) -> RunReport {
    pusher.run(false).await.unwrap_or_else(|e| panic!("{e}"))
}

/// Carries every queued request out (a worker of the write-back queue), so their results
/// land in the mirror.
pub(super) async fn land(store: &Store, sim: &RunningSimulator) {
    queue::drain(&queue::worker(store, sim, "w1"), store).await;
}

/// The requests a push queued, as `(operation, object_key, payload, status)`, in id order.
pub(super) async fn queued(store: &Store, push: &str) -> Vec<(String, Option<String>, Value, String)> {
    let rows: Vec<(String, Option<String>, sqlx::types::Json<Value>, String)> = sqlx::query_as(
        "SELECT operation, object_key, payload, status FROM write_queue WHERE idempotency_key LIKE 'push:' || $1 || ':%' ORDER BY id",
    )
    .bind(push)
    .fetch_all(store.pool())
    .await
    .unwrap();
    rows.into_iter().map(|(o, k, p, s)| (o, k, p.0, s)).collect()
}

/// Runs `sql` on the mirror's schema (the tests' stand-in for the user's other tables).
pub(super) async fn execute(store: &Store, sql: &str) {
    sqlx::raw_sql(sql).execute(store.pool()).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Writes (method, path) the API received since the test started.
pub(super) fn writes(sim: &RunningSimulator) -> Vec<(String, String)> {
    sim.simulator.writes().into_iter().map(|w| (w.method, w.path)).collect()
}

/// A partnership's tags at the API.
pub(super) fn tags_at_api(sim: &RunningSimulator, key: &str) -> Vec<String> {
    let record = sim.simulator.record(ObjectKind::Partnership, key).expect("the partnership exists");
    record["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_owned()).collect()
}

/// The first `n` live partnerships' keys, in key order.
pub(super) async fn partnership_keys(store: &Store, n: i64) -> Vec<String> {
    sqlx::query_scalar("SELECT key FROM partnerships WHERE deleted_at IS NULL ORDER BY key LIMIT $1")
        .bind(n)
        .fetch_all(store.pool())
        .await
        .unwrap()
}

/// How long the tests wait for a condition.
pub(super) const PATIENCE: Duration = Duration::from_secs(60);
