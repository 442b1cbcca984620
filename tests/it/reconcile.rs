//! Deletes: archived records and records that vanish from the API, under both answers to
//! Question 2 of docs/correctness.md, behind the safety brake.

use partnerstack_mirror::sync::Reading;
use partnerstack_mirror::{
    object::ObjectKind,
    sync::{SyncError, SyncSettings},
};
use partnerstack_simulator::AsResource;
use partnerstack_simulator::{Fault, Mutation};

use crate::support;

async fn deleted_at_set(store: &partnerstack_mirror::store::Store, kind: ObjectKind, key: &str) -> bool {
    sqlx::query_scalar::<_, Option<chrono::DateTime<chrono::Utc>>>(&format!("SELECT deleted_at FROM {} WHERE key = $1", kind.table()))
        .bind(key)
        .fetch_one(store.pool())
        .await
        .unwrap()
        .is_some()
}

#[tokio::test]
async fn a_record_that_vanishes_is_marked_deleted_by_the_key_scan_with_its_last_state() {
    let sim = support::simulator(600, |_| {}).await;
    let store = support::store().await;
    let syncer = support::syncer(&store, &sim, 50, support::settings());
    syncer.sync_object(ObjectKind::Customer, Reading::Changes).await.unwrap();
    let key = sim.simulator.keys(ObjectKind::Customer)[2].clone();
    let last_state = sim.simulator.record(ObjectKind::Customer, &key).unwrap();
    sim.simulator.apply(Mutation::HardDelete { kind: ObjectKind::Customer.resource(), key: key.clone() }).unwrap();

    // A poll cannot see a disappearance; the key scan does.
    syncer.sync_object(ObjectKind::Customer, Reading::Changes).await.unwrap();
    assert!(!deleted_at_set(&store, ObjectKind::Customer, &key).await);
    let before = support::last_event_id(&store).await;
    syncer.reconcile(ObjectKind::Customer).await.unwrap();

    assert!(deleted_at_set(&store, ObjectKind::Customer, &key).await);
    let (event_type, source, data): (String, String, sqlx::types::Json<serde_json::Value>) =
        sqlx::query_as("SELECT event_type, source, data FROM events WHERE id > $1 AND object_key = $2")
            .bind(before)
            .bind(&key)
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert_eq!((event_type.as_str(), source.as_str()), ("customer.deleted", "reconcile"));
    assert_eq!(data.0, last_state);
    // Every record the API still has is live (archived ones keep `archived`, not vanished).
    let present: i64 =
        sqlx::query_scalar("SELECT count(*) FROM customers WHERE deleted_at IS NULL OR archived").fetch_one(store.pool()).await.unwrap();
    assert_eq!(present as usize, sim.simulator.keys(ObjectKind::Customer).len());

    // A second scan finds nothing new to delete.
    let mid = support::last_event_id(&store).await;
    syncer.reconcile(ObjectKind::Customer).await.unwrap();
    assert_eq!(support::last_event_id(&store).await, mid);
}

/// Archived records either stay listed with `archived: true` or vanish (docs/correctness.md, question 2); both end
/// as one `deleted` event and, once restored, one `restored` event.
#[tokio::test]
async fn archiving_and_restoring_is_seen_whether_archived_records_stay_listed_or_vanish() {
    for listed in [true, false] {
        let sim = support::simulator(500, |c| c.archived_listed = listed).await;
        let store = support::store().await;
        let syncer = support::syncer(&store, &sim, 50, support::settings());
        syncer.sync_object(ObjectKind::Deal, Reading::Changes).await.unwrap();
        let key = sim.simulator.keys(ObjectKind::Deal)[1].clone();
        let before = support::last_event_id(&store).await;

        sim.simulator.apply(Mutation::Archive { kind: ObjectKind::Deal.resource(), key: key.clone() }).unwrap();
        syncer.sync_object(ObjectKind::Deal, Reading::Changes).await.unwrap();
        syncer.reconcile(ObjectKind::Deal).await.unwrap();
        assert!(deleted_at_set(&store, ObjectKind::Deal, &key).await, "listed={listed}");
        let events = support::event_types_after(&store, before, ObjectKind::Deal, &key).await;
        assert_eq!(events.iter().filter(|e| *e == "deal.deleted").count(), 1, "listed={listed}: {events:?}");

        let mid = support::last_event_id(&store).await;
        sim.simulator.apply(Mutation::Restore { kind: ObjectKind::Deal.resource(), key: key.clone() }).unwrap();
        syncer.sync_object(ObjectKind::Deal, Reading::Changes).await.unwrap();
        syncer.reconcile(ObjectKind::Deal).await.unwrap();
        assert!(!deleted_at_set(&store, ObjectKind::Deal, &key).await, "listed={listed}");
        let events = support::event_types_after(&store, mid, ObjectKind::Deal, &key).await;
        assert_eq!(events.iter().filter(|e| *e == "deal.restored").count(), 1, "listed={listed}: {events:?}");
        assert!(!events.contains(&"deal.deleted".to_owned()));
    }
}

