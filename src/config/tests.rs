use secrecy::ExposeSecret;

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
