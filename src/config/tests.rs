use std::sync::{Arc, Mutex};

use secrecy::ExposeSecret;

use super::*;

/// The configuration from TOML text and the given environment (the process's is not read, so
/// tests running at once cannot see each other's variables).
fn with_env(toml: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let vars = vars.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    Config::from_figment(env::layer(Figment::new().merge(Toml::string(toml)), vars))
}

/// What `f` logged, with what it returned (a subscriber for this thread only).
pub(super) fn logs_of<T>(f: impl FnOnce() -> T) -> (T, String) {
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
    let out = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    (out, text)
}

#[test]
fn defaults_follow_the_spec() {
    let c = Config::from_toml("").unwrap();
    assert_eq!(c.database.schema, "partnerstack");
    assert_eq!(c.partnerstack.api_url.as_str(), "https://api.partnerstack.com/api/v2");
    assert_eq!(c.partnerstack.page_size, 250);
    assert_eq!(c.sync.lookback, Duration::from_secs(600));
    assert_eq!(c.sync.settle, Duration::from_secs(5));
    assert_eq!(c.sync.objects.len(), 9, "every object but partner-team members (docs/steady-state.md)");
    assert!(!c.sync.objects.contains(&ObjectKind::PartnerTeamMember));
    assert_eq!(c.sync.interval_with_webhooks, Duration::from_secs(300), "docs/steady-state.md");
    assert_eq!(c.webhooks.quiet_after, Duration::from_secs(900), "docs/steady-state.md");
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
fn an_empty_private_key_is_no_key_and_an_empty_key_file_is_refused() {
    let c = with_env("", &[("PARTNERSTACK_PRIVATE_KEY", ""), ("PARTNERSTACK_PUBLIC_KEY", "pk_1")]).unwrap();
    assert!(c.partnerstack.private_key.is_none(), "commands that call the API stop naming the setting");
    let file = std::env::temp_dir().join(format!("psm-empty-key-{}", std::process::id()));
    std::fs::write(&file, "\n").unwrap();
    let err = Config::from_toml(&format!("[partnerstack]\nprivate_key_file = {:?}", file.display().to_string())).unwrap_err();
    std::fs::remove_file(&file).unwrap();
    let said = err.to_string();
    assert!(said.contains("partnerstack.private_key_file") && said.contains("is empty"), "{said}");
}

#[test]
fn the_example_file_parses_and_documents_the_defaults() {
    let example = Config::from_toml(include_str!("../../config.example.toml")).unwrap();
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
    let err = with_env("", &[("PSM_EVENTS__RETAIN", "abc")]).unwrap_err().to_string();
    assert!(err.contains("events.retain") && err.contains("`abc` is not a duration") && err.contains("\"90d\""), "{err}");
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

#[test]
fn numeric_looking_secrets_and_keys_from_the_environment_load_as_their_exact_text() {
    let c = with_env(
        "",
        &[
            ("PARTNERSTACK_PRIVATE_KEY", "12345"),
            ("PARTNERSTACK_PUBLIC_KEY", "0123"),
            ("PSM_WEBHOOKS__TOKEN", "0123456789012345678"),
            ("DATABASE_URL", "postgres://mirror:0123@db/x"),
        ],
    )
    .unwrap();
    assert_eq!(c.partnerstack.private_key.unwrap().expose_secret(), "12345");
    assert_eq!(c.partnerstack.public_key, "0123");
    assert_eq!(c.webhooks.token.unwrap().expose_secret(), "0123456789012345678");
    assert_eq!(c.database.url.unwrap().expose_secret(), "postgres://mirror:0123@db/x");
    let c = with_env("", &[("PSM_PARTNERSTACK__PRIVATE_KEY", "007"), ("PSM_PARTNERSTACK__PUBLIC_KEY", "1e3")]).unwrap();
    assert_eq!(c.partnerstack.private_key.unwrap().expose_secret(), "007");
    assert_eq!(c.partnerstack.public_key, "1e3");
    let c = Config::from_toml("[partnerstack]\npublic_key = 12345\nprivate_key = 67890\n[webhooks]\ntoken = 1234567890123456").unwrap();
    assert_eq!((c.partnerstack.public_key.as_str(), c.partnerstack.private_key.unwrap().expose_secret()), ("12345", "67890"));
    assert_eq!(c.webhooks.token.unwrap().expose_secret(), "1234567890123456");
}

#[test]
fn typed_keys_from_the_environment_are_read_from_their_text() {
    let c = with_env(
        "",
        &[
            ("PSM_QUEUE__WORKERS", "4"),
            ("PSM_SYNC__EMIT_BACKFILL_EVENTS", "false"),
            ("PSM_SYNC__RECONCILE_MAX_DELETE_SHARE", "0.3"),
            ("PSM_PARTNERSTACK__REQUESTS_PER_SECOND", "12.3"),
            ("PSM_EVENTS__RETAIN", "0"),
        ],
    )
    .unwrap();
    assert_eq!((c.queue.workers, c.sync.emit_backfill_events, c.sync.reconcile_max_delete_share), (4, false, 0.3));
    assert_eq!(c.partnerstack.rate_limit, RateLimit::Adaptive { ceiling: Some(12.3) });
    assert_eq!(c.events.retain, Retention::Forever);
}

#[test]
fn a_bad_value_for_a_secret_key_gives_an_error_that_does_not_show_the_value() {
    let cases: [(&str, &[(&str, &str)]); 7] = [
        ("", &[("PSM_WEBHOOKS__TOKEN", "not/a/SECRET-VALUE")]),
        ("", &[("PSM_PARTNERSTACK", "{private_key = [\"SECRET-VALUE\"]}")]),
        ("", &[("PSM_PARTNERSTACK", "{private_key = \"SECRET-VALUE\"")]),
        ("", &[("PSM_DATABASE", "{url = \"postgres://u:SECRET-VALUE@db/x\", schema = 1")]),
        ("[partnerstack]\nprivate_key = [\"SECRET-VALUE\"]", &[]),
        ("[partnerstack]\nprivate_key = SECRET-VALUE", &[]),
        ("", &[("PSM_DELIVERY", "[{name = \"crm\", url = \"https://x.example.com/\", secret = {x = \"SECRET-VALUE\"}}]")]),
    ];
    for (toml, vars) in cases {
        let err = with_env(toml, vars).unwrap_err().to_string();
        assert!(err.starts_with("invalid configuration") && !err.contains("SECRET-VALUE"), "{toml} {vars:?}: {err}");
    }
    let err = with_env("", &[("PSM_DELIVERY", "[{name = \"crm\", url = \"https://x.example.com/\", secret = [\"SECRET-VALUE\"]}]")])
        .unwrap_err()
        .to_string();
    assert!(err.contains("`delivery[crm].secret`") && err.contains("PSM_DELIVERY") && !err.contains("SECRET-VALUE"), "{err}");
}

#[test]
fn an_environment_error_names_the_key_as_the_file_spells_it_the_reason_and_the_variable_once() {
    let err = with_env("", &[("PSM_SYNC__LOOKBACK", "abc")]).unwrap_err().to_string();
    assert!(err.starts_with("invalid configuration: `sync.lookback`: "), "{err}");
    assert!(err.contains("abc") && err.ends_with("(from the environment variable PSM_SYNC__LOOKBACK)"), "{err}");
    assert!(!err.contains("SYNC.LOOKBACK") && err.matches("lookback").count() == 1 && err.matches("PSM_").count() == 1, "{err}");
    let err = with_env("[partnerstack]\npage_size = 100", &[("PSM_PARTNERSTACK__PAGE_SIZE", "500")]).unwrap_err().to_string();
    assert!(err.contains("`partnerstack.page_size`: must be between 1 and 250") && err.contains("PSM_PARTNERSTACK__PAGE_SIZE"), "{err}");
    let err = with_env("", &[("PSM_SYNC__INTERVALL", "30s")]).unwrap_err().to_string();
    assert!(err.contains("`sync.intervall`: unknown key") && err.contains("PSM_SYNC__INTERVALL"), "{err}");
    let delivery = "[{name = \"crm\", url = \"https://x.example.com/\", secret_env = \"X\", timeout = \"soon\"}]";
    let err = with_env("", &[("PSM_DELIVERY", delivery)]).unwrap_err().to_string();
    assert!(err.contains("`delivery[crm].timeout`") && err.contains("PSM_DELIVERY"), "{err}");
}

#[test]
fn a_file_error_names_the_key_without_a_profile_and_the_file() {
    let path = std::env::temp_dir().join(format!("psm-config-{}.toml", std::process::id()));
    std::fs::write(&path, "[sync]\nlookback = \"abc\"\n").unwrap();
    let err = Config::from_sources(Some(&path), Vec::new()).unwrap_err().to_string();
    assert!(err.starts_with("invalid configuration: `sync.lookback`: ") && !err.contains("default."), "{err}");
    assert!(err.ends_with(&format!("(in {})", path.display())), "{err}");
    std::fs::write(&path, "[partnerstack]\npage_size = 500\n").unwrap();
    let err = Config::from_sources(Some(&path), Vec::new()).unwrap_err().to_string();
    assert!(err.contains("`partnerstack.page_size`") && err.contains(&path.display().to_string()), "{err}");
    std::fs::write(&path, "[partnerstack]\nprivate_key = sk_unquoted\n").unwrap();
    let err = Config::from_sources(Some(&path), Vec::new()).unwrap_err().to_string();
    assert!(err.contains("line 2") && err.contains(&path.display().to_string()) && !err.contains("sk_unquoted"), "{err}");
    std::fs::remove_file(path).unwrap();
}

/// docs/configuration.md, docs/steady-state.md: `sync.objects` defaults to every object but partner-team members (a request
/// per team), parents first; listed, team members come after partnerships.
#[test]
fn sync_objects_left_out_means_every_object_but_team_members_parents_first() {
    let objects = Config::from_toml("").unwrap().sync.objects;
    let all_but_members: Vec<ObjectKind> = ObjectKind::ALL.into_iter().filter(|k| *k != ObjectKind::PartnerTeamMember).collect();
    assert_eq!(objects, all_but_members);
    let at = |kind| objects.iter().position(|k| *k == kind).unwrap();
    assert!(at(ObjectKind::Group) < at(ObjectKind::Partnership) && at(ObjectKind::Partnership) < at(ObjectKind::Deal));
    let listed = Config::from_toml("[sync]\nobjects = [\"partner_team_members\", \"partnerships\"]").unwrap().sync.objects;
    assert_eq!(listed, [ObjectKind::PartnerTeamMember, ObjectKind::Partnership], "as listed");
}

#[test]
fn quiet_keys_must_be_positive() {
    let err = Config::from_toml("[sync]\ninterval_with_webhooks = \"0s\"").unwrap_err().to_string();
    assert!(err.contains("sync.interval_with_webhooks"), "{err}");
    let err = Config::from_toml("[webhooks]\nquiet_after = \"0s\"").unwrap_err().to_string();
    assert!(err.contains("webhooks.quiet_after"), "{err}");
    let c = Config::from_toml("[sync]\ninterval_with_webhooks = \"2m\"\n[webhooks]\nquiet_after = \"1h\"").unwrap();
    assert_eq!((c.sync.interval_with_webhooks, c.webhooks.quiet_after), (Duration::from_secs(120), Duration::from_secs(3600)));
}

#[test]
fn sync_objects_from_the_environment_may_be_one_name_a_comma_list_or_a_list() {
    let objects = |value: &str| with_env("", &[("PSM_SYNC__OBJECTS", value)]).map(|c| c.sync.objects);
    assert_eq!(objects("deals").unwrap(), [ObjectKind::Deal]);
    for list in ["deals,leads", "deals, leads", "[deals,leads]", "[\"deals\", \"leads\"]"] {
        assert_eq!(objects(list).unwrap(), [ObjectKind::Deal, ObjectKind::Lead], "{list}");
    }
    assert_eq!(objects("").unwrap().len(), ObjectKind::default_set().len(), "empty is the default");
    let err = objects("deals,widgets").unwrap_err().to_string();
    assert!(err.contains("sync.objects") && err.contains("widgets") && err.contains("PSM_SYNC__OBJECTS"), "{err}");
    assert_eq!(Config::from_toml("[sync]\nobjects = \"deals,leads\"").unwrap().sync.objects, [ObjectKind::Deal, ObjectKind::Lead]);
}

#[test]
fn a_webhook_token_may_be_any_url_safe_text_and_a_short_one_is_only_warned_about() {
    for token in ["test-token", "s3cr3t", "a.b_c~d-E", "0123456789abcdef-XYZ"] {
        let (c, logs) = logs_of(|| Config::from_toml(&format!("[webhooks]\ntoken = \"{token}\"")));
        assert_eq!(c.unwrap().webhooks.token.unwrap().expose_secret(), token);
        assert!(!logs.contains(token), "{logs}");
        assert_eq!(logs.contains("webhooks.token is shorter than 16"), token.len() < 16, "{token}: {logs}");
    }
    assert!(Config::from_toml("").unwrap().webhooks.token.is_none(), "intake is off by default");
}

#[test]
fn a_webhook_token_a_url_path_would_change_is_rejected_without_being_shown() {
    for token in ["", "has space", "a/b", "50%off", "..", "ünïcode", "q?x"] {
        let err = Config::from_toml(&format!("[webhooks]\ntoken = \"{token}\"")).unwrap_err().to_string();
        assert!(err.contains("`webhooks.token`"), "{token}: {err}");
        assert!(token.is_empty() || !err.contains(token), "{token}: {err}");
    }
    let c = Config::from_toml("[webhooks]\ntoken = \"0123456789abcdef-XYZ\"").unwrap();
    assert!(!format!("{c:?}").contains("0123456789abcdef"));
}

#[test]
fn an_unparseable_database_url_is_bad_configuration_that_does_not_show_the_url() {
    for url in ["postgres://u:hunter2@db:99999/x", "postgres://u:hunter2@db/x?sslmode=bogus", "postgres://u:hunter2@db:port/x"] {
        let err = Config::from_toml(&format!("[database]\nurl = \"{url}\"")).unwrap_err().to_string();
        assert!(err.starts_with("invalid configuration: `database.url`: "), "{url}: {err}");
        assert!(!err.contains("hunter2") && !err.contains("u:"), "{url}: {err}");
    }
    let err = with_env("", &[("DATABASE_URL", "postgres://u:hunter2@db/x?sslmode=bogus")]).unwrap_err().to_string();
    assert!(err.contains("sslmode") || err.contains("ssl_mode"), "{err}");
    assert!(err.ends_with("(from the environment variable DATABASE_URL)") && !err.contains("hunter2"), "{err}");
    let err = Config::from_toml("[database]\nurl = \"mysql://u:hunter2@db/x\"").unwrap_err().to_string();
    assert!(err.contains("database.url") && !err.contains("hunter2"), "{err}");
    assert!(Config::from_toml("[database]\nurl = \"postgresql://u:hunter2@db:5433/x?sslmode=require\"").is_ok());
}

#[test]
fn a_database_url_may_name_a_unix_socket_directory_instead_of_a_host() {
    for url in
        ["postgres:///analytics?host=/var/run/postgresql", "postgres://mirror@localhost/analytics?host=%2Frun%2Fpostgresql&port=5433"]
    {
        assert!(Config::from_toml(&format!("[database]\nurl = \"{url}\"")).is_ok(), "{url}");
    }
}
