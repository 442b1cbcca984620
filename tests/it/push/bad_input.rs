//! Bad input gets a clear error and changes nothing: a query that fails or tries to write,
//! a missing key column, a column that is not a writable field, duplicate keys, NULL keys,
//! and a value PartnerStack refuses (which is not sent again on every run).

use partnerstack_mirror::push::{PushError, ShapeError};

use super::*;

/// Nothing was queued or recorded for any record.
async fn nothing_queued(store: &Store) {
    let (requests, records): (i64, i64) = sqlx::query_as("SELECT (SELECT count(*) FROM write_queue), (SELECT count(*) FROM push_records)")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!((requests, records), (0, 0), "nothing was queued");
}

/// The last run of `push` in push_runs: its outcome and error.
async fn last_run(store: &Store, push: &str) -> (String, Option<String>) {
    sqlx::query_as("SELECT outcome, error FROM push_runs WHERE push = $1 ORDER BY id DESC LIMIT 1")
        .bind(push)
        .fetch_one(store.pool())
        .await
        .unwrap()
}

fn tags_push(store: &Store, select: &str) -> PushConfig {
    let query = select.replace("{schema}", store.schema());
    push_config("tiers", &format!("object = \"partnerships\"\nquery = {query:?}\nmanage_tags = [\"tier:*\"]\nmax_changes = 100000"))
}

#[tokio::test]
async fn a_query_that_fails_on_its_rows_is_recorded_as_failed_and_changes_nothing() {
    let (_sim, store, _) = mirrored(200).await;
    // Prepared fine; fails on the first row it computes.
    let config =
        tags_push(&store, "SELECT key, ARRAY['tier:' || (1 / (length(key) - length(key)))::text] AS tags FROM {schema}.partnerships");
    let failing = pusher(&store, &config).await;
    let error = failing.run(false).await.unwrap_err();
    assert!(matches!(&error, PushError::Query { message, .. } if message.contains("division by zero")), "{error}");
    assert!(error.to_string().starts_with("push tiers: the query failed"), "{error}");
    let (outcome, recorded) = last_run(&store, "tiers").await;
    assert_eq!(outcome, "failed");
    assert!(recorded.unwrap().contains("division by zero"));
    nothing_queued(&store).await;
}

#[tokio::test]
async fn a_query_runs_in_a_read_only_transaction_so_it_cannot_write() {
    let (_sim, store, _) = mirrored(200).await;
    let config = tags_push(
        &store,
        "SELECT key, ARRAY['tier:' || nextval(pg_get_serial_sequence('{schema}.events', 'id'))::text] AS tags FROM {schema}.partnerships",
    );
    let error = pusher(&store, &config).await.run(false).await.unwrap_err();
    assert!(error.to_string().contains("read-only transaction"), "{error}");
    nothing_queued(&store).await;
}

#[tokio::test]
async fn a_query_without_its_key_column_or_with_a_column_that_is_not_a_field_is_refused_naming_the_push() {
    let (_sim, store, _) = mirrored(200).await;
    let config = push_config(
        "crm",
        &format!("object = \"deals\"\nkey = \"external_key\"\nquery = \"SELECT key, stage FROM {}.deals\"", store.schema()),
    );
    let error = Pusher::prepare(&store, &config, "test", PushCounters::default()).await.unwrap_err();
    assert!(matches!(error, PushError::Shape(ShapeError::NoKeyColumn { .. })), "{error}");
    assert!(error.is_configuration());
    assert!(error.to_string().contains("push crm: the query has no column `external_key`"), "{error}");

    let config = tags_push(&store, "SELECT key, tags, 'red' AS colour FROM {schema}.partnerships");
    let error = Pusher::prepare(&store, &config, "test", PushCounters::default()).await.unwrap_err().to_string();
    assert!(error.contains("push tiers: column `colour` is not a field"), "{error}");

    let config = tags_push(&store, "SELECT key, tags FROM {schema}.no_such_table");
    let error = Pusher::prepare(&store, &config, "test", PushCounters::default()).await.unwrap_err().to_string();
    assert!(error.contains("push tiers: the query failed") && error.contains("no_such_table"), "{error}");
    nothing_queued(&store).await;
}

