//! `[[push]]`: queries that say what PartnerStack should hold (docs/push.md), as written and as
//! validated. What can be checked without the database is checked here, at start, with the
//! push and the key named (`push[tiers].key`); the query's columns are checked against the
//! object's writable fields when the daemon starts or a `push` command runs (`crate::push`).

use std::time::Duration;

use serde::Deserialize;

use super::{file::check_cron_expression, lenient, ConfigError, Origin, Schedule};
use crate::{
    object::ObjectKind,
    write_back::{self, Operation},
};

/// One validated `[[push]]`.
#[derive(Clone, Debug, PartialEq)]
pub struct PushConfig {
    /// Unique; in the lease, the idempotency keys, the metrics and `push run NAME`.
    pub name: String,
    pub object: ObjectKind,
    /// The SQL, without trailing semicolons: one row per record.
    pub query: String,
    /// What the key column holds: `key` (PartnerStack's key) or a natural key of the object
    /// (`write_back::natural_keys`).
    pub key: String,
    pub schedule: Schedule,
    /// The brake; `None`: 10% of the object's rows, at least 10.
    pub max_changes: Option<u64>,
    /// Tag patterns (`tier:*`) the push adds and removes; other tags are left alone.
    pub manage_tags: Vec<String>,
    /// The statement timeout of a run's query and comparison.
    pub timeout: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPush {
    #[serde(deserialize_with = "lenient::text")]
    name: String,
    #[serde(deserialize_with = "lenient::text")]
    object: String,
    #[serde(deserialize_with = "lenient::text")]
    query: String,
    #[serde(default = "default_key", deserialize_with = "lenient::text")]
    key: String,
    #[serde(default, deserialize_with = "lenient::optional_text")]
    schedule: Option<String>,
    #[serde(default, with = "humantime_serde")]
    interval: Option<Duration>,
    #[serde(default)]
    max_changes: Option<u64>,
    #[serde(default, deserialize_with = "lenient::list")]
    manage_tags: Vec<String>,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    timeout: Duration,
}

fn default_key() -> String {
    "key".into()
}
fn default_timeout() -> Duration {
    Duration::from_secs(60)
}
/// How often a push runs when neither `schedule` nor `interval` is set.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(15 * 60);

/// Validates every push; names must be unique.
pub(super) fn validate(raw: Vec<RawPush>) -> Result<Vec<PushConfig>, ConfigError> {
    let mut pushes: Vec<PushConfig> = Vec::with_capacity(raw.len());
    for (index, r) in raw.into_iter().enumerate() {
        let p = r.validate(index)?;
        if pushes.iter().any(|other| other.name == p.name) {
            return Err(invalid(&p.name, "name", "two pushes have this name; names must be unique"));
        }
        pushes.push(p);
    }
    Ok(pushes)
}

/// A push compares with the mirror: its object must be one the mirror syncs.
pub(super) fn check_mirrored(pushes: &[PushConfig], mirrored: &[ObjectKind]) -> Result<(), ConfigError> {
    match pushes.iter().find(|p| !mirrored.contains(&p.object)) {
        Some(p) => Err(invalid(
            &p.name,
            "object",
            format!("{} are not in sync.objects: a push compares its query with the mirror, so its object must be mirrored", p.object),
        )),
        None => Ok(()),
    }
}

/// An error about `push[label].key`; `label` is the push's name, or its index while the name
/// itself is not valid.
fn invalid(label: &str, key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: format!("push[{label}].{key}"), reason: reason.into(), origin: Origin::Unknown }
}

/// A name that travels everywhere unquoted: the lease (`push:<name>`), idempotency keys,
/// metric labels, log lines and the command line.
fn check_name(name: &str) -> Result<(), &'static str> {
    let mut chars = name.chars();
    if !chars.next().is_some_and(|c| c.is_ascii_lowercase()) {
        return Err("must start with a lowercase letter (a-z)");
    }
    if name.len() > 63 {
        return Err("must be at most 63 characters");
    }
    if !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-') {
        return Err("may hold only a-z, 0-9, _ and - (it names the push in idempotency keys, metrics and commands)");
    }
    Ok(())
}

/// What the key column may mean for `kind`: `key` where the queue can update its records (or
/// where `key` is its natural key), and its natural keys.
pub fn keys_for(kind: ObjectKind) -> Vec<&'static str> {
    let mut keys = Vec::new();
    if Operation::Update.applies_to(kind) || write_back::natural_keys(kind).contains(&"key") {
        keys.push("key");
    }
    keys.extend(write_back::natural_keys(kind).iter().filter(|k| **k != "key"));
    keys
}

