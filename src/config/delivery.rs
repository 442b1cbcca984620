//! `[[delivery]]`: the webhook endpoints events are pushed to, as written and as validated.
//! Errors name the delivery and the key (`delivery[crm].url`); the signing secret is held in
//! a [`SecretString`] and never printed, not even its length.

use std::{fmt, path::PathBuf, time::Duration};

use base64::Engine;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

use super::{file::is_loopback, lenient, ConfigError, Origin};

/// What a delivery does with an event its endpoint refused `max_attempts` times.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Keep it in `delivery_dead_letters` (body included) and go on with the next events.
    DeadLetter,
    /// Stop advancing at that event and keep trying (state `holding`) until it is accepted.
    Hold,
}

/// Where a delivery seen for the first time starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Start {
    /// After the last event written so far: only news.
    Now,
    /// At the first event the table still holds.
    Beginning,
}

/// One validated `[[delivery]]`.
#[derive(Clone)]
pub struct DeliveryConfig {
    pub name: String,
    pub url: Url,
    /// Event-type patterns; `*` matches anything (`deal.*`, `*.deleted`, `lead.approved`).
    pub events: Vec<String>,
    /// The Standard Webhooks secret as written (`whsec_` + base64); checked to decode.
    pub secret: SecretString,
    pub timeout: Duration,
    pub max_attempts: u32,
    pub on_failure: OnFailure,
    /// Records whose events are sent at once (one event at a time per record).
    pub parallelism: usize,
    pub start: Start,
    /// The first wait before a failed event is tried again; doubles up to `max_backoff`.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
}

impl fmt::Debug for DeliveryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeliveryConfig")
            .field("name", &self.name)
            .field("url", &redacted(&self.url))
            .field("events", &self.events)
            .field("secret", &"[redacted]")
            .field("timeout", &self.timeout)
            .field("max_attempts", &self.max_attempts)
            .field("on_failure", &self.on_failure)
            .field("parallelism", &self.parallelism)
            .field("start", &self.start)
            .field("min_backoff", &self.min_backoff)
            .field("max_backoff", &self.max_backoff)
            .finish()
    }
}

/// A delivery URL without what may be a credential: a password in it, and its query.
fn redacted(url: &url::Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(Some("[redacted]"));
    }
    if shown.query().is_some() {
        shown.set_query(Some("[redacted]"));
    }
    shown.to_string()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDelivery {
    #[serde(deserialize_with = "lenient::text")]
    name: String,
    #[serde(deserialize_with = "lenient::text")]
    url: String,
    #[serde(default = "all_events", deserialize_with = "lenient::list")]
    events: Vec<String>,
    #[serde(default, deserialize_with = "lenient::optional_secret")]
    secret: Option<SecretString>,
    #[serde(default, deserialize_with = "lenient::optional_path")]
    secret_file: Option<PathBuf>,
    /// The name of an environment variable holding the secret.
    #[serde(default, deserialize_with = "lenient::optional_text")]
    secret_env: Option<String>,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    timeout: Duration,
    #[serde(default = "default_max_attempts")]
    max_attempts: u32,
    #[serde(default = "default_on_failure")]
    on_failure: OnFailure,
    #[serde(default = "default_parallelism")]
    parallelism: usize,
    #[serde(default = "default_start")]
    start: Start,
    #[serde(default = "default_min_backoff", with = "humantime_serde")]
    min_backoff: Duration,
    #[serde(default = "default_max_backoff", with = "humantime_serde")]
    max_backoff: Duration,
}