#[tokio::test]
async fn a_column_that_is_not_a_writable_field_stops_the_daemon_at_start_with_exit_2() {
    let (sim, store, _) = mirrored(100).await;
    let push = toml_push(&[
        ("name", "tiers"),
        ("object", "partnerships"),
        ("query", &format!("SELECT key, 'red' AS colour FROM {}.partnerships", store.schema())),
    ]);
    let (code, stderr) = support::exit_and_stderr(support::binary(&sim, &store, &["run"]).env("PSM_PUSH", &push)).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("push tiers: column `colour` is not a field a write-back can set on partnerships"), "{stderr}");
    let (code, stderr) = support::exit_and_stderr(support::binary(&sim, &store, &["push", "plan", "tiers"]).env("PSM_PUSH", &push)).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("`colour`"), "{stderr}");
    nothing_queued(&store).await;
}

/// `PSM_PUSH`: one `[[push]]` as the inline TOML an environment variable holds.
pub(super) fn toml_push(keys: &[(&str, &str)]) -> String {
    let mut table = toml::Table::new();
    for (key, value) in keys {
        let value = match *key {
            "manage_tags" => toml::Value::Array(vec![toml::Value::String((*value).to_owned())]),
            "max_changes" => toml::Value::Integer(value.parse().unwrap()),
            _ => toml::Value::String((*value).to_owned()),
        };
        table.insert((*key).to_owned(), value);
    }
    toml::Value::Array(vec![toml::Value::Table(table)]).to_string()
}

#[tokio::test]
async fn duplicate_keys_make_the_run_refuse_naming_one() {
    let (_sim, store, _) = mirrored(200).await;
    let config = tags_push(
        &store,
        "SELECT key, ARRAY['tier:gold'] AS tags FROM {schema}.partnerships \
         UNION ALL (SELECT key, ARRAY['tier:silver'] FROM {schema}.partnerships ORDER BY key LIMIT 1)",
    );
    let twice: String = sqlx::query_scalar("SELECT key FROM partnerships ORDER BY key LIMIT 1").fetch_one(store.pool()).await.unwrap();
    let error = pusher(&store, &config).await.run(false).await.unwrap_err();
    assert!(matches!(&error, PushError::Duplicate { key, .. } if *key == twice), "{error}");
    assert!(error.to_string().contains(&format!("returned the key \"{twice}\" more than once")), "{error}");
    let (outcome, recorded) = last_run(&store, "tiers").await;
    assert_eq!(outcome, "failed");
    assert!(recorded.unwrap().contains(&twice));
    nothing_queued(&store).await;
}

#[tokio::test]
async fn rows_with_a_null_key_are_skipped_and_counted() {
    let (_sim, store, _) = mirrored(200).await;
    let config = tags_push(
        &store,
        "SELECT key, ARRAY['tier:gold'] AS tags FROM {schema}.partnerships \
         UNION ALL SELECT NULL, ARRAY['tier:gold'] UNION ALL SELECT NULL, ARRAY['tier:silver']",
    );
    let live: i64 = sqlx::query_scalar("SELECT count(*) FROM partnerships").fetch_one(store.pool()).await.unwrap();
    let report = run(&pusher(&store, &config).await).await;
    assert_eq!((report.line.skipped, report.line.rows_read, report.line.changes), (2, live + 2, live), "{:?}", report.line);
    assert_eq!(queued(&store, "tiers").await.len() as i64, live);
}

