//! Quiet at steady state (docs/steady-state.md): partner teams read only when they may have changed, and
//! every team by the daily key scan; transactions and rewards polled by updated windows while
//! the API honours `min_updated` on them, under both answers and a change of answer; slower
//! polls while webhooks come in; a learned rate that is only a floor.

use partnerstack_mirror::sync::Reading;
use partnerstack_simulator::AsResource;
use std::{sync::Arc, time::Duration};

use partnerstack_mirror::{
    intake::{Intake, ReadRequests},
    object::ObjectKind,
    partnerstack::{LearnedRate, Purpose},
    store::{Store, UpdatedFilter},
    sync::Syncer,
};
use partnerstack_simulator::{Mutation, RunningSimulator};

use crate::support;

/// Partnerships and their teams' members, loaded.
async fn teams_loaded(records: usize) -> (RunningSimulator, Store, Syncer) {
    let sim = support::simulator(records, |_| {}).await;
    let store = support::store().await;
    let syncer = support::syncer(&store, &sim, 50, support::settings());
    for kind in [ObjectKind::Partnership, ObjectKind::PartnerTeamMember] {
        syncer.sync_object(kind, Reading::Changes).await.unwrap_or_else(|e| panic!("{kind}: {}", e.chain()));
    }
    (sim, store, syncer)
}

async fn member_rows(store: &Store, team: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM partner_team_members WHERE team_key = $1 AND deleted_at IS NULL")
        .bind(team)
        .fetch_one(store.pool())
        .await
        .unwrap()
}

