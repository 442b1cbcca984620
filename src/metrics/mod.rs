//! `/metrics` in the Prometheus text formats: one registry, built when the daemon starts and
//! encoded at every scrape. The parts count into prometheus-client handles they hold (the
//! registry holds clones of the same handles), so a scrape copies nothing. What exists only
//! when asked is read by collectors registered once: the API client's own tallies and its
//! request budget, this process's resources from `/proc`, and the database's gauges (lag,
//! queue depth, quarantine), which every instance reports alike and which are left out when
//! the database does not answer a scrape in time.

mod api;
mod counts;
mod database;
mod process;

use std::sync::{Arc, Mutex};

use prometheus_client::{
    encoding::{prometheus_text, text, DescriptorEncoder, EncodeLabelSet, EncodeMetric},
    metrics::TypedMetric,
    registry::Registry,
};

pub use counts::Counts;

use crate::{
    delivery::DeliveryCounters, intake::IntakeCounters, partnerstack::ApiClient, progress::Written, push::PushCounters,
    queue::WorkerCounters, store::MetricsSnapshot,
};

/// The parts whose counts `/metrics` shows.
pub struct Sources<'a> {
    pub written: &'a Written,
    pub api: &'a ApiClient,
    pub queue: &'a WorkerCounters,
    pub intake: &'a IntakeCounters,
    pub deliveries: &'a DeliveryCounters,
    pub pushes: &'a PushCounters,
}

/// The process's one registry. Names follow Prometheus conventions: base units, `_total`
/// counters, no per-record labels.
pub struct Metrics {
    registry: Registry,
    database: Arc<database::Gauges>,
    /// One encoding at a time, so each scrape shows the database snapshot it read.
    encoding: Mutex<()>,
}

/// The text format a scraper asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Prometheus' classic text format (version 0.0.4), for scrapers that do not ask.
    Prometheus,
    /// OpenMetrics, what the registry writes natively (Prometheus itself asks for it).
    OpenMetrics,
}

impl Format {
    /// The format for an `Accept` header.
    pub fn accepted(accept: &str) -> Format {
        if accept.contains("application/openmetrics-text") {
            Format::OpenMetrics
        } else {
            Format::Prometheus
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

impl Metrics {
    /// Registers every series once.
    pub fn new(parts: Sources<'_>) -> Metrics {
        let mut registry = Registry::with_prefix("partnerstack_mirror");
        let r = &mut registry;
        r.register("rows_written", "Mirror rows inserted or updated by this process", parts.written.rows.family());
        r.register("events_written", "Events written by this process", parts.written.events.family());
        r.register(
            "queue_attempts",
            "Write-back attempts this process's workers finished, by outcome (paused: put back uncharged, credentials rejected)",
            parts.queue.attempts.family(),
        );
        r.register(
            "webhooks_received",
            "PartnerStack webhooks this process's endpoint answered, by outcome",
            parts.intake.received.family(),
        );
        r.register(
            "webhooks_handled",
            "Inbox webhooks this process handled: read_requested (an object webhook), recorded (a training completion), ignored, quarantined",
            parts.intake.handled.family(),
        );
        let d = parts.deliveries;
        r.register("delivery_sent", "Webhooks this process delivered (2xx), per delivery", d.sent.clone());
        r.register(
            "delivery_failed",
            "Failed webhook attempts of this process (timeouts, refused connections, non-2xx), per delivery",
            d.failed.clone(),
        );
        r.register(
            "delivery_dead_lettered",
            "Events this process gave up on and kept as dead letters, per delivery",
            d.dead_lettered.clone(),
        );
        r.register("delivery_latency_seconds", "Duration of webhook requests, per delivery", d.latency.clone());
        let p = parts.pushes;
        r.register(
            "push_runs",
            "Push runs this process started, per push and outcome (changed, unchanged, braked, failed; busy: another instance was running it)",
            p.runs.clone(),
        );
        r.register("push_requests_queued", "Write-back requests this process's push runs queued, per push", p.requests_queued.clone());
        r.register("push_rows_read", "Rows this process's push queries returned, per push", p.rows_read.clone());
        r.register(
            "push_refused_by_brake",
            "Changes this process's push runs did not queue because there were more than max_changes, per push",
            p.refused_by_brake.clone(),
        );
        r.register_collector(Box::new(api::Requests(parts.api.clone())));
        r.register_collector(Box::new(process::Resources));
        let database = Arc::new(database::Gauges::default());
        r.register_collector(Box::new(database.clone()));
        Metrics { registry, database, encoding: Mutex::new(()) }
    }

    /// Every series, with the database's gauges from `db` (`None`: it did not answer).
    pub fn render(&self, db: Option<MetricsSnapshot>, format: Format) -> String {
        let _one_at_a_time = self.encoding.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        self.database.show(db);
        let mut text = String::new();
        match format {
            Format::Prometheus => prometheus_text::encode(&mut text, &self.registry),
            Format::OpenMetrics => text::encode(&mut text, &self.registry),
        }
        .expect("writing to a String cannot fail");
        self.database.show(None);
        text
    }
}

/// Writes one family from a collector: nothing when it has no samples (as the registry
/// leaves out an empty family), else its descriptor (its help ending in a full stop, as the
/// registry writes one) and a sample per label set.
fn write_family<L: EncodeLabelSet, M: EncodeMetric + TypedMetric>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (L, M)>,
) -> std::fmt::Result {
    let mut samples = samples.into_iter().peekable();
    if samples.peek().is_none() {
        return Ok(());
    }
    let mut family = encoder.encode_descriptor(name, &format!("{help}."), None, M::TYPE)?;
    for (labels, metric) in samples {
        metric.encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// Writes one series without labels from a collector.
fn write_one<M: EncodeMetric + TypedMetric>(encoder: &mut DescriptorEncoder<'_>, name: &str, help: &str, metric: M) -> std::fmt::Result {
    metric.encode(encoder.encode_descriptor(name, &format!("{help}."), None, M::TYPE)?)
}

#[cfg(test)]
mod tests;