#[tokio::test]
async fn a_push_waits_for_the_first_load_of_its_object() {
    let sim = support::simulator(100, |_| {}).await;
    let store = support::store().await;
    let config = tags_push(&store, "SELECT key, tags FROM {schema}.partnerships");
    let error = pusher(&store, &config).await.run(false).await.unwrap_err();
    assert!(matches!(error, PushError::NotLoaded { .. }), "{error}");
    nothing_queued(&store).await;
    support::sync_all(&support::syncer(&store, &sim, 250, support::settings())).await;
    assert!(pusher(&store, &config).await.run(false).await.is_ok());
}

#[tokio::test]
async fn a_value_the_api_refuses_is_sent_again_only_when_it_changes_or_after_a_growing_backoff() {
    let (sim, store, _) = mirrored(200).await;
    let deal: String =
        sqlx::query_scalar("SELECT key FROM deals WHERE deleted_at IS NULL ORDER BY key LIMIT 1").fetch_one(store.pool()).await.unwrap();
    let wanted = format!("{}_wanted", store.schema());
    execute(&store, &format!("CREATE TABLE {wanted} (key text, stage text); INSERT INTO {wanted} VALUES ('{deal}', 'No Such Stage')"))
        .await;
    let config = push_config("stages", &format!("object = \"deals\"\nquery = \"SELECT key, stage FROM {wanted}\""));
    let stages = pusher(&store, &config).await;
    let statuses = || async { queued(&store, "stages").await.into_iter().map(|(.., status)| status).collect::<Vec<_>>() };

    assert_eq!(run(&stages).await.line.requests_queued, 1);
    land(&store, &sim).await;
    assert_eq!(statuses().await, ["failed"], "PartnerStack refused the stage");
    let held = run(&stages).await;
    assert_eq!((held.line.held, held.line.requests_queued), (1, 0), "not sent again while the value is the same");
    let reason = held.plan.requests[0].reason.clone().unwrap();
    assert!(reason.contains("failed") && reason.contains("tried again from"), "{reason}");

    execute(&store, &format!("UPDATE {wanted} SET stage = 'Another Bad Stage'")).await;
    assert_eq!(run(&stages).await.line.requests_queued, 1, "new desired values are queued at once");
    land(&store, &sim).await;
    assert_eq!(run(&stages).await.line.held, 1);

    // Once the backoff has passed (5 minutes after the first failure of these values), once more.
    let backdate = |age: &str| format!("UPDATE write_queue SET finished_at = now() - interval '{age}' WHERE status = 'failed'");
    execute(&store, &backdate("6 minutes")).await;
    assert_eq!(run(&stages).await.line.requests_queued, 1, "tried again after the backoff");
    land(&store, &sim).await;
    let failures: i32 =
        sqlx::query_scalar("SELECT failures FROM push_records WHERE push = 'stages'").fetch_one(store.pool()).await.unwrap();
    assert_eq!(failures, 1, "the second failure of the same values in a row");
    // The wait doubles: six minutes is no longer enough, eleven is.
    execute(&store, &backdate("6 minutes")).await;
    assert_eq!(run(&stages).await.line.held, 1, "the backoff grew");
    execute(&store, &backdate("11 minutes")).await;
    assert_eq!(run(&stages).await.line.requests_queued, 1);
    assert_eq!(statuses().await, ["failed", "failed", "failed", "pending"]);
}

#[tokio::test]
async fn a_query_slower_than_its_timeout_is_cut_off_and_changes_nothing() {
    let (_sim, store, _) = mirrored(100).await;
    let query = format!("SELECT key, tags FROM {}.partnerships, (SELECT pg_sleep(5)) AS slow", store.schema());
    let config =
        push_config("slow", &format!("object = \"partnerships\"\nquery = {query:?}\nmanage_tags = [\"tier:*\"]\ntimeout = \"200ms\""));
    let error = pusher(&store, &config).await.run(false).await.unwrap_err().to_string();
    assert!(error.contains("push slow: the query failed: the query was cancelled by its statement timeout"), "{error}");
    assert_eq!(last_run(&store, "slow").await.0, "failed");
    nothing_queued(&store).await;
}
