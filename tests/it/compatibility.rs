//! The compatibility subset: what the mirror asks of PostgreSQL, end to end, on the server this
//! run uses — the one `PRIVATE_POSTGRES_BIN_DIR` names, else the default test server — so that
//! `cargo test --test it compatibility` run with the oldest and newest supported majors (CI:
//! 14 and 18, fetched by `.ci/postgres-versions`) proves the floor holds. And the floor
//! itself: a server older than 14, the install `PRIVATE_POSTGRES_OLD_BIN_DIR` names, is
//! refused at start. See docs/postgres-versions.md.

use partnerstack_simulator::AsResource;
use std::{io::Write, time::Duration};

use partnerstack_mirror::{
    object::ObjectKind,
    private_postgres::{PrivatePostgres, BIN_DIR_VARIABLE},
    store::{reporting::REPORTS, Store, MIGRATOR, OLDEST_SERVER},
};
use partnerstack_simulator::{Mutation, RunningSimulator, SimulatorConfig};
use serde_json::json;
use sqlx::{Connection, PgConnection};

use crate::{queue, support};

/// Names the bin directory of a PostgreSQL older than 14, for the refusal test.
const OLD_BIN_DIR_VARIABLE: &str = "PRIVATE_POSTGRES_OLD_BIN_DIR";

fn named_dir(variable: &str) -> Option<std::path::PathBuf> {
    std::env::var_os(variable).filter(|dir| !dir.is_empty()).map(Into::into)
}

/// Says something even when the test passes (the harness captures `println!`): a skipped
/// check must not look like a passed one.
fn note(text: &str) {
    let _ = writeln!(std::io::stderr(), "{text}");
}

/// `server_version_num` and the version as people write it (`13.23`, not `13.23 (Debian …)`).
async fn server_version(url: &str) -> (i32, String) {
    let mut connection = PgConnection::connect(url).await.unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    let (number, version): (String, String) =
        sqlx::query_as("SELECT current_setting('server_version_num'), current_setting('server_version')")
            .fetch_one(&mut connection)
            .await
            .unwrap();
    let _ = connection.close().await;
    (number.parse().unwrap(), version.split_whitespace().next().unwrap().to_owned())
}

/// A store filled by a first load (a backfill into empty tables, by `COPY`, indexes put off).
async fn loaded(records: usize) -> (RunningSimulator, Store) {
    let sim = support::simulator(records, |_| {}).await;
    let store = support::store().await;
    support::sync_all(&support::syncer(&store, &sim, 50, support::settings())).await;
    (sim, store)
}

async fn count(store: &Store, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(store.pool()).await.unwrap_or_else(|e| panic!("{e}: {sql}"))
}

#[tokio::test]
async fn the_server_under_test_is_the_one_private_postgres_bin_dir_names_and_is_supported() {
    let (number, version) = server_version(&support::database_url()).await;
    note(&format!("compatibility subset: PostgreSQL {version}"));
    assert!(number >= OLDEST_SERVER, "the tests run on PostgreSQL {version}, which the mirror refuses");
    let Some(dir) = named_dir(BIN_DIR_VARIABLE) else { return };
    assert!(
        std::env::var_os("DATABASE_URL").is_none(),
        "DATABASE_URL is set, so the tests use that server and not the one {BIN_DIR_VARIABLE} names"
    );
    let output = std::process::Command::new(dir.join("postgres")).arg("--version").output().unwrap();
    let said = String::from_utf8_lossy(&output.stdout);
    assert_eq!(said.split_whitespace().last(), Some(version.as_str()), "{} says {said}", dir.display());
}

#[tokio::test]
async fn migrations_and_a_first_load_run_and_the_indexes_it_put_off_are_built() {
    let sim = support::simulator(900, |_| {}).await;
    let store = support::store().await;
    let applied = count(&store, "SELECT count(*) FROM _sqlx_migrations WHERE success").await;
    assert_eq!(applied, MIGRATOR.migrations.len() as i64, "every migration is applied");
    let (before, declared) = (support::indexes(&store).await, support::index_definitions(&store).await);

    support::sync_all(&support::syncer(&store, &sim, 50, support::settings())).await;

    let mut records = 0;
    for kind in support::listed_kinds() {
        let rows = count(&store, &format!("SELECT count(*) FROM {}", kind.table())).await;
        assert_eq!(rows, sim.simulator.records(kind).len() as i64, "{kind}");
        records += rows;
    }
    let created = count(&store, "SELECT count(*) FROM events WHERE event_type LIKE '%.created' AND source = 'backfill'").await;
    assert_eq!(created, records, "a created event per record");
    assert_eq!(support::index_definitions(&store).await, declared, "the same indexes, defined the same way");
    let rebuilt = before.iter().zip(support::indexes(&store).await).filter(|(old, new)| old.3 != new.3).count();
    assert!(rebuilt >= 30, "the first load put off and built the secondary indexes ({rebuilt})");
    assert_eq!(count(&store, "SELECT count(*) FROM deferred_indexes").await, 0);
}

