//! Crash safety, proven: the real binary is killed with SIGKILL at many points of a backfill
//! and of incremental passes with concurrent changes, restarted, and the mirror still equals
//! the simulator, with every change evented exactly once.

use partnerstack_mirror::sync::Reading;
use partnerstack_simulator::AsResource;
use std::{collections::HashMap, time::Duration};

use partnerstack_mirror::{object::ObjectKind, store::Store};
use partnerstack_simulator::{Applied, Mutation, RunningSimulator};
use tokio::process::{Child, Command};

use crate::support;

/// `sync` of every object, partner-team members included (listed: they are not by default).
fn sync_command(sim: &RunningSimulator, store: &Store) -> Command {
    let mut command = support::binary(sim, store, &["sync"]);
    let every: Vec<&str> = ObjectKind::ALL.iter().map(|k| k.table()).collect();
    command.env("PSM_SYNC__BACKFILL_CONCURRENCY", "3").env("PSM_SYNC__LEASE_TTL", "1s").env("PSM_SYNC__OBJECTS", every.join(","));
    command
}

fn sync_process(sim: &RunningSimulator, store: &Store) -> Child {
    sync_command(sim, store).spawn().expect("spawn the binary")
}

async fn pages_written(store: &Store) -> i64 {
    sqlx::query_scalar("SELECT coalesce(sum(pages), 0)::bigint FROM sync_runs").fetch_one(store.pool()).await.unwrap_or(0)
}

