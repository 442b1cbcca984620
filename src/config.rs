//! Configuration: a TOML file layered with `PSM_` environment variables (`__` for nesting)
//! and the conventional `DATABASE_URL`, `PARTNERSTACK_PUBLIC_KEY`, `PARTNERSTACK_PRIVATE_KEY`.
//!
//! Parsing happens once, at start; every error names the key at fault. Secrets are held in
//! [`SecretString`] so they cannot reach logs, errors or `Debug` output by accident.

use std::{
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use figment::{
    providers::{Env, Format, Toml},
    Figment,
};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

use crate::{object::ObjectKind, partnerstack::RateLimit};

mod delivery;

pub use delivery::{DeliveryConfig, OnFailure, Start};

/// Where the configuration file is looked for when `--config` is not given.
pub const DEFAULT_PATHS: [&str; 2] = ["./partnerstack-mirror.toml", "/etc/partnerstack-mirror/config.toml"];

/// The configuration could not be loaded; the message names the key and the reason.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {path} does not exist")]
    MissingFile { path: PathBuf },
    #[error("invalid configuration: {0}")]
    Parse(#[source] Box<figment::Error>),
    #[error("invalid configuration: `{key}`: {reason}")]
    Invalid { key: &'static str, reason: String },
    #[error("invalid configuration: `delivery[{name}].{key}`: {reason}")]
    InvalidDelivery { name: String, key: &'static str, reason: String },
    #[error("cannot read `partnerstack.private_key_file` {path}")]
    SecretFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key, reason: reason.into() }
}

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub database: DatabaseConfig,
    pub partnerstack: PartnerStackConfig,
    pub sync: SyncConfig,
    pub queue: QueueConfig,
    pub http: HttpConfig,
    pub events: EventsConfig,
    /// `[[delivery]]`: webhook endpoints the events are pushed to.
    pub deliveries: Vec<DeliveryConfig>,
    pub webhooks: WebhooksConfig,
}

/// PartnerStack webhooks in (SPEC 11).
#[derive(Clone)]
pub struct WebhooksConfig {
    /// The secret path segment of `POST /webhooks/partnerstack/{token}`; `None`: intake is off.
    pub token: Option<SecretString>,
}

impl fmt::Debug for WebhooksConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhooksConfig").field("token", &self.token.as_ref().map(|_| "[redacted]")).finish()
    }
}

/// How long something is kept: a duration, or forever (`0` in the file).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retention {
    Forever,
    Keep(Duration),
}

impl<'de> Deserialize<'de> for Retention {
    /// `"90d"`, `"12h"`; `0`, `"0"` or `"forever"` keep forever.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Number(u64),
            Text(String),
        }
        match Written::deserialize(deserializer)? {
            Written::Number(0) => Ok(Retention::Forever),
            Written::Number(n) => {
                Err(serde::de::Error::custom(format!("{n}: write a duration with its unit, e.g. \"90d\" (0 keeps forever)")))
            }
            Written::Text(t) if t.trim() == "forever" => Ok(Retention::Forever),
            Written::Text(t) => match humantime_serde::re::humantime::parse_duration(t.trim()) {
                Ok(d) if d.is_zero() => Ok(Retention::Forever),
                Ok(d) => Ok(Retention::Keep(d)),
                Err(e) => Err(serde::de::Error::custom(format!("`{t}`: {e}"))),
            },
        }
    }
}

impl Retention {
    /// The age past which things go; `None`: kept forever.
    pub fn max_age(self) -> Option<Duration> {
        match self {
            Retention::Forever => None,
            Retention::Keep(d) => Some(d),
        }
    }
}

const DAY: Duration = Duration::from_secs(86_400);

#[derive(Clone, Debug)]
pub struct EventsConfig {
    /// Events older than this go, unless an active consumer or delivery has not passed them.
    pub retain: Retention,
}

#[derive(Clone)]
pub struct DatabaseConfig {
    /// May carry a password, hence secret. `None` only where a private server is started
    /// (the demo); every other command requires it.
    pub url: Option<SecretString>,
    pub schema: String,
    pub max_connections: u32,
    /// Every statement of the mirror's is cut off after this (migrations excepted).
    pub statement_timeout: Duration,
}

impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &self.url.as_ref().map(|_| "[redacted]"))
            .field("schema", &self.schema)
            .field("max_connections", &self.max_connections)
            .field("statement_timeout", &self.statement_timeout)
            .finish()
    }
}

