//! Rate limits, server errors and dropped connections are survived; a pass that fails
//! midway changes nothing that the next pass would then event twice.

use partnerstack_mirror::sync::Reading;
use partnerstack_mirror::{
    object::ObjectKind,
    partnerstack::{ApiError, ErrorClass},
    sync::SyncError,
};
use partnerstack_simulator::{Fault, Mutation};

use crate::support;

#[tokio::test]
async fn rate_limits_server_errors_and_dropped_connections_are_retried_and_the_pass_completes() {
    for retry_after in [true, false] {
        let sim = support::simulator(700, |c| {
            c.rate_limit_per_sec = Some(40.0);
            c.retry_after_header = retry_after;
        })
        .await;
        sim.simulator.inject(Fault::ServerError(503), 2);
        sim.simulator.inject(Fault::DropConnection, 1);
        sim.simulator.inject(Fault::Truncated, 1);
        let store = support::store().await;
        let syncer = support::syncer(&store, &sim, 25, support::settings());

        syncer.sync_object(ObjectKind::Deal, Reading::Changes).await.expect("the pass completes despite the faults");

        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM deals").fetch_one(store.pool()).await.unwrap();
        assert_eq!(rows as usize, sim.simulator.keys(ObjectKind::Deal).len());
        assert!(syncer.api().requests_sent() > (rows as u64).div_ceil(25), "failed requests were retried");
    }
}

#[tokio::test]
async fn a_pass_that_fails_midway_keeps_its_cursor_and_the_next_pass_emits_no_duplicate() {
    let sim = support::simulator(800, |_| {}).await;
    let store = support::store().await;
    let syncer = support::syncer(&store, &sim, 4, support::settings());
    syncer.sync_object(ObjectKind::Deal, Reading::Changes).await.unwrap();
    let cursor_before: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT cursor FROM sync_state WHERE object = 'deals'").fetch_one(store.pool()).await.unwrap();

    let keys: Vec<String> = sim.simulator.keys(ObjectKind::Deal).into_iter().take(10).collect();
    for key in &keys {
        sim.simulator.apply(Mutation::DealStage { key: key.clone() }).unwrap();
    }
    let before = support::last_event_id(&store).await;
    // After the first page of changes, the API fails for longer than the retries last.
    sim.simulator.after_pages(1, Box::new(|s| s.inject(Fault::ServerError(500), 100)));
    let err = syncer.sync_object(ObjectKind::Deal, Reading::Changes).await.expect_err("the pass fails");
    assert!(err.chain().contains("500"), "{}", err.chain());

    let (cursor_after, last_error): (Option<chrono::DateTime<chrono::Utc>>, Option<String>) =
        sqlx::query_as("SELECT cursor, last_error FROM sync_state WHERE object = 'deals'").fetch_one(store.pool()).await.unwrap();
    assert_eq!(cursor_after, cursor_before, "the cursor did not move");
    assert!(last_error.is_some_and(|e| e.contains("500")));
    let written_by_failed_pass = support::last_event_id(&store).await - before;
    assert!(written_by_failed_pass > 0, "the first page was committed before the failure");

    // Passes fail until the injected faults are used up; then one succeeds.
    let mut attempts = 0;
    while syncer.sync_object(ObjectKind::Deal, Reading::Changes).await.is_err() {
        attempts += 1;
        assert!(attempts < 60, "the API recovered, so a pass must succeed");
    }
    for key in &keys {
        let events = support::event_types_after(&store, before, ObjectKind::Deal, key).await;
        assert_eq!(events, ["deal.updated", "deal.stage_updated"], "{key}");
    }
    let failed_runs: i64 = sqlx::query_scalar("SELECT count(*) FROM sync_runs WHERE object = 'deals' AND outcome = 'failed'")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert!(failed_runs >= 1);
}

/// A pass's verdict, finished or failed, is logged inside the pass's span, so it names the
/// object, the run and its window like everything else the pass logged (the binary's JSON
/// logs, as an operator's log shipper gets them).
#[tokio::test]
async fn a_pass_logs_its_verdict_inside_its_span() {
    let sim = support::simulator(200, |_| {}).await;
    let store = support::store().await;
    let sync = || async {
        let output = support::binary(&sim, &store, &["sync", "--object", "deals"])
            .env("RUST_LOG", "info")
            .env("PSM_PARTNERSTACK__MAX_RETRIES", "0")
            .stderr(std::process::Stdio::piped())
            .output()
            .await
            .unwrap();
        (output.status.success(), String::from_utf8(output.stderr).unwrap())
    };
    let (succeeded, finished) = sync().await;
    assert!(succeeded, "{finished}");
    sim.simulator.inject(Fault::ServerError(500), 100);
    let (succeeded, failed) = sync().await;
    assert!(!succeeded, "the API keeps failing");

    for (logs, verdict) in [(finished, "pass finished"), (failed, "pass failed")] {
        let line = logs
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|l| l["message"] == verdict)
            .unwrap_or_else(|| panic!("no {verdict:?} line in:\n{logs}"));
        assert_eq!(line["span"]["name"], "sync_pass", "{verdict}: {line}");
        assert!(line["span"]["run_id"].is_number(), "{verdict}: {line}");
        assert!(line["span"]["window_end"].is_number(), "{verdict}: {line}");
    }
}

