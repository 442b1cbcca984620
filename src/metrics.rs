//! `/metrics` in Prometheus text format (prometheus-client). Counters come from the process's
//! own tallies (the API client, the sync, the write-back workers) and are always there; lag,
//! queue depth and quarantine come from the database at scrape time, so every instance
//! reports the shared truth, and are left out when the database does not answer.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use crate::{
    delivery::DeliveryCounters, intake::IntakeCounters, object::ObjectKind, partnerstack::ApiClient, progress::Progress,
    queue::WorkerCounters, store::MetricsSnapshot,
};

type Labels = Vec<(&'static str, String)>;
type FloatGauge = Gauge<f64, AtomicU64>;

/// What this process knows by itself.
pub struct ProcessView<'a> {
    pub progress: &'a Progress,
    pub api: &'a ApiClient,
    pub queue: &'a WorkerCounters,
    pub intake: &'a IntakeCounters,
    pub deliveries: &'a DeliveryCounters,
    pub pushes: &'a crate::push::PushCounters,
}

/// Renders every series. Names follow Prometheus conventions: base units, `_total` counters,
/// no per-record labels. `db`: `None` when the database did not answer.
pub fn render(process: &ProcessView<'_>, db: Option<&MetricsSnapshot>) -> String {
    let mut registry = Registry::with_prefix("partnerstack_mirror");
    register_process(&mut registry, process);
    let up: Gauge = Gauge::default();
    up.set(i64::from(db.is_some()));
    registry.register("database_up", "Whether the database answered this scrape (its gauges are left out when not)", up);
    if let Some(db) = db {
        register_database(&mut registry, db);
    }
    let mut text = String::new();
    encode(&mut text, &registry).expect("writing to a String cannot fail");
    text
}

/// The OpenMetrics text `render` writes, as Prometheus' classic text format (version 0.0.4)
/// for scrapers and tools that do not ask for OpenMetrics: no `# EOF` or `# UNIT` lines, and a
/// counter's `HELP` and `TYPE` name its `_total` series, as client libraries write them there.
pub fn as_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> =
        openmetrics.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter")).collect();
    let mut text = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let header = ["# HELP ", "# TYPE "].into_iter().find_map(|p| Some((p, line.strip_prefix(p)?)));
        match header.and_then(|(p, rest)| Some((p, rest.split_once(' ')?))) {
            Some((prefix, (name, rest))) if counters.contains(name) => {
                text.push_str(prefix);
                text.push_str(name);
                text.push_str("_total ");
                text.push_str(rest);
            }
            _ => text.push_str(line),
        }
        text.push('\n');
    }
    text
}

