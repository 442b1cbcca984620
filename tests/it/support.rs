//! Shared test fixtures: one PostgreSQL server per test run, one schema per test, one
//! simulator per test.

use partnerstack_mirror::sync::Reading;
use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        OnceLock,
    },
    time::Duration,
};

use partnerstack_mirror::{
    backoff::Backoff,
    object::ObjectKind,
    partnerstack::{ApiClient, ClientConfig, RateLimit},
    private_postgres::PrivatePostgres,
    store::Store,
    sync::{SyncSettings, Syncer},
};
use partnerstack_simulator::{RunningSimulator, Simulator, SimulatorConfig};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

/// The server for this test run: `DATABASE_URL` if set, otherwise a private one started on
/// first use (its watchdog removes it when the test process exits).
fn server_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    static SERVER: OnceLock<PrivatePostgres> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("DATABASE_URL") {
            return url;
        }
        // Started on its own runtime: each test has its own, and this one outlives them all.
        let pg = std::thread::spawn(|| {
            tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(PrivatePostgres::start())
        })
        .join()
        .unwrap()
        .expect("cannot start a private PostgreSQL server for the tests");
        SERVER.get_or_init(|| pg).url()
    })
}

/// The mirror's object type for what the simulator calls a resource (they meet by name).
pub fn kind_of(resource: partnerstack_simulator::Resource) -> ObjectKind {
    resource.to_string().parse().expect("every resource is an object type")
}

/// The URL of the test server (for child processes).
pub fn database_url() -> String {
    server_url().to_owned()
}