#[derive(Clone)]
pub struct PartnerStackConfig {
    pub api_url: Url,
    pub public_key: String,
    pub private_key: Option<SecretString>,
    /// From `requests_per_second`: unset, find the allowed rate; positive, find it under that
    /// ceiling; 0, no client-side limit.
    pub rate_limit: RateLimit,
    pub timeout: Duration,
    pub max_retries: usize,
    pub page_size: u16,
}

impl fmt::Debug for PartnerStackConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PartnerStackConfig")
            .field("api_url", &self.api_url.as_str())
            .field("public_key", &self.public_key)
            .field("private_key", &self.private_key.as_ref().map(|_| "[redacted]"))
            .field("rate_limit", &self.rate_limit)
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .field("page_size", &self.page_size)
            .finish()
    }
}

/// When passes run.
#[derive(Clone, Debug, PartialEq)]
pub enum Schedule {
    /// A cron expression with seconds (`0 */5 * * * *`), evaluated in UTC.
    Cron(String),
    /// A fixed pause between the end of one pass and the start of the next.
    Every(Duration),
}

#[derive(Clone, Debug)]
pub struct SyncConfig {
    pub objects: Vec<ObjectKind>,
    pub schedule: Schedule,
    pub lookback: Duration,
    pub settle: Duration,
    pub rescan_schedule: String,
    pub reconcile_schedule: String,
    pub backfill_concurrency: usize,
    pub emit_backfill_events: bool,
    pub reconcile_max_delete_share: f64,
    /// `/readyz` fails when an object's last successful pass is older than this.
    pub freshness: Duration,
    /// An object's lease lapses this long after its holder's last write.
    pub lease_ttl: Duration,
    /// `sync_runs` rows older than this go.
    pub retain_runs: Retention,
}

#[derive(Clone, Debug)]
pub struct QueueConfig {
    pub workers: usize,
    pub max_attempts: u32,
    /// How long a claimed request is its worker's without news from it. The worker renews it
    /// every third of this while the request runs; a dead worker's requests are claimed again
    /// once it runs out.
    pub lease: Duration,
    /// A create whose outcome is unknown is sent again only after it has stayed unfindable
    /// this long (PartnerStack can take minutes to show a new record).
    pub lookup_grace: Duration,
    /// Finished requests (succeeded, failed, cancelled) older than this go; their
    /// idempotency keys become free again.
    pub retain_finished: Retention,
}

#[derive(Clone, Debug)]
pub struct HttpConfig {
    pub listen: SocketAddr,
}

// ---- the raw, as-written shape ------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RawConfig {
    database: RawDatabase,
    partnerstack: RawPartnerStack,
    sync: RawSync,
    queue: RawQueue,
    http: RawHttp,
    events: RawEvents,
    delivery: Vec<delivery::RawDelivery>,
    webhooks: RawWebhooks,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RawWebhooks {
    token: Option<SecretString>,
    token_file: Option<PathBuf>,
}

impl RawWebhooks {
    fn validate(self) -> Result<WebhooksConfig, ConfigError> {
        let token = match (self.token, self.token_file) {
            (Some(_), Some(_)) => return Err(invalid("webhooks.token_file", "set either token or token_file, not both")),
            (Some(t), None) => Some(t),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| invalid("webhooks.token_file", format!("cannot read {}: {e}", path.display())))?;
                Some(SecretString::from(text.trim().to_owned()))
            }
            (None, None) => None,
        };
        if let Some(t) = &token {
            let t = t.expose_secret();
            // The token travels in a URL path: long enough not to be guessed, and plain.
            if t.len() < 16 || !t.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                return Err(invalid(
                    "webhooks.token",
                    "must be at least 16 characters of A-Z, a-z, 0-9, - and _ (e.g. `openssl rand -hex 24`)",
                ));
            }
        }
        Ok(WebhooksConfig { token })
    }
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawEvents {
    retain: Retention,
}

