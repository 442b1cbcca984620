//! `partnerstack-mirror queue add|list|retry|cancel`, run as a shell user would.

use std::process::Output;

use partnerstack_mirror::store::Store;
use partnerstack_simulator::RunningSimulator;

use crate::support;

async fn cli(sim: &RunningSimulator, store: &Store, args: &[&str]) -> Output {
    let mut all = vec!["queue"];
    all.extend_from_slice(args);
    support::binary(sim, store, &all)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .output()
        .await
        .expect("run the binary")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shell_user_queues_lists_cancels_and_retries_requests() {
    let sim = support::simulator(100, |_| {}).await;
    let store = support::store().await;

    let added =
        cli(&sim, &store, &["add", "update", "deal", "deal_cli", "--payload", r#"{"amount": 5}"#, "--idempotency-key", "cli-1"]).await;
    assert!(added.status.success(), "{}", text(&added.stderr));
    let id: i64 = text(&added.stdout).trim().strip_prefix("queued request ").expect("prints the id").parse().unwrap();

    let again = cli(&sim, &store, &["enqueue", "update", "deal", "deal_cli", "--payload", "{}", "--idempotency-key", "cli-1"]).await;
    assert!(!again.status.success(), "the same idempotency key twice (by `enqueue`, another name for `add`)");
    assert!(text(&again.stderr).contains(&format!("idempotency key cli-1 is taken: request {id} (pending)")), "{}", text(&again.stderr));

    let malformed = cli(&sim, &store, &["add", "modify_tags", "deal", "deal_cli", "--payload", r#"{"add": ["x"]}"#]).await;
    assert!(!malformed.status.success());
    assert!(
        text(&malformed.stderr).contains(r#"operation "modify_tags" is not allowed for object_type "deal""#),
        "{}",
        text(&malformed.stderr)
    );

    let not_json = cli(&sim, &store, &["add", "update", "deal", "deal_cli", "--payload", "{amount: 5"]).await;
    assert_eq!(not_json.status.code(), Some(2), "a usage error");
    assert!(
        text(&not_json.stderr).contains("--payload") && text(&not_json.stderr).contains("not valid JSON"),
        "{}",
        text(&not_json.stderr)
    );
    let bogus = cli(&sim, &store, &["list", "--status", "bogus"]).await;
    assert_eq!(bogus.status.code(), Some(2), "an unknown status is a usage error, not an empty list");
    let missing = cli(&sim, &store, &["retry", "999999"]).await;
    assert!(text(&missing.stderr).contains("there is no request 999999"), "{}", text(&missing.stderr));

    let listed = cli(&sim, &store, &["list", "--status", "pending"]).await;
    let listing = text(&listed.stdout);
    assert!(listing.lines().any(|l| l.trim_start().starts_with(&id.to_string()) && l.contains("deal_cli")), "{listing}");

    let retry_pending = cli(&sim, &store, &["retry", &id.to_string()]).await;
    assert!(!retry_pending.status.success(), "only failed or cancelled requests run again");
    assert!(text(&retry_pending.stderr).contains(&format!("request {id} is pending")), "{}", text(&retry_pending.stderr));

    let cancelled = cli(&sim, &store, &["cancel", &id.to_string()]).await;
    assert!(cancelled.status.success(), "{}", text(&cancelled.stderr));
    let status: String = sqlx::query_scalar("SELECT status FROM write_queue WHERE id = $1").bind(id).fetch_one(store.pool()).await.unwrap();
    assert_eq!(status, "cancelled");

    let retried = cli(&sim, &store, &["retry", &id.to_string()]).await;
    assert!(retried.status.success(), "{}", text(&retried.stderr));
    let (status, attempts): (String, i32) =
        sqlx::query_as("SELECT status, attempts FROM write_queue WHERE id = $1").bind(id).fetch_one(store.pool()).await.unwrap();
    assert_eq!((status.as_str(), attempts), ("pending", 0));
}