#[tokio::test]
async fn a_poll_after_changes_at_the_api_writes_their_events() {
    let (sim, store) = loaded(400).await;
    let syncer = support::syncer(&store, &sim, 50, support::settings());
    let before = support::last_event_id(&store).await;
    let s = &sim.simulator;
    let key = |kind: ObjectKind, n: usize| s.keys(kind)[n].clone();
    let applied = [
        s.apply(Mutation::Create(ObjectKind::Deal.resource())).unwrap(),
        s.apply(Mutation::DealStage { key: key(ObjectKind::Deal, 3) }).unwrap(),
        s.apply(Mutation::PartnershipTags { key: key(ObjectKind::Partnership, 2), add: vec!["compat".into()], remove: vec![] }).unwrap(),
        s.apply(Mutation::LeadDecision { key: key(ObjectKind::Lead, 1), approved: true }).unwrap(),
        s.apply(Mutation::Touch { kind: ObjectKind::Customer.resource(), key: key(ObjectKind::Customer, 1) }).unwrap(),
    ];

    support::sync_all(&syncer).await;

    for a in &applied {
        let mut found = support::event_types_after(&store, before, support::kind_of(a.kind), &a.key).await;
        let mut expected = a.event_types.clone();
        found.sort();
        expected.sort();
        assert_eq!(found, expected, "{:?} {}", a.kind, a.key);
    }
    let by_poll = count(&store, &format!("SELECT count(*) FROM events WHERE id > {before} AND source = 'poll'")).await;
    let expected: usize = applied.iter().map(|a| a.event_types.len()).sum();
    assert_eq!(by_poll, expected as i64, "the poll wrote these events and no others");
}

#[tokio::test]
async fn a_write_back_inserted_in_sql_reaches_the_api_and_comes_back_as_events() {
    let (sim, store) = loaded(300).await;
    let deal = sim.simulator.records(ObjectKind::Deal).into_iter().find(|d| d["archived"] == false).unwrap();
    let deal = deal["key"].as_str().unwrap().to_owned();
    let payload = json!({"customer_key": "compat-1", "email": "compat-1@example.test", "partner_key": queue::a_partner_key(&sim)});
    let create = queue::enqueue(&store, "create", "customer", None, payload).await;
    let update = queue::enqueue(&store, "update", "deal", Some(&deal), json!({"stage": "Closed Won"})).await;

    queue::drain(&queue::worker(&store, &sim, "compat"), &store).await;

    let created = queue::outcome(&store, create).await;
    assert_eq!(created.status, "succeeded", "{created:?}");
    let customer = queue::result_key(&created);
    assert!(sim.simulator.record(ObjectKind::Customer, &customer).is_some(), "{customer} exists at the API");
    assert_eq!(queue::write_back_events(&store, ObjectKind::Customer, &customer).await, ["customer.created"]);
    let updated = queue::outcome(&store, update).await;
    assert_eq!(updated.status, "succeeded", "{updated:?}");
    assert_eq!(sim.simulator.record(ObjectKind::Deal, &deal).unwrap()["stage"], "Closed Won");
    let stage: String = sqlx::query_scalar("SELECT stage FROM deals WHERE key = $1").bind(&deal).fetch_one(store.pool()).await.unwrap();
    assert_eq!(stage, "Closed Won", "the mirror holds the API's answer");
    assert!(!queue::write_back_events(&store, ObjectKind::Deal, &deal).await.is_empty());
}

#[tokio::test]
async fn a_consumer_reads_with_next_events_and_moves_on_with_commit_events() {
    let (_sim, store) = loaded(100).await;
    let all: Vec<i64> = sqlx::query_scalar("SELECT id FROM events ORDER BY id").fetch_all(store.pool()).await.unwrap();
    assert!(all.len() > 10, "{} events", all.len());

    let mut seen = Vec::new();
    loop {
        let batch: Vec<i64> = sqlx::query_scalar("SELECT id FROM next_events('compat', 10)").fetch_all(store.pool()).await.unwrap();
        let Some(&last) = batch.last() else { break };
        assert!(batch.len() <= 10, "{batch:?}");
        let position: i64 = sqlx::query_scalar("SELECT commit_events('compat', $1)").bind(last).fetch_one(store.pool()).await.unwrap();
        assert_eq!(position, last);
        seen.extend(batch);
    }
    assert_eq!(seen, all, "every event once, in id order");
    assert_eq!(store.consumer_position("compat").await.unwrap(), all.last().copied());
}