impl RawPush {
    fn validate(self, index: usize) -> Result<PushConfig, ConfigError> {
        let name = self.name.trim().to_owned();
        check_name(&name).map_err(|reason| invalid(&index.to_string(), "name", reason))?;
        let object: ObjectKind = self.object.parse().map_err(|e: crate::object::UnknownObject| invalid(&name, "object", e.to_string()))?;
        if !write_back::pushable(object) {
            let pushable: Vec<&str> = ObjectKind::ALL.into_iter().filter(|k| write_back::pushable(*k)).map(ObjectKind::table).collect();
            return Err(invalid(
                &name,
                "object",
                format!(
                    "{object} cannot be pushed: the write-back queue cannot update them or create them by a natural key; \
                     a push can keep these in step: {}",
                    pushable.join(", ")
                ),
            ));
        }
        let query = self.query.trim().trim_end_matches(|c: char| c == ';' || c.is_whitespace()).to_owned();
        if query.is_empty() {
            return Err(invalid(&name, "query", "must not be empty: a SELECT returning one row per record"));
        }
        let keys = keys_for(object);
        if !keys.contains(&self.key.as_str()) {
            let meanings: Vec<String> = keys.iter().map(|k| format!("`{k}`")).collect();
            return Err(invalid(&name, "key", format!("`{}` means nothing for {object}: write one of {}", self.key, meanings.join(", "))));
        }
        let schedule = match (self.schedule, self.interval) {
            (Some(_), Some(_)) => return Err(invalid(&name, "schedule", "set either schedule or interval, not both")),
            (Some(cron), None) => {
                check_cron_expression(&cron).map_err(|reason| invalid(&name, "schedule", reason))?;
                Schedule::Cron(cron)
            }
            (None, Some(every)) if every.is_zero() => return Err(invalid(&name, "interval", "must be positive")),
            (None, Some(every)) => Schedule::Every(every),
            (None, None) => Schedule::Every(DEFAULT_INTERVAL),
        };
        if self.max_changes == Some(0) {
            return Err(invalid(&name, "max_changes", "must be at least 1 (leave it out for 10% of the object's rows, at least 10)"));
        }
        if !self.manage_tags.is_empty() && !Operation::ModifyTags.applies_to(object) {
            return Err(invalid(&name, "manage_tags", format!("{object} have no tags a write-back can change (only partnerships do)")));
        }
        let manage_tags: Vec<String> = self.manage_tags.iter().map(|p| p.trim().to_owned()).collect();
        if manage_tags.iter().any(String::is_empty) {
            return Err(invalid(&name, "manage_tags", "holds an empty pattern; write e.g. [\"tier:*\"], or [\"*\"] for every tag"));
        }
        if self.timeout < Duration::from_millis(100) {
            return Err(invalid(&name, "timeout", "must be at least 100ms"));
        }
        Ok(PushConfig { name, object, query, key: self.key, schedule, max_changes: self.max_changes, manage_tags, timeout: self.timeout })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    use super::*;

    fn one(body: &str) -> Result<Config, ConfigError> {
        Config::from_toml(&format!("[[push]]\nname = \"tiers\"\n{body}"))
    }

    fn error(body: &str) -> String {
        one(body).unwrap_err().to_string()
    }

    const TAGS: &str = "object = \"partnerships\"\nquery = \"SELECT key, tags FROM x\"\n";

    #[test]
    fn a_push_gets_the_documented_defaults_and_loses_its_trailing_semicolons() {
        let c = one("object = \"partnership\"\nquery = \"  SELECT key, group_key FROM x; \"").unwrap();
        let p = &c.pushes[0];
        assert_eq!((p.name.as_str(), p.object, p.key.as_str()), ("tiers", ObjectKind::Partnership, "key"));
        assert_eq!(p.query, "SELECT key, group_key FROM x");
        assert_eq!(p.schedule, Schedule::Every(DEFAULT_INTERVAL));
        assert_eq!((p.max_changes, p.manage_tags.is_empty(), p.timeout), (None, true, Duration::from_secs(60)));
        let c = one(&format!("{TAGS}schedule = \"0 */5 * * * *\"\nmax_changes = 50\nmanage_tags = [\"tier:*\"]")).unwrap();
        let p = &c.pushes[0];
        assert_eq!(
            (&p.schedule, p.max_changes, p.manage_tags.as_slice()),
            (&Schedule::Cron("0 */5 * * * *".into()), Some(50), &["tier:*".to_owned()][..])
        );
    }

    #[test]
    fn the_key_must_mean_something_for_the_object() {
        for (object, key) in [
            ("customers", "customer_key"),
            ("deals", "external_key"),
            ("leads", "external_key"),
            ("partnerships", "email"),
            ("transactions", "key"),
        ] {
            let c = one(&format!("object = \"{object}\"\nquery = \"SELECT 1\"\nkey = \"{key}\"")).unwrap();
            assert_eq!(c.pushes[0].key, key);
        }
        let err = error("object = \"deals\"\nquery = \"SELECT 1\"\nkey = \"customer_key\"");
        assert!(err.contains("`push[tiers].key`") && err.contains("`key`, `external_key`"), "{err}");
        let err = error("object = \"transactions\"\nquery = \"SELECT 1\"\nkey = \"customer_key\"");
        assert!(err.contains("`push[tiers].key`") && err.contains("write one of `key`"), "{err}");
    }

    #[test]
    fn objects_the_queue_cannot_update_or_create_by_a_natural_key_are_refused() {
        for object in ["rewards", "actions", "groups", "applications", "partner_team_members"] {
            let err = error(&format!("object = \"{object}\"\nquery = \"SELECT 1\""));
            assert!(err.contains("`push[tiers].object`") && err.contains("cannot be pushed"), "{object}: {err}");
        }
        let err = error("object = \"widgets\"\nquery = \"SELECT 1\"");
        assert!(err.contains("`push[tiers].object`") && err.contains("widgets"), "{err}");
    }

    #[test]
    fn each_bad_key_is_named() {
        let cases = [
            ("object = \"deals\"\nquery = \" ; \"", "query"),
            (&format!("{TAGS}schedule = \"0 * * * * *\"\ninterval = \"1m\""), "schedule"),
            (&format!("{TAGS}schedule = \"every minute\""), "schedule"),
            (&format!("{TAGS}interval = \"0s\""), "interval"),
            (&format!("{TAGS}max_changes = 0"), "max_changes"),
            (&format!("{TAGS}manage_tags = [\"\"]"), "manage_tags"),
            ("object = \"deals\"\nquery = \"SELECT 1\"\nmanage_tags = [\"tier:*\"]", "manage_tags"),
            (&format!("{TAGS}timeout = \"1ms\""), "timeout"),
        ];
        for (body, key) in cases {
            let err = error(body);
            assert!(err.contains(&format!("`push[tiers].{key}`")), "{body}: {err}");
        }
        let err = error(&format!("{TAGS}colour = \"blue\""));
        assert!(err.contains("colour"), "{err}");
    }

    #[test]
    fn a_push_on_an_object_the_mirror_does_not_sync_is_refused() {
        let err = Config::from_toml(&format!("[sync]\nobjects = [\"deals\"]\n[[push]]\nname = \"tiers\"\n{TAGS}")).unwrap_err().to_string();
        assert!(err.contains("`push[tiers].object`") && err.contains("sync.objects"), "{err}");
        assert!(Config::from_toml(&format!("[sync]\nobjects = [\"partnerships\"]\n[[push]]\nname = \"tiers\"\n{TAGS}")).is_ok());
    }

    #[test]
    fn a_push_name_is_a_safe_identifier_and_unique() {
        let named = |name: &str| Config::from_toml(&format!("[[push]]\nname = {name:?}\n{TAGS}"));
        for name in ["tiers", "crm-stages", "paid_invoices2"] {
            assert_eq!(named(name).unwrap().pushes[0].name, name);
        }
        for name in ["", "Tiers", "2tiers", "my push", "tiers:gold", "a\nb"] {
            let err = named(name).unwrap_err().to_string();
            assert!(err.contains("`push[0].name`"), "{name:?}: {err}");
        }
        let twice = format!("[[push]]\nname = \"tiers\"\n{TAGS}[[push]]\nname = \"tiers\"\n{TAGS}");
        let err = Config::from_toml(&twice).unwrap_err().to_string();
        assert!(err.contains("`push[tiers].name`") && err.contains("unique"), "{err}");
    }
}
