//! TLS to PostgreSQL (docs/your-database.md): a server that accepts only TLS, as managed services do, is
//! mirrored into; `verify-full` checks the server's name and its CA and never falls back to
//! plain text; libpq's `PGSSL*` variables and client certificates work.

use std::path::PathBuf;

use partnerstack_mirror::private_postgres::{PrivatePostgres, ServerOptions};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

use crate::support;

/// A certificate authority of the test's own.
struct Authority {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Authority {
    fn new(name: &str) -> Authority {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        Authority { cert: params.self_signed(&key).unwrap(), key }
    }

    /// A certificate for `names` (DNS names), and for a client with `common_name`.
    fn issue(&self, names: &[&str], common_name: &str) -> (String, String) {
        let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, common_name);
        let key = KeyPair::generate().unwrap();
        (params.signed_by(&key, &self.cert, &self.key).unwrap().pem(), key.serialize_pem())
    }
}

/// A private server with TLS on, its certificate issued for `localhost` only by `ca`.
struct TlsServer {
    pg: PrivatePostgres,
    ca: Authority,
    /// Files the client reads (CA certificates, its own certificate and key).
    dir: PathBuf,
}

impl TlsServer {
    /// `hba`: the server's whole `pg_hba.conf`.
    async fn start(hba: &str) -> TlsServer {
        let ca = Authority::new("partnerstack-mirror test CA");
        let (cert, key) = ca.issue(&["localhost"], "localhost");
        let options = ServerOptions {
            settings: vec![
                ("ssl".into(), "on".into()),
                ("ssl_cert_file".into(), "server.crt".into()),
                ("ssl_key_file".into(), "server.key".into()),
                ("ssl_ca_file".into(), "root.crt".into()),
            ],
            files: vec![
                ("server.crt".into(), cert.into_bytes()),
                ("server.key".into(), key.into_bytes()),
                ("root.crt".into(), ca.cert.pem().into_bytes()),
            ],
            hba: Some(hba.into()),
        };
        let pg = PrivatePostgres::start_with(options).await.expect("a private server with TLS on");
        let dir = std::env::temp_dir().join(format!("psm-tls-{}-{}", std::process::id(), rand::random::<u32>()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.cert.pem()).unwrap();
        std::fs::write(dir.join("other-ca.pem"), Authority::new("somebody else's CA").cert.pem()).unwrap();
        TlsServer { pg, ca, dir }
    }

    fn file(&self, name: &str) -> String {
        self.dir.join(name).to_string_lossy().into_owned()
    }

    /// `postgres://postgres@HOST:PORT/postgres?QUERY`.
    fn url(&self, host: &str, query: &str) -> String {
        format!("postgres://postgres@{host}:{}/postgres?{query}", self.pg.port())
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// TLS only, as RDS with `rds.force_ssl`, Cloud SQL, Azure, Supabase and Neon: plain text is
/// refused by pg_hba.conf.
const TLS_ONLY: &str = "hostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n";
/// Both, so a client that fell back to plain text would get in.
const TLS_OR_PLAIN: &str = "host all all 127.0.0.1/32 trust\n";

/// The binary with `DATABASE_URL`, against `sim`, in schema `mirror`.
fn binary(url: &str, sim: &partnerstack_simulator::RunningSimulator, args: &[&str]) -> tokio::process::Command {
    let defaults = partnerstack_simulator::SimulatorConfig::default();
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_partnerstack-mirror"));
    command
        .args(["--log-format", "json", "--config", "/dev/null"])
        .args(args)
        .env("DATABASE_URL", url)
        .env("PSM_DATABASE__SCHEMA", "mirror")
        .env("PSM_PARTNERSTACK__API_URL", &sim.base_url)
        .env("PARTNERSTACK_PUBLIC_KEY", defaults.public_key)
        .env("PARTNERSTACK_PRIVATE_KEY", defaults.private_key)
        .env("PSM_PARTNERSTACK__REQUESTS_PER_SECOND", "0")
        .env("PSM_SYNC__SETTLE", "0s")
        .env_remove("PGSSLMODE")
        .env_remove("PGSSLROOTCERT")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    command
}

async fn schema_exists(server: &TlsServer) -> bool {
    let store = partnerstack_mirror::store::Store::connect(&server.url("localhost", "sslmode=require"), "mirror", 2).await.unwrap();
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'mirror')").fetch_one(store.pool()).await.unwrap()
}

#[tokio::test]
async fn a_server_that_accepts_only_tls_is_mirrored_into_and_doctor_says_the_connection_is_encrypted() {
    let server = TlsServer::start(TLS_ONLY).await;
    let sim = support::simulator(60, |_| {}).await;

    // Plain text is refused: the server really accepts TLS alone.
    let (code, _) = support::exit_and_stderr(&mut binary(&server.url("127.0.0.1", "sslmode=disable"), &sim, &["migrate"])).await;
    assert_eq!(code, Some(1), "a plain-text connection must be refused by this server");

    let require = server.url("127.0.0.1", "sslmode=require");
    support::succeeds(&mut binary(&require, &sim, &["migrate"])).await;
    support::succeeds(&mut binary(&require, &sim, &["sync"])).await;
    // The default, `prefer`, takes TLS where the server offers it.
    support::succeeds(&mut binary(&server.url("127.0.0.1", ""), &sim, &["sync"])).await;
    let verified = format!("sslmode=verify-full&sslrootcert={}", server.file("ca.pem"));
    let store = partnerstack_mirror::store::Store::connect(&server.url("localhost", &verified), "mirror", 2).await.unwrap();
    let deals: i64 = sqlx::query_scalar("SELECT count(*) FROM deals").fetch_one(store.pool()).await.unwrap();
    assert!(deals > 0, "the sync over TLS stored the deals");
    let (tls, _) = store.connection_security().await.unwrap();
    assert!(tls.is_some_and(|t| t.starts_with("TLS")), "the store's own connections are encrypted");

    let output = binary(&server.url("localhost", &verified), &sim, &["doctor"]).output().await.unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(report.contains("[yes] Database connection encrypted (TLS)?"), "{report}");
}

#[tokio::test]
async fn verify_full_refuses_a_wrong_name_or_an_unknown_ca_at_start_and_never_falls_back_to_plain_text() {
    let server = TlsServer::start(TLS_OR_PLAIN).await;
    let sim = support::simulator(10, |_| {}).await;
    let cases = [
        (
            "a name the certificate does not carry",
            server.url("127.0.0.1", &format!("sslmode=verify-full&sslrootcert={}", server.file("ca.pem"))),
        ),
        ("an unknown CA", server.url("localhost", &format!("sslmode=verify-full&sslrootcert={}", server.file("other-ca.pem")))),
        ("an unknown CA, verify-ca", server.url("localhost", &format!("sslmode=verify-ca&sslrootcert={}", server.file("other-ca.pem")))),
    ];
    for (case, url) in cases {
        let (code, stderr) = support::exit_and_stderr(&mut binary(&url, &sim, &["migrate"])).await;
        assert_eq!(code, Some(1), "{case}: {stderr}");
        assert!(stderr.contains("TLS") && stderr.contains("certificate"), "{case}: the failure names TLS and the certificate: {stderr}");
    }
    assert!(!schema_exists(&server).await, "no migration ran over a connection that fell back to plain text");
    // The right name and CA pass.
    let url = server.url("localhost", &format!("sslmode=verify-full&sslrootcert={}", server.file("ca.pem")));
    support::succeeds(&mut binary(&url, &sim, &["migrate"])).await;
}

#[tokio::test]
async fn the_pgsslmode_and_pgsslrootcert_variables_are_honoured() {
    let server = TlsServer::start(TLS_OR_PLAIN).await;
    let sim = support::simulator(10, |_| {}).await;
    let url = server.url("localhost", "");
    let mut wrong_ca = binary(&url, &sim, &["migrate"]);
    wrong_ca.env("PGSSLMODE", "verify-full").env("PGSSLROOTCERT", server.file("other-ca.pem"));
    let (code, stderr) = support::exit_and_stderr(&mut wrong_ca).await;
    assert_eq!(code, Some(1), "PGSSLMODE=verify-full with a CA that did not sign the server's certificate: {stderr}");
    let mut right_ca = binary(&url, &sim, &["migrate"]);
    right_ca.env("PGSSLMODE", "verify-full").env("PGSSLROOTCERT", server.file("ca.pem"));
    support::succeeds(&mut right_ca).await;
}

#[tokio::test]
async fn a_server_that_asks_for_a_client_certificate_accepts_sslcert_and_sslkey() {
    // The superuser (the server's own readiness probe) is trusted; everyone else shows a
    // certificate whose common name is their role.
    let server = TlsServer::start("hostssl all postgres 127.0.0.1/32 trust\nhostssl all all 127.0.0.1/32 cert\n").await;
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&server.url("localhost", "sslmode=require")).await.unwrap();
    sqlx::raw_sql("CREATE ROLE tls_client LOGIN; GRANT CREATE ON DATABASE postgres TO tls_client").execute(&mut admin).await.unwrap();
    let (cert, key) = server.ca.issue(&[], "tls_client");
    std::fs::write(server.dir.join("client.crt"), cert).unwrap();
    std::fs::write(server.dir.join("client.key"), key).unwrap();
    let sim = support::simulator(10, |_| {}).await;

    let without =
        format!("postgres://tls_client@localhost:{}/postgres?sslmode=verify-full&sslrootcert={}", server.pg.port(), server.file("ca.pem"));
    let (code, _) = support::exit_and_stderr(&mut binary(&without, &sim, &["migrate"])).await;
    assert_eq!(code, Some(1), "without a client certificate the server refuses");
    let with = format!("{without}&sslcert={}&sslkey={}", server.file("client.crt"), server.file("client.key"));
    support::succeeds(&mut binary(&with, &sim, &["migrate"])).await;
    let store = partnerstack_mirror::store::Store::connect(&with, "mirror", 2).await.unwrap();
    assert!(store.holds_mirror().await.unwrap(), "the mirror was made over a client-certificate connection");
}
