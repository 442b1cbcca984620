//! Write-back: an SQL INSERT becomes exactly one API call, retried when it may be, and its
//! result lands in the mirror with `write_back` events.

use std::time::Duration;

use partnerstack_mirror::{
    backoff::Backoff,
    object::ObjectKind,
    queue::{self, Handled, QueueSettings, Worker},
    store::Store,
};
use partnerstack_simulator::{Fault, Mutation, RunningSimulator};
use serde_json::{json, Value};

use crate::support;

mod cli;
mod exactly_once;
mod operations;
mod order;
mod retries;

pub(super) fn settings() -> QueueSettings {
    QueueSettings {
        workers: 1,
        max_attempts: 5,
        lease: Duration::from_secs(30),
        poll: Duration::from_millis(20),
        backoff: Backoff::new(Duration::from_millis(5), Duration::from_millis(40)),
        lookup_grace: Duration::ZERO,
    }
}

pub(super) fn worker(store: &Store, sim: &RunningSimulator, name: &str) -> Worker {
    Worker::new(support::client(sim, 250), store.clone(), settings(), name)
}

pub(super) async fn enqueue(store: &Store, operation: &str, object_type: &str, object_key: Option<&str>, payload: Value) -> i64 {
    sqlx::query_scalar("INSERT INTO write_queue (operation, object_type, object_key, payload) VALUES ($1, $2, $3, $4) RETURNING id")
        .bind(operation)
        .bind(object_type)
        .bind(object_key)
        .bind(payload)
        .fetch_one(store.pool())
        .await
        .unwrap_or_else(|e| panic!("{operation} {object_type}: {e}"))
}

/// Works until no request is pending or running (retries wait out their backoff).
pub(super) async fn drain(worker: &Worker, store: &Store) {
    support::eventually_paced("every request to finish", Duration::from_secs(60), Duration::from_millis(5), || async {
        while worker.work_one().await.unwrap().is_some() {}
        let open: i64 = sqlx::query_scalar("SELECT count(*) FROM write_queue WHERE status IN ('pending', 'running')")
            .fetch_one(store.pool())
            .await
            .unwrap();
        (open == 0).then_some(())
    })
    .await
}

/// What `worker` does with the first request it can claim (waiting out other leases).
pub(super) async fn first_claim(worker: &Worker) -> Handled {
    support::eventually_some("a request to become claimable (a lease to expire)", Duration::from_secs(10), || async {
        worker.work_one().await.unwrap()
    })
    .await
}

/// Queues the create of a customer with this `customer_key` (its natural key).
pub(super) async fn enqueue_customer(store: &Store, sim: &RunningSimulator, customer_key: impl std::fmt::Display) -> i64 {
    let email = format!("{customer_key}@example.test");
    enqueue(
        store,
        "create",
        "customer",
        None,
        json!({"customer_key": customer_key.to_string(), "email": email, "partner_key": a_partner_key(sim)}),
    )
    .await
}

/// How many creates (POSTs) reached the API.
pub(super) fn posts(sim: &RunningSimulator) -> usize {
    sim.simulator.writes().into_iter().filter(|w| w.method == "POST").count()
}

/// A partner that customers, deals and leads can be created for.
pub(super) fn a_partner_key(sim: &RunningSimulator) -> String {
    sim.simulator.records(ObjectKind::Partnership)[0]["partner_key"].as_str().unwrap().to_owned()
}

#[derive(sqlx::FromRow, Debug)]
pub(super) struct Outcome {
    pub status: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub http_status: Option<i32>,
    pub result: Option<sqlx::types::Json<Value>>,
}

pub(super) async fn outcome(store: &Store, id: i64) -> Outcome {
    sqlx::query_as("SELECT status, attempts, last_error, http_status, result FROM write_queue WHERE id = $1")
        .bind(id)
        .fetch_one(store.pool())
        .await
        .unwrap()
}

pub(super) fn result_key(o: &Outcome) -> String {
    o.result.as_ref().and_then(|r| r.0.get("key")).and_then(Value::as_str).expect("the result carries the record").to_owned()
}

pub(super) async fn write_back_events(store: &Store, kind: ObjectKind, key: &str) -> Vec<String> {
    sqlx::query_scalar("SELECT event_type FROM events WHERE source = 'write_back' AND object_type = $1 AND object_key = $2 ORDER BY id")
        .bind(kind.singular())
        .bind(key)
        .fetch_all(store.pool())
        .await
        .unwrap()
}
