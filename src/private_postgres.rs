//! A throwaway PostgreSQL server for the `demo` command and for the test suite when
//! `DATABASE_URL` is not set.
//!
//! Why it exists: the demo and `cargo test` should work on any machine that has PostgreSQL's
//! server binaries installed, without a running cluster, credentials, or state left over from
//! a previous run. Each [`PrivatePostgres`] owns one temporary directory holding the cluster
//! (`data/`), the server log (`server.log`) and the Unix socket, listens only on loopback with
//! trust authentication, and trades durability for speed (no fsync) because nothing in it
//! outlives the process.
//!
//! Cleanup happens in three layers, so that nothing is left behind however the owner ends:
//! - [`PrivatePostgres::stop`], the orderly path, which reports failures;
//! - [`Drop`], for panics and early returns, which cleans up synchronously and best effort;
//! - a watchdog process, for owners that never unwind (SIGKILL, `process::exit`, a server kept
//!   in a `static` that is never dropped): it notices when the owner's end of a pipe closes,
//!   then stops the server and removes the directory itself.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};

mod host;
mod process;
#[cfg(test)]
mod tests;

pub use host::BIN_DIR_VARIABLE;
use host::{server_user, Binaries, RunAs};
use process::{server_command, stop_server, Watchdog};

/// How long a freshly started server may take to accept connections.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long [`PrivatePostgres::stop`] waits for a fast shutdown before killing the server.
const STOP_GRACE: Duration = Duration::from_secs(30);
/// How long [`Drop`] waits for a fast shutdown: it blocks its thread, so it is kept short.
const DROP_GRACE: Duration = Duration::from_secs(5);
/// Bound on one readiness probe, so a half-open server cannot stall the startup loop.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
const POLL_INTERVAL: Duration = Duration::from_millis(25);
/// A port picked as free can be taken by someone else before the server binds it; this many
/// fresh ports are tried before giving up.
const PORT_ATTEMPTS: usize = 5;
const LOG_TAIL_BYTES: u64 = 4096;
/// Where Debian and Ubuntu install each major version's server binaries.
const VERSIONED_INSTALL_ROOT: &str = "/usr/lib/postgresql";

