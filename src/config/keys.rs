//! Every configuration key in one table: its name, what it takes, its default and what it
//! does. `docs/configuration.md` is generated from it (`partnerstack-mirror docs config`).
//!
//! Why a table beside the parser rather than attributes on it: the parser's structs
//! (`file.rs`, `delivery.rs`) are serde's shape, with defaults as Rust values; a reader needs
//! each key's default as it is written in the file (`"10m"`), its type in words and a
//! paragraph on what it does. The tests below keep the two from drifting without touching the
//! parser: every key here is accepted by it and takes its example value, every key it accepts
//! is here (read from serde's own list of expected fields), each written default gives the
//! same configuration as leaving the key out, and `config.example.toml` names every key.
//! A new key is one entry here and one line in `config.example.toml`; the tests name whichever
//! is missing. A new list of tables (`[[push]]`) also goes in [`SECTIONS`] and [`LISTS`], and
//! what one entry needs to be valid in the tests' `ENTRY_BASE`.

/// One key of the configuration file.
#[derive(Clone, Copy, Debug)]
pub struct Key {
    /// The `[section]` it is written in; `delivery` is the `[[delivery]]` list of tables.
    pub section: &'static str,
    pub name: &'static str,
    /// What it takes, in words: `duration`, `whole number`, `cron (6 fields)`, …
    pub kind: &'static str,
    pub default: KeyDefault,
    /// A value the parser accepts for it, as TOML.
    pub example: &'static str,
    /// What it does, in the reference's words (markdown).
    pub about: &'static str,
}