/// A store in a schema of its own, migrated. `TEST_LOG=1` shows the program's logs.
pub async fn store() -> Store {
    if std::env::var_os("TEST_LOG").is_some() {
        partnerstack_mirror::telemetry::init(Some(partnerstack_mirror::telemetry::LogFormat::Pretty), "info");
    }
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let schema = format!("t{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    let store = Store::connect(server_url(), &schema, 8).await.expect("connect");
    store.migrate().await.expect("migrate");
    store
}

/// Every index of the object tables, by name: its table, definition, and oid (which
/// changes when an index is dropped and built again).
pub async fn indexes(store: &Store) -> Vec<(String, String, String, i64)> {
    let tables: Vec<&str> = ObjectKind::ALL.iter().map(|k| k.table()).collect();
    sqlx::query_as(
        "SELECT indexname::text, tablename::text, indexdef,
                (quote_ident(schemaname) || '.' || quote_ident(indexname))::regclass::oid::bigint
           FROM pg_indexes WHERE schemaname = current_schema() AND tablename = ANY($1) ORDER BY indexname",
    )
    .bind(&tables)
    .fetch_all(store.pool())
    .await
    .unwrap()
}

/// The object tables' index definitions, by name.
pub async fn index_definitions(store: &Store) -> Vec<(String, String)> {
    let schema = format!("{}.", store.schema());
    indexes(store).await.into_iter().map(|(name, _, def, _)| (name, def.replace(&schema, ""))).collect()
}

/// A second view of `store`'s schema under another application name, for tests that cut
/// the mirror's own connections.
pub async fn observer(store: &Store) -> sqlx::PgPool {
    use std::str::FromStr;
    let options = sqlx::postgres::PgConnectOptions::from_str(server_url())
        .unwrap()
        .options([("search_path", store.schema())])
        .application_name("test-observer");
    sqlx::postgres::PgPoolOptions::new().max_connections(2).connect_with(options).await.unwrap()
}

/// A simulator with `records` records and the given switches, serving on a free port.
pub async fn simulator(records: usize, configure: impl FnOnce(&mut SimulatorConfig)) -> RunningSimulator {
    let mut config = SimulatorConfig { records, seed: 7, ..SimulatorConfig::default() };
    configure(&mut config);
    Simulator::new(config).start("127.0.0.1:0".parse().unwrap()).await.expect("simulator")
}

/// A client for the simulator with small backoffs so retries stay fast.
pub fn client(sim: &RunningSimulator, page_size: u16) -> ApiClient {
    ApiClient::new(client_config(sim, page_size)).unwrap()
}

/// What [`client`] is built from: no client-side rate limit, small backoffs.
pub fn client_config(sim: &RunningSimulator, page_size: u16) -> ClientConfig {
    let defaults = SimulatorConfig::default();
    ClientConfig {
        base_url: sim.base_url.parse().unwrap(),
        public_key: defaults.public_key,
        private_key: SecretString::from(defaults.private_key),
        rate_limit: RateLimit::Unlimited,
        timeout: Duration::from_secs(5),
        max_retries: 4,
        backoff: Backoff::new(Duration::from_millis(5), Duration::from_millis(50)),
        page_size,
        user_agent: "partnerstack-mirror-tests".into(),
    }
}

pub fn settings() -> SyncSettings {
    SyncSettings {
        lookback: Duration::from_secs(600),
        settle: Duration::ZERO,
        backfill_concurrency: 3,
        emit_backfill_events: true,
        reconcile_max_delete_share: 0.1,
        lease_ttl: Duration::from_secs(30),
    }
}

pub fn syncer(store: &Store, sim: &RunningSimulator, page_size: u16, settings: SyncSettings) -> Syncer {
    Syncer::new(client(sim, page_size), store.clone(), settings, CancellationToken::new())
}

/// Every object the simulator serves as a list (team members are walked per team).
pub fn listed_kinds() -> impl Iterator<Item = ObjectKind> {
    ObjectKind::ALL.into_iter()
}

/// Event types recorded for one record, in id order.
pub async fn event_types(store: &Store, kind: ObjectKind, key: &str) -> Vec<String> {
    sqlx::query_scalar("SELECT event_type FROM events WHERE object_type = $1 AND object_key = $2 ORDER BY id")
        .bind(kind.singular())
        .bind(key)
        .fetch_all(store.pool())
        .await
        .unwrap()
}

/// Event types recorded for one record after event id `after`.
pub async fn event_types_after(store: &Store, after: i64, kind: ObjectKind, key: &str) -> Vec<String> {
    sqlx::query_scalar("SELECT event_type FROM events WHERE id > $1 AND object_type = $2 AND object_key = $3 ORDER BY id")
        .bind(after)
        .bind(kind.singular())
        .bind(key)
        .fetch_all(store.pool())
        .await
        .unwrap()
}

pub async fn last_event_id(store: &Store) -> i64 {
    sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM events").fetch_one(store.pool()).await.unwrap()
}

/// Syncs every object once and panics on any failure.
pub async fn sync_all(syncer: &Syncer) {
    for kind in listed_kinds() {
        syncer.sync_object(kind, Reading::Changes).await.unwrap_or_else(|e| panic!("{kind}: {}", e.chain()));
    }
}

/// Rescans every object once and panics on any failure.
pub async fn rescan_all(syncer: &Syncer) {
    for kind in listed_kinds() {
        syncer.rescan(kind).await.unwrap_or_else(|e| panic!("{kind}: {}", e.chain()));
    }
}

/// The real binary, configured through the environment for `sim` and `store`'s schema, as
/// an operator would run it (small pages, no settle, short leases).
pub fn binary(sim: &RunningSimulator, store: &Store, args: &[&str]) -> tokio::process::Command {
    let defaults = SimulatorConfig::default();
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_partnerstack-mirror"));
    command
        .args(["--log-format", "json", "--config", "/dev/null"])
        .args(args)
        .env("DATABASE_URL", database_url())
        .env("PSM_DATABASE__SCHEMA", store.schema())
        .env("PSM_PARTNERSTACK__API_URL", &sim.base_url)
        .env("PARTNERSTACK_PUBLIC_KEY", defaults.public_key)
        .env("PARTNERSTACK_PRIVATE_KEY", defaults.private_key)
        .env("PSM_PARTNERSTACK__PAGE_SIZE", "20")
        .env("PSM_PARTNERSTACK__REQUESTS_PER_SECOND", "0")
        .env("PSM_SYNC__SETTLE", "0s")
        .env("PSM_SYNC__LEASE_TTL", "2s")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    command
}

/// Runs `command` to its end and fails the test unless it succeeded, showing the end of what
/// it logged: a child that fails in a crash test must say why.
pub async fn succeeds(command: &mut tokio::process::Command) {
    let output = command.stderr(std::process::Stdio::piped()).output().await.expect("run the binary");
    let log = String::from_utf8_lossy(&output.stderr);
    let tail: String = log.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
    assert!(output.status.success(), "the binary ended with {}; its last log lines:\n{tail}", output.status);
}

/// Runs `command` to its end; its exit code and what it wrote to stderr (for tests of what a
/// failing command tells its user).
pub async fn exit_and_stderr(command: &mut tokio::process::Command) -> (Option<i32>, String) {
    let output = command.stderr(std::process::Stdio::piped()).output().await.expect("run the binary");
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// How long the `eventually` helpers pause between looks.
const LOOK_AGAIN_AFTER: Duration = Duration::from_millis(20);

/// Waits until `condition` holds, checking every 20 ms; panics naming `what` after `within`.
pub async fn eventually<F, Fut>(what: &str, within: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    eventually_some(what, within, || {
        let holds = condition();
        async move { holds.await.then_some(()) }
    })
    .await
}

/// Waits until `probe` yields a value and returns it, looking every 20 ms; panics naming
/// `what` after `within`.
pub async fn eventually_some<T, F, Fut>(what: &str, within: Duration, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    eventually_paced(what, within, LOOK_AGAIN_AFTER, probe).await
}

/// [`eventually_some`], pausing `pause` between looks (zero: only yielding to the runtime),
/// for loops whose pace is part of the test: a reader racing writers, a check that must
/// stop a process soon after the moment it waits for.
pub async fn eventually_paced<T, F, Fut>(what: &str, within: Duration, pause: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out after {within:?} waiting for {what}");
        if pause.is_zero() {
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep(pause).await;
        }
    }
}

/// The real daemon (`run`), polling every 200 ms, its endpoint on a free port.
pub fn daemon(sim: &RunningSimulator, store: &Store, extra_env: &[(&str, String)]) -> tokio::process::Child {
    let mut command = binary(sim, store, &["run"]);
    command.env("PSM_SYNC__INTERVAL", "200ms").env("PSM_HTTP__LISTEN", "127.0.0.1:0");
    for (k, v) in extra_env {
        command.env(k, v);
    }
    command.spawn().expect("spawn the daemon")
}

pub async fn sigterm(child: &tokio::process::Child) {
    let pid = child.id().expect("running").to_string();
    let status = tokio::process::Command::new("kill").args(["-TERM", &pid]).status().await.unwrap();
    assert!(status.success());
}

/// A free loopback port (for a daemon's endpoint the test must reach).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// What a TCP proxy in front of PostgreSQL does with its connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// Bytes flow.
    Up,
    /// Connections stay open but nothing flows: a call hangs past any timeout of the server's
    /// (a network partition without resets).
    Frozen,
    /// Every connection is closed and new ones are refused: the database is down.
    Down,
}

