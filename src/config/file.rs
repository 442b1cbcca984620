//! The configuration as written: the file's and the environment's shape, with the documented
//! defaults (docs/configuration.md), and its validation into [`Config`](super::Config), where every error names its key.

use std::{path::PathBuf, str::FromStr, time::Duration};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sqlx::postgres::PgConnectOptions;
use url::Url;

use super::{
    delivery, invalid, lenient, push, Config, ConfigError, DatabaseConfig, EventsConfig, HttpConfig, PartnerStackConfig, QueueConfig,
    Retention, Schedule, SyncConfig, WebhooksConfig, DAY,
};
use crate::{object::ObjectKind, partnerstack::RateLimit, store::Roles};

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawConfig {
    database: RawDatabase,
    partnerstack: RawPartnerStack,
    sync: RawSync,
    queue: RawQueue,
    http: RawHttp,
    events: RawEvents,
    delivery: Vec<delivery::RawDelivery>,
    webhooks: RawWebhooks,
    push: Vec<push::RawPush>,
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawWebhooks {
    #[serde(deserialize_with = "lenient::optional_secret")]
    token: Option<SecretString>,
    #[serde(deserialize_with = "lenient::optional_path")]
    token_file: Option<PathBuf>,
    #[serde(with = "humantime_serde")]
    quiet_after: Duration,
}

impl Default for RawWebhooks {
    fn default() -> Self {
        RawWebhooks { token: None, token_file: None, quiet_after: Duration::from_secs(15 * 60) }
    }
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
            check_token(t.expose_secret())?;
        }
        if self.quiet_after.is_zero() {
            return Err(invalid("webhooks.quiet_after", "must be positive"));
        }
        Ok(WebhooksConfig { token, quiet_after: self.quiet_after })
    }
}

/// A token shorter than this is accepted with a warning: it may be guessed.
const SHORT_TOKEN: usize = 16;

/// The token is one segment of the intake URL's path, so it must travel as written: any
/// non-empty run of the URL-unreserved characters (RFC 3986: A-Z a-z 0-9 - . _ ~), but not
/// `.` or `..`, which clients resolve away. Neither the error nor the warning shows it.
fn check_token(token: &str) -> Result<(), ConfigError> {
    if token.is_empty() {
        return Err(invalid("webhooks.token", "must not be empty"));
    }
    let unreserved = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~');
    if !token.chars().all(unreserved) {
        return Err(invalid(
            "webhooks.token",
            "may hold only A-Z, a-z, 0-9, -, ., _ and ~ (it is part of a URL path; e.g. `openssl rand -hex 24`)",
        ));
    }
    if token == "." || token == ".." {
        return Err(invalid("webhooks.token", "must not be just one or two dots (a URL path would drop that segment)"));
    }
    if token.len() < SHORT_TOKEN {
        tracing::warn!(
            "webhooks.token is shorter than {SHORT_TOKEN} characters, so it may be guessed; `openssl rand -hex 24` makes a long one"
        );
    }
    Ok(())
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
    #[serde(deserialize_with = "lenient::optional_secret")]
    url: Option<SecretString>,
    #[serde(deserialize_with = "lenient::text")]
    schema: String,
    max_connections: u32,
    #[serde(with = "humantime_serde")]
    statement_timeout: Duration,
    #[serde(deserialize_with = "lenient::list")]
    readers: Vec<String>,
    #[serde(deserialize_with = "lenient::list")]
    consumers: Vec<String>,
    #[serde(deserialize_with = "lenient::list")]
    writers: Vec<String>,
}

