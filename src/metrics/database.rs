//! The database's gauges: the shared truth every instance reports alike, read once per
//! scrape (by the HTTP handler, which may wait for it; a collector cannot) and shown by
//! the encoding that scrape runs. `database_up` says whether they are there.

use std::sync::Mutex;

use prometheus_client::{collector::Collector, encoding::DescriptorEncoder, metrics::gauge::ConstGauge};

use super::{write_family, write_one};
use crate::store::MetricsSnapshot;

/// The snapshot of the scrape being encoded; `None` while none is, or when the database
/// did not answer.
#[derive(Debug, Default)]
pub(super) struct Gauges(Mutex<Option<MetricsSnapshot>>);

impl Gauges {
    pub(super) fn show(&self, snapshot: Option<MetricsSnapshot>) {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = snapshot;
    }
}

impl Collector for Gauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let shown = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let e = &mut encoder;
        write_one(
            e,
            "database_up",
            "Whether the database answered this scrape (its gauges are left out when not)",
            ConstGauge::new(i64::from(shown.is_some())),
        )?;
        let Some(db) = shown.as_ref() else { return Ok(()) };
        let by_object = |value: fn(&crate::store::ObjectFreshness) -> Option<f64>| {
            db.objects.iter().filter_map(move |o| Some(([("object", o.object.as_str())], ConstGauge::new(value(o)?))))
        };
        write_family(
            e,
            "sync_lag_seconds",
            "Seconds between now and the object's cursor (changes up to it are mirrored)",
            by_object(|o| o.lag_seconds),
        )?;
        write_family(
            e,
            "last_success_timestamp_seconds",
            "Unix time of the object's last successful pass",
            by_object(|o| o.last_success_unix),
        )?;
        write_family(
            e,
            "last_error_timestamp_seconds",
            "Unix time of the object's last failed pass (failing now while later than its last success)",
            by_object(|o| o.last_error_unix),
        )?;
        write_family(
            e,
            "queue_depth",
            "Write-back requests by status",
            db.queue.iter().map(|(status, n)| ([("status", status.as_str())], ConstGauge::new(*n))),
        )?;
        write_one(
            e,
            "queue_oldest_due_seconds",
            "How long the oldest due write-back request has waited for a worker",
            ConstGauge::new(db.queue_oldest_due_seconds),
        )?;
        write_family(
            e,
            "quarantined_records",
            "Records the API returned that could not be stored",
            db.quarantine.iter().map(|(object, n)| ([("object", object.as_str())], ConstGauge::new(*n))),
        )?;
        write_one(e, "last_event_id", "Largest id in the events table", ConstGauge::new(db.last_event_id))?;
        fn by_delivery(d: &crate::store::DeliveryLine) -> [(&'static str, &str); 1] {
            [("delivery", d.name.as_str())]
        }
        write_family(
            e,
            "delivery_lag_events",
            "Events after the delivery's position (matching or not)",
            db.deliveries.iter().map(|d| (by_delivery(d), ConstGauge::new(d.lag_events))),
        )?;
        write_family(
            e,
            "delivery_lag_seconds",
            "Age of the oldest event after the delivery's position (0 when caught up)",
            db.deliveries.iter().map(|d| (by_delivery(d), ConstGauge::new(d.lag_seconds))),
        )?;
        write_family(
            e,
            "delivery_enabled",
            "0 when the delivery is disabled (its endpoint answered 410 Gone)",
            db.deliveries.iter().map(|d| (by_delivery(d), ConstGauge::new(i64::from(d.state != "disabled")))),
        )
    }
}