#[tokio::test]
async fn every_reporting_view_reads_after_a_first_load_and_a_poll() {
    let (sim, store) = loaded(600).await;
    let s = &sim.simulator;
    for n in 0..5 {
        s.apply(Mutation::DealStage { key: s.keys(ObjectKind::Deal)[n].clone() }).unwrap();
    }
    support::sync_all(&support::syncer(&store, &sim, 50, support::settings())).await;

    let views: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relkind = 'v' ORDER BY 1",
    )
    .bind(store.schema())
    .fetch_all(store.pool())
    .await
    .unwrap();
    let mut expected: Vec<String> = REPORTS.iter().map(|r| r.name.to_owned()).collect();
    for kind in ObjectKind::ALL {
        expected.extend([format!("{}_current", kind.table()), format!("{}_history", kind.table())]);
    }
    for name in &expected {
        assert!(views.contains(name), "{name} is missing from {views:?}");
    }
    let mut empty = Vec::new();
    for view in &views {
        // Every column of every row, so that no expression of the view is left uncomputed.
        let sql = format!("SELECT to_jsonb(v)::text FROM {view} v");
        let rows: Vec<String> = sqlx::query_scalar(&sql).fetch_all(store.pool()).await.unwrap_or_else(|e| panic!("{view}: {e}"));
        if rows.is_empty() && expected.contains(view) {
            empty.push(view.as_str());
        }
    }
    assert!(empty.is_empty(), "empty after a load of 600 records: {empty:?}");
}

/// The real binary, as an operator would start it against the database at `url`.
fn mirror(sim: &RunningSimulator, url: &str, command: &str) -> tokio::process::Command {
    let defaults = SimulatorConfig::default();
    let mut mirror = tokio::process::Command::new(env!("CARGO_BIN_EXE_partnerstack-mirror"));
    mirror
        .args(["--log-format", "json", "--config", "/dev/null", command])
        .env("DATABASE_URL", url)
        .env("PSM_DATABASE__SCHEMA", "compat")
        .env("PSM_PARTNERSTACK__API_URL", &sim.base_url)
        .env("PARTNERSTACK_PUBLIC_KEY", defaults.public_key)
        .env("PARTNERSTACK_PRIVATE_KEY", defaults.private_key)
        .env("PSM_HTTP__LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true);
    mirror
}

#[tokio::test]
async fn a_server_older_than_14_is_refused_at_start_with_one_line_before_any_migration() {
    let Some(dir) = named_dir(OLD_BIN_DIR_VARIABLE) else {
        note(&format!(
            "skipped: the refusal of a server older than 14 needs one; set {OLD_BIN_DIR_VARIABLE} to its bin directory \
             (`.ci/postgres-versions 13` prints one)"
        ));
        return;
    };
    let old = PrivatePostgres::start_from(&dir).await.unwrap_or_else(|e| panic!("{OLD_BIN_DIR_VARIABLE}: {e}"));
    let (number, version) = server_version(&old.url()).await;
    assert!(number < OLDEST_SERVER, "{OLD_BIN_DIR_VARIABLE} names PostgreSQL {version}, which is supported: nothing to refuse");
    let sim = support::simulator(10, |_| {}).await;

    for command in ["migrate", "run"] {
        let (code, stderr) =
            tokio::time::timeout(Duration::from_secs(60), support::exit_and_stderr(&mut mirror(&sim, &old.url(), command)))
                .await
                .unwrap_or_else(|_| panic!("`{command}` did not end within a minute"));
        assert_eq!(code, Some(2), "`{command}` exits 2; it wrote:\n{stderr}");
        let expected = format!("error: PostgreSQL 14 or newer is required; this server is {version}");
        assert_eq!(stderr.lines().collect::<Vec<_>>(), [expected.as_str()], "`{command}`");
    }
    let mut connection = PgConnection::connect(&old.url()).await.unwrap();
    let schemas: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_namespace WHERE nspname = 'compat'").fetch_one(&mut connection).await.unwrap();
    assert_eq!(schemas, 0, "nothing was created on the refused server");
    let _ = connection.close().await;
    old.stop().await.unwrap();
}

/// A run meant for one version must not quietly use another: the demo (which starts a private
/// server) names the variable and the directory instead of falling back to the machine's server.
#[tokio::test]
async fn the_demo_refuses_a_private_postgres_bin_dir_without_a_server_naming_it() {
    let dir = std::env::temp_dir().join(format!("no-postgres-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut demo = tokio::process::Command::new(env!("CARGO_BIN_EXE_partnerstack-mirror"));
    demo.args(["demo", "--records", "10"])
        .env_remove("DATABASE_URL")
        .env(BIN_DIR_VARIABLE, &dir)
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true);
    let (code, stderr) = support::exit_and_stderr(&mut demo).await;
    std::fs::remove_dir(&dir).unwrap();
    assert!(code.is_some_and(|code| code != 0), "the demo fails ({code:?}):\n{stderr}");
    let named = format!("{BIN_DIR_VARIABLE} names {}, which holds no executable initdb and postgres", dir.display());
    assert!(stderr.contains(&named), "{stderr}");
}
