//! Changes made at the simulator become the right events, exactly once, whatever the API's
//! bound semantics and however changes fall across pages and milliseconds.

use partnerstack_mirror::sync::Reading;
use partnerstack_mirror::{
    object::ObjectKind,
    store::Store,
    sync::{SyncSettings, Syncer},
};
use partnerstack_simulator::AsResource;
use partnerstack_simulator::{BoundSemantics, Clock, Mutation};

use crate::support;

fn first_key(sim: &partnerstack_simulator::RunningSimulator, kind: ObjectKind, n: usize) -> String {
    sim.simulator.keys(kind)[n].clone()
}

async fn sorted_events_after(store: &Store, after: i64, kind: ObjectKind, key: &str) -> Vec<String> {
    let mut v = support::event_types_after(store, after, kind, key).await;
    v.sort();
    v
}

#[tokio::test]
async fn each_mutation_emits_its_events_with_the_changes() {
    let sim = support::simulator(1_200, |_| {}).await;
    let store = support::store().await;
    let syncer = support::syncer(&store, &sim, 100, support::settings());
    support::sync_all(&syncer).await;
    support::rescan_all(&syncer).await;
    let before = support::last_event_id(&store).await;
    let deal = first_key(&sim, ObjectKind::Deal, 3);
    let old_stage = sim.simulator.record(ObjectKind::Deal, &deal).unwrap()["stage"].clone();
    let partnership = first_key(&sim, ObjectKind::Partnership, 2);
    let team_key = sim.simulator.record(ObjectKind::Partnership, &partnership).unwrap()["team"]["key"].as_str().unwrap().to_owned();
    let s = &sim.simulator;
    let applied = vec![
        s.apply(Mutation::Create(ObjectKind::Deal.resource())).unwrap(),
        s.apply(Mutation::Touch { kind: ObjectKind::Customer.resource(), key: first_key(&sim, ObjectKind::Customer, 1) }).unwrap(),
        s.apply(Mutation::DealStage { key: deal.clone() }).unwrap(),
        s.apply(Mutation::PartnershipTags { key: partnership.clone(), add: vec!["added-by-test".into()], remove: vec![] }).unwrap(),
        s.apply(Mutation::PartnershipGroup { key: first_key(&sim, ObjectKind::Partnership, 4) }).unwrap(),
        s.apply(Mutation::LeadDecision { key: first_key(&sim, ObjectKind::Lead, 1), approved: true }).unwrap(),
        s.apply(Mutation::LeadDecision { key: first_key(&sim, ObjectKind::Lead, 2), approved: false }).unwrap(),
        s.apply(Mutation::LeadStatus { key: first_key(&sim, ObjectKind::Lead, 3) }).unwrap(),
        s.apply(Mutation::ApplicationDecision { key: first_key(&sim, ObjectKind::Application, 0), approved: true }).unwrap(),
        s.apply(Mutation::ApplicationDecision { key: first_key(&sim, ObjectKind::Application, 1), approved: false }).unwrap(),
        s.apply(Mutation::RewardStatus { key: first_key(&sim, ObjectKind::Reward, 1) }).unwrap(),
        s.apply(Mutation::TransactionUpdate { key: first_key(&sim, ObjectKind::Transaction, 1) }).unwrap(),
        s.apply(Mutation::Archive { kind: ObjectKind::Customer.resource(), key: first_key(&sim, ObjectKind::Customer, 5) }).unwrap(),
        s.apply(Mutation::TeamMemberJoin { team_key }).unwrap(),
    ];

    support::sync_all(&syncer).await;
    support::rescan_all(&syncer).await;

    for a in &applied {
        let mut expected = a.event_types.clone();
        expected.sort();
        assert_eq!(sorted_events_after(&store, before, support::kind_of(a.kind), &a.key).await, expected, "{:?} {}", a.kind, a.key);
    }
    let (old, new): (serde_json::Value, serde_json::Value) = sqlx::query_as(
        "SELECT changes->'stage'->'old', changes->'stage'->'new' FROM events WHERE event_type = 'deal.stage_updated' AND object_key = $1",
    )
    .bind(&deal)
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(old, old_stage);
    assert_eq!(new, sim.simulator.record(ObjectKind::Deal, &deal).unwrap()["stage"]);
    let added: serde_json::Value =
        sqlx::query_scalar("SELECT changes->'tags_added' FROM events WHERE event_type = 'partnership.tags_updated' AND object_key = $1")
            .bind(&partnership)
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert_eq!(added, serde_json::json!(["added-by-test"]));

    // Restoring the archived customer is the opposite event, and the row is live again.
    let customer = first_key(&sim, ObjectKind::Customer, 5);
    let mid = support::last_event_id(&store).await;
    let restored = s.apply(Mutation::Restore { kind: ObjectKind::Customer.resource(), key: customer.clone() }).unwrap();
    support::sync_all(&syncer).await;
    let mut expected = restored.event_types.clone();
    expected.sort();
    assert_eq!(sorted_events_after(&store, mid, ObjectKind::Customer, &customer).await, expected);
    let (archived, deleted_at): (bool, Option<chrono::DateTime<chrono::Utc>>) =
        sqlx::query_as("SELECT archived, deleted_at FROM customers WHERE key = $1").bind(&customer).fetch_one(store.pool()).await.unwrap();
    assert!(!archived && deleted_at.is_none());
}