/// Why a private server could not be started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum PrivatePostgresError {
    #[error(
        "PostgreSQL server binaries (initdb and postgres) were found neither on PATH nor under \
         {VERSIONED_INSTALL_ROOT}/*/bin; install PostgreSQL's server package \
         (e.g. `apt-get install postgresql`)"
    )]
    BinariesNotFound,
    #[error("{named_by} names {dir}, which holds no executable initdb and postgres")]
    NoBinariesInDir { dir: PathBuf, named_by: &'static str },
    #[error("could not determine the effective user id")]
    CurrentUser(#[source] io::Error),
    #[error(
        "running as root, but there is no `postgres` system user to run the server as \
         (PostgreSQL refuses to run as root); install PostgreSQL's server package \
         (e.g. `apt-get install postgresql`), which creates it"
    )]
    NoPostgresUser,
    #[error("could not prepare the temporary directory {path}")]
    TempDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("could not open the server log {path}")]
    Log {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("could not run {program}")]
    Spawn {
        program: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("initdb failed ({status}):\n{output}")]
    Initdb { status: ExitStatus, output: String },
    #[error("could not find a free TCP port on 127.0.0.1")]
    FreePort(#[source] io::Error),
    #[error("postgres exited during startup ({status}); server log tail:\n{log_tail}")]
    ServerExited { status: ExitStatus, log_tail: String },
    #[error("postgres could not bind a free port in {attempts} attempts; server log tail:\n{log_tail}")]
    PortsExhausted { attempts: usize, log_tail: String },
    #[error(
        "postgres did not accept connections on port {port} within {timeout:?}; \
         server log tail:\n{log_tail}"
    )]
    StartupTimedOut {
        port: u16,
        timeout: Duration,
        log_tail: String,
        #[source]
        last_probe: ProbeError,
    },
    #[error("could not wait for postgres (pid {pid})")]
    Wait {
        pid: u32,
        #[source]
        source: io::Error,
    },
    #[error("could not send SIG{signal} to postgres (pid {pid})")]
    Signal {
        pid: u32,
        signal: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("postgres did not shut down within {grace:?} and was killed")]
    ShutdownTimedOut { grace: Duration },
    #[error("the shutdown task did not run to completion")]
    ShutdownInterrupted(#[source] tokio::task::JoinError),
    #[error("could not remove the temporary directory {path}")]
    RemoveDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Why one readiness probe failed; the last one is kept as the source of a startup timeout.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("TCP connect failed")]
    Connect(#[source] io::Error),
    #[error("SQL probe failed")]
    Sql(#[source] sqlx::Error),
    /// Guards against a port race: another server (say, a concurrent test's) took the port
    /// we picked, and ours is about to fail binding it.
    #[error("the server on this port serves {found:?}, not our cluster")]
    WrongServer { found: String },
    #[error("probe did not finish within {PROBE_TIMEOUT:?}")]
    TimedOut,
}

type Result<T, E = PrivatePostgresError> = std::result::Result<T, E>;

/// A private server set up as users' servers are: TLS on, `pg_hba.conf` rules of a managed
/// service (TLS only, say). The default is the throwaway server the demo and tests use.
#[derive(Clone, Debug, Default)]
pub struct ServerOptions {
    /// Extra `-c name=value` settings, e.g. `ssl=on`.
    pub settings: Vec<(String, String)>,
    /// Files written into the data directory before the server starts (certificates, keys),
    /// by name, readable by the server user alone.
    pub files: Vec<(String, Vec<u8>)>,
    /// The whole `pg_hba.conf`, instead of initdb's (trust on loopback).
    pub hba: Option<String>,
}

/// A running, throwaway PostgreSQL server listening on `127.0.0.1` with trust authentication.
///
/// Stop it with [`PrivatePostgres::stop`] to hear about shutdown failures; dropping it also
/// stops the server and removes its directory, best effort.
#[derive(Debug)]
pub struct PrivatePostgres {
    /// Temporary directory holding the cluster, the socket and the log.
    dir: PathBuf,
    port: u16,
    /// The postmaster; `None` before it is spawned and after it has been stopped.
    server: Option<Child>,
    watchdog: Option<Watchdog>,
    /// Set once `dir` is gone, so a later `Drop` does nothing.
    dir_removed: bool,
}

impl PrivatePostgres {
    /// Initializes a cluster in a fresh temporary directory, starts `postgres` on 127.0.0.1
    /// on a free port, and returns once it answers queries (deadline ~30s). The binaries are
    /// those [`BIN_DIR_VARIABLE`] names, else those on PATH or installed.
    pub async fn start() -> Result<PrivatePostgres> {
        Self::start_with(ServerOptions::default()).await
    }

    /// [`PrivatePostgres::start`], set up as `options` says. The readiness probe connects as
    /// `postgres` over TCP (TLS when the server offers it), so `options.hba` must trust that.
    pub async fn start_with(options: ServerOptions) -> Result<PrivatePostgres> {
        Self::start_binaries(Binaries::locate()?, options).await
    }

    /// [`PrivatePostgres::start`] with the binaries in `bin_dir`, whatever the environment
    /// says: a second major version beside the one a test run uses (an old server to refuse).
    pub async fn start_from(bin_dir: &Path) -> Result<PrivatePostgres> {
        Self::start_binaries(Binaries::in_named_dir(bin_dir, "the caller")?, ServerOptions::default()).await
    }

    async fn start_binaries(binaries: Binaries, options: ServerOptions) -> Result<PrivatePostgres> {
        let run_as = server_user()?;
        let dir = create_private_dir(run_as)?;
        // From here on, an early return drops `this`, which cleans up whatever exists.
        let mut this = PrivatePostgres { dir, port: 0, server: None, watchdog: None, dir_removed: false };
        match Watchdog::arm(&this.dir) {
            Ok(watchdog) => this.watchdog = Some(watchdog),
            Err(error) => tracing::warn!(
                %error,
                "could not start the private postgres watchdog; \
                 the server will only be cleaned up if its owner is dropped"
            ),
        }

        this.initdb(&binaries, run_as).await?;
        this.write_files(&options, run_as)?;

        let log_path = this.log_path();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|source| PrivatePostgresError::Log { path: log_path.clone(), source })?;
        for _ in 0..PORT_ATTEMPTS {
            this.port = free_port()?;
            let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
            this.spawn_server(&binaries, run_as, &log, &options.settings)?;
            match this.wait_until_ready(log_start).await? {
                Readiness::Ready => {
                    tracing::debug!(port = this.port, dir = %this.dir.display(), "private postgres is ready");
                    return Ok(this);
                }
                Readiness::PortTaken => {
                    tracing::debug!(port = this.port, "port was taken before postgres bound it; retrying");
                }
            }
        }
        Err(PrivatePostgresError::PortsExhausted { attempts: PORT_ATTEMPTS, log_tail: log_tail(&log_path, 0) })
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`: no password, loopback is trusted.
    pub fn url(&self) -> String {
        self.url_for("postgres")
    }

    /// The URL of another database on this server (which the caller must create).
    pub fn url_for(&self, database: &str) -> String {
        let mut url =
            url::Url::parse(&format!("postgres://postgres@127.0.0.1:{}", self.port)).expect("a URL built from a host and port is valid");
        url.path_segments_mut().expect("a URL with a host has path segments").clear().push(database);
        url.into()
    }

    /// The same database over the server's Unix socket, for a client on this host: it skips
    /// the TCP stack on both sides (measured: 3–13% less PostgreSQL CPU per backfilled record,
    /// `benches/backfill.rs`).
    pub fn socket_url(&self) -> String {
        let mut url = url::Url::parse("postgres://postgres@localhost/postgres").expect("a constant URL is valid");
        url.query_pairs_mut().append_pair("host", &self.dir.to_string_lossy()).append_pair("port", &self.port.to_string());
        url.into()
    }

    /// The TCP port the server listens on, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Fast shutdown (SIGINT to the postmaster, then wait), then removes the temporary directory.
    pub async fn stop(self) -> Result<()> {
        // The shutdown blocks on waitpid polling and directory removal; keep that off the runtime.
        let mut this = self;
        match tokio::task::spawn_blocking(move || this.shutdown(STOP_GRACE)).await {
            Ok(result) => result,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(error) => Err(PrivatePostgresError::ShutdownInterrupted(error)),
        }
    }

    fn pgdata(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    async fn initdb(&self, binaries: &Binaries, run_as: Option<RunAs>) -> Result<()> {
        let mut command = server_command(&binaries.initdb, run_as, &self.dir);
        command
            .arg("-D")
            .arg(self.pgdata())
            .args(["--auth=trust", "--username=postgres", "--encoding=UTF8", "--locale=C", "-N"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let output = tokio::process::Command::from(command)
            .output()
            .await
            .map_err(|source| PrivatePostgresError::Spawn { program: binaries.initdb.clone(), source })?;
        if output.status.success() {
            return Ok(());
        }
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        Err(PrivatePostgresError::Initdb { status: output.status, output: text })
    }

    /// The option's files and `pg_hba.conf` into the data directory, owned by the server user.
    fn write_files(&self, options: &ServerOptions, run_as: Option<RunAs>) -> Result<()> {
        let hba = options.hba.as_ref().map(|text| ("pg_hba.conf".to_owned(), text.as_bytes().to_vec()));
        for (name, contents) in options.files.iter().cloned().chain(hba) {
            let path = self.pgdata().join(&name);
            let written = (|| -> io::Result<()> {
                use std::os::unix::fs::OpenOptionsExt;
                let mut file = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&path)?;
                io::Write::write_all(&mut file, &contents)?;
                if let Some(RunAs { uid, gid }) = run_as {
                    std::os::unix::fs::chown(&path, Some(uid), Some(gid))?;
                }
                Ok(())
            })();
            written.map_err(|source| PrivatePostgresError::TempDir { path, source })?;
        }
        Ok(())
    }

    fn spawn_server(&mut self, binaries: &Binaries, run_as: Option<RunAs>, log: &File, settings: &[(String, String)]) -> Result<()> {
        let log_handle = || log.try_clone().map_err(|source| PrivatePostgresError::Log { path: self.log_path(), source });
        let (stdout, stderr) = (log_handle()?, log_handle()?);
        let mut command = server_command(&binaries.postgres, run_as, &self.dir);
        command
            .arg("-D")
            .arg(self.pgdata())
            .args(["-c", "listen_addresses=127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .arg("-k")
            .arg(&self.dir)
            .args([
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=300",
                "-c",
                "shared_buffers=256MB",
            ])
            .args(settings.iter().flat_map(|(name, value)| ["-c".to_owned(), format!("{name}={value}")]))
            .stdout(stdout)
            .stderr(stderr);
        let child = command.spawn().map_err(|source| PrivatePostgresError::Spawn { program: binaries.postgres.clone(), source })?;
        self.server = Some(child);
        Ok(())
    }

    /// Polls until the server answers as our cluster, exits, or runs out of time.
    async fn wait_until_ready(&mut self, log_start: u64) -> Result<Readiness> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            let server = self.server.as_mut().expect("the server was just spawned");
            let pid = server.id();
            let exited = server.try_wait().map_err(|source| PrivatePostgresError::Wait { pid, source })?;
            if let Some(status) = exited {
                self.server = None;
                let log_tail = log_tail(&self.log_path(), log_start);
                if log_tail.contains("Address already in use") {
                    return Ok(Readiness::PortTaken);
                }
                return Err(PrivatePostgresError::ServerExited { status, log_tail });
            }
            let last_probe = match self.probe().await {
                Ok(()) => return Ok(Readiness::Ready),
                Err(error) => error,
            };
            if Instant::now() >= deadline {
                return Err(PrivatePostgresError::StartupTimedOut {
                    port: self.port,
                    timeout: STARTUP_TIMEOUT,
                    log_tail: log_tail(&self.log_path(), log_start),
                    last_probe,
                });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// A TCP connect, then a query that proves the server is up and is ours.
    async fn probe(&self) -> Result<(), ProbeError> {
        let attempt = async {
            tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, self.port)).await.map_err(ProbeError::Connect)?;
            let mut connection = PgConnection::connect(&self.url()).await.map_err(ProbeError::Sql)?;
            let found: String =
                sqlx::query_scalar("SELECT current_setting('data_directory')").fetch_one(&mut connection).await.map_err(ProbeError::Sql)?;
            let _ = connection.close().await;
            if Path::new(&found) == self.pgdata() {
                Ok(())
            } else {
                Err(ProbeError::WrongServer { found })
            }
        };
        tokio::time::timeout(PROBE_TIMEOUT, attempt).await.unwrap_or(Err(ProbeError::TimedOut))
    }

    /// Stops the server (fast shutdown, SIGKILL after `grace`) and removes the directory.
    /// Idempotent, so `Drop` after `stop` does nothing.
    fn shutdown(&mut self, grace: Duration) -> Result<()> {
        // Disarm first: the watchdog must not race the orderly shutdown below.
        if let Some(watchdog) = self.watchdog.take() {
            watchdog.disarm();
        }
        let stopped = match self.server.take() {
            Some(server) => stop_server(server, grace),
            None => Ok(()),
        };
        let removed = self.remove_dir();
        stopped.and(removed)
    }

    fn remove_dir(&mut self) -> Result<()> {
        if self.dir_removed {
            return Ok(());
        }
        match fs::remove_dir_all(&self.dir) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(PrivatePostgresError::RemoveDir { path: self.dir.clone(), source }),
        }
        self.dir_removed = true;
        Ok(())
    }
}

impl Drop for PrivatePostgres {
    /// Best effort, synchronous: a panicking test or an interrupted demo must not leave a
    /// server running or a cluster on disk.
    fn drop(&mut self) {
        if let Err(error) = self.shutdown(DROP_GRACE) {
            tracing::warn!(
                error = &error as &dyn std::error::Error,
                dir = %self.dir.display(),
                "could not clean up private postgres"
            );
        }
    }
}

enum Readiness {
    Ready,
    PortTaken,
}

/// A new directory that only the server user can use. As root it goes under /tmp, which the
/// `postgres` user can traverse even when root's own TMPDIR is private.
fn create_private_dir(run_as: Option<RunAs>) -> Result<PathBuf> {
    let base = match run_as {
        Some(_) => PathBuf::from("/tmp"),
        None => std::path::absolute(std::env::temp_dir()).unwrap_or_else(|_| "/tmp".into()),
    };
    loop {
        let path = base.join(format!("private-postgres-{}-{:08x}", std::process::id(), rand::random::<u32>()));
        match fs::DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(source) => return Err(PrivatePostgresError::TempDir { path, source }),
        }
        if let Some(RunAs { uid, gid }) = run_as {
            if let Err(source) = std::os::unix::fs::chown(&path, Some(uid), Some(gid)) {
                let _ = fs::remove_dir(&path);
                return Err(PrivatePostgresError::TempDir { path, source });
            }
        }
        return Ok(path);
    }
}

/// Binds port 0 and releases it. Another process can take the port before the server binds
/// it; [`PrivatePostgres::start`] retries when that happens.
fn free_port() -> Result<u16> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(PrivatePostgresError::FreePort)
}

/// The last few KiB written to the log at or after `start`, for error messages.
fn log_tail(path: &Path, start: u64) -> String {
    let read = || -> io::Result<String> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        let from = start.max(len.saturating_sub(LOG_TAIL_BYTES));
        file.seek(SeekFrom::Start(from))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        // Drop a partial first line when the tail starts mid-log.
        Ok(match (from > start, text.find('\n')) {
            (true, Some(newline)) => text[newline + 1..].to_owned(),
            _ => text,
        })
    };
    read().unwrap_or_else(|error| format!("(could not read {}: {error})", path.display()))
}
