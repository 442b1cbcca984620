//! Least privilege (docs/your-database.md): the mirror needs CONNECT and either its own schema or CREATE on
//! the database; no superuser, no extension. A missing privilege is named in words.

use std::time::Duration;

use super::{binary_as, Scratch};
use crate::support;

#[tokio::test]
async fn a_role_that_owns_a_schema_a_dba_prepared_migrates_syncs_and_runs_without_create_on_the_database() {
    let scratch = Scratch::new().await;
    let mirror = scratch.prepared_schema("ps").await;
    let mut dba = scratch.dba().await;
    let may_create: bool = sqlx::query_scalar("SELECT has_database_privilege($1, current_database(), 'CREATE')")
        .bind(&mirror)
        .fetch_one(&mut dba)
        .await
        .unwrap();
    assert!(!may_create, "the role must not have CREATE on the database for this test to mean anything");
    let sim = support::simulator(80, |_| {}).await;

    support::succeeds(&mut binary_as(&scratch, &mirror, "ps", &sim, &["migrate"])).await;
    support::succeeds(&mut binary_as(&scratch, &mirror, "ps", &sim, &["sync"])).await;
    let mut daemon = binary_as(&scratch, &mirror, "ps", &sim, &["run"]);
    let mut daemon = daemon.env("PSM_SYNC__INTERVAL", "200ms").env("PSM_HTTP__LISTEN", "127.0.0.1:0").spawn().unwrap();
    let since: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("SELECT now()").fetch_one(&mut dba).await.unwrap();
    support::eventually("a pass of the daemon running as the schema's owner", Duration::from_secs(30), || {
        let url = scratch.url_as("postgres");
        async move {
            let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url).await.unwrap();
            sqlx::query_scalar("SELECT count(*) > 0 FROM ps.sync_runs WHERE started_at > $1 AND outcome = 'succeeded'")
                .bind(since)
                .fetch_one(&mut conn)
                .await
                .unwrap()
        }
    })
    .await;
    support::sigterm(&daemon).await;
    assert!(daemon.wait().await.unwrap().success());
    let superuser: bool =
        sqlx::query_scalar("SELECT rolsuper FROM pg_roles WHERE rolname = $1").bind(&mirror).fetch_one(&mut dba).await.unwrap();
    assert!(!superuser);
}

#[tokio::test]
async fn a_role_with_create_on_the_database_and_no_schema_yet_makes_its_schema() {
    let scratch = Scratch::new().await;
    let mirror = scratch.role("mirror").await;
    sqlx::raw_sql(&format!("GRANT CREATE ON DATABASE {} TO {mirror}", scratch.database)).execute(&mut scratch.dba().await).await.unwrap();
    let sim = support::simulator(40, |_| {}).await;
    support::succeeds(&mut binary_as(&scratch, &mirror, "ps", &sim, &["migrate"])).await;
    support::succeeds(&mut binary_as(&scratch, &mirror, "ps", &sim, &["sync"])).await;
    let owner: String = sqlx::query_scalar("SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'ps'")
        .fetch_one(&mut scratch.dba().await)
        .await
        .unwrap();
    assert_eq!(owner, mirror, "the role made its schema and owns it");
}

#[tokio::test]
async fn a_role_that_may_not_make_its_schema_is_told_which_privilege_it_lacks_by_migrate_and_doctor() {
    let scratch = Scratch::new().await;
    let mirror = scratch.role("mirror").await;
    let sim = support::simulator(10, |_| {}).await;

    let (code, stderr) = support::exit_and_stderr(&mut binary_as(&scratch, &mirror, "ps", &sim, &["migrate"])).await;
    assert_eq!(code, Some(2), "a missing privilege needs a person: exit 2 ({stderr})");
    for words in [format!("role \"{mirror}\""), "lacks CREATE".into(), format!("database \"{}\"", scratch.database), "CREATE SCHEMA".into()]
    {
        assert!(stderr.contains(&words), "migrate names {words}: {stderr}");
    }

    let output = binary_as(&scratch, &mirror, "ps", &sim, &["doctor"]).stdout(std::process::Stdio::piped()).output().await.unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "doctor found a problem: {report}");
    assert!(
        report.contains("[PROBLEM] May the mirror's role create or build in its schema?")
            && report.contains(&format!("role \"{mirror}\" lacks CREATE")),
        "{report}"
    );
    let created: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'ps')")
        .fetch_one(&mut scratch.dba().await)
        .await
        .unwrap();
    assert!(!created);
}

#[tokio::test]
async fn a_schema_another_role_owns_is_named_with_what_the_mirror_lacks_on_it() {
    let scratch = Scratch::new().await;
    let mirror = scratch.role("mirror").await;
    sqlx::raw_sql(&format!("CREATE SCHEMA ps; GRANT USAGE ON SCHEMA ps TO {mirror}")).execute(&mut scratch.dba().await).await.unwrap();
    let sim = support::simulator(10, |_| {}).await;
    let (code, stderr) = support::exit_and_stderr(&mut binary_as(&scratch, &mirror, "ps", &sim, &["migrate"])).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("lacks CREATE on schema \"ps\" (owned by \"postgres\")"), "{stderr}");
    assert!(stderr.contains("ALTER SCHEMA \"ps\" OWNER TO"), "it says what a DBA can run: {stderr}");
}