fn register_process(registry: &mut Registry, process: &ProcessView<'_>) {
    let api: Family<Labels, Counter> = Family::default();
    for (endpoint, status, purpose, n) in process.api.request_counts() {
        api.get_or_create(&vec![("endpoint", endpoint), ("status", status), ("purpose", purpose.label().to_owned())]).inc_by(n);
    }
    registry.register(
        "api_requests",
        "PartnerStack API requests sent, retries included, by endpoint, status and purpose (poll, rescan, key_scan, team, \
         write_back, webhook, probe, backfill)",
        api,
    );
    let throttled: Counter<f64, AtomicU64> = Counter::default();
    throttled.inc_by(process.api.throttled_seconds());
    registry.register(
        "api_throttled_seconds",
        "Wall-clock seconds the API client spent paused by PartnerStack's rate limit (429)",
        throttled,
    );
    let budget = process.api.budget();
    if let Some(rate) = budget.rate {
        let allowed: FloatGauge = Gauge::default();
        allowed.set(rate);
        registry.register(
            "api_rate_limit_per_second",
            "Requests per second the client allows itself now, found from PartnerStack's 429s (absent without a client-side limit)",
            allowed,
        );
    }
    let waiting: Family<Labels, Gauge> = Family::default();
    let waited: Family<Labels, Counter<f64, AtomicU64>> = Family::default();
    for priority in crate::partnerstack::Priority::ALL {
        let labels = vec![("priority", priority.label().to_owned())];
        waiting.get_or_create(&labels).set(budget.waiting(priority) as i64);
        waited.get_or_create(&labels).inc_by(budget.waited(priority).as_secs_f64());
    }
    registry.register("api_permits_waiting", "Requests waiting for their turn in the request budget, by priority", waiting);
    registry.register(
        "api_permit_wait_seconds",
        "Time requests have waited for their turn in the request budget, added up, by priority",
        waited,
    );
    let rejected: Gauge = Gauge::default();
    rejected.set(i64::from(process.api.credentials_rejected().is_some()));
    registry.register(
        "api_credentials_rejected",
        "1 while PartnerStack rejects the credentials (401/403): sync and write-back are paused",
        rejected,
    );

    let rows: Family<Labels, Counter> = Family::default();
    let events: Family<Labels, Counter> = Family::default();
    for kind in ObjectKind::ALL {
        let o = process.progress.object(kind);
        rows.get_or_create(&vec![("object", kind.table().to_owned())]).inc_by(o.rows_written.load(Ordering::Relaxed));
        events.get_or_create(&vec![("object", kind.table().to_owned())]).inc_by(o.events_written.load(Ordering::Relaxed));
    }
    registry.register("rows_written", "Mirror rows inserted or updated by this process", rows);
    registry.register("events_written", "Events written by this process", events);

    let handled: Family<Labels, Counter> = Family::default();
    let q = process.queue;
    for (outcome, n) in [("succeeded", &q.succeeded), ("retrying", &q.retried), ("failed", &q.failed), ("paused", &q.paused)] {
        handled.get_or_create(&vec![("outcome", outcome.to_owned())]).inc_by(n.load(Ordering::Relaxed));
    }
    registry.register(
        "queue_attempts",
        "Write-back attempts this process's workers finished, by outcome (paused: put back uncharged, credentials rejected)",
        handled,
    );

    let received: Family<Labels, Counter> = Family::default();
    let w = process.intake;
    for (outcome, n) in [("accepted", &w.accepted), ("wrong_token", &w.wrong_token), ("too_large", &w.too_large), ("not_json", &w.not_json)]
    {
        received.get_or_create(&vec![("outcome", outcome.to_owned())]).inc_by(n.load(Ordering::Relaxed));
    }
    registry.register("webhooks_received", "PartnerStack webhooks this process's endpoint answered, by outcome", received);
    let handled: Family<Labels, Counter> = Family::default();
    for (outcome, n) in
        [("read_requested", &w.read_requested), ("recorded", &w.recorded), ("ignored", &w.ignored), ("quarantined", &w.quarantined)]
    {
        handled.get_or_create(&vec![("outcome", outcome.to_owned())]).inc_by(n.load(Ordering::Relaxed));
    }
    registry.register(
        "webhooks_handled",
        "Inbox webhooks this process handled: read_requested (an object webhook), recorded (a training completion), ignored, quarantined",
        handled,
    );
    let d = process.deliveries;
    registry.register("delivery_sent", "Webhooks this process delivered (2xx), per delivery", d.sent.clone());
    registry.register(
        "delivery_failed",
        "Failed webhook attempts of this process (timeouts, refused connections, non-2xx), per delivery",
        d.failed.clone(),
    );
    registry.register(
        "delivery_dead_lettered",
        "Events this process gave up on and kept as dead letters, per delivery",
        d.dead_lettered.clone(),
    );
    registry.register("delivery_latency_seconds", "Duration of webhook requests, per delivery", d.latency.clone());
    register_pushes(registry, process.pushes);

    if let Some(p) = process_stats() {
        let cpu: Counter<f64, AtomicU64> = Counter::default();
        cpu.inc_by(p.cpu_seconds);
        registry.register("process_cpu_seconds", "CPU time of this process, user and system", cpu);
        let rss: Gauge = Gauge::default();
        rss.set(p.resident_bytes);
        registry.register("process_resident_memory_bytes", "Resident memory of this process", rss);
    }
    let start: FloatGauge = Gauge::default();
    start.set(process_start_unix());
    registry.register("process_start_time_seconds", "Unix time this process started", start);
}

fn register_pushes(registry: &mut Registry, p: &crate::push::PushCounters) {
    registry.register(
        "push_runs",
        "Push runs this process started, per push and outcome (changed, unchanged, braked, failed; busy: another instance was running it)",
        p.runs.clone(),
    );
    registry.register("push_requests_queued", "Write-back requests this process's push runs queued, per push", p.requests_queued.clone());
    registry.register("push_rows_read", "Rows this process's push queries returned, per push", p.rows_read.clone());
    registry.register(
        "push_refused_by_brake",
        "Changes this process's push runs did not queue because there were more than max_changes, per push",
        p.refused_by_brake.clone(),
    );
}