impl Default for RawEvents {
    fn default() -> Self {
        RawEvents { retain: Retention::Keep(90 * DAY) }
    }
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawDatabase {
    url: Option<SecretString>,
    schema: String,
    max_connections: u32,
    #[serde(with = "humantime_serde")]
    statement_timeout: Duration,
}

impl Default for RawDatabase {
    fn default() -> Self {
        RawDatabase { url: None, schema: "partnerstack".into(), max_connections: 10, statement_timeout: Duration::from_secs(60) }
    }
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawPartnerStack {
    api_url: String,
    public_key: Option<String>,
    private_key: Option<SecretString>,
    private_key_file: Option<PathBuf>,
    requests_per_second: Option<f64>,
    #[serde(with = "humantime_serde")]
    timeout: Duration,
    max_retries: usize,
    page_size: u16,
}

impl Default for RawPartnerStack {
    fn default() -> Self {
        RawPartnerStack {
            api_url: "https://api.partnerstack.com/api/v2".into(),
            public_key: None,
            private_key: None,
            private_key_file: None,
            requests_per_second: None,
            timeout: Duration::from_secs(30),
            max_retries: 8,
            page_size: 250,
        }
    }
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawSync {
    objects: Vec<String>,
    schedule: Option<String>,
    #[serde(with = "humantime_serde")]
    interval: Option<Duration>,
    #[serde(with = "humantime_serde")]
    lookback: Duration,
    #[serde(with = "humantime_serde")]
    settle: Duration,
    rescan_schedule: String,
    reconcile_schedule: String,
    backfill_concurrency: usize,
    emit_backfill_events: bool,
    reconcile_max_delete_share: f64,
    #[serde(with = "humantime_serde")]
    freshness: Duration,
    #[serde(with = "humantime_serde")]
    lease_ttl: Duration,
    retain_runs: Retention,
}

impl Default for RawSync {
    fn default() -> Self {
        RawSync {
            objects: Vec::new(),
            schedule: None,
            interval: None,
            lookback: Duration::from_secs(600),
            settle: Duration::from_secs(5),
            rescan_schedule: "0 0 * * * *".into(),
            reconcile_schedule: "0 30 3 * * *".into(),
            backfill_concurrency: 4,
            emit_backfill_events: true,
            reconcile_max_delete_share: 0.10,
            freshness: Duration::from_secs(1800),
            lease_ttl: Duration::from_secs(60),
            retain_runs: Retention::Keep(30 * DAY),
        }
    }
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawQueue {
    workers: usize,
    max_attempts: u32,
    #[serde(with = "humantime_serde")]
    lease: Duration,
    #[serde(with = "humantime_serde")]
    lookup_grace: Duration,
    retain_finished: Retention,
}

impl Default for RawQueue {
    fn default() -> Self {
        RawQueue {
            workers: 2,
            max_attempts: 10,
            lease: Duration::from_secs(60),
            lookup_grace: Duration::from_secs(600),
            retain_finished: Retention::Keep(90 * DAY),
        }
    }
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawHttp {
    listen: String,
}

impl Default for RawHttp {
    fn default() -> Self {
        RawHttp { listen: "127.0.0.1:9187".into() }
    }
}

// ---- loading -----------------------------------------------------------------------

impl Config {
    /// Loads `path` (or the first default path that exists; none is fine) and the environment.
    ///
    /// # Errors
    /// A missing explicit file, a malformed value, or a value that fails validation.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let mut figment = Figment::new();
        match path {
            Some(p) if !p.exists() => return Err(ConfigError::MissingFile { path: p.to_owned() }),
            Some(p) => figment = figment.merge(Toml::file(p)),
            None => {
                if let Some(p) = DEFAULT_PATHS.iter().map(Path::new).find(|p| p.exists()) {
                    figment = figment.merge(Toml::file(p));
                }
            }
        }
        Self::from_figment(figment.merge(environment()))
    }

    /// Builds a configuration from TOML text alone (tests, the demo).
    pub fn from_toml(toml: &str) -> Result<Config, ConfigError> {
        Self::from_figment(Figment::new().merge(Toml::string(toml)))
    }