/// A partnership of the mirror and its team.
async fn some_team(store: &Store) -> (String, String) {
    sqlx::query_as("SELECT key, team_key FROM partnerships WHERE team_key IS NOT NULL ORDER BY key LIMIT 1")
        .fetch_one(store.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn a_member_added_to_a_team_without_its_partnership_changing_is_found_by_the_daily_walk() {
    let (sim, store, syncer) = teams_loaded(300).await;
    let (_, team) = some_team(&store).await;
    let before = member_rows(&store, &team).await;
    let joined = sim.simulator.apply(Mutation::TeamMemberJoin { team_key: team.clone() }).unwrap();

    let poll = syncer.sync_object(ObjectKind::PartnerTeamMember, Reading::Changes).await.unwrap();
    assert_eq!(poll.requests, 0, "no partnership changed: no team is read");
    assert_eq!(member_rows(&store, &team).await, before, "the poll cannot know of the new member");

    let teams = sim.simulator.team_keys().len() as u64;
    let walk = syncer.reconcile(ObjectKind::PartnerTeamMember).await.unwrap();
    assert!(walk.requests >= teams, "the key scan walks every team: {} requests for {teams} teams", walk.requests);
    assert_eq!(member_rows(&store, &team).await, before + 1);
    let events = support::event_types(&store, ObjectKind::PartnerTeamMember, &joined.key).await;
    assert_eq!(events, ["partner_team.created", "partner_team.member_joined"], "found once, by the walk");
    let again = syncer.sync_object(ObjectKind::PartnerTeamMember, Reading::Changes).await.unwrap();
    assert_eq!(again.requests, 0, "every team was just read");
}

#[tokio::test]
async fn a_team_whose_partnership_changed_is_read_at_the_next_pass_and_only_that_team() {
    let (sim, store, syncer) = teams_loaded(300).await;
    let (partnership, team) = some_team(&store).await;
    let joined = sim.simulator.apply(Mutation::TeamMemberJoin { team_key: team.clone() }).unwrap();
    sim.simulator.apply(Mutation::Touch { kind: ObjectKind::Partnership.resource(), key: partnership }).unwrap();

    syncer.sync_object(ObjectKind::Partnership, Reading::Changes).await.unwrap();
    let poll = syncer.sync_object(ObjectKind::PartnerTeamMember, Reading::Changes).await.unwrap();
    assert_eq!(poll.requests, 1, "one request: the team of the changed partnership");
    let events = support::event_types(&store, ObjectKind::PartnerTeamMember, &joined.key).await;
    assert_eq!(events, ["partner_team.created", "partner_team.member_joined"]);
    let again = syncer.sync_object(ObjectKind::PartnerTeamMember, Reading::Changes).await.unwrap();
    assert_eq!(again.requests, 0, "read once per change");

    // A new partnership brings a new team: read at the next pass.
    let created = sim.simulator.apply(Mutation::Create(ObjectKind::Partnership.resource())).unwrap();
    syncer.sync_object(ObjectKind::Partnership, Reading::Changes).await.unwrap();
    let new_team = sim.simulator.record(ObjectKind::Partnership, &created.key).unwrap()["team"]["key"].as_str().unwrap().to_owned();
    let poll = syncer.sync_object(ObjectKind::PartnerTeamMember, Reading::Changes).await.unwrap();
    assert_eq!(poll.requests, 1);
    assert_eq!(
        member_rows(&store, &new_team).await as usize,
        sim.simulator.records(ObjectKind::PartnerTeamMember).iter().filter(|m| m["team_key"] == new_team.as_str()).count()
    );
}

#[tokio::test]
async fn a_webhook_naming_a_team_gets_that_team_read_at_once() {
    let (sim, store, syncer) = teams_loaded(300).await;
    let (_, team) = some_team(&store).await;
    let joined = sim.simulator.apply(Mutation::TeamMemberJoin { team_key: team.clone() }).unwrap();
    let member = sim.simulator.record(ObjectKind::PartnerTeamMember, &joined.key).unwrap();
    let body = serde_json::json!({"event": "partner_team.member_joined", "data": member}).to_string();
    store.accept_webhook(Some("partner_team.member_joined"), &body).await.unwrap();
    let reads = Arc::new(ReadRequests::default());
    let intake = Intake {
        store: store.clone(),
        reads: reads.clone(),
        objects: vec![ObjectKind::Partnership, ObjectKind::PartnerTeamMember],
        counters: Default::default(),
        wake: Arc::default(),
    };
    intake.work_through().await.unwrap();
    assert_eq!(reads.next().await.into_keys().collect::<Vec<_>>(), [ObjectKind::PartnerTeamMember]);

    let before = syncer.api().requests_by_purpose();
    let read = syncer.read_now(ObjectKind::PartnerTeamMember).await.unwrap();
    assert_eq!(read.requests, 1, "the named team, not every team");
    let after = syncer.api().requests_by_purpose();
    let webhook = |counts: &[(Purpose, u64)]| counts.iter().find(|(p, _)| *p == Purpose::Webhook).unwrap().1;
    assert_eq!(webhook(&after) - webhook(&before), 1, "counted as a webhook read");
    let events = support::event_types(&store, ObjectKind::PartnerTeamMember, &joined.key).await;
    assert_eq!(events, ["partner_team.created", "partner_team.member_joined"]);
}

/// Transactions whose later changes were evented, by key: each must have exactly one
/// `transaction.updated` per change.
async fn updated_events(store: &Store, key: &str) -> usize {
    support::event_types(store, ObjectKind::Transaction, key).await.iter().filter(|e| *e == "transaction.updated").count()
}

async fn filter_of(store: &Store, kind: ObjectKind) -> Option<UpdatedFilter> {
    store.object_state(kind).await.unwrap().updated_filter.map(|(f, _)| f)
}

/// docs/steady-state.md: under either answer of the API (the simulator's switch, flipped between probes),
/// transactions are polled by updated windows exactly while the probe finds `min_updated`
/// honoured, rescanned otherwise, and no change is lost or evented twice.
#[tokio::test]
async fn the_min_updated_probe_switches_transactions_between_polling_and_rescanning_and_a_flip_loses_no_change() {
    let sim = support::simulator(400, |c| c.created_only_ignore_updated_filter = false).await;
    let store = support::store().await;
    let syncer = support::syncer(&store, &sim, 50, support::settings());
    let kind = ObjectKind::Transaction;
    syncer.sync_object(kind, Reading::Changes).await.unwrap();
    let keys = sim.simulator.keys(kind);
    let change = |i: usize| {
        sim.simulator.apply(Mutation::TransactionUpdate { key: keys[i].clone() }).unwrap();
        keys[i].clone()
    };

    // Honoured: the switch waits for the next complete read, then polls find updates.
    assert_eq!(syncer.probe_updated_filter(kind).await.unwrap(), Some(UpdatedFilter::Honoured));
    assert!(syncer.needs_rescan(kind).await.unwrap(), "the created windows polled so far say nothing of updates");
    syncer.rescan(kind).await.unwrap();
    assert!(!syncer.needs_rescan(kind).await.unwrap(), "after a complete read: polled by updated windows, no hourly rescan");
    let first = change(1);
    syncer.sync_object(kind, Reading::Changes).await.unwrap();
    assert_eq!(updated_events(&store, &first).await, 1, "a poll found the update");

    // The API stops honouring it between probes: the next poll sees a record outside its
    // window, and transactions go back to created windows and rescans.
    sim.simulator.configure(|c| c.created_only_ignore_updated_filter = true);
    let second = change(2);
    syncer.sync_object(kind, Reading::Changes).await.unwrap();
    assert_eq!(filter_of(&store, kind).await, Some(UpdatedFilter::Ignored));
    assert!(syncer.needs_rescan(kind).await.unwrap());
    syncer.rescan(kind).await.unwrap();
    assert_eq!(updated_events(&store, &second).await, 1, "the rescan found the update the broken window could not");
    assert_eq!(syncer.probe_updated_filter(kind).await.unwrap(), Some(UpdatedFilter::Ignored), "the next probe agrees");
    let third = change(3);
    syncer.sync_object(kind, Reading::Changes).await.unwrap();
    assert_eq!(updated_events(&store, &third).await, 0, "created windows cannot see updates");
    syncer.rescan(kind).await.unwrap();
    assert_eq!(updated_events(&store, &third).await, 1, "the hourly rescan does");

    // It starts honouring it again: caught at the next probe; polls by updated windows after
    // the next complete read, which also brings what changed meanwhile.
    sim.simulator.configure(|c| c.created_only_ignore_updated_filter = false);
    let fourth = change(4);
    syncer.sync_object(kind, Reading::Changes).await.unwrap();
    assert!(syncer.needs_rescan(kind).await.unwrap(), "not before the next probe");
    assert_eq!(syncer.probe_updated_filter(kind).await.unwrap(), Some(UpdatedFilter::Honoured));
    assert!(syncer.needs_rescan(kind).await.unwrap(), "not before the next complete read");
    syncer.rescan(kind).await.unwrap();
    assert_eq!(updated_events(&store, &fourth).await, 1);
    let fifth = change(5);
    syncer.sync_object(kind, Reading::Changes).await.unwrap();
    assert_eq!(updated_events(&store, &fifth).await, 1, "polled by updated windows again");

    for key in [first, second, third, fourth, fifth] {
        assert_eq!(updated_events(&store, &key).await, 1, "{key}: one event per change, none twice");
    }
}

#[tokio::test]
async fn under_an_api_that_ignores_min_updated_transactions_stay_in_the_rescan() {
    let sim = support::simulator(300, |c| c.created_only_ignore_updated_filter = true).await;
    let store = support::store().await;
    let syncer = support::syncer(&store, &sim, 50, support::settings());
    for kind in [ObjectKind::Transaction, ObjectKind::Reward] {
        syncer.sync_object(kind, Reading::Changes).await.unwrap();
        assert_eq!(syncer.probe_updated_filter(kind).await.unwrap(), Some(UpdatedFilter::Ignored));
        syncer.rescan(kind).await.unwrap();
        assert!(syncer.needs_rescan(kind).await.unwrap(), "{kind}");
    }
    assert_eq!(syncer.probe_updated_filter(ObjectKind::Deal).await.unwrap(), None, "deals are documented to honour it");
    assert!(!syncer.needs_rescan(ObjectKind::Deal).await.unwrap());
    assert!(!syncer.needs_rescan(ObjectKind::PartnerTeamMember).await.unwrap(), "teams are walked by the key scan");
}

/// The webhook intake's token in these tests.
const TOKEN: &str = "steady-state-token-0123456789";

/// The real daemon with webhook intake on `port` (`TOKEN`), `sync` settings (`PSM_SYNC__<KEY>`)
/// and `webhooks.quiet_after`.
fn with_intake(sim: &RunningSimulator, store: &Store, port: u16, sync: &[(&str, &str)], quiet_after: &str) -> tokio::process::Child {
    let mut env: Vec<(String, String)> = sync.iter().map(|(k, v)| (format!("PSM_SYNC__{k}"), v.to_string())).collect();
    env.push(("PSM_WEBHOOKS__TOKEN".into(), TOKEN.into()));
    env.push(("PSM_WEBHOOKS__QUIET_AFTER".into(), quiet_after.into()));
    env.push(("PSM_HTTP__LISTEN".into(), format!("127.0.0.1:{port}")));
    let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    support::daemon(sim, store, &env)
}

/// The real daemon with webhook intake: polls every 100 ms, every hour while a webhook came
/// within the last 3 seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polls_slow_down_while_webhooks_come_in_and_resume_when_they_stop() {
    let (sim, store, port) = (support::simulator(100, |_| {}).await, support::store().await, support::free_port());
    let mut daemon =
        with_intake(&sim, &store, port, &[("INTERVAL", "100ms"), ("INTERVAL_WITH_WEBHOOKS", "1h"), ("OBJECTS", "groups")], "3s");
    let polls = |store: Store| async move {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM sync_runs WHERE object = 'groups' AND kind = 'poll'")
            .fetch_one(store.pool())
            .await
            .unwrap()
    };
    support::eventually("ordinary polls", Duration::from_secs(30), || async { polls(store.clone()).await >= 5 }).await;

    // Healthy intake: one webhook (about nothing the mirror reads, so it asks for no read).
    let answer = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/webhooks/partnerstack/{TOKEN}"))
        .body(r#"{"event": "agreement.accepted"}"#)
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success());
    let received: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT received_at FROM webhook_inbox").fetch_one(store.pool()).await.unwrap();
    let started_between = |from: f64, to: f64| {
        let store = store.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM sync_runs WHERE object = 'groups' AND kind = 'poll' \
                 AND started_at > $1 + make_interval(secs => $2) AND started_at < $1 + make_interval(secs => $3)",
            )
            .bind(received)
            .bind(from)
            .bind(to)
            .fetch_one(store.pool())
            .await
            .unwrap()
        }
    };
    // Ordinary polls again once the webhook is older than quiet_after.
    support::eventually("polls to resume after quiet_after", Duration::from_secs(30), || async { started_between(3.0, 3600.0).await > 0 })
        .await;
    let quiet = started_between(0.5, 2.9).await;
    assert_eq!(quiet, 0, "no poll started while the webhook was recent (ordinarily about 20 in that time)");
    support::eventually("several ordinary polls", Duration::from_secs(30), || async { started_between(3.0, 3600.0).await >= 5 }).await;

    support::sigterm(&daemon).await;
    assert!(daemon.wait().await.unwrap().success());
}