/// Records updated in the very millisecond a window ends, some before and some after the
/// pass that closed it, spread over several pages: all caught, none evented twice.
async fn same_millisecond_changes_at_a_window_edge_are_all_caught(bounds: BoundSemantics) {
    let sim = support::simulator(600, |c| c.bounds = bounds).await;
    let store = support::store().await;
    // No lookback: only the bound handling keeps the window edge covered.
    let settings = SyncSettings { lookback: std::time::Duration::ZERO, ..support::settings() };
    let syncer = support::syncer(&store, &sim, 3, settings);
    syncer.sync_object(ObjectKind::Deal, Reading::Changes).await.unwrap();
    syncer.sync_object(ObjectKind::Deal, Reading::Changes).await.unwrap();
    let edge: i64 = sqlx::query_scalar("SELECT (extract(epoch FROM window_end) * 1000)::bigint FROM sync_state WHERE object = 'deals'")
        .fetch_one(store.pool())
        .await
        .unwrap();

    // Seven changes stamped with the window's last millisecond: more than two pages of 3.
    sim.simulator.set_clock(Clock::Frozen(edge));
    let keys: Vec<String> = sim.simulator.keys(ObjectKind::Deal).into_iter().take(7).collect();
    let before = support::last_event_id(&store).await;
    for key in &keys {
        sim.simulator.apply(Mutation::Touch { kind: ObjectKind::Deal.resource(), key: key.clone() }).unwrap();
    }
    sim.simulator.set_clock(Clock::Real);
    syncer.sync_object(ObjectKind::Deal, Reading::Changes).await.unwrap();
    syncer.sync_object(ObjectKind::Deal, Reading::Changes).await.unwrap();

    for key in &keys {
        assert_eq!(support::event_types_after(&store, before, ObjectKind::Deal, key).await, ["deal.updated"], "{key}");
    }
}

#[tokio::test]
async fn same_millisecond_changes_at_a_window_edge_are_all_caught_with_inclusive_bounds() {
    same_millisecond_changes_at_a_window_edge_are_all_caught(BoundSemantics::Inclusive).await;
}

#[tokio::test]
async fn same_millisecond_changes_at_a_window_edge_are_all_caught_with_exclusive_bounds() {
    same_millisecond_changes_at_a_window_edge_are_all_caught(BoundSemantics::Exclusive).await;
}

/// Many records changed in one millisecond, listed across page boundaries in one window.
#[tokio::test]
async fn a_burst_in_one_millisecond_across_pages_is_read_completely() {
    for bounds in [BoundSemantics::Inclusive, BoundSemantics::Exclusive] {
        let sim = support::simulator(500, |c| c.bounds = bounds).await;
        let store = support::store().await;
        let syncer = support::syncer(&store, &sim, 4, support::settings());
        syncer.sync_object(ObjectKind::Lead, Reading::Changes).await.unwrap();
        let before = support::last_event_id(&store).await;
        let ms = chrono::Utc::now().timestamp_millis() - 1_000;
        sim.simulator.set_clock(Clock::Frozen(ms));
        let keys: Vec<String> = sim.simulator.keys(ObjectKind::Lead).into_iter().take(11).collect();
        for key in &keys {
            sim.simulator.apply(Mutation::LeadStatus { key: key.clone() }).unwrap();
        }
        sim.simulator.set_clock(Clock::Real);
        syncer.sync_object(ObjectKind::Lead, Reading::Changes).await.unwrap();
        for key in &keys {
            assert_eq!(support::event_types_after(&store, before, ObjectKind::Lead, key).await, ["lead.updated", "lead.status_updated"]);
        }
    }
}

#[tokio::test]
async fn a_change_landing_between_two_pages_is_caught_once() {
    let sim = support::simulator(600, |_| {}).await;
    let store = support::store().await;
    let syncer = support::syncer(&store, &sim, 5, support::settings());
    syncer.sync_object(ObjectKind::Deal, Reading::Changes).await.unwrap();
    // Many changes so the next window spans several pages.
    let keys: Vec<String> = sim.simulator.keys(ObjectKind::Deal).into_iter().take(12).collect();
    for key in &keys {
        sim.simulator.apply(Mutation::Touch { kind: ObjectKind::Deal.resource(), key: key.clone() }).unwrap();
    }
    // After the first page: an already-listed record changes again, one further down changes,
    // and a new one is created at the head of the listing.
    let (early, late) = (keys[0].clone(), keys[11].clone());
    let created = std::sync::Arc::new(std::sync::Mutex::new(None));
    let created_in_hook = created.clone();
    sim.simulator.after_pages(
        1,
        Box::new(move |s| {
            s.apply(Mutation::DealStage { key: early }).unwrap();
            s.apply(Mutation::DealStage { key: late }).unwrap();
            *created_in_hook.lock().unwrap() = Some(s.apply(Mutation::Create(ObjectKind::Deal.resource())).unwrap().key);
        }),
    );
    let before = support::last_event_id(&store).await;
    syncer.sync_object(ObjectKind::Deal, Reading::Changes).await.unwrap();
    syncer.sync_object(ObjectKind::Deal, Reading::Changes).await.unwrap();

    let created = created.lock().unwrap().clone().expect("the hook ran");
    assert_eq!(support::event_types_after(&store, before, ObjectKind::Deal, &created).await, ["deal.created"]);
    for key in [&keys[0], &keys[11]] {
        let events = support::event_types_after(&store, before, ObjectKind::Deal, key).await;
        assert_eq!(events.iter().filter(|e| *e == "deal.stage_updated").count(), 1, "{key}: {events:?}");
    }
    // And the mirror equals the simulator.
    for key in sim.simulator.keys(ObjectKind::Deal) {
        let raw: sqlx::types::Json<serde_json::Value> =
            sqlx::query_scalar("SELECT raw FROM deals WHERE key = $1").bind(&key).fetch_one(store.pool()).await.unwrap();
        assert_eq!(Some(raw.0), sim.simulator.record(ObjectKind::Deal, &key));
    }
}

