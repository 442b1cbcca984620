use std::time::Duration;

use secrecy::SecretString;

use super::*;
use crate::{
    backoff::Backoff,
    object::ObjectKind,
    partnerstack::{ClientConfig, RateLimit},
    store::ObjectFreshness,
};

/// What the daemon hands the registry, each part's handles kept to count with.
struct Parts {
    written: Written,
    api: ApiClient,
    queue: WorkerCounters,
    intake: IntakeCounters,
    deliveries: DeliveryCounters,
    pushes: PushCounters,
}

impl Parts {
    fn new() -> Parts {
        let api = ApiClient::new(ClientConfig {
            base_url: "http://127.0.0.1:9/api/v2".parse().unwrap(),
            public_key: "pk".into(),
            private_key: SecretString::from("sk"),
            rate_limit: RateLimit::Adaptive { ceiling: Some(10.0) },
            timeout: Duration::from_secs(1),
            max_retries: 0,
            backoff: Backoff::new(Duration::from_millis(1), Duration::from_millis(1)),
            page_size: 10,
            user_agent: "test".into(),
        })
        .unwrap();
        Parts {
            written: Written::default(),
            api,
            queue: WorkerCounters::default(),
            intake: IntakeCounters::default(),
            deliveries: DeliveryCounters::new(["crm"]),
            pushes: PushCounters::new(["tiers"]),
        }
    }

    fn metrics(&self) -> Metrics {
        Metrics::new(Sources {
            written: &self.written,
            api: &self.api,
            queue: &self.queue,
            intake: &self.intake,
            deliveries: &self.deliveries,
            pushes: &self.pushes,
        })
    }
}

/// The value of the one sample named `series` (with its labels, as written).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Every series of a scrape: its name and its labels (a set: their order carries nothing).
fn series(text: &str) -> std::collections::BTreeSet<(String, std::collections::BTreeSet<String>)> {
    let named = text.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.rsplit_once(' ')).map(|(series, _)| series);
    named
        .map(|s| match s.split_once('{') {
            Some((name, labels)) => (name.to_owned(), labels.trim_end_matches('}').split(',').map(str::to_owned).collect()),
            None => (s.to_owned(), Default::default()),
        })
        .collect()
}