/// Runs `sync` and kills it with SIGKILL once `pages` more pages have been committed (or it
/// finished first). Changes land at the simulator while it runs.
async fn run_and_kill(
    sim: &RunningSimulator,
    store: &Store,
    pages: i64,
    changes: &mut impl FnMut() -> Option<Applied>,
    applied: &mut Vec<Applied>,
) {
    let target = pages_written(store).await + pages;
    let mut child = sync_process(sim, store);
    // Every 5 ms: maybe a change at the simulator, then a look at the process and its pages.
    let exited_by_itself =
        support::eventually_paced("the sync to make progress", Duration::from_secs(120), Duration::from_millis(5), || {
            if let Some(a) = changes() {
                applied.push(a);
            }
            let exited = child.try_wait().unwrap().is_some();
            async move {
                if exited {
                    return Some(true);
                }
                (pages_written(store).await >= target).then_some(false)
            }
        })
        .await;
    if exited_by_itself {
        return;
    }
    child.kill().await.unwrap();
    // The dead process's leases lapse before the next one starts.
    support::eventually("the dead process's leases to lapse", Duration::from_secs(10), || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM sync_leases WHERE expires_at > now()").fetch_one(store.pool()).await.unwrap()
            == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_sync_process_at_any_point_loses_no_change_and_duplicates_no_event() {
    let sim = support::simulator(2_500, |_| {}).await;
    let store = support::store().await;

    // Distinct records for each change, so each record's events can be checked exactly.
    let mut candidates: Vec<(ObjectKind, String)> = [ObjectKind::Deal, ObjectKind::Partnership, ObjectKind::Lead, ObjectKind::Customer]
        .into_iter()
        .flat_map(|k| sim.simulator.keys(k).into_iter().take(40).map(move |key| (k, key)))
        .collect();
    let s = sim.simulator.clone();
    let mut turn = 0_usize;
    let mut changes = move || {
        turn += 1;
        if turn % 3 != 0 {
            return None;
        }
        let (kind, key) = candidates.pop()?;
        Some(match (kind, turn % 2) {
            (ObjectKind::Deal, _) => s.apply(Mutation::DealStage { key }).unwrap(),
            (ObjectKind::Partnership, 0) => {
                s.apply(Mutation::PartnershipTags { key, add: vec!["crash-test".into()], remove: vec![] }).unwrap()
            }
            (ObjectKind::Lead, _) => s.apply(Mutation::LeadStatus { key }).unwrap(),
            (kind, _) if turn % 5 == 0 => s.apply(Mutation::Create(kind.resource())).unwrap(),
            (kind, _) => s.apply(Mutation::Touch { kind: kind.resource(), key }).unwrap(),
        })
    };
    let mut applied = Vec::new();

    // Kill points spread over the backfill and over the incremental passes after it.
    for round in 0..14 {
        run_and_kill(&sim, &store, 1 + (round % 5), &mut changes, &mut applied).await;
    }
    // Then let two passes finish undisturbed.
    for _ in 0..2 {
        support::succeeds(&mut sync_command(&sim, &store)).await;
    }

    for kind in ObjectKind::ALL.into_iter().filter(|k| *k != ObjectKind::PartnerTeamMember) {
        let rows: Vec<(String, sqlx::types::Json<serde_json::Value>)> =
            sqlx::query_as(&format!("SELECT key, raw FROM {}", kind.table())).fetch_all(store.pool()).await.unwrap();
        let rows: HashMap<String, serde_json::Value> = rows.into_iter().map(|(k, v)| (k, v.0)).collect();
        let expected = sim.simulator.records(kind);
        assert_eq!(rows.len(), expected.len(), "{kind}");
        for r in expected {
            assert_eq!(rows.get(r["key"].as_str().unwrap()), Some(&r), "{kind}");
        }
    }
    let duplicated: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT object_key FROM events WHERE event_type LIKE '%.created' GROUP BY object_type, object_key HAVING count(*) > 1) d",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(duplicated, 0, "no record was created twice");
    assert!(applied.len() >= 10, "changes landed during the runs");
    for a in &applied {
        let kind = support::kind_of(a.kind);
        let mut expected = a.event_types.clone();
        expected.sort();
        let mut got: Vec<String> =
            sqlx::query_scalar("SELECT event_type FROM events WHERE object_type = $1 AND object_key = $2 AND source = 'poll' ORDER BY id")
                .bind(kind.singular())
                .bind(&a.key)
                .fetch_all(store.pool())
                .await
                .unwrap();
        if expected == ["deal.created"] || expected.iter().any(|e| e.ends_with(".created")) {
            // A record created before its object's backfill finished is part of the backfill.
            let all = support::event_types(&store, kind, &a.key).await;
            assert_eq!(all.iter().filter(|e| e.ends_with(".created")).count(), 1, "{:?} {}", a.kind, a.key);
            continue;
        }
        got.sort();
        if got.is_empty() {
            // Changed before its object's backfill read it: the backfill copied the changed record.
            let raw: sqlx::types::Json<serde_json::Value> = sqlx::query_scalar(&format!("SELECT raw FROM {} WHERE key = $1", kind.table()))
                .bind(&a.key)
                .fetch_one(store.pool())
                .await
                .unwrap();
            assert_eq!(Some(raw.0), sim.simulator.record(a.kind, &a.key));
            continue;
        }
        assert_eq!(got, expected, "{:?} {}", a.kind, a.key);
    }
}

/// Every connection of the daemon is cut (as when PostgreSQL restarts) several times while
/// it runs; it reconnects and the mirror catches up with no change lost or doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_survives_losing_its_database_connections() {
    let sim = support::simulator(600, |_| {}).await;
    let store = support::store().await;
    let syncer = support::syncer(&store, &sim, 50, support::settings());
    syncer.sync_object(ObjectKind::Deal, Reading::Changes).await.unwrap();
    let config = partnerstack_mirror::config::Config::from_toml("[sync]\ninterval = \"20ms\"\nobjects = [\"deals\"]").unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let liveness = partnerstack_mirror::liveness::Liveness::new(Duration::from_secs(30));
    let daemon = tokio::spawn(partnerstack_mirror::scheduler::run(syncer, config.sync, liveness, shutdown.clone()));
    let admin = support::observer(&store).await;
    let app = format!("partnerstack-mirror/{}/%", store.schema());

    let keys: Vec<String> = sim.simulator.keys(ObjectKind::Deal).into_iter().take(6).collect();
    for key in &keys {
        sim.simulator.apply(Mutation::DealStage { key: key.clone() }).unwrap();
        sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE $1")
            .bind(&app)
            .execute(&admin)
            .await
            .unwrap();
    }

    support::eventually("the daemon to catch up with every change", Duration::from_secs(60), || async {
        let mut caught = 0;
        for key in &keys {
            let raw: Option<sqlx::types::Json<serde_json::Value>> =
                sqlx::query_scalar("SELECT raw FROM deals WHERE key = $1").bind(key).fetch_optional(&admin).await.unwrap_or(None);
            if raw.map(|r| r.0) == sim.simulator.record(ObjectKind::Deal, key) {
                caught += 1;
            }
        }
        caught == keys.len()
    })
    .await;
    shutdown.cancel();
    daemon.await.unwrap().unwrap();
    for key in &keys {
        let events = support::event_types(&store, ObjectKind::Deal, key).await;
        assert_eq!(events.iter().filter(|e| *e == "deal.stage_updated").count(), 1, "{key}: {events:?}");
    }
}