fn register_database(registry: &mut Registry, db: &MetricsSnapshot) {
    let lag: Family<Labels, FloatGauge> = Family::default();
    let success: Family<Labels, FloatGauge> = Family::default();
    let failure: Family<Labels, FloatGauge> = Family::default();
    for o in &db.objects {
        if let Some(seconds) = o.lag_seconds {
            lag.get_or_create(&vec![("object", o.object.clone())]).set(seconds);
        }
        if let Some(ts) = o.last_success_unix {
            success.get_or_create(&vec![("object", o.object.clone())]).set(ts);
        }
        if let Some(ts) = o.last_error_unix {
            failure.get_or_create(&vec![("object", o.object.clone())]).set(ts);
        }
    }
    registry.register("sync_lag_seconds", "Seconds between now and the object's cursor (changes up to it are mirrored)", lag);
    registry.register("last_success_timestamp_seconds", "Unix time of the object's last successful pass", success);
    registry.register(
        "last_error_timestamp_seconds",
        "Unix time of the object's last failed pass (failing now while later than its last success)",
        failure,
    );

    let queue: Family<Labels, Gauge> = Family::default();
    for (status, n) in &db.queue {
        queue.get_or_create(&vec![("status", status.clone())]).set(*n);
    }
    registry.register("queue_depth", "Write-back requests by status", queue);
    let oldest: FloatGauge = Gauge::default();
    oldest.set(db.queue_oldest_due_seconds);
    registry.register("queue_oldest_due_seconds", "How long the oldest due write-back request has waited for a worker", oldest);

    let quarantine: Family<Labels, Gauge> = Family::default();
    for (object, n) in &db.quarantine {
        quarantine.get_or_create(&vec![("object", object.clone())]).set(*n);
    }
    registry.register("quarantined_records", "Records the API returned that could not be stored", quarantine);

    let last_event: Gauge = Gauge::default();
    last_event.set(db.last_event_id);
    registry.register("last_event_id", "Largest id in the events table", last_event);

    let lag_events: Family<Labels, Gauge> = Family::default();
    let lag_seconds: Family<Labels, FloatGauge> = Family::default();
    let enabled: Family<Labels, Gauge> = Family::default();
    for d in &db.deliveries {
        let l = vec![("delivery", d.name.clone())];
        lag_events.get_or_create(&l).set(d.lag_events);
        lag_seconds.get_or_create(&l).set(d.lag_seconds);
        enabled.get_or_create(&l).set(i64::from(d.state != "disabled"));
    }
    registry.register("delivery_lag_events", "Events after the delivery's position (matching or not)", lag_events);
    registry.register("delivery_lag_seconds", "Age of the oldest event after the delivery's position (0 when caught up)", lag_seconds);
    registry.register("delivery_enabled", "0 when the delivery is disabled (its endpoint answered 410 Gone)", enabled);
}

struct ProcessStats {
    cpu_seconds: f64,
    resident_bytes: i64,
}

/// CPU time and resident memory from `/proc/self/stat` (Linux; `None` elsewhere).
fn process_stats() -> Option<ProcessStats> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
    // utime and stime are fields 14 and 15 of the line, 11 and 12 after the name; rss is 24.
    let cpu_seconds = (ticks(11)? + ticks(12)?) / clock_ticks_per_second();
    let resident_bytes = fields.get(21)?.parse::<i64>().ok()? * 4096;
    Some(ProcessStats { cpu_seconds, resident_bytes })
}

/// `sysconf(_SC_CLK_TCK)` is 100 on every Linux this runs on.
fn clock_ticks_per_second() -> f64 {
    100.0
}

/// When this process started (first called at start, by the daemon).
pub fn process_start_unix() -> f64 {
    static START: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *START.get_or_init(|| chrono::Utc::now().timestamp_millis() as f64 / 1000.0)
}

#[cfg(test)]
mod format_tests {
    use super::*;

    #[test]
    fn the_classic_text_format_names_counters_by_their_total_series_and_has_no_eof() {
        let open = "# HELP app_requests Requests.\n# TYPE app_requests counter\napp_requests_total{a=\"b\"} 3\n\
                    # HELP app_lag_seconds Lag.\n# TYPE app_lag_seconds gauge\n# UNIT app_lag_seconds seconds\napp_lag_seconds 1.5\n# EOF\n";
        assert_eq!(
            as_prometheus_text(open),
            "# HELP app_requests_total Requests.\n# TYPE app_requests_total counter\napp_requests_total{a=\"b\"} 3\n\
             # HELP app_lag_seconds Lag.\n# TYPE app_lag_seconds gauge\napp_lag_seconds 1.5\n"
        );
    }
}