/// A TCP proxy between a daemon and the test's PostgreSQL server, to freeze or cut the link.
pub struct DatabaseProxy {
    /// `database_url()` with the proxy's address.
    pub url: String,
    link: tokio::sync::watch::Sender<Link>,
    task: tokio::task::JoinHandle<()>,
}

impl DatabaseProxy {
    pub async fn start() -> DatabaseProxy {
        let upstream: url::Url = database_url().parse().unwrap();
        let target = format!("{}:{}", upstream.host_str().unwrap(), upstream.port().unwrap_or(5432));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut url = upstream.clone();
        url.set_port(Some(listener.local_addr().unwrap().port())).unwrap();
        url.set_host(Some("127.0.0.1")).unwrap();
        let (link, watch) = tokio::sync::watch::channel(Link::Up);
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else { return };
                if *watch.borrow() == Link::Down {
                    continue;
                }
                let Ok(server) = tokio::net::TcpStream::connect(&target).await else { continue };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pipe(cr, sw, watch.clone()));
                tokio::spawn(pipe(sr, cw, watch.clone()));
            }
        });
        DatabaseProxy { url: url.to_string(), link, task }
    }

    pub fn set(&self, link: Link) {
        self.link.send_replace(link);
    }
}

impl Drop for DatabaseProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies bytes one way while the link is up, holds them while frozen, stops when down.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut link: tokio::sync::watch::Receiver<Link>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0_u8; 16 * 1024];
    loop {
        let n = tokio::select! {
            read = from.read(&mut buf) => match read { Ok(0) | Err(_) => return, Ok(n) => n },
            _ = link.wait_for(|l| *l == Link::Down) => return,
        };
        // Held while frozen; dropped with the connection when the link goes down.
        let Ok(state) = link.wait_for(|l| *l != Link::Frozen).await.map(|l| *l) else { return };
        if state == Link::Down || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// A fake systemd notify socket: what the daemon sends, message by message.
pub struct NotifySocket {
    pub path: std::path::PathBuf,
    socket: tokio::net::UnixDatagram,
}

impl NotifySocket {
    pub fn bind() -> NotifySocket {
        let dir = std::env::temp_dir().join(format!("psm-notify-{}-{}", std::process::id(), rand::random::<u32>()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        NotifySocket { socket: tokio::net::UnixDatagram::bind(&path).unwrap(), path }
    }

    /// The next message, or `None` if none comes within `within`.
    pub async fn next(&self, within: Duration) -> Option<String> {
        let mut buf = vec![0_u8; 4096];
        let n = tokio::time::timeout(within, self.socket.recv(&mut buf)).await.ok()?.ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.path.parent().unwrap());
    }
}