/// Every column of every row but the sync times, by key, for each object.
async fn all_rows(store: &Store) -> Vec<Vec<serde_json::Value>> {
    let mut tables = Vec::new();
    for kind in ObjectKind::ALL {
        let rows: Vec<serde_json::Value> =
            sqlx::query_scalar(&format!("SELECT to_jsonb(t) - 'synced_at' - 'first_synced_at' FROM {} t ORDER BY key", kind.table()))
                .fetch_all(store.pool())
                .await
                .unwrap();
        tables.push(rows);
    }
    tables
}

/// Every event but its id and detection time, sorted: the multiset of what was recorded.
async fn all_events(store: &Store) -> Vec<serde_json::Value> {
    let mut events: Vec<serde_json::Value> =
        sqlx::query_scalar("SELECT to_jsonb(e) - 'id' - 'detected_at' FROM events e").fetch_all(store.pool()).await.unwrap();
    events.sort_by_key(|e| e.to_string());
    events
}

/// A first load goes in by `COPY` into empty tables; one killed again and again resumes
/// into tables that hold part of it, where pages are looked up and diffed. Both must end
/// with the same rows and the same events, each record `created` once, with its data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_load_and_a_load_resumed_after_sigkill_give_the_same_rows_and_events() {
    let sim = support::simulator(2_500, |_| {}).await;
    let (whole, resumed) = (support::store().await, support::store().await);
    support::succeeds(&mut sync_command(&sim, &whole)).await;

    let mut applied = Vec::new();
    for round in 0..8 {
        run_and_kill(&sim, &resumed, 2 + round % 4, &mut || None, &mut applied).await;
    }
    let interrupted: i64 = sqlx::query_scalar("SELECT count(*) FROM sync_runs WHERE kind = 'backfill' AND outcome = 'running'")
        .fetch_one(resumed.pool())
        .await
        .unwrap();
    assert!(interrupted >= 3, "the load was killed midway several times ({interrupted})");
    support::succeeds(&mut sync_command(&sim, &resumed)).await;

    assert_eq!(all_rows(&resumed).await, all_rows(&whole).await);
    let events = all_events(&whole).await;
    let tables = all_rows(&whole).await;
    let rows: usize = tables.iter().map(Vec::len).sum();
    let members = tables[ObjectKind::ALL.iter().position(|k| *k == ObjectKind::PartnerTeamMember).unwrap()].len();
    assert!(members > 0, "team members are loaded when listed");
    assert_eq!(events.len(), rows + members, "one created event per row, and a member_joined per team member");
    assert!(events.iter().all(|e| e["data"].is_object()), "events carry their record");
    assert_eq!(all_events(&resumed).await, events);
    // Indexes the killed loads put off are all built again, exactly as declared.
    assert_eq!(support::index_definitions(&resumed).await, support::index_definitions(&whole).await);
    let deferred: i64 = sqlx::query_scalar("SELECT count(*) FROM deferred_indexes").fetch_one(resumed.pool()).await.unwrap();
    assert_eq!(deferred, 0, "no index is left put off");
}