/// A rate remembered without a 429 is handed to the client as a floor (it keeps probing);
/// one remembered at a 429 as the limit.
#[tokio::test]
async fn a_rate_learned_without_a_429_keeps_probing_at_the_next_start() {
    let sim = support::simulator(10, |_| {}).await;
    let store = support::store().await;
    let defaults = partnerstack_simulator::SimulatorConfig::default();
    let config = partnerstack_mirror::config::Config::from_toml(&format!(
        "[database]\nurl = \"{}\"\nschema = \"{}\"\n[partnerstack]\napi_url = \"{}\"\npublic_key = \"{}\"\nprivate_key = \"{}\"\n",
        support::database_url(),
        store.schema(),
        sim.base_url,
        defaults.public_key,
        defaults.private_key
    ))
    .unwrap();
    for found_at_429 in [false, true] {
        let learned = LearnedRate { requests_per_second: 8.0, found_at_429 };
        store.remember_rate(config.partnerstack.api_url.as_str(), &config.partnerstack.public_key, learned).await.unwrap();
        let syncer = partnerstack_mirror::daemon::syncer(&config, tokio_util::sync::CancellationToken::new()).await.unwrap();
        assert_eq!(syncer.api().learned(), Some(learned), "started from what was remembered, probing only from a floor");
    }
}