fn all_events() -> Vec<String> {
    vec!["*".into()]
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_max_attempts() -> u32 {
    10
}
fn default_on_failure() -> OnFailure {
    OnFailure::DeadLetter
}
fn default_parallelism() -> usize {
    8
}
fn default_start() -> Start {
    Start::Now
}
fn default_min_backoff() -> Duration {
    Duration::from_secs(1)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(600)
}

/// The Standard Webhooks prefix of a signing secret.
const SECRET_PREFIX: &str = "whsec_";
/// The Standard Webhooks specification's smallest recommended key (192 bits); a shorter one
/// is accepted with a warning.
const RECOMMENDED_SECRET_BYTES: usize = 24;

/// Validates every delivery; names must be unique.
pub(super) fn validate(raw: Vec<RawDelivery>) -> Result<Vec<DeliveryConfig>, ConfigError> {
    let mut deliveries: Vec<DeliveryConfig> = Vec::with_capacity(raw.len());
    for (index, r) in raw.into_iter().enumerate() {
        let d = r.validate(index)?;
        if deliveries.iter().any(|other| other.name == d.name) {
            return Err(invalid(&d.name, "name", "two deliveries have this name; names must be unique"));
        }
        deliveries.push(d);
    }
    Ok(deliveries)
}

/// An error about `delivery[label].key`; `label` is the delivery's name, or its index in the
/// list while the name itself is not valid.
fn invalid(label: &str, key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: format!("delivery[{label}].{key}"), reason: reason.into(), origin: Origin::Unknown }
}

/// Any name an operator would write (`crm`, `CRM`, `my delivery`). It is bound as a SQL
/// parameter, escaped as a metrics label, typed after `delivery retry`, and sent in every
/// `webhook-id` header (`schema.name.event`, bytes outside ASCII percent-encoded there):
/// control characters would break the header and the log lines, and spaces around it would
/// not survive a shell or a copy from a log.
fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        Err("must not be empty")
    } else if name.chars().any(char::is_control) {
        Err("must not hold control characters (tabs, line breaks, …)")
    } else if name.trim() != name {
        Err("must not begin or end with a space")
    } else {
        Ok(())
    }
}

impl RawDelivery {
    fn validate(self, index: usize) -> Result<DeliveryConfig, ConfigError> {
        let name = self.name;
        check_name(&name).map_err(|reason| invalid(&index.to_string(), "name", reason))?;
        // Not quoted: a webhook URL often carries a credential (user:password@, a token path).
        let url = Url::parse(&self.url).map_err(|e| invalid(&name, "url", format!("is not a URL: {e}")))?;
        match url.scheme() {
            "https" => {}
            "http" if is_loopback(&url) => {}
            "http" => return Err(invalid(&name, "url", "plain http:// is only allowed for loopback hosts; use https://")),
            other => return Err(invalid(&name, "url", format!("unsupported scheme `{other}`; use https://"))),
        }
        if self.events.is_empty() || self.events.iter().any(|p| p.trim().is_empty()) {
            return Err(invalid(&name, "events", "list at least one event-type pattern, e.g. [\"deal.*\"] or [\"*\"]"));
        }
        let secret = match (self.secret, self.secret_file, self.secret_env) {
            (Some(s), None, None) => s,
            (None, Some(path), None) => match std::fs::read_to_string(&path) {
                Ok(text) => SecretString::from(text.trim().to_owned()),
                Err(e) => return Err(invalid(&name, "secret_file", format!("cannot read {}: {e}", path.display()))),
            },
            (None, None, Some(var)) => match std::env::var(&var) {
                Ok(text) => SecretString::from(text.trim().to_owned()),
                Err(_) => return Err(invalid(&name, "secret_env", format!("the environment variable {var} is not set"))),
            },
            (None, None, None) => return Err(invalid(&name, "secret", "set one of secret, secret_file or secret_env")),
            _ => return Err(invalid(&name, "secret", "set only one of secret, secret_file or secret_env")),
        };
        let key_bytes = check_secret(&secret).map_err(|reason| invalid(&name, "secret", reason))?;
        if key_bytes < RECOMMENDED_SECRET_BYTES {
            tracing::warn!(
                delivery = %name,
                "delivery[{name}].secret is shorter than the {RECOMMENDED_SECRET_BYTES} bytes the Standard Webhooks \
                 specification recommends; `echo whsec_$(openssl rand -base64 32)` makes one"
            );
        }
        if self.timeout.is_zero() || self.timeout > Duration::from_secs(300) {
            return Err(invalid(&name, "timeout", "must be between 1ms and 5m"));
        }
        if self.max_attempts == 0 {
            return Err(invalid(&name, "max_attempts", "must be at least 1"));
        }
        if !(1..=256).contains(&self.parallelism) {
            return Err(invalid(&name, "parallelism", "must be between 1 and 256"));
        }
        if self.min_backoff.is_zero() {
            return Err(invalid(&name, "min_backoff", "must be positive"));
        }
        if self.max_backoff < self.min_backoff {
            return Err(invalid(&name, "max_backoff", "must not be shorter than min_backoff"));
        }
        Ok(DeliveryConfig {
            name,
            url,
            events: self.events.into_iter().map(|p| p.trim().to_owned()).collect(),
            secret,
            timeout: self.timeout,
            max_attempts: self.max_attempts,
            on_failure: self.on_failure,
            parallelism: self.parallelism,
            start: self.start,
            min_backoff: self.min_backoff,
            max_backoff: self.max_backoff,
        })
    }
}

