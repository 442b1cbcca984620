//! The private server's processes: each runs in a process group of its own, stops by
//! SIGINT then SIGKILL, and is watched by a `sh` that cleans up after an owner that dies
//! without unwinding.

use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{host::RunAs, PrivatePostgresError, Result, POLL_INTERVAL};

/// Sends SIGINT (fast shutdown) and waits up to `grace`; then SIGKILLs the server's process
/// group, which holds the postmaster and all its backends.
pub(super) fn stop_server(mut server: Child, grace: Duration) -> Result<()> {
    let pid = server.id();
    let wait_error = |source| PrivatePostgresError::Wait { pid, source };
    if server.try_wait().map_err(wait_error)?.is_some() {
        return Ok(());
    }
    let outcome = match send_signal("INT", &pid.to_string()) {
        Ok(()) => {
            let deadline = Instant::now() + grace;
            loop {
                if server.try_wait().map_err(wait_error)?.is_some() {
                    return Ok(());
                }
                if Instant::now() >= deadline {
                    break PrivatePostgresError::ShutdownTimedOut { grace };
                }
                std::thread::sleep(POLL_INTERVAL);
            }
        }
        Err(source) => PrivatePostgresError::Signal { pid, signal: "INT", source },
    };
    // The server is in its own process group (see `server_command`), whose id is its pid.
    let _ = send_signal("KILL", &format!("-{pid}"));
    let _ = server.kill();
    server.wait().map_err(wait_error)?;
    Err(outcome)
}

/// Signals through the shell's `kill` builtin: std can only send SIGKILL, there is no libc
/// dependency, and `/bin/kill` is missing from minimal images while `sh` never is.
fn send_signal(signal: &str, target: &str) -> io::Result<()> {
    let status = Command::new("sh")
        .args(["-c", r#"kill -s "$0" -- "$1""#, signal, target])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!("`kill -s {signal} -- {target}` failed ({status})")))
    }
}

/// A command for a server binary: run as `run_as` when given, in its own process group so a
/// terminal's Ctrl-C reaches only the owner, which then shuts the server down in order.
pub(super) fn server_command(program: &Path, run_as: Option<RunAs>, cwd: &Path) -> Command {
    let mut command = Command::new(program);
    command.current_dir(cwd).stdin(Stdio::null()).process_group(0);
    if let Some(RunAs { uid, gid }) = run_as {
        // std also drops root's supplementary groups when it switches uid.
        command.uid(uid).gid(gid);
    }
    command
}

/// Removes the server and its directory if the owner goes away without cleaning up.
///
/// A `sh` process reads its stdin, a pipe whose only writer is the owner; the read returns
/// when that end closes, which the kernel does however the owner dies. Orderly paths kill the
/// watchdog first ([`Watchdog::disarm`]).
#[derive(Debug)]
pub(super) struct Watchdog {
    pub(super) child: Child,
}

/// `$1` is the private directory. The postmaster's pid comes from its lock file, so the
/// watchdog can be armed before the server exists and survives port retries.
const WATCHDOG_SCRIPT: &str = r#"
read -r _ignored
pidfile="$1/data/postmaster.pid"
if [ -r "$pidfile" ] && read -r pid < "$pidfile" && [ -n "$pid" ]; then
    kill -s INT "$pid" 2>/dev/null
    i=0
    while [ -e "$pidfile" ] && kill -0 "$pid" 2>/dev/null && [ "$i" -lt 100 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    if [ -e "$pidfile" ] && kill -0 "$pid" 2>/dev/null; then
        kill -s KILL -- "-$pid" 2>/dev/null
    fi
fi
rm -rf -- "$1"
"#;

impl Watchdog {
    pub(super) fn arm(dir: &Path) -> io::Result<Watchdog> {
        let child = Command::new("sh")
            .args(["-c", WATCHDOG_SCRIPT, "private-postgres-watchdog"])
            .arg(dir)
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()?;
        Ok(Watchdog { child })
    }

    /// Kills the watchdog before its pipe closes, so it never acts.
    pub(super) fn disarm(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