/// `status` adds up every process's requests by purpose: here one `sync` that backfilled deals
/// and polled groups.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_prints_the_requests_of_the_last_hour_and_day_by_purpose() {
    let sim = support::simulator(300, |_| {}).await;
    let store = support::store().await;
    support::succeeds(support::binary(&sim, &store, &["sync", "--object", "deals"]).env("PSM_PARTNERSTACK__PAGE_SIZE", "10")).await;
    let sent = sim.simulator.request_count();
    assert!(sent > 3, "a backfill of several pages: {sent}");
    let report = support::binary(&sim, &store, &["status"]).stdout(std::process::Stdio::piped()).output().await.unwrap();
    let report = String::from_utf8_lossy(&report.stdout);
    assert!(report.contains(&format!("API requests, last hour / last day: {sent} / {sent}")), "{report}");
    let line = |purpose: &str| report.lines().find(|l| l.trim_start().starts_with(&format!("{purpose} "))).map(str::to_owned);
    let backfill = line("backfill").unwrap_or_else(|| panic!("a backfill line in {report}"));
    assert!(!backfill.trim_start().starts_with("backfill             0"), "{backfill}");
    for purpose in ["poll", "rescan", "key_scan", "team", "write_back", "webhook", "probe"] {
        assert!(line(purpose).is_some(), "{purpose} in {report}");
    }
}