/// `whsec_` + standard base64 of at least one byte (what the signer needs); returns the key's
/// length in bytes. The reason never quotes the secret.
fn check_secret(secret: &SecretString) -> Result<usize, String> {
    let Some(encoded) = secret.expose_secret().strip_prefix(SECRET_PREFIX) else {
        return Err(format!("must start with `{SECRET_PREFIX}` (a Standard Webhooks secret: whsec_ + base64)"));
    };
    match base64::engine::general_purpose::STANDARD.decode(encoded) {
        Ok(key) if key.is_empty() => Err("has no key after `whsec_` (e.g. `echo whsec_$(openssl rand -base64 32)`)".into()),
        Ok(key) => Ok(key.len()),
        Err(_) => Err("the part after `whsec_` is not valid base64".into()),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn one(body: &str) -> Result<Config, ConfigError> {
        Config::from_toml(&format!("[[delivery]]\nname = \"crm\"\n{body}"))
    }

    #[test]
    fn a_delivery_gets_the_documented_defaults() {
        let c = one(&format!("url = \"https://crm.example.com/hooks\"\nsecret = \"{SECRET}\"")).unwrap();
        let d = &c.deliveries[0];
        assert_eq!(d.events, ["*"]);
        assert_eq!(d.timeout, Duration::from_secs(10));
        assert_eq!((d.max_attempts, d.on_failure, d.parallelism, d.start), (10, OnFailure::DeadLetter, 8, Start::Now));
        assert_eq!((d.min_backoff, d.max_backoff), (Duration::from_secs(1), Duration::from_secs(600)));
    }

    #[test]
    fn errors_name_the_delivery_and_the_key() {
        let err = one(&format!("url = \"http://crm.example.com/hooks\"\nsecret = \"{SECRET}\"")).unwrap_err().to_string();
        assert!(err.contains("`delivery[crm].url`") && err.contains("https"), "{err}");
        assert!(one(&format!("url = \"http://127.0.0.1:9000/hooks\"\nsecret = \"{SECRET}\"")).is_ok(), "loopback may be plain http");
        let err = one("url = \"https://x.example.com/\"\nsecret = \"hunter2hunter2hunter2hunter2\"").unwrap_err().to_string();
        assert!(err.contains("delivery[crm].secret") && err.contains("whsec_") && !err.contains("hunter2"), "{err}");
        let err = one("url = \"https://x.example.com/\"\nsecret = \"whsec_\"").unwrap_err().to_string();
        assert!(err.contains("delivery[crm].secret") && err.contains("no key"), "{err}");
        let err = one("url = \"https://x.example.com/\"").unwrap_err().to_string();
        assert!(err.contains("delivery[crm].secret"), "{err}");
        let err = one(&format!("url = \"https://x.example.com/\"\nsecret = \"{SECRET}\"\non_failure = \"drop\"")).unwrap_err().to_string();
        assert!(err.contains("on_failure") || err.contains("drop"), "{err}");
        let err = one(&format!("url = \"https://x.example.com/\"\nsecret = \"{SECRET}\"\nevents = []")).unwrap_err().to_string();
        assert!(err.contains("delivery[crm].events"), "{err}");
        let twice = format!(
            "[[delivery]]\nname = \"crm\"\nurl = \"https://a.example.com/\"\nsecret = \"{SECRET}\"\n\
             [[delivery]]\nname = \"crm\"\nurl = \"https://b.example.com/\"\nsecret = \"{SECRET}\""
        );
        let err = Config::from_toml(&twice).unwrap_err().to_string();
        assert!(err.contains("delivery[crm].name") && err.contains("unique"), "{err}");
    }

    #[test]
    fn the_secret_can_come_from_a_file_or_the_environment_and_never_shows_in_debug_output() {
        let path = std::env::temp_dir().join(format!("psm-whsec-{}", std::process::id()));
        std::fs::write(&path, format!("{SECRET}\n")).unwrap();
        let c = one(&format!("url = \"https://x.example.com/\"\nsecret_file = {:?}", path.display().to_string())).unwrap();
        assert_eq!(c.deliveries[0].secret.expose_secret(), SECRET);
        std::fs::remove_file(path).unwrap();
        let var = format!("PSM_TEST_WHSEC_{}", std::process::id());
        std::env::set_var(&var, SECRET);
        let c = one(&format!("url = \"https://x.example.com/\"\nsecret_env = \"{var}\"")).unwrap();
        assert_eq!(c.deliveries[0].secret.expose_secret(), SECRET);
        let debug = format!("{c:?}");
        assert!(!debug.contains("MfKQ9r8G") && debug.contains("[redacted]"), "{debug}");
        // A password or a query in the URL may be a credential too.
        let c = one(&format!("url = \"https://user:hunter2@x.example.com/hook?token=t0ps3cret\"\nsecret = \"{SECRET}\"")).unwrap();
        let debug = format!("{c:?}");
        assert!(!debug.contains("hunter2") && !debug.contains("t0ps3cret") && debug.contains("x.example.com/hook"), "{debug}");
    }

    #[test]
    fn a_delivery_name_may_have_capitals_and_spaces_but_no_control_characters_or_surrounding_spaces() {
        let named = |name: &str| {
            Config::from_toml(&format!("[[delivery]]\nname = {name:?}\nurl = \"https://x.example.com/\"\nsecret = \"{SECRET}\""))
        };
        for name in ["CRM", "my delivery", "crm.eu", "Zapier (prod)", "1"] {
            assert_eq!(named(name).unwrap().deliveries[0].name, name);
        }
        for name in ["", " crm", "crm ", "crm\tprod", "line\nbreak"] {
            let err = named(name).unwrap_err().to_string();
            assert!(err.contains("`delivery[0].name`"), "{name:?}: {err}");
        }
        let twice = format!(
            "[[delivery]]\nname = \"My CRM\"\nurl = \"https://a.example.com/\"\nsecret = \"{SECRET}\"\n\
             [[delivery]]\nname = \"My CRM\"\nurl = \"https://b.example.com/\"\nsecret = \"{SECRET}\""
        );
        let err = Config::from_toml(&twice).unwrap_err().to_string();
        assert!(err.contains("`delivery[My CRM].name`") && err.contains("unique"), "{err}");
    }

    #[test]
    fn a_short_signing_secret_is_accepted_with_a_warning_that_does_not_show_it() {
        let (c, logs) = crate::config::tests::logs_of(|| one("url = \"https://x.example.com/\"\nsecret = \"whsec_dGlueSE=\""));
        assert_eq!(c.unwrap().deliveries[0].secret.expose_secret(), "whsec_dGlueSE=");
        assert!(logs.contains("delivery[crm].secret is shorter than the 24 bytes"), "{logs}");
        assert!(!logs.contains("dGlueSE") && !logs.contains("tiny"), "{logs}");
        let (c, logs) = crate::config::tests::logs_of(|| one(&format!("url = \"https://x.example.com/\"\nsecret = \"{SECRET}\"")));
        assert!(c.is_ok() && logs.is_empty(), "{logs}");
        let err = one("url = \"https://x.example.com/\"\nsecret = \"whsec_not base64!\"").unwrap_err().to_string();
        assert!(err.contains("`delivery[crm].secret`") && err.contains("base64") && !err.contains("not base64!"), "{err}");
    }
}
