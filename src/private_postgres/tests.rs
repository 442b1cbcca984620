use std::os::unix::fs::PermissionsExt;

use super::{
    host::{parse_effective_uid, parse_passwd_user, versioned_bin_dirs},
    *,
};

async fn answers_select_1(url: &str) -> bool {
    let Ok(mut connection) = PgConnection::connect(url).await else {
        return false;
    };
    let one: Result<i32, _> = sqlx::query_scalar("SELECT 1").fetch_one(&mut connection).await;
    matches!(one, Ok(1))
}

fn accepts_connections(port: u16) -> bool {
    std::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok()
}

#[tokio::test]
async fn a_started_server_answers_select_1_at_its_url() {
    let server = PrivatePostgres::start().await.expect("server starts");
    assert!(answers_select_1(&server.url()).await, "{} answers SELECT 1", server.url());
    assert_eq!(server.url(), format!("postgres://postgres@127.0.0.1:{}/postgres", server.port()));
    let socket = server.socket_url();
    assert!(answers_select_1(&socket).await, "{socket} answers SELECT 1");
    assert!(socket.contains("host=%2F"), "{socket} names the socket's directory");
    let dir = server.dir.clone();
    server.stop().await.expect("server stops");
    assert!(!dir.exists(), "{} was removed", dir.display());
}

#[tokio::test]
async fn dropping_a_server_stops_it_and_removes_its_directory() {
    let server = PrivatePostgres::start().await.expect("server starts");
    let (port, dir) = (server.port(), server.dir.clone());
    assert!(accepts_connections(port));
    drop(server);
    assert!(!dir.exists(), "{} was removed", dir.display());
    assert!(!accepts_connections(port), "port {port} no longer accepts connections");
}

#[tokio::test]
async fn two_servers_run_side_by_side_on_different_ports() {
    let (first, second) = tokio::join!(PrivatePostgres::start(), PrivatePostgres::start());
    let (first, second) = (first.expect("first starts"), second.expect("second starts"));
    assert_ne!(first.port(), second.port());
    assert_ne!(first.dir, second.dir);
    assert!(answers_select_1(&first.url()).await);
    assert!(answers_select_1(&second.url()).await);
    first.stop().await.expect("first stops");
    assert!(answers_select_1(&second.url()).await, "second outlives first");
    second.stop().await.expect("second stops");
}

#[tokio::test]
async fn a_server_whose_owner_vanishes_is_cleaned_up_by_the_watchdog() {
    let mut server = PrivatePostgres::start().await.expect("server starts");
    let (port, dir) = (server.port(), server.dir.clone());
    // Closing our end of the pipe is what the kernel does when the owner dies.
    let watchdog = server.watchdog.as_mut().expect("watchdog is armed");
    drop(watchdog.child.stdin.take());

    let deadline = Instant::now() + Duration::from_secs(30);
    while dir.exists() || accepts_connections(port) {
        assert!(Instant::now() < deadline, "watchdog cleaned up within 30s");
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    // Dropping after the watchdog acted must neither fail nor hang.
    drop(server);
}

#[test]
fn url_for_puts_the_database_name_in_the_path_percent_encoded() {
    let server = PrivatePostgres { dir: PathBuf::from("/nonexistent"), port: 5432, server: None, watchdog: None, dir_removed: true };
    assert_eq!(server.url_for("app_test"), "postgres://postgres@127.0.0.1:5432/app_test");
    assert_eq!(server.url_for("a b/c"), "postgres://postgres@127.0.0.1:5432/a%20b%2Fc");
    assert_eq!(server.url(), "postgres://postgres@127.0.0.1:5432/postgres");
}

#[test]
fn versioned_installs_are_tried_newest_first() {
    let root = std::env::temp_dir().join(format!("pg-versions-{:08x}", rand::random::<u32>()));
    for version in ["9.6", "15", "10", "16", "main"] {
        fs::create_dir_all(root.join(version).join("bin")).unwrap();
    }
    let found = versioned_bin_dirs(&root);
    fs::remove_dir_all(&root).unwrap();
    let versions: Vec<_> = found.iter().map(|dir| dir.parent().unwrap().file_name().unwrap().to_str().unwrap()).collect();
    assert_eq!(versions, ["16", "15", "10", "9.6"]);
}

#[test]
fn a_named_directory_is_used_only_when_it_holds_executable_initdb_and_postgres_and_named_when_not() {
    let dir = std::env::temp_dir().join(format!("pg-bin-{:08x}", rand::random::<u32>()));
    fs::create_dir_all(&dir).unwrap();
    let refused = |dir: &Path| match Binaries::in_named_dir(dir, BIN_DIR_VARIABLE) {
        Err(error) => error.to_string(),
        Ok(found) => panic!("{found:?} in {}", dir.display()),
    };
    let said = format!("PRIVATE_POSTGRES_BIN_DIR names {}, which holds no executable initdb and postgres", dir.display());
    assert_eq!(refused(&dir), said, "an empty directory");

    for name in ["initdb", "postgres"] {
        fs::write(dir.join(name), "#!/bin/sh\n").unwrap();
    }
    assert_eq!(refused(&dir), said, "files that are not executable");

    for name in ["initdb", "postgres"] {
        fs::set_permissions(dir.join(name), fs::Permissions::from_mode(0o755)).unwrap();
    }
    let found = Binaries::in_named_dir(&dir, BIN_DIR_VARIABLE);
    fs::remove_dir_all(&dir).unwrap();
    assert_eq!(found.unwrap(), Binaries { initdb: dir.join("initdb"), postgres: dir.join("postgres") });
}

#[test]
fn the_effective_uid_is_the_second_uid_in_proc_status() {
    let status = "Name:\tcargo\nUid:\t1000\t0\t0\t0\nGid:\t1000\t1000\t1000\t1000\n";
    assert_eq!(parse_effective_uid(status), Some(0));
}

#[test]
fn the_postgres_user_is_read_from_passwd() {
    let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                  postgres:x:101:104:PostgreSQL administrator:/var/lib/postgresql:/bin/bash\n";
    assert_eq!(parse_passwd_user(passwd, "postgres"), Some(RunAs { uid: 101, gid: 104 }));
    assert_eq!(parse_passwd_user(passwd, "nobody"), None);
}
