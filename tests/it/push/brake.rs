//! The brake: a run that would change more records than `max_changes` queues nothing and says
//! why; `push run NAME --force` lets that one run through, and the brake holds again after.

use super::{bad_input::toml_push, *};

#[tokio::test]
async fn the_brake_holds_a_run_that_would_change_too_much_and_force_releases_it_once() {
    let (sim, store, _) = mirrored(300).await;
    let tiers = format!("{}_tiers", store.schema());
    execute(
        &store,
        &format!("CREATE TABLE {tiers} AS SELECT key, 'gold'::text AS tier FROM {}.partnerships WHERE deleted_at IS NULL", store.schema()),
    )
    .await;
    let live: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {tiers}")).fetch_one(store.pool()).await.unwrap();
    assert!(live > 10, "more partners than the brake's floor");
    // No max_changes: 10% of the partnerships, at least 10.
    let push = toml_push(&[
        ("name", "tiers"),
        ("object", "partnerships"),
        ("query", &format!("SELECT key, ARRAY['tier:' || tier] AS tags FROM {tiers}")),
        ("manage_tags", "tier:*"),
    ]);
    let command = |args: &[&str]| {
        let mut command = support::binary(&sim, &store, args);
        command.env("PSM_PUSH", &push);
        command
    };

    let (code, stdout) = stdout_of(command(&["push", "plan", "tiers"])).await;
    assert_eq!(code, Some(0));
    assert!(stdout.contains(&format!("the brake would hold: {live} changes, more than 10")), "{stdout}");
    assert!(stdout.contains("modify_tags partnership") && stdout.contains("tags: [] → [\"tier:gold\"]"), "{stdout}");

    let (code, stderr) = support::exit_and_stderr(&mut command(&["push", "run", "tiers"])).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("the brake held") && stderr.contains("push run tiers --force"), "{stderr}");
    assert!(queued(&store, "tiers").await.is_empty(), "the brake queued nothing");
    let (outcome, refused, error): (String, i64, Option<String>) =
        sqlx::query_as("SELECT outcome, refused_by_brake, error FROM push_runs ORDER BY id DESC LIMIT 1")
            .fetch_one(store.pool())
            .await
            .unwrap();
    assert_eq!((outcome.as_str(), refused), ("braked", live));
    assert!(error.unwrap().contains("max_changes (10)"));

    support::succeeds(&mut command(&["push", "run", "tiers", "--force"])).await;
    assert_eq!(queued(&store, "tiers").await.len() as i64, live, "forced through once");
    land(&store, &sim).await;

    // The next mass change meets the brake again: --force was for that one run.
    execute(&store, &format!("UPDATE {tiers} SET tier = 'silver'")).await;
    let (code, _) = support::exit_and_stderr(&mut command(&["push", "run", "tiers"])).await;
    assert_eq!(code, Some(1), "the brake holds again");
    assert_eq!(queued(&store, "tiers").await.len() as i64, live);
    // Back to what landed, then a small change: it passes.
    execute(&store, &format!("UPDATE {tiers} SET tier = 'gold'")).await;
    execute(&store, &format!("UPDATE {tiers} SET tier = 'silver' WHERE key IN (SELECT key FROM {tiers} ORDER BY key LIMIT 3)")).await;
    support::succeeds(&mut command(&["push", "run", "tiers"])).await;
    assert_eq!(queued(&store, "tiers").await.len() as i64, live + 3);

    let (code, stdout) = stdout_of(command(&["push", "list"])).await;
    assert_eq!(code, Some(0));
    assert!(stdout.contains("push tiers (partnerships, key = key, every 15m)") && stdout.contains("changed: "), "{stdout}");
}

/// Runs `command` to its end: its exit code and what it printed.
async fn stdout_of(mut command: tokio::process::Command) -> (Option<i32>, String) {
    let output = command.stdout(std::process::Stdio::piped()).output().await.expect("run the binary");
    (output.status.code(), String::from_utf8_lossy(&output.stdout).into_owned())
}