    fn from_figment(figment: Figment) -> Result<Config, ConfigError> {
        let raw: RawConfig = figment.extract().map_err(|e| ConfigError::Parse(Box::new(e)))?;
        raw.validate()
    }
}

/// `PSM_SYNC__INTERVAL=30s` → `sync.interval`; the three conventional names map onto their keys.
fn environment() -> Figment {
    Figment::new()
        .merge(Env::prefixed("PSM_").split("__"))
        .merge(Env::raw().only(&["DATABASE_URL"]).map(|_| "database.url".into()))
        .merge(Env::raw().only(&["PARTNERSTACK_PUBLIC_KEY"]).map(|_| "partnerstack.public_key".into()))
        .merge(Env::raw().only(&["PARTNERSTACK_PRIVATE_KEY"]).map(|_| "partnerstack.private_key".into()))
}

impl RawConfig {
    fn validate(self) -> Result<Config, ConfigError> {
        Ok(Config {
            database: self.database.validate()?,
            partnerstack: self.partnerstack.validate()?,
            sync: self.sync.validate()?,
            queue: self.queue.validate()?,
            events: EventsConfig { retain: self.events.retain },
            webhooks: self.webhooks.validate()?,
            http: HttpConfig { listen: self.http.listen.parse().map_err(|e| invalid("http.listen", format!("{e}: expected host:port")))? },
            deliveries: delivery::validate(self.delivery)?,
        })
    }
}

impl RawDatabase {
    fn validate(self) -> Result<DatabaseConfig, ConfigError> {
        let valid_identifier = !self.schema.is_empty()
            && self.schema.len() <= 63
            && self.schema.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
            && self.schema.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !valid_identifier {
            return Err(invalid("database.schema", "must be a lowercase SQL identifier (a-z, 0-9, _)"));
        }
        if self.max_connections < 2 {
            return Err(invalid("database.max_connections", "must be at least 2"));
        }
        if let Some(url) = &self.url {
            let u = url.expose_secret();
            if !(u.starts_with("postgres://") || u.starts_with("postgresql://")) {
                return Err(invalid("database.url", "must start with postgres:// or postgresql://"));
            }
        }
        if self.statement_timeout < Duration::from_millis(100) {
            return Err(invalid("database.statement_timeout", "must be at least 100ms"));
        }
        Ok(DatabaseConfig {
            url: self.url,
            schema: self.schema,
            max_connections: self.max_connections,
            statement_timeout: self.statement_timeout,
        })
    }
}

impl RawPartnerStack {
    fn validate(self) -> Result<PartnerStackConfig, ConfigError> {
        let api_url = Url::parse(&self.api_url).map_err(|e| invalid("partnerstack.api_url", e.to_string()))?;
        match api_url.scheme() {
            "https" => {}
            "http" if is_loopback(&api_url) => {}
            "http" => return Err(invalid("partnerstack.api_url", "plain http:// is only allowed for loopback hosts")),
            other => return Err(invalid("partnerstack.api_url", format!("unsupported scheme `{other}`"))),
        }
        if !(1..=250).contains(&self.page_size) {
            return Err(invalid("partnerstack.page_size", "must be between 1 and 250"));
        }
        let rate_limit = match self.requests_per_second {
            None => RateLimit::Adaptive { ceiling: None },
            Some(0.0) => RateLimit::Unlimited,
            Some(r) if (crate::partnerstack::MIN_CEILING..=crate::partnerstack::MAX_RATE).contains(&r) => {
                RateLimit::Adaptive { ceiling: Some(r) }
            }
            Some(_) => {
                return Err(invalid(
                    "partnerstack.requests_per_second",
                    format!(
                        "must be a ceiling between {} and {} requests a second, or 0 for no limit \
                         (leave it unset to let the client find the allowed rate)",
                        crate::partnerstack::MIN_CEILING,
                        crate::partnerstack::MAX_RATE
                    ),
                ))
            }
        };
        if self.timeout.is_zero() {
            return Err(invalid("partnerstack.timeout", "must be positive"));
        }
        let private_key = match (self.private_key, self.private_key_file) {
            (Some(_), Some(_)) => {
                return Err(invalid("partnerstack.private_key_file", "set either private_key or private_key_file, not both"))
            }
            (Some(k), None) => Some(k),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::SecretFile { path, source })?;
                Some(SecretString::from(text.trim().to_owned()))
            }
            (None, None) => None,
        };
        Ok(PartnerStackConfig {
            api_url,
            public_key: self.public_key.unwrap_or_default(),
            private_key,
            rate_limit,
            timeout: self.timeout,
            max_retries: self.max_retries,
            page_size: self.page_size,
        })
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

impl RawSync {
    fn validate(self) -> Result<SyncConfig, ConfigError> {
        let objects = if self.objects.is_empty() {
            ObjectKind::default_set()
        } else {
            let mut kinds = Vec::new();
            for name in &self.objects {
                let kind: ObjectKind = name.parse().map_err(|e: crate::object::UnknownObject| invalid("sync.objects", e.to_string()))?;
                if !kinds.contains(&kind) {
                    kinds.push(kind);
                }
            }
            kinds
        };
        let schedule = match (self.schedule, self.interval) {
            (Some(_), Some(_)) => return Err(invalid("sync.schedule", "set either sync.schedule or sync.interval, not both")),
            (Some(cron), None) => {
                check_cron("sync.schedule", &cron)?;
                Schedule::Cron(cron)
            }
            (None, Some(every)) if every.is_zero() => return Err(invalid("sync.interval", "must be positive")),
            (None, Some(every)) => Schedule::Every(every),
            (None, None) => Schedule::Every(Duration::from_secs(60)),
        };
        check_cron("sync.rescan_schedule", &self.rescan_schedule)?;
        check_cron("sync.reconcile_schedule", &self.reconcile_schedule)?;
        if !(0.0..=1.0).contains(&self.reconcile_max_delete_share) {
            return Err(invalid("sync.reconcile_max_delete_share", "must be between 0 and 1"));
        }
        if self.lease_ttl < Duration::from_secs(1) {
            return Err(invalid("sync.lease_ttl", "must be at least 1s"));
        }
        if self.backfill_concurrency == 0 {
            return Err(invalid("sync.backfill_concurrency", "must be at least 1"));
        }
        Ok(SyncConfig {
            objects,
            schedule,
            lookback: self.lookback,
            settle: self.settle,
            rescan_schedule: self.rescan_schedule,
            reconcile_schedule: self.reconcile_schedule,
            backfill_concurrency: self.backfill_concurrency,
            emit_backfill_events: self.emit_backfill_events,
            reconcile_max_delete_share: self.reconcile_max_delete_share,
            freshness: self.freshness,
            lease_ttl: self.lease_ttl,
            retain_runs: self.retain_runs,
        })
    }
}

impl RawQueue {
    fn validate(self) -> Result<QueueConfig, ConfigError> {
        if self.max_attempts == 0 {
            return Err(invalid("queue.max_attempts", "must be at least 1"));
        }
        if self.lease < Duration::from_secs(1) {
            return Err(invalid("queue.lease", "must be at least 1s"));
        }
        Ok(QueueConfig {
            workers: self.workers,
            max_attempts: self.max_attempts,
            lease: self.lease,
            lookup_grace: self.lookup_grace,
            retain_finished: self.retain_finished,
        })
    }
}

/// Cron expressions have six fields (seconds first), as tokio-cron-scheduler reads them.
fn check_cron(key: &'static str, expr: &str) -> Result<(), ConfigError> {
    let fields = expr.split_whitespace().count();
    if !(6..=7).contains(&fields) {
        return Err(invalid(key, format!("`{expr}` is not a cron expression with seconds (6 fields, e.g. `0 */5 * * * *`)")));
    }
    tokio_cron_scheduler::Job::new_async(expr, |_, _| Box::pin(async {})).map(drop).map_err(|e| invalid(key, format!("`{expr}`: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_spec() {
        let c = Config::from_toml("").unwrap();
        assert_eq!(c.database.schema, "partnerstack");
        assert_eq!(c.partnerstack.api_url.as_str(), "https://api.partnerstack.com/api/v2");
        assert_eq!(c.partnerstack.page_size, 250);
        assert_eq!(c.sync.lookback, Duration::from_secs(600));
        assert_eq!(c.sync.settle, Duration::from_secs(5));
        assert_eq!(c.sync.objects.len(), ObjectKind::ALL.len() - 1, "team members are opt-in");
        assert_eq!(c.http.listen.to_string(), "127.0.0.1:9187");
    }

    #[test]
    fn a_bad_value_names_its_key() {
        let err = Config::from_toml("[partnerstack]\npage_size = 500").unwrap_err().to_string();
        assert!(err.contains("partnerstack.page_size"), "{err}");
        let err = Config::from_toml("[sync]\ninterval = \"soon\"").unwrap_err().to_string();
        assert!(err.contains("interval"), "{err}");
        let err = Config::from_toml("[sync]\nobjects = [\"widgets\"]").unwrap_err().to_string();
        assert!(err.contains("sync.objects") && err.contains("widgets"), "{err}");
        let err = Config::from_toml("[sync]\nschedule = \"every minute\"").unwrap_err().to_string();
        assert!(err.contains("sync.schedule"), "{err}");
        let err = Config::from_toml("[queue]\nlease = \"10ms\"").unwrap_err().to_string();
        assert!(err.contains("queue.lease"), "{err}");
    }

    #[test]
    fn plain_http_is_only_accepted_for_loopback() {
        assert!(Config::from_toml("[partnerstack]\napi_url = \"http://127.0.0.1:8080/api/v2\"").is_ok());
        assert!(Config::from_toml("[partnerstack]\napi_url = \"http://localhost/api/v2\"").is_ok());
        let err = Config::from_toml("[partnerstack]\napi_url = \"http://example.com/api/v2\"").unwrap_err().to_string();
        assert!(err.contains("partnerstack.api_url"), "{err}");
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let c = Config::from_toml(
            "[database]\nurl = \"postgres://u:hunter2@db/x\"\n[partnerstack]\npublic_key = \"pk_1\"\nprivate_key = \"sk_topsecret\"",
        )
        .unwrap();
        let debug = format!("{c:?}");
        assert!(!debug.contains("hunter2") && !debug.contains("sk_topsecret"), "{debug}");
        assert!(debug.contains("pk_1"));
    }

    #[test]
    fn the_private_key_can_come_from_a_file() {
        let dir = std::env::temp_dir().join(format!("psm-key-{}", std::process::id()));
        std::fs::write(&dir, "sk_from_file\n").unwrap();
        let c = Config::from_toml(&format!("[partnerstack]\nprivate_key_file = {:?}", dir.display().to_string())).unwrap();
        assert_eq!(c.partnerstack.private_key.unwrap().expose_secret(), "sk_from_file");
        std::fs::remove_file(dir).unwrap();
    }

    #[test]
    fn the_example_file_parses_and_documents_the_defaults() {
        let example = Config::from_toml(include_str!("../config.example.toml")).unwrap();
        let defaults = Config::from_toml("").unwrap();
        assert_eq!(format!("{example:?}"), format!("{defaults:?}"));
    }

    #[test]
    fn retention_is_a_duration_or_forever() {
        let c = Config::from_toml("[events]\nretain = \"7d\"\n[queue]\nretain_finished = 0\n[sync]\nretain_runs = \"forever\"").unwrap();
        assert_eq!(c.events.retain, Retention::Keep(7 * DAY));
        assert_eq!(c.queue.retain_finished, Retention::Forever);
        assert_eq!(c.sync.retain_runs, Retention::Forever);
        assert_eq!(Config::from_toml("[events]\nretain = \"0\"").unwrap().events.retain, Retention::Forever);
        assert_eq!(Config::from_toml("").unwrap().events.retain, Retention::Keep(90 * DAY));
        let err = Config::from_toml("[events]\nretain = 90").unwrap_err().to_string();
        assert!(err.contains("90d") || err.contains("unit"), "{err}");
    }

    #[test]
    fn a_webhook_token_must_be_long_and_plain_and_is_never_printed() {
        let c = Config::from_toml("[webhooks]\ntoken = \"0123456789abcdef-XYZ\"").unwrap();
        assert!(c.webhooks.token.is_some());
        assert!(!format!("{c:?}").contains("0123456789abcdef"));
        let err = Config::from_toml("[webhooks]\ntoken = \"short\"").unwrap_err().to_string();
        assert!(err.contains("webhooks.token"), "{err}");
        assert!(Config::from_toml("").unwrap().webhooks.token.is_none(), "intake is off by default");
    }

    #[test]
    fn requests_per_second_unset_finds_the_rate_positive_caps_it_and_zero_lifts_the_limit() {
        let limit = |toml: &str| Config::from_toml(toml).map(|c| c.partnerstack.rate_limit);
        assert_eq!(limit("").unwrap(), RateLimit::Adaptive { ceiling: None });
        assert_eq!(limit("[partnerstack]\nrequests_per_second = 12.5").unwrap(), RateLimit::Adaptive { ceiling: Some(12.5) });
        assert_eq!(limit("[partnerstack]\nrequests_per_second = 0").unwrap(), RateLimit::Unlimited);
        for bad in ["-1", "1e9", "nan"] {
            let err = limit(&format!("[partnerstack]\nrequests_per_second = {bad}")).unwrap_err().to_string();
            assert!(err.contains("partnerstack.requests_per_second"), "{bad}: {err}");
        }
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = Config::from_toml("[sync]\nintervall = \"30s\"").unwrap_err().to_string();
        assert!(err.contains("intervall"), "{err}");
    }
}
