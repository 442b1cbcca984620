//! `/metrics` in Prometheus text format (prometheus-client). Counters come from the
//! process's own tallies; lag, queue depth and quarantine come from the database at scrape
//! time, so every instance reports the shared truth.

use std::sync::atomic::Ordering;

use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use crate::{object::ObjectKind, store::MetricsSnapshot, sync::Progress};

type Labels = Vec<(&'static str, String)>;

/// Requests the API client sent, by endpoint and status (`"200"`, `"429"`, `"transport"`, …).
pub type RequestCounts = Vec<(String, String, u64)>;

/// Renders every series. Names follow Prometheus conventions: base units, `_total` counters,
/// no per-record labels.
pub fn render(progress: &Progress, requests: &RequestCounts, db: &MetricsSnapshot) -> String {
    let mut registry = Registry::with_prefix("partnerstack_mirror");

    let api: Family<Labels, Counter> = Family::default();
    for (endpoint, status, n) in requests {
        api.get_or_create(&vec![("endpoint", endpoint.clone()), ("status", status.clone())]).inc_by(*n);
    }
    registry.register("api_requests", "PartnerStack API requests sent, retries included", api);

    let rows: Family<Labels, Counter> = Family::default();
    let events: Family<Labels, Counter> = Family::default();
    for kind in ObjectKind::ALL {
        let o = progress.object(kind);
        rows.get_or_create(&vec![("object", kind.table().to_owned())]).inc_by(o.rows_written.load(Ordering::Relaxed));
        events.get_or_create(&vec![("object", kind.table().to_owned())]).inc_by(o.events_written.load(Ordering::Relaxed));
    }
    registry.register("rows_written", "Mirror rows inserted or updated by this process", rows);
    registry.register("events_written", "Events written by this process", events);

    let lag: Family<Labels, Gauge<f64, std::sync::atomic::AtomicU64>> = Family::default();
    let success: Family<Labels, Gauge<f64, std::sync::atomic::AtomicU64>> = Family::default();
    for o in &db.objects {
        if let Some(seconds) = o.lag_seconds {
            lag.get_or_create(&vec![("object", o.object.clone())]).set(seconds);
        }
        if let Some(ts) = o.last_success_unix {
            success.get_or_create(&vec![("object", o.object.clone())]).set(ts);
        }
    }
    registry.register("sync_lag_seconds", "Seconds between now and the object's cursor (changes up to it are mirrored)", lag);
    registry.register("last_success_timestamp_seconds", "Unix time of the object's last successful pass", success);

    let queue: Family<Labels, Gauge> = Family::default();
    for (status, n) in &db.queue {
        queue.get_or_create(&vec![("status", status.clone())]).set(*n);
    }
    registry.register("queue_depth", "Write-back requests by status", queue);
    let oldest: Gauge<f64, std::sync::atomic::AtomicU64> = Gauge::default();
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

    let mut text = String::new();
    encode(&mut text, &registry).expect("writing to a String cannot fail");
    text
}