#[test]
fn a_count_a_part_makes_shows_in_the_next_scrape_of_the_one_registry() {
    let parts = Parts::new();
    let metrics = parts.metrics();
    let before = metrics.render(None, Format::OpenMetrics);
    assert_eq!(sample(&before, r#"partnerstack_mirror_queue_attempts_total{outcome="succeeded"}"#), Some(0.0), "{before}");

    // The handles the parts hold are clones of the registry's: counting is all there is.
    let worker = parts.queue.clone();
    worker.attempts.add("succeeded", 2);
    parts.intake.received.add("wrong_token", 1);
    parts.written.rows.add(ObjectKind::Deal.table(), 5);
    parts.deliveries.sent.get_or_create(&crate::delivery::labels("crm")).inc();
    let after = metrics.render(None, Format::OpenMetrics);
    for (series, value) in [
        (r#"partnerstack_mirror_queue_attempts_total{outcome="succeeded"}"#, 2.0),
        (r#"partnerstack_mirror_webhooks_received_total{outcome="wrong_token"}"#, 1.0),
        (r#"partnerstack_mirror_rows_written_total{object="deals"}"#, 5.0),
        (r#"partnerstack_mirror_rows_written_total{object="leads"}"#, 0.0),
        (r#"partnerstack_mirror_delivery_sent_total{delivery="crm"}"#, 1.0),
        (r#"partnerstack_mirror_push_runs_total{push="tiers",outcome="busy"}"#, 0.0),
        (r#"partnerstack_mirror_api_permits_waiting{priority="urgent"}"#, 0.0),
        ("partnerstack_mirror_api_credentials_rejected", 0.0),
    ] {
        assert_eq!(sample(&after, series), Some(value), "{series} in\n{after}");
    }
    assert!(sample(&after, "partnerstack_mirror_api_rate_limit_per_second").is_some_and(|r| r > 0.0), "{after}");
}

#[test]
fn the_database_gauges_are_those_of_the_scrape_that_read_them_and_absent_without_one() {
    let parts = Parts::new();
    let metrics = parts.metrics();
    let snapshot = MetricsSnapshot {
        objects: vec![ObjectFreshness {
            object: "deals".into(),
            lag_seconds: Some(1.5),
            last_success_unix: Some(1_700_000_000.0),
            last_success_age_seconds: Some(3.0),
            last_error_unix: None,
        }],
        queue: vec![("pending".into(), 4)],
        queue_oldest_due_seconds: 0.0,
        quarantine: vec![("deals".into(), 0)],
        last_event_id: 42,
        deliveries: Vec::new(),
    };
    let up = metrics.render(Some(snapshot), Format::OpenMetrics);
    assert_eq!(sample(&up, "partnerstack_mirror_database_up"), Some(1.0), "{up}");
    assert_eq!(sample(&up, r#"partnerstack_mirror_sync_lag_seconds{object="deals"}"#), Some(1.5), "{up}");
    assert_eq!(sample(&up, r#"partnerstack_mirror_queue_depth{status="pending"}"#), Some(4.0), "{up}");
    assert_eq!(sample(&up, "partnerstack_mirror_last_event_id"), Some(42.0), "{up}");
    assert!(!up.contains("last_error_timestamp_seconds"), "a family without samples is left out:\n{up}");

    let down = metrics.render(None, Format::OpenMetrics);
    assert_eq!(sample(&down, "partnerstack_mirror_database_up"), Some(0.0), "{down}");
    for gone in ["sync_lag_seconds", "queue_depth", "last_event_id", "quarantined_records"] {
        assert!(!down.contains(gone), "{gone} is left out, not repeated from the last scrape:\n{down}");
    }
    assert!(down.contains("partnerstack_mirror_queue_attempts_total"), "what the process knows is there:\n{down}");
}

#[cfg(target_os = "linux")]
#[test]
fn process_metrics_are_present_and_plausible() {
    let text = Parts::new().metrics().render(None, Format::OpenMetrics);
    let value = |name: &str| sample(&text, &format!("partnerstack_mirror_{name}")).unwrap_or_else(|| panic!("{name} in\n{text}"));
    let now = chrono::Utc::now().timestamp() as f64;
    let started = value("process_start_time_seconds");
    assert!(started <= now + 1.0 && started > now - 86_400.0, "this test process started in the last day: {started} vs {now}");
    assert!(value("process_resident_memory_bytes") > 1_000_000.0, "a Rust test binary holds more than a megabyte");
    assert!(value("process_virtual_memory_bytes") >= value("process_resident_memory_bytes"));
    assert!(value("process_cpu_seconds_total") >= 0.0);
    assert!(value("process_threads") >= 1.0);
    assert!(value("process_open_fds") >= 3.0, "stdin, stdout, stderr at least");
    assert!(value("process_max_fds") >= value("process_open_fds"));
}

#[test]
fn the_classic_text_format_names_counters_by_their_total_series_and_has_no_eof() {
    let parts = Parts::new();
    let metrics = parts.metrics();
    let classic = metrics.render(None, Format::Prometheus);
    assert!(classic.contains("# HELP partnerstack_mirror_queue_attempts_total Write-back attempts"), "{classic}");
    assert!(classic.contains("# TYPE partnerstack_mirror_queue_attempts_total counter\n"), "{classic}");
    assert!(classic.contains("# TYPE partnerstack_mirror_database_up gauge\n"), "{classic}");
    assert!(!classic.contains("# EOF") && !classic.contains("# UNIT"), "{classic}");
    let help = classic.lines().filter(|l| l.starts_with("# HELP "));
    assert!(help.clone().all(|l| l.ends_with('.')), "registered and collected help alike:\n{classic}");
    assert!(help.clone().any(|l| l.starts_with("# HELP partnerstack_mirror_database_up ")), "{classic}");
    let open = metrics.render(None, Format::OpenMetrics);
    assert!(open.ends_with("# EOF\n"), "{open}");
    assert_eq!(series(&classic), series(&open), "the same series in both formats");
}

#[test]
fn the_format_follows_what_the_scraper_accepts() {
    assert_eq!(Format::accepted("application/openmetrics-text; version=1.0.0"), Format::OpenMetrics);
    assert_eq!(Format::accepted("text/plain"), Format::Prometheus);
    assert_eq!(Format::accepted(""), Format::Prometheus);
    assert!(Format::Prometheus.content_type().starts_with("text/plain; version=0.0.4"));
}
