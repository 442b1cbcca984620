//! Configuration: a TOML file layered with `PSM_` environment variables (`__` for nesting)
//! and the conventional `DATABASE_URL`, `PARTNERSTACK_PUBLIC_KEY`, `PARTNERSTACK_PRIVATE_KEY`.
//!
//! Parsing happens once, at start; every error names the key at fault as the file spells it,
//! and where its value came from. Secrets are held in [`SecretString`] so they cannot reach
//! logs, errors or `Debug` output by accident, and no error quotes one.

use std::{
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use figment::{
    providers::{Format, Toml},
    Figment,
};
use secrecy::SecretString;
use serde::Deserialize;
use url::Url;

use crate::{object::ObjectKind, partnerstack::RateLimit};

mod delivery;
mod env;
mod explain;
mod file;
pub mod keys;
mod lenient;
mod push;
#[cfg(test)]
mod tests;

pub use delivery::{DeliveryConfig, OnFailure, Start};
pub use file::is_loopback;
use file::RawConfig;
pub use push::{keys_for as push_keys_for, PushConfig};

/// Where the configuration file is looked for when `--config` is not given.
pub const DEFAULT_PATHS: [&str; 2] = ["./partnerstack-mirror.toml", "/etc/partnerstack-mirror/config.toml"];

/// The configuration could not be loaded; the message names the key, the reason, and where
/// the value came from, and never quotes a secret.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {path} does not exist")]
    MissingFile { path: PathBuf },
    /// The source itself is bad: a file that is not TOML, or cannot be read.
    #[error("invalid configuration{origin}: {reason}")]
    Unreadable { origin: Origin, reason: String },
    /// `key` as the TOML file spells it: `sync.lookback`, `delivery[crm].url`.
    #[error("invalid configuration: `{key}`: {reason}{origin}")]
    Invalid { key: String, reason: String, origin: Origin },
    #[error("cannot read `partnerstack.private_key_file` {path}")]
    SecretFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Where a configuration value was written, as an error shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Not known (TOML text given in code: tests, the demo).
    Unknown,
    File(PathBuf),
    /// The name of the environment variable.
    Environment(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Unknown => Ok(()),
            Origin::File(path) => write!(f, " (in {})", path.display()),
            Origin::Environment(name) => write!(f, " (from {})", env::describe(name)),
        }
    }
}

fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.to_owned(), reason: reason.into(), origin: Origin::Unknown }
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
    /// `[[push]]`: queries that say what PartnerStack should hold.
    pub pushes: Vec<PushConfig>,
}

/// PartnerStack webhooks in (docs/webhooks.md).
#[derive(Clone)]
pub struct WebhooksConfig {
    /// The secret path segment of `POST /webhooks/partnerstack/{token}`; `None`: intake is off.
    pub token: Option<SecretString>,
    /// Intake counts as healthy while a webhook came in within this: polls then run every
    /// `sync.interval_with_webhooks` (docs/steady-state.md).
    pub quiet_after: Duration,
}

impl fmt::Debug for WebhooksConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhooksConfig")
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .field("quiet_after", &self.quiet_after)
            .finish()
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
                Err(e) => Err(serde::de::Error::custom(format!(
                    "`{t}` is not a duration ({e}): write it with its unit, e.g. \"90d\" or \"12h\" (0 or \"forever\" keeps forever)"
                ))),
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
    /// Other roles and what they may do with the schema (granted at every start).
    pub roles: crate::store::Roles,
}

impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &self.url.as_ref().map(|_| "[redacted]"))
            .field("schema", &self.schema)
            .field("max_connections", &self.max_connections)
            .field("statement_timeout", &self.statement_timeout)
            .field("roles", &self.roles)
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
    /// The pause between polls while webhook intake is healthy (a webhook received within
    /// `webhooks.quiet_after`): hints bring changes at once, polls are the safety net.
    pub interval_with_webhooks: Duration,
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

// ---- loading -----------------------------------------------------------------------

impl Config {
    /// Loads `path` (or the first default path that exists; none is fine) and the environment.
    ///
    /// # Errors
    /// A missing explicit file, a malformed value, or a value that fails validation.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        Self::from_sources(path, env::process_environment())
    }

    /// As [`Config::load`], with the environment given (tests do not touch the process's).
    fn from_sources(path: Option<&Path>, vars: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigError> {
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
        Self::from_figment(env::layer(figment, vars))
    }

    /// Builds a configuration from TOML text alone (tests, the demo).
    pub fn from_toml(toml: &str) -> Result<Config, ConfigError> {
        Self::from_figment(Figment::new().merge(Toml::string(toml)))
    }

    /// Lossy extraction reads numbers and booleans from text (`PSM_QUEUE__WORKERS=4`); text
    /// keys take any scalar as written (see [`lenient`]).
    fn from_figment(figment: Figment) -> Result<Config, ConfigError> {
        let raw: RawConfig = figment.extract_lossy().map_err(|e| explain::figment_error(&figment, e))?;
        raw.validate().map_err(|e| explain::with_origin(&figment, e))
    }
}