/// Transactions and rewards are read by created windows, so their later changes come from
/// rescans, whether or not the API honours `min_updated` for them (docs/correctness.md, question 3).
#[tokio::test]
async fn later_changes_to_transactions_and_rewards_are_caught_by_rescans() {
    for ignore_updated in [true, false] {
        let sim = support::simulator(800, |c| c.created_only_ignore_updated_filter = ignore_updated).await;
        let store = support::store().await;
        let syncer: Syncer = support::syncer(&store, &sim, 100, support::settings());
        syncer.sync_object(ObjectKind::Reward, Reading::Changes).await.unwrap();
        syncer.sync_object(ObjectKind::Transaction, Reading::Changes).await.unwrap();
        let before = support::last_event_id(&store).await;
        let reward = sim.simulator.keys(ObjectKind::Reward).last().unwrap().clone();
        let txn = sim.simulator.keys(ObjectKind::Transaction).last().unwrap().clone();
        sim.simulator.apply(Mutation::RewardStatus { key: reward.clone() }).unwrap();
        sim.simulator.apply(Mutation::TransactionUpdate { key: txn.clone() }).unwrap();
        let new_reward = sim.simulator.apply(Mutation::Create(ObjectKind::Reward.resource())).unwrap().key;

        // A poll finds the new reward by its created window.
        syncer.sync_object(ObjectKind::Reward, Reading::Changes).await.unwrap();
        assert_eq!(support::event_types_after(&store, before, ObjectKind::Reward, &new_reward).await, ["reward.created"]);

        syncer.rescan(ObjectKind::Reward).await.unwrap();
        syncer.rescan(ObjectKind::Transaction).await.unwrap();
        assert_eq!(
            support::event_types_after(&store, before, ObjectKind::Reward, &reward).await,
            ["reward.updated", "reward.status_updated"]
        );
        assert_eq!(support::event_types_after(&store, before, ObjectKind::Transaction, &txn).await, ["transaction.updated"]);
        assert_eq!(
            support::event_types_after(&store, before, ObjectKind::Reward, &new_reward).await,
            ["reward.created"],
            "no double event"
        );
    }
}

/// A record a poll sees for the first time already decided or archived reports that too
/// (docs/events.md, first sight), after its `created`; the backfill before it stays `created` only.
#[tokio::test]
async fn a_poll_reports_the_decisions_a_new_record_already_carries() {
    let sim = support::simulator(600, |_| {}).await;
    let store = support::store().await;
    let syncer = support::syncer(&store, &sim, 100, support::settings());
    for kind in [ObjectKind::Application, ObjectKind::Deal] {
        syncer.sync_object(kind, Reading::Changes).await.unwrap();
    }
    let backfilled: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT event_type FROM events ORDER BY 1").fetch_all(store.pool()).await.unwrap();
    assert_eq!(backfilled, ["application.created", "deal.created"], "a backfill is a snapshot");

    // Decided before the next poll: PartnerStack approved it automatically, say.
    let s = &sim.simulator;
    let application = s.apply(Mutation::Create(ObjectKind::Application.resource())).unwrap().key;
    s.apply(Mutation::ApplicationDecision { key: application.clone(), approved: true }).unwrap();
    let deal = s.apply(Mutation::Create(ObjectKind::Deal.resource())).unwrap().key;
    s.apply(Mutation::Archive { kind: ObjectKind::Deal.resource(), key: deal.clone() }).unwrap();
    for kind in [ObjectKind::Application, ObjectKind::Deal] {
        syncer.sync_object(kind, Reading::Changes).await.unwrap();
    }

    assert_eq!(support::event_types(&store, ObjectKind::Application, &application).await, ["application.created", "application.approved"]);
    assert_eq!(support::event_types(&store, ObjectKind::Deal, &deal).await, ["deal.created", "deal.deleted"]);
    let source: String = sqlx::query_scalar("SELECT source FROM events WHERE object_key = $1 AND event_type = 'application.approved'")
        .bind(&application)
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(source, "poll");
}