#[tokio::test]
async fn the_brake_refuses_to_delete_more_than_the_allowed_share_and_says_why() {
    let sim = support::simulator(800, |_| {}).await;
    let store = support::store().await;
    let syncer = support::syncer(&store, &sim, 100, support::settings());
    syncer.sync_object(ObjectKind::Lead, Reading::Changes).await.unwrap();
    let keys = sim.simulator.keys(ObjectKind::Lead);
    let doomed: Vec<String> = keys.iter().take(keys.len() / 4).cloned().collect();
    for key in &doomed {
        sim.simulator.apply(Mutation::HardDelete { kind: ObjectKind::Lead.resource(), key: key.clone() }).unwrap();
    }

    let err = syncer.reconcile(ObjectKind::Lead).await.expect_err("25% is over the 10% brake");
    assert!(matches!(err, SyncError::ReconcileRefused { .. }), "{}", err.chain());
    let deleted: i64 = sqlx::query_scalar("SELECT count(*) FROM leads WHERE deleted_at IS NOT NULL AND NOT archived")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(deleted, 0);
    let last_error: String =
        sqlx::query_scalar("SELECT last_error FROM sync_state WHERE object = 'leads'").fetch_one(store.pool()).await.unwrap();
    assert!(last_error.contains("reconcile_max_delete_share"), "{last_error}");

    // An operator who agrees raises the brake for one run.
    let settings = SyncSettings { reconcile_max_delete_share: 0.5, ..support::settings() };
    support::syncer(&store, &sim, 100, settings).reconcile(ObjectKind::Lead).await.unwrap();
    let deleted: i64 = sqlx::query_scalar("SELECT count(*) FROM leads WHERE deleted_at IS NOT NULL AND NOT archived")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(deleted as usize, doomed.len());
}

/// The brake is for an API that suddenly hides many records: in a small account, a few real
/// deletions are a large share, and still go through.
#[tokio::test]
async fn a_handful_of_deletions_pass_the_brake_however_small_the_account() {
    let sim = support::simulator(80, |_| {}).await;
    let store = support::store().await;
    let syncer = support::syncer(&store, &sim, 100, support::settings());
    syncer.sync_object(ObjectKind::Lead, Reading::Changes).await.unwrap();
    let keys = sim.simulator.keys(ObjectKind::Lead);
    let doomed: Vec<String> = keys.iter().take(keys.len().div_ceil(2).min(10)).cloned().collect();
    assert!(doomed.len() >= 2 && doomed.len() as f64 > 0.1 * keys.len() as f64, "{} of {}", doomed.len(), keys.len());
    for key in &doomed {
        sim.simulator.apply(Mutation::HardDelete { kind: ObjectKind::Lead.resource(), key: key.clone() }).unwrap();
    }

    syncer.reconcile(ObjectKind::Lead).await.unwrap();
    let deleted: i64 = sqlx::query_scalar("SELECT count(*) FROM leads WHERE deleted_at IS NOT NULL AND NOT archived")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(deleted as usize, doomed.len());
}

#[tokio::test]
async fn a_key_scan_that_fails_midway_marks_nothing_deleted() {
    let sim = support::simulator(600, |_| {}).await;
    let store = support::store().await;
    let settings = SyncSettings { backfill_concurrency: 1, ..support::settings() };
    let syncer = support::syncer(&store, &sim, 10, settings);
    syncer.sync_object(ObjectKind::Partnership, Reading::Changes).await.unwrap();
    let key = sim.simulator.keys(ObjectKind::Partnership)[0].clone();
    sim.simulator.apply(Mutation::HardDelete { kind: ObjectKind::Partnership.resource(), key: key.clone() }).unwrap();
    sim.simulator.after_pages(2, Box::new(|s| s.inject(Fault::ServerError(502), 50)));

    assert!(syncer.reconcile(ObjectKind::Partnership).await.is_err());
    let deleted: i64 = sqlx::query_scalar("SELECT count(*) FROM partnerships WHERE deleted_at IS NOT NULL AND NOT archived")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(deleted, 0, "an incomplete scan proves nothing");
}