impl Default for RawDatabase {
    fn default() -> Self {
        RawDatabase {
            url: None,
            schema: "partnerstack".into(),
            max_connections: 10,
            statement_timeout: Duration::from_secs(60),
            readers: Vec::new(),
            consumers: Vec::new(),
            writers: Vec::new(),
        }
    }
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawPartnerStack {
    #[serde(deserialize_with = "lenient::text")]
    api_url: String,
    #[serde(deserialize_with = "lenient::optional_text")]
    public_key: Option<String>,
    #[serde(deserialize_with = "lenient::optional_secret")]
    private_key: Option<SecretString>,
    #[serde(deserialize_with = "lenient::optional_path")]
    private_key_file: Option<PathBuf>,
    #[serde(deserialize_with = "lenient::optional_number")]
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
    /// A list, or from the environment also `deals` or `deals,leads`.
    #[serde(deserialize_with = "lenient::list")]
    objects: Vec<String>,
    #[serde(deserialize_with = "lenient::optional_text")]
    schedule: Option<String>,
    #[serde(with = "humantime_serde")]
    interval: Option<Duration>,
    #[serde(with = "humantime_serde")]
    interval_with_webhooks: Duration,
    #[serde(with = "humantime_serde")]
    lookback: Duration,
    #[serde(with = "humantime_serde")]
    settle: Duration,
    #[serde(deserialize_with = "lenient::text")]
    rescan_schedule: String,
    #[serde(deserialize_with = "lenient::text")]
    reconcile_schedule: String,
    backfill_concurrency: usize,
    emit_backfill_events: bool,
    #[serde(deserialize_with = "lenient::number")]
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
            interval_with_webhooks: Duration::from_secs(300),
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
    #[serde(deserialize_with = "lenient::text")]
    listen: String,
}

impl Default for RawHttp {
    fn default() -> Self {
        RawHttp { listen: "127.0.0.1:9187".into() }
    }
}

impl RawConfig {
    pub(super) fn validate(self) -> Result<Config, ConfigError> {
        let sync = self.sync.validate()?;
        let pushes = push::validate(self.push)?;
        push::check_mirrored(&pushes, &sync.objects)?;
        Ok(Config {
            database: self.database.validate()?,
            partnerstack: self.partnerstack.validate()?,
            sync,
            queue: self.queue.validate()?,
            events: EventsConfig { retain: self.events.retain },
            webhooks: self.webhooks.validate()?,
            http: HttpConfig { listen: self.http.listen.parse().map_err(|e| invalid("http.listen", format!("{e}: expected host:port")))? },
            deliveries: delivery::validate(self.delivery)?,
            pushes,
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
            check_database_url(url.expose_secret())?;
        }
        if self.statement_timeout < Duration::from_millis(100) {
            return Err(invalid("database.statement_timeout", "must be at least 100ms"));
        }
        let roles = Roles { readers: self.readers, consumers: self.consumers, writers: self.writers };
        check_roles(&roles)?;
        Ok(DatabaseConfig {
            url: self.url,
            schema: self.schema,
            max_connections: self.max_connections,
            statement_timeout: self.statement_timeout,
            roles,
        })
    }
}

/// Each role once, in one list (the tiers nest: a writer reads and consumes too), and never
/// PUBLIC, which the mirror grants nothing by design.
fn check_roles(roles: &Roles) -> Result<(), ConfigError> {
    let mut seen: Vec<(&str, crate::store::Tier)> = Vec::new();
    for (name, tier) in roles.tiers() {
        let key = format!("database.{tier}s");
        if name.trim().is_empty() {
            return Err(invalid(&key, "holds an empty role name"));
        }
        if name.eq_ignore_ascii_case("public") {
            return Err(invalid(&key, "PUBLIC gets no privilege on the mirror's schema; name the roles that may read"));
        }
        if let Some((_, first)) = seen.iter().find(|(n, _)| *n == name) {
            return Err(invalid(
                &key,
                format!("role \"{name}\" is also in database.{first}s: name it once, in the list of everything it may do (writers read and consume too)"),
            ));
        }
        seen.push((name, tier));
    }
    Ok(())
}

/// Parsed as the pool will parse it, so a bad port or `sslmode` is bad configuration (exit 2)
/// found at start rather than a failed connection later. The reason never quotes the URL,
/// which may hold a password.
fn check_database_url(url: &str) -> Result<(), ConfigError> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(invalid("database.url", "must start with postgres:// or postgresql://"));
    }
    // sqlx logs an unknown query parameter with its value; the connection logs it later anyway.
    let parsed = tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), || PgConnectOptions::from_str(url));
    match parsed {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Configuration(reason)) => Err(invalid("database.url", without_password(reason.to_string(), url))),
        Err(other) => Err(invalid("database.url", without_password(other.to_string(), url))),
    }
}

/// `reason` without sqlx's `error with configuration: ` (said once per nesting), unless it
/// quotes the URL or its password (none of sqlx's do today).
fn without_password(reason: String, url: &str) -> String {
    let reason = reason.trim_start_matches("error with configuration: ").to_owned();
    let password = Url::parse(url).ok().and_then(|u| u.password().map(str::to_owned));
    let decoded = password.as_deref().map(|p| percent_encoding::percent_decode_str(p).decode_utf8_lossy().into_owned());
    let quoted = [Some(url.to_owned()), password, decoded].into_iter().flatten().any(|s| !s.is_empty() && reason.contains(&s));
    if quoted {
        "is not a valid PostgreSQL connection URL".to_owned()
    } else {
        reason
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
        // An empty key (`PARTNERSTACK_PRIVATE_KEY=` in a unit file) is no key: commands that
        // call the API then stop at once, naming the setting, instead of meeting a 401.
        let given = self.private_key.filter(|k| !k.expose_secret().trim().is_empty());
        let private_key = match (given, self.private_key_file) {
            (Some(_), Some(_)) => {
                return Err(invalid("partnerstack.private_key_file", "set either private_key or private_key_file, not both"))
            }
            (Some(k), None) => Some(k),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::SecretFile { path: path.clone(), source })?;
                if text.trim().is_empty() {
                    return Err(invalid("partnerstack.private_key_file", format!("{} is empty", path.display())));
                }
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

/// Whether `url` points at this machine: plain `http` is accepted only there.
pub fn is_loopback(url: &Url) -> bool {
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
        if self.interval_with_webhooks.is_zero() {
            return Err(invalid("sync.interval_with_webhooks", "must be positive"));
        }
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
            interval_with_webhooks: self.interval_with_webhooks,
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
    check_cron_expression(expr).map_err(|reason| invalid(key, reason))
}

/// Why `expr` is not a cron expression with seconds, if it is not.
pub(super) fn check_cron_expression(expr: &str) -> Result<(), String> {
    let fields = expr.split_whitespace().count();
    if !(6..=7).contains(&fields) {
        return Err(format!("`{expr}` is not a cron expression with seconds (6 fields, e.g. `0 */5 * * * *`)"));
    }
    tokio_cron_scheduler::Job::new_async(expr, |_, _| Box::pin(async {})).map(drop).map_err(|e| format!("`{expr}`: {e}"))
}
