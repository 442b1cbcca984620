//! Poolers (docs/your-database.md): consumers and write-back clients through PgBouncer in transaction mode,
//! the daemon's commands through PgBouncer in session mode. Runs where `pgbouncer` is
//! installed (CI installs it) and says so where it is not.

use std::{path::PathBuf, process::Stdio, time::Duration};

use partnerstack_mirror::store::Roles;
use sqlx::{postgres::PgConnectOptions, Connection, PgConnection};

use super::{binary_as, Scratch};
use crate::support;

const CANDIDATES: [&str; 3] = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer", "/usr/local/bin/pgbouncer"];

/// A PgBouncer in front of the test server, in `mode`, for `users`.
struct Bouncer {
    dir: PathBuf,
    port: u16,
    child: std::process::Child,
}

impl Bouncer {
    /// `None` when PgBouncer is not installed.
    async fn start(mode: &str, users: &[&str]) -> Option<Bouncer> {
        let program = CANDIDATES.iter().find(|p| std::path::Path::new(p).exists())?;
        let upstream: url::Url = support::database_url().parse().unwrap();
        let dir = std::env::temp_dir().join(format!("psm-pgbouncer-{}-{}", std::process::id(), rand::random::<u32>()));
        std::fs::create_dir_all(&dir).unwrap();
        let port = support::free_port();
        let users: String = users.iter().map(|u| format!("\"{u}\" \"\"\n")).collect();
        std::fs::write(dir.join("users.txt"), users).unwrap();
        let ini = format!(
            "[databases]\n* = host={host} port={pg_port}\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\n\
             unix_socket_dir =\nauth_type = trust\nauth_file = {dir}/users.txt\npool_mode = {mode}\ndefault_pool_size = {pool_size}\n\
             max_client_conn = 100\nignore_startup_parameters = extra_float_digits\nlogfile = {dir}/pgbouncer.log\n",
            host = upstream.host_str().unwrap(),
            pg_port = upstream.port().unwrap_or(5432),
            dir = dir.display(),
            // In session mode each client keeps a server connection: room for the mirror's pool.
            pool_size = if mode == "session" { 20 } else { 2 },
        );
        std::fs::write(dir.join("pgbouncer.ini"), ini).unwrap();
        let mut command = std::process::Command::new(program);
        command.arg(dir.join("pgbouncer.ini")).stdout(Stdio::null()).stderr(Stdio::null());
        as_postgres_when_root(&mut command, &dir);
        let child = command.spawn().expect("start pgbouncer");
        let bouncer = Bouncer { dir, port, child };
        support::eventually("PgBouncer to accept connections", Duration::from_secs(20), || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok()
        })
        .await;
        Some(bouncer)
    }

    /// A client connection through the pooler, as `user`, to `database`.
    async fn connect(&self, user: &str, database: &str) -> PgConnection {
        let options = PgConnectOptions::new().host("127.0.0.1").port(self.port).username(user).database(database);
        PgConnection::connect_with(&options).await.unwrap_or_else(|e| panic!("through PgBouncer as {user}: {e}"))
    }

    fn url(&self, user: &str, database: &str) -> String {
        format!("postgres://{user}@127.0.0.1:{}/{database}", self.port)
    }
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// PgBouncer refuses to run as root: as root, it runs as the `postgres` system user (which the
/// server package creates), and the directory becomes that user's.
fn as_postgres_when_root(command: &mut std::process::Command, dir: &std::path::Path) {
    use std::os::unix::process::CommandExt;
    let id = |args: &[&str]| -> Option<u32> {
        let out = std::process::Command::new("id").args(args).output().ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    if id(&["-u"]) != Some(0) {
        return;
    }
    let (uid, gid) = (id(&["-u", "postgres"]).expect("a postgres user"), id(&["-g", "postgres"]).expect("a postgres group"));
    for entry in std::fs::read_dir(dir).unwrap().flatten().map(|e| e.path()).chain([dir.to_path_buf()]) {
        std::os::unix::fs::chown(entry, Some(uid), Some(gid)).unwrap();
    }
    command.uid(uid).gid(gid);
}

#[tokio::test]
async fn consumers_and_write_back_clients_work_through_pgbouncer_in_transaction_mode() {
    let scratch = Scratch::new().await;
    let (consumer, writer) = (scratch.role("events").await, scratch.role("crm").await);
    let mirror = scratch.prepared_schema("ps").await;
    let Some(bouncer) = Bouncer::start("transaction", &[&consumer, &writer]).await else {
        eprintln!("pgbouncer is not installed: skipping (apt-get install pgbouncer; CI installs it)");
        return;
    };
    let store = scratch.store_as(&mirror, "ps").await;
    let sim = support::simulator(40, |_| {}).await;
    support::sync_all(&support::syncer(&store, &sim, 250, support::settings())).await;
    store.grant(&Roles { consumers: vec![consumer.clone()], writers: vec![writer.clone()], ..Roles::default() }).await.unwrap();
    let expected: Vec<i64> = sqlx::query_scalar("SELECT id FROM events ORDER BY id LIMIT 6").fetch_all(store.pool()).await.unwrap();

    // Two clients sharing two server connections: every statement may land on another one.
    let mut clients = [bouncer.connect(&consumer, &scratch.database).await, bouncer.connect(&consumer, &scratch.database).await];
    let mut read = Vec::new();
    for i in 0..3 {
        let conn = &mut clients[i % 2];
        // Unnamed statements with parameters (no session state), as drivers send them.
        let batch: Vec<i64> =
            sqlx::query_scalar("SELECT id FROM ps.next_events($1, 2)").persistent(false).bind("crm").fetch_all(&mut *conn).await.unwrap();
        assert_eq!(batch.len(), 2, "batch {i}");
        let position: i64 = sqlx::query_scalar("SELECT ps.commit_events($1, $2)")
            .persistent(false)
            .bind("crm")
            .bind(batch[1])
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(position, batch[1]);
        read.extend(batch);
    }
    assert_eq!(read, expected, "every event once, in order, across pooled connections");

    let mut app = bouncer.connect(&writer, &scratch.database).await;
    for key in ["d1", "d2", "d3"] {
        let touches: Vec<String> = sqlx::query_scalar(
            "INSERT INTO ps.write_queue (operation, object_type, object_key, payload) VALUES ('update', 'deal', $1, '{}') RETURNING touches",
        )
        .persistent(false)
        .bind(key)
        .fetch_one(&mut app)
        .await
        .unwrap();
        assert_eq!(touches, vec![format!("deal:{key}")]);
    }
    sqlx::raw_sql("UPDATE ps.write_queue SET status = 'cancelled' WHERE object_key = 'd3' AND status = 'pending'")
        .execute(&mut app)
        .await
        .unwrap();
    let statuses: Vec<String> = sqlx::query_scalar("SELECT status FROM write_queue ORDER BY id").fetch_all(store.pool()).await.unwrap();
    assert_eq!(statuses, ["pending", "pending", "cancelled"]);
}

#[tokio::test]
async fn the_mirrors_commands_work_through_pgbouncer_in_session_mode() {
    let scratch = Scratch::new().await;
    let mirror = scratch.prepared_schema("ps").await;
    let Some(bouncer) = Bouncer::start("session", &[&mirror]).await else {
        eprintln!("pgbouncer is not installed: skipping (apt-get install pgbouncer; CI installs it)");
        return;
    };
    let sim = support::simulator(40, |_| {}).await;
    for args in [&["migrate"][..], &["sync"]] {
        let mut command = binary_as(&scratch, &mirror, "ps", &sim, args);
        command.env("DATABASE_URL", bouncer.url(&mirror, &scratch.database));
        support::succeeds(&mut command).await;
    }
    let deals: i64 = sqlx::query_scalar("SELECT count(*) FROM ps.deals").fetch_one(&mut scratch.dba().await).await.unwrap();
    assert!(deals > 0);
}