/// A partnership may still name a team the API has removed: that team's listing answers 404,
/// which means no members, not a failed scan of every team.
#[tokio::test]
async fn a_partner_team_the_api_no_longer_knows_has_no_members_and_fails_nothing() {
    let sim = support::simulator(300, |_| {}).await;
    let store = support::store().await;
    let syncer = support::syncer(&store, &sim, 100, support::settings());
    syncer.sync_object(ObjectKind::Partnership, Reading::Changes).await.unwrap();
    sqlx::query("UPDATE partnerships SET team_key = 'team_gone' WHERE key = (SELECT min(key) FROM partnerships)")
        .execute(store.pool())
        .await
        .unwrap();

    syncer.rescan(ObjectKind::PartnerTeamMember).await.unwrap_or_else(|e| panic!("{}", e.chain()));
    let members: i64 = sqlx::query_scalar("SELECT count(*) FROM partner_team_members").fetch_one(store.pool()).await.unwrap();
    assert!(members > 0, "the other teams' members are stored");
    let gone: i64 =
        sqlx::query_scalar("SELECT count(*) FROM partner_team_members WHERE team_key = 'team_gone'").fetch_one(store.pool()).await.unwrap();
    assert_eq!(gone, 0);
}

/// A 403 on one object's list while the API accepts the keys: that object fails, and the
/// objects after it in the pass are still synced (a key may lack access to part of the API).
#[tokio::test]
async fn an_object_this_key_may_not_read_fails_alone_and_the_pass_goes_on() {
    let sim = support::simulator(300, |c| c.forbidden = vec!["GET /api/v2/actions".into()]).await;
    let store = support::store().await;
    let syncer = support::syncer(&store, &sim, 100, support::settings());
    let summary = partnerstack_mirror::scheduler::poll_all(&syncer, &ObjectKind::default_set(), Reading::Changes).await;

    let failed: Vec<ObjectKind> = summary.failures.iter().map(|(k, _)| *k).collect();
    assert_eq!(failed, [ObjectKind::Action]);
    let after = ObjectKind::default_set().into_iter().skip_while(|k| *k != ObjectKind::Action).skip(1).collect::<Vec<_>>();
    assert!(!after.is_empty(), "objects come after actions in a pass");
    for kind in after {
        assert!(summary.reports.iter().any(|r| r.kind == kind), "{kind} synced after the refused object");
    }
    assert!(syncer.api().credentials_rejected().is_none(), "the keys are not held to be wrong");

    // Refused once while the keys worked, the endpoint's next 403 fails only its own pass:
    // it does not pause every loop until a probe clears the keys again.
    let again = syncer.sync_object(ObjectKind::Action, Reading::Changes).await.expect_err("still refused");
    assert!(matches!(&again, SyncError::Api(e @ ApiError::Forbidden { .. }) if e.class() == ErrorClass::Skip), "{}", again.chain());
    assert!(syncer.api().credentials_rejected().is_none(), "no pause for the keys: {}", again.chain());
}

/// A JSON log line has one `message`: the API's own words about rejected keys travel as
/// `api_message`, so a log shipper (which keeps the last of two equal keys) still gets the
/// line's advice.
#[tokio::test]
async fn the_rejected_credentials_line_keeps_its_advice_and_the_apis_words_apart() {
    let sim = support::simulator(20, |_| {}).await;
    let store = support::store().await;
    let (code, logs) = support::exit_and_stderr(
        support::binary(&sim, &store, &["sync", "--object", "deals"])
            .env("PARTNERSTACK_PRIVATE_KEY", "not-the-key")
            .env("RUST_LOG", "error"),
    )
    .await;
    assert_eq!(code, Some(1), "{logs}");
    let line = logs.lines().find(|l| l.contains("api_message")).unwrap_or_else(|| panic!("no line with the API's words in:\n{logs}"));
    assert_eq!(line.matches("\"message\":").count(), 1, "{line}");
    let line: serde_json::Value = serde_json::from_str(line).unwrap();
    assert!(line["message"].as_str().unwrap().starts_with("PartnerStack rejected the credentials"), "{line}");
    assert_eq!(line["status"], 401, "{line}");
}

/// An API that cannot be reached at all fails the first object and stops the pass there: the
/// other objects would each wait out the same retries in turn (ten objects, minutes).
#[tokio::test]
async fn a_pass_stops_at_the_first_object_when_the_api_cannot_be_reached() {
    let sim = support::simulator(1, |_| {}).await;
    let store = support::store().await;
    let closed = support::free_port();
    let (code, said) = support::exit_and_stderr(
        support::binary(&sim, &store, &["sync", "--object", "deals", "--object", "leads", "--object", "groups"])
            .env("PSM_PARTNERSTACK__API_URL", format!("http://127.0.0.1:{closed}/api/v2"))
            .env("PSM_PARTNERSTACK__MAX_RETRIES", "1"),
    )
    .await;
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("not tried, as PartnerStack could not be reached: leads, groups"), "{said}");
    let tried: Vec<String> =
        sqlx::query_scalar("SELECT DISTINCT object FROM sync_runs ORDER BY object").fetch_all(store.pool()).await.unwrap();
    assert_eq!(tried, ["deals"], "only the first object was tried");
}