/// With `sync.schedule` (cron) instead of an interval, the poll loop runs a pass at once and
/// then one at each tick (the cron clock only sends ticks).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cron_poll_schedule_runs_a_pass_at_each_tick() {
    let sim = support::simulator(50, |_| {}).await;
    let store = support::store().await;
    let mut command = support::binary(&sim, &store, &["run"]);
    command.env("PSM_SYNC__SCHEDULE", "* * * * * *").env("PSM_SYNC__OBJECTS", "groups").env("PSM_HTTP__LISTEN", "127.0.0.1:0");
    let mut daemon = command.spawn().unwrap();
    support::eventually("three poll passes, a second apart", Duration::from_secs(30), || async {
        let polls: i64 = sqlx::query_scalar("SELECT count(*) FROM sync_runs WHERE object = 'groups' AND kind = 'poll'")
            .fetch_one(store.pool())
            .await
            .unwrap();
        polls >= 3
    })
    .await;
    support::sigterm(&daemon).await;
    assert!(daemon.wait().await.unwrap().success());
}

/// While webhooks come in, a scheduled poll skips the objects a read a webhook asked for
/// brought up to date since the last poll: that read was a poll of the object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_poll_skips_the_objects_webhook_reads_brought_up_to_date() {
    let (sim, store, port) = (support::simulator(100, |_| {}).await, support::store().await, support::free_port());
    // Scheduled windows end 30 s before their start; a webhook's read ends at its start: the
    // runs tell which is which.
    let sync = [("INTERVAL", "200ms"), ("INTERVAL_WITH_WEBHOOKS", "1s"), ("SETTLE", "30s"), ("OBJECTS", "groups,deals")];
    let mut daemon = with_intake(&sim, &store, port, &sync, "1h");
    let loaded = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM sync_state WHERE cursor IS NOT NULL").fetch_one(store.pool()).await.unwrap() == 2
    };
    support::eventually("both objects loaded", Duration::from_secs(30), loaded).await;
    let deal = sim.simulator.keys(ObjectKind::Deal)[0].clone();
    let url = format!("http://127.0.0.1:{port}/webhooks/partnerstack/{TOKEN}");
    let started: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("SELECT now()").fetch_one(store.pool()).await.unwrap();
    let hints = tokio::spawn(async move {
        let client = reqwest::Client::new();
        for _ in 0..40 {
            let body = serde_json::json!({"event": "deal.updated", "data": {"key": deal}}).to_string();
            assert!(client.post(&url).body(body).send().await.unwrap().status().is_success());
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    });
    let scheduled = |object: &'static str| {
        let store = store.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM sync_runs WHERE object = $1 AND kind = 'poll' AND started_at > $2 + interval '2 seconds' \
                 AND window_end < started_at - interval '20 seconds'",
            )
            .bind(object)
            .bind(started)
            .fetch_one(store.pool())
            .await
            .unwrap()
        }
    };
    support::eventually("scheduled polls of groups while deals' webhooks come in", Duration::from_secs(30), || async {
        scheduled("groups").await >= 3
    })
    .await;
    let webhook_reads: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sync_runs WHERE object = 'deals' AND started_at > $1 AND window_end >= started_at - interval '20 seconds'",
    )
    .bind(started)
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert!(webhook_reads >= 2, "the webhooks asked for reads of deals ({webhook_reads})");
    assert_eq!(scheduled("deals").await, 0, "deals, read by the webhooks' reads, were not polled again on schedule");
    hints.abort();
    support::sigterm(&daemon).await;
    assert!(daemon.wait().await.unwrap().success());
}
