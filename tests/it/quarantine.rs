//! Bad input never stops the mirror: each kind of poisoned record goes to `quarantine` with
//! a clear reason, the rest of the page is stored, and a later clean copy clears it.

use partnerstack_mirror::object::ObjectKind;
use partnerstack_mirror::sync::Reading;
use partnerstack_simulator::{Fault, Poison};

use crate::support;

const POISONS: [(Poison, &str); 5] = [
    (Poison::NulCharacter, "contains a NUL character"),
    (Poison::WrongType, "must be an integer"),
    (Poison::MissingKey, "no `key`"),
    (Poison::BadTimestamp, "must be epoch milliseconds"),
    (Poison::Huge, "over the 1048576-byte limit"),
];

#[tokio::test]
async fn each_kind_of_bad_record_is_quarantined_and_the_rest_is_stored() {
    let sim = support::simulator(800, |_| {}).await;
    let store = support::store().await;
    let keys = sim.simulator.keys(ObjectKind::Deal);
    for (i, (poison, _)) in POISONS.iter().enumerate() {
        sim.simulator.poison(ObjectKind::Deal, &keys[i * 3], *poison);
    }
    let syncer = support::syncer(&store, &sim, 7, support::settings());

    syncer.sync_object(ObjectKind::Deal, Reading::Changes).await.expect("bad records do not stop the pass");

    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM deals").fetch_one(store.pool()).await.unwrap();
    assert_eq!(rows as usize, keys.len() - POISONS.len(), "every good record is stored");
    let errors: Vec<(Option<String>, String, i64)> =
        sqlx::query_as("SELECT key, error, length(raw)::bigint FROM quarantine WHERE object = 'deals' ORDER BY id")
            .fetch_all(store.pool())
            .await
            .unwrap();
    assert_eq!(errors.len(), POISONS.len(), "{errors:?}");
    for (_, expected) in POISONS {
        assert!(errors.iter().any(|(_, e, _)| e.contains(expected)), "no quarantine row says {expected:?}: {errors:?}");
    }
    assert!(errors.iter().all(|(_, _, len)| *len > 0), "the raw text is kept");
    let status = store.status().await.unwrap();
    assert_eq!(status.objects.iter().find(|o| o.kind == ObjectKind::Deal).unwrap().quarantined, POISONS.len() as i64);

    // The same bad records seen again are counted, not duplicated.
    syncer.sync_object(ObjectKind::Deal, Reading::Everything).await.unwrap();
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM quarantine WHERE object = 'deals'").fetch_one(store.pool()).await.unwrap();
    assert_eq!(count, POISONS.len() as i64);
}

#[tokio::test]
async fn a_later_clean_copy_of_a_record_clears_its_quarantine_row() {
    let sim = support::simulator(400, |_| {}).await;
    let store = support::store().await;
    let key = sim.simulator.keys(ObjectKind::Lead)[0].clone();
    sim.simulator.poison(ObjectKind::Lead, &key, Poison::WrongType);
    let syncer = support::syncer(&store, &sim, 50, support::settings());
    syncer.sync_object(ObjectKind::Lead, Reading::Changes).await.unwrap();
    let held: i64 = sqlx::query_scalar("SELECT count(*) FROM quarantine WHERE key = $1").bind(&key).fetch_one(store.pool()).await.unwrap();
    assert_eq!(held, 1);

    sim.simulator.cure(ObjectKind::Lead, &key);
    syncer.sync_object(ObjectKind::Lead, Reading::Changes).await.unwrap();

    let held: i64 = sqlx::query_scalar("SELECT count(*) FROM quarantine WHERE key = $1").bind(&key).fetch_one(store.pool()).await.unwrap();
    assert_eq!(held, 0, "the clean copy cleared it");
    let events = support::event_types(&store, ObjectKind::Lead, &key).await;
    // First seen by a poll: created, then the decision the lead already carries (docs/events.md).
    let lead = sim.simulator.record(ObjectKind::Lead, &key).unwrap();
    let mut expected = vec!["lead.created"];
    match lead["approved"].as_bool() {
        Some(true) => expected.push("lead.approved"),
        Some(false) => expected.push("lead.declined"),
        None => {}
    }
    assert_eq!(events, expected, "the record arrives once it is clean");
}

#[tokio::test]
async fn a_response_that_is_not_json_is_retried_like_a_dropped_connection() {
    let sim = support::simulator(300, |_| {}).await;
    let store = support::store().await;
    sim.simulator.inject(Fault::NotJson, 2);
    let syncer = support::syncer(&store, &sim, 250, support::settings());
    syncer.sync_object(ObjectKind::Customer, Reading::Changes).await.expect("retried");
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM customers").fetch_one(store.pool()).await.unwrap();
    assert_eq!(rows as usize, sim.simulator.keys(ObjectKind::Customer).len());
}