/// A key's default.
#[derive(Clone, Copy, Debug)]
pub enum KeyDefault {
    /// The default written as TOML: setting the key to it changes nothing.
    Value(&'static str),
    /// No value: what leaving it out means (`required`, `unset: …`).
    Unset(&'static str),
}

/// The sections in file order, with what each configures.
pub const SECTIONS: &[(&str, &str)] = &[
    ("database", "The PostgreSQL database the mirror writes to."),
    ("partnerstack", "The PartnerStack API: where it is, the keys, and how fast and how patiently to call it."),
    ("sync", "What is mirrored and when: polls, rescans, key scans, backfills, and the brake on deletions."),
    ("queue", "The write-back workers that carry `write_queue` requests to PartnerStack."),
    ("http", "The daemon's HTTP listener: `/healthz`, `/readyz`, `/metrics` and the webhook intake."),
    ("events", "How long events are kept."),
    (
        "delivery",
        "Webhook deliveries: each `[[delivery]]` POSTs every matching event to its URL, signed as the Standard Webhooks \
         specification says. None by default.",
    ),
    ("webhooks", "PartnerStack's webhooks in: `POST /webhooks/partnerstack/<token>` on `http.listen`. Off while no token is set."),
    (
        "push",
        "Pushes: each `[[push]]` runs a query that says what PartnerStack should hold, compares it with the mirror and queues \
         a write-back for each difference (see [Push](push.md)). None by default.",
    ),
];

/// The sections written as lists of tables (`[[delivery]]`): one entry per item, and from the
/// environment one inline value (`PSM_DELIVERY='[{…}]'`).
pub const LISTS: &[&str] = &["delivery", "push"];

use KeyDefault::{Unset, Value};

const fn key(
    section: &'static str,
    name: &'static str,
    kind: &'static str,
    default: KeyDefault,
    example: &'static str,
    about: &'static str,
) -> Key {
    Key { section, name, kind, default, example, about }
}

/// Every key, section by section, in the order `config.example.toml` shows them.
pub const KEYS: &[Key] = &[
    // [database]
    key(
        "database",
        "url",
        "PostgreSQL URL (secret)",
        Unset("required (or `DATABASE_URL`); only the demo runs without it"),
        "\"postgres://mirror@localhost/analytics\"",
        "Where the mirror's database is. It takes libpq's parameters (`sslmode`, `sslrootcert`, …) and is checked at start as \
         the connection will read it, so a bad port or `sslmode=bogus` is a configuration error (exit 2). A password in it is \
         never logged. On the database's own host, name its Unix socket directory instead of a host \
         (`postgres:///analytics?host=/var/run/postgresql`): it costs both sides less CPU than TCP.",
    ),
    key(
        "database",
        "schema",
        "lowercase SQL identifier",
        Value("\"partnerstack\""),
        "\"partnerstack\"",
        "The schema holding the mirror's tables, created if missing. The daemon sets `search_path` on its connections, so \
         several mirrors can live in one database, one schema each.",
    ),
    key("database", "max_connections", "whole number, at least 2", Value("10"), "10", "The size of the daemon's connection pool."),
    key(
        "database",
        "statement_timeout",
        "duration, at least 100ms",
        Value("\"60s\""),
        "\"60s\"",
        "Every statement is cut off after this (migrations excepted), and so is the wait for a pooled connection. A call stuck \
         longer makes the daemon withhold systemd's watchdog ping.",
    ),
    key(
        "database",
        "readers",
        "list of role names",
        Value("[]"),
        "[\"partnerstack_bi\"]",
        "Roles that may read the mirror: USAGE on the schema and SELECT on every table and view, including those made later. \
         Granted by `migrate` and at every start; a role taken out of the lists loses what it was given; a role that does not \
         exist stops the start (exit 2). See [Your database](your-database.md#roles).",
    ),
    key(
        "database",
        "consumers",
        "list of role names",
        Value("[]"),
        "[\"partnerstack_events\"]",
        "Roles that may read and consume events: what readers may, and call `next_events` and `commit_events`; they write no \
         table directly.",
    ),
    key(
        "database",
        "writers",
        "list of role names",
        Value("[]"),
        "[\"partnerstack_crm\"]",
        "Roles that may read, consume and queue write-backs: what consumers may, and `INSERT INTO write_queue` and cancel \
         pending requests, nothing more.",
    ),
    // [partnerstack]
    key(
        "partnerstack",
        "api_url",
        "URL",
        Value("\"https://api.partnerstack.com/api/v2\""),
        "\"http://127.0.0.1:8787/api/v2\"",
        "The API's base URL. Plain `http://` is accepted only for loopback hosts (a local simulator).",
    ),
    key(
        "partnerstack",
        "public_key",
        "text",
        Unset("none (or `PARTNERSTACK_PUBLIC_KEY`); commands that call the API need it"),
        "\"pk_...\"",
        "The API's public key (the Basic auth user name).",
    ),
    key(
        "partnerstack",
        "private_key",
        "text (secret)",
        Unset("none (or `PARTNERSTACK_PRIVATE_KEY`); commands that call the API need it or `private_key_file`"),
        "\"sk_...\"",
        "The API's private key. Empty counts as no key, so a command that calls the API stops at once (exit 2) naming the \
         setting rather than meeting a 401. Never logged.",
    ),
    key(
        "partnerstack",
        "private_key_file",
        "path",
        Unset("none"),
        "\"/run/credentials/partnerstack-mirror.service/private_key\"",
        "Read the private key from this file instead (systemd `LoadCredential=`); surrounding whitespace is trimmed and an \
         empty file is refused. Set either this or `private_key`, not both.",
    ),
    key(
        "partnerstack",
        "requests_per_second",
        "number: 0, or 0.01 to 10000",
        Unset("unset: the client finds the rate PartnerStack allows"),
        "10",
        "How fast requests go, retries included, shared by sync, rescans, key scans, write-backs and webhook-triggered reads \
         (write-backs and webhook reads first). Unset: the client finds the rate PartnerStack allows, climbing while requests \
         succeed and backing off on 429, and remembers it across restarts (table `api_budget`). A positive number: the same, \
         never faster than that. `0`: no client-side limit at all (for a local simulator). See \
         [the request budget](request-budget.md).",
    ),
    key("partnerstack", "timeout", "duration", Value("\"30s\""), "\"30s\"", "Per request."),
    key(
        "partnerstack",
        "max_retries",
        "whole number",
        Value("8"),
        "8",
        "Retries per request for timeouts, dropped connections, 429 and 5xx. A write-back is sent once per attempt: the \
         queue retries it (`queue.max_attempts`), never the client behind its back.",
    ),
    key("partnerstack", "page_size", "whole number, 1 to 250", Value("250"), "100", "Records asked for per list request."),
    // [sync]
    key(
        "sync",
        "objects",
        "list of object names",
        Value("[]"),
        "[\"deals\", \"leads\"]",
        "The objects to mirror; empty means every object but partner-team members. Names are table names (`deals`) or \
         singular (`deal`); from the environment a comma-separated list works too (`PSM_SYNC__OBJECTS=deals,leads`). The API \
         lists partner-team members one team at a time (a request per team on their backfill), so they are mirrored only \
         when listed here; then a team is read when its partnership is new or changed or a webhook names it, and every team \
         is walked with the daily key scan ([Quiet at steady state](steady-state.md)).",
    ),
    key(
        "sync",
        "schedule",
        "cron (6 fields, seconds first, UTC)",
        Unset("unset: `interval` applies"),
        "\"0 */5 * * * *\"",
        "When polls run, as a cron expression with seconds (`0 */5 * * * *`: every five minutes). Set either this or \
         `interval`, not both.",
    ),
    key(
        "sync",
        "interval",
        "duration",
        Value("\"60s\""),
        "\"30s\"",
        "The pause between the end of one poll pass and the start of the next, when `schedule` is not set.",
    ),
    key(
        "sync",
        "interval_with_webhooks",
        "duration",
        Value("\"5m\""),
        "\"5m\"",
        "The pause between polls while webhook intake is healthy (a webhook received within `webhooks.quiet_after`): \
         PartnerStack's webhooks bring changes at once, so polls are only the safety net. Without recent webhooks the \
         ordinary `interval` or `schedule` resumes by itself.",
    ),
    key("sync", "lookback", "duration", Value("\"10m\""), "\"10m\"", "Each window starts this long before the previous one ended, so records sharing a millisecond at a window's edge are read again (the diff makes that free)."),
    key("sync", "settle", "duration", Value("\"5s\""), "\"5s\"", "Each window ends this long before now, for changes committed with a slightly older timestamp."),
    key(
        "sync",
        "rescan_schedule",
        "cron (6 fields, seconds first, UTC)",
        Value("\"0 0 * * * *\""),
        "\"0 0 * * * *\"",
        "Complete reads of transactions and rewards while the API ignores `min_updated` on them (probed at start and daily; \
         `doctor` tells). Once the probe finds it honoured, they are polled by updated windows like the others and this \
         read stops (the daily key scan stays as the safety net).",
    ),
    key(
        "sync",
        "reconcile_schedule",
        "cron (6 fields, seconds first, UTC)",
        Value("\"0 30 3 * * *\""),
        "\"0 30 3 * * *\"",
        "Complete key scans, which find records that vanished from the API and mark their rows deleted; the walk of every \
         partner team (when team members are mirrored) and the daily safety read of transactions and rewards run with them.",
    ),
    key(
        "sync",
        "backfill_concurrency",
        "whole number, at least 1",
        Value("4"),
        "4",
        "Created-time windows read at once during a backfill or rescan.",
    ),
    key(
        "sync",
        "emit_backfill_events",
        "boolean",
        Value("true"),
        "false",
        "Whether the first load of an object writes a `<object>.created` event per record (with `source = 'backfill'`). \
         `false` leaves them out.",
    ),
    key(
        "sync",
        "reconcile_max_delete_share",
        "number, 0 to 1",
        Value("0.1"),
        "0.5",
        "The brake: a key scan that would mark more than this share of an object's live rows deleted (and more than 10 rows) \
         marks nothing and records why in `sync_state.last_error`.",
    ),
    key(
        "sync",
        "freshness",
        "duration",
        Value("\"30m\""),
        "\"30m\"",
        "`/readyz` fails when a polled object's last successful pass is older than this.",
    ),
    key(
        "sync",
        "lease_ttl",
        "duration, at least 1s",
        Value("\"60s\""),
        "\"60s\"",
        "An object's lease (and a delivery's, and a push's) lapses this long after its holder's last renewal, and another \
         daemon on the same database takes it over. Renewed every third of it.",
    ),
    key(
        "sync",
        "retain_runs",
        "duration, or 0 for forever",
        Value("\"30d\""),
        "\"30d\"",
        "`sync_runs` rows older than this are pruned (`\"0\"` keeps them forever).",
    ),
    // [queue]
    key("queue", "workers", "whole number", Value("2"), "4", "Write-back workers in this daemon; `0`: this daemon only syncs."),
    key(
        "queue",
        "max_attempts",
        "whole number, at least 1",
        Value("10"),
        "10",
        "Attempts per request before it fails, unless its own `max_attempts` column says otherwise.",
    ),
    key(
        "queue",
        "lease",
        "duration, at least 1s",
        Value("\"1m\""),
        "\"1m\"",
        "How long a claimed request stays its worker's without news; renewed every third of it while the request runs. A dead \
         worker's request is claimed again once it lapses.",
    ),
    key(
        "queue",
        "lookup_grace",
        "duration",
        Value("\"10m\""),
        "\"10m\"",
        "A create that may have happened without its answer reaching the mirror is sent again only after the record has stayed \
         unfindable this long (PartnerStack can take minutes before a new record can be read back).",
    ),
    key(
        "queue",
        "retain_finished",
        "duration, or 0 for forever",
        Value("\"90d\""),
        "\"90d\"",
        "Finished requests older than this are pruned, which frees their idempotency keys (`\"0\"`: kept forever).",
    ),
    // [http]
    key(
        "http",
        "listen",
        "host:port",
        Value("\"127.0.0.1:9187\""),
        "\"127.0.0.1:9187\"",
        "Where the daemon serves `/healthz`, `/readyz`, `/metrics` and the webhook intake. Keep it on loopback and put a TLS \
         proxy in front for webhooks.",
    ),
    // [events]
    key(
        "events",
        "retain",
        "duration, or 0 for forever",
        Value("\"90d\""),
        "\"90d\"",
        "Events older than this are pruned in small batches (`\"0\"` keeps them forever), but never one an active consumer or \
         delivery has not passed yet. The `_history` views reach back as far as the events do.",
    ),
    // [[delivery]]
    key(
        "delivery",
        "name",
        "text",
        Unset("required"),
        "\"crm\"",
        "Unique; any text without control characters or surrounding spaces (`crm`, `My CRM`). Part of every `webhook-id` \
         and metric label.",
    ),
    key(
        "delivery",
        "url",
        "URL",
        Unset("required"),
        "\"https://crm.example.com/hooks/partnerstack\"",
        "Where the events go: `https://`, or plain `http://` on a loopback host. Redirects are not followed.",
    ),
    key(
        "delivery",
        "events",
        "list of patterns",
        Value("[\"*\"]"),
        "[\"deal.*\", \"lead.approved\", \"*.deleted\"]",
        "The event types to send; `*` matches anything.",
    ),
    key(
        "delivery",
        "secret",
        "`whsec_` + base64 (secret)",
        Unset("one of `secret`, `secret_file`, `secret_env` is required"),
        "\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"",
        "The signing secret (`echo whsec_$(openssl rand -base64 32)`); under 24 bytes is accepted with a warning. Never \
         logged.",
    ),
    key(
        "delivery",
        "secret_file",
        "path",
        Unset("none"),
        "\"/run/credentials/partnerstack-mirror.service/crm_webhook_secret\"",
        "Read the secret from this file instead.",
    ),
    key("delivery", "secret_env", "text", Unset("none"), "\"CRM_WEBHOOK_SECRET\"", "The name of an environment variable holding the secret."),
    key("delivery", "timeout", "duration", Value("\"10s\""), "\"10s\"", "Per request; a slower answer is a failed attempt."),
    key("delivery", "max_attempts", "whole number", Value("10"), "10", "Attempts per event, then `on_failure` applies."),
    key(
        "delivery",
        "on_failure",
        "`\"dead_letter\"` or `\"hold\"`",
        Value("\"dead_letter\""),
        "\"hold\"",
        "After `max_attempts`: `dead_letter` keeps the event in `delivery_dead_letters` and goes on; `hold` stops the position \
         at that event and keeps trying it.",
    ),
    key(
        "delivery",
        "parallelism",
        "whole number",
        Value("8"),
        "8",
        "Records sent at once; each record's events go one at a time, in order.",
    ),
    key(
        "delivery",
        "start",
        "`\"now\"` or `\"beginning\"`",
        Value("\"now\""),
        "\"beginning\"",
        "Where a delivery seen for the first time starts: `now` (news only) or `beginning` (the oldest event kept).",
    ),
    key(
        "delivery",
        "min_backoff",
        "duration",
        Value("\"1s\""),
        "\"1s\"",
        "The wait after a failed attempt starts here and doubles, with full jitter, up to `max_backoff`.",
    ),
    key(
        "delivery",
        "max_backoff",
        "duration",
        Value("\"10m\""),
        "\"10m\"",
        "The longest wait between attempts. A `Retry-After` from the endpoint is honoured.",
    ),
    // [webhooks]
    key(
        "webhooks",
        "token",
        "text of A-Z a-z 0-9 - . _ ~ (secret)",
        Unset("unset: no webhook intake"),
        "\"3f9c2a7b1e8d4c6f0a5b9e2d7c1f8a3b6e0d4c9f2a7b5e1d\"",
        "The secret path segment of `POST /webhooks/partnerstack/<token>`. Under 16 characters is accepted with a warning \
         (`openssl rand -hex 24` makes a good one). Never logged.",
    ),
    key(
        "webhooks",
        "token_file",
        "path",
        Unset("none"),
        "\"/run/credentials/partnerstack-mirror.service/webhook_token\"",
        "Read the token from this file instead. Set either this or `token`, not both.",
    ),
    key(
        "webhooks",
        "quiet_after",
        "duration",
        Value("\"15m\""),
        "\"15m\"",
        "Webhook intake counts as healthy while a webhook came within this; meanwhile polls run every \
         `sync.interval_with_webhooks`.",
    ),
    // [[push]]
    key(
        "push",
        "name",
        "a-z, 0-9, _ and -, starting with a letter",
        Unset("required"),
        "\"tiers\"",
        "Unique. Names the push in `push plan NAME`, `push run NAME`, metrics, logs and the idempotency keys of its requests.",
    ),
    key(
        "push",
        "object",
        "object name",
        Unset("required"),
        "\"partnerships\"",
        "What the query's rows are: `partnerships`, `customers`, `deals`, `leads` or `transactions` (table or singular name).",
    ),
    key(
        "push",
        "query",
        "SQL",
        Unset("required"),
        "\"SELECT key, array['tier:' || tier] AS tags FROM analytics.partner_tiers\"",
        "A query returning one row per record: the key column and one column per field to set, named as the API names the \
         field (`stage`, `group_key`, `tags`, …). It runs as the mirror's role in a read-only transaction whose \
         `search_path` is the mirror's schema; name other schemas' tables with their schema. A column that is not a writable \
         field of the object stops the daemon's start (exit 2), naming the push and the column.",
    ),
    key(
        "push",
        "key",
        "`key`, or the object's external key",
        Value("\"key\""),
        "\"partner_key\"",
        "What the key column holds and is called. `key`: PartnerStack's key of the record; rows whose record the mirror does \
         not hold are counted and left alone (update only). An external key (`customer_key` for customers, `external_key` \
         for deals and leads, `partner_key` or `email` for partnerships): a record the mirror does not hold is created, one \
         it holds is updated. For transactions `key` is both: a missing transaction is created with that key.",
    ),
    key(
        "push",
        "schedule",
        "cron (6 fields, seconds first, UTC)",
        Unset("unset: `interval` applies"),
        "\"0 */10 * * * *\"",
        "When the push runs. Set either this or `interval`, not both.",
    ),
    key("push", "interval", "duration", Value("\"15m\""), "\"5m\"", "The pause between the end of one run and the start of the next."),
    key(
        "push",
        "max_changes",
        "whole number, at least 1",
        Unset("10% of the object's rows in the mirror, at least 10"),
        "500",
        "The brake: a run that would change more records than this queues nothing, says so in `push_runs` and the log, and \
         waits for a person: `push run NAME --force` lets it through once.",
    ),
    key(
        "push",
        "manage_tags",
        "list of patterns",
        Value("[]"),
        "[\"tier:*\"]",
        "For a `tags` column (partnerships): the tags this push adds and removes (`*` matches anything). A tag outside \
         them is left alone whatever the query says. Required with a `tags` column.",
    ),
    key(
        "push",
        "timeout",
        "duration, at least 100ms",
        Value("\"60s\""),
        "\"2m\"",
        "The statement timeout of a run's query and its comparison with the mirror; a run that takes longer fails, queuing \
         nothing.",
    ),
];

/// The environment variable that sets `section.name` besides `PSM_SECTION__NAME`, if any.
pub fn conventional_variable(section: &str, name: &str) -> Option<&'static str> {
    super::env::CONVENTIONAL.iter().find(|(_, key)| key.split_once('.') == Some((section, name))).map(|(variable, _)| *variable)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use figment::{
        error::Kind,
        providers::{Format, Toml},
        Figment,
    };

    use super::{super::file::RawConfig, *};
    use crate::config::Config;

    /// What an entry of each list needs to be valid; a key under test replaces its own.
    const ENTRY_BASE: &[(&str, &[(&str, &str)])] = &[
        (
            "delivery",
            &[("name", "\"t\""), ("url", "\"https://example.test/hook\""), ("secret", "\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"")],
        ),
        ("push", &[("name", "\"t\""), ("object", "\"partnerships\""), ("query", "\"SELECT key, tags FROM tiers\"")]),
    ];

    /// TOML setting `section.name = value` (none for an empty `name`), with what an entry of a
    /// list needs besides.
    fn document(section: &str, name: &str, value: &str) -> String {
        let set = if name.is_empty() { String::new() } else { format!("{name} = {value}\n") };
        if !LISTS.contains(&section) {
            return format!("[{section}]\n{set}");
        }
        let base = ENTRY_BASE.iter().find(|(list, _)| *list == section).map_or(&[][..], |(_, base)| *base);
        let mut doc = format!("[[{section}]]\n");
        for (key, key_value) in base.iter().filter(|(key, _)| *key != name) {
            doc.push_str(&format!("{key} = {key_value}\n"));
        }
        doc + &set
    }

    /// The keys the parser accepts at `section` (the top level for `None`), as serde lists
    /// them when it meets one it does not know.
    fn accepted(section: Option<&str>) -> BTreeSet<String> {
        let unknown = match section {
            None => "not_a_key = 1".to_owned(),
            Some(s) => document(s, "not_a_key", "1"),
        };
        let error = Figment::from(Toml::string(&unknown)).extract_lossy::<RawConfig>().err().expect("an unknown key is refused");
        let expected = error.into_iter().find_map(|e| match e.kind {
            Kind::UnknownField(_, expected) => Some(expected),
            _ => None,
        });
        expected.expect("refused as an unknown field").iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn every_key_in_the_table_is_accepted_by_the_parser_with_its_example() {
        for k in KEYS {
            let doc = document(k.section, k.name, k.example);
            let parsed = Figment::from(Toml::string(&doc)).extract_lossy::<RawConfig>();
            assert!(parsed.is_ok(), "{}.{} = {}: {}", k.section, k.name, k.example, parsed.err().unwrap());
        }
    }

    #[test]
    fn every_key_the_parser_accepts_is_in_the_table() {
        let sections: BTreeSet<String> = SECTIONS.iter().map(|(s, _)| s.to_string()).collect();
        assert_eq!(accepted(None), sections, "SECTIONS in src/config/keys.rs against the parser's sections");
        for (section, _) in SECTIONS {
            let documented: BTreeSet<String> = KEYS.iter().filter(|k| k.section == *section).map(|k| k.name.to_owned()).collect();
            assert_eq!(accepted(Some(section)), documented, "[{section}]: the parser's keys against src/config/keys.rs");
        }
    }

    #[test]
    fn every_written_default_is_the_parsers_default() {
        let config = |toml: &str| format!("{:?}", Config::from_toml(toml).unwrap_or_else(|e| panic!("{toml}: {e}")));
        for k in KEYS {
            let KeyDefault::Value(default) = k.default else { continue };
            let without = if LISTS.contains(&k.section) { config(&document(k.section, "", "")) } else { config("") };
            let written = config(&document(k.section, k.name, default));
            assert_eq!(written, without, "{}.{}: the documented default {default} is not what leaving it out gives", k.section, k.name);
        }
    }

    #[test]
    fn the_example_file_names_every_key_and_no_other() {
        let mut named = BTreeSet::new();
        let mut section = String::new();
        for line in include_str!("../../config.example.toml").lines() {
            let line = line.trim_start_matches('#').trim();
            if let Some(header) = line.strip_prefix('[').and_then(|l| l.split(']').next()) {
                section = header.trim_matches(['[', ']']).to_owned();
            } else if let Some((name, _)) = line.split_once('=') {
                let name = name.trim();
                if !name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                    named.insert(format!("{section}.{name}"));
                }
            }
        }
        let documented: BTreeSet<String> = KEYS.iter().map(|k| format!("{}.{}", k.section, k.name)).collect();
        let missing: Vec<_> = documented.difference(&named).collect();
        let unknown: Vec<_> = named.difference(&documented).collect();
        assert!(missing.is_empty(), "config.example.toml does not show {missing:?}");
        assert!(unknown.is_empty(), "config.example.toml shows keys the table does not know: {unknown:?}");
    }

    #[test]
    fn the_conventional_variables_name_their_keys() {
        assert_eq!(conventional_variable("database", "url"), Some("DATABASE_URL"));
        assert_eq!(conventional_variable("partnerstack", "private_key"), Some("PARTNERSTACK_PRIVATE_KEY"));
        assert_eq!(conventional_variable("sync", "lookback"), None);
    }
}
