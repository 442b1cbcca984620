//! What this process's deliveries did, for `/metrics`: webhooks accepted, failed attempts,
//! dead letters, and request durations, per delivery. The deliveries count into clones of
//! the families the process's one registry holds.

use prometheus_client::metrics::{
    counter::Counter,
    family::Family,
    histogram::{exponential_buckets, Histogram},
};

pub type DeliveryLabels = Vec<(&'static str, String)>;
type HistogramFamily = Family<DeliveryLabels, Histogram, fn() -> Histogram>;

#[derive(Clone, Debug)]
pub struct DeliveryCounters {
    pub sent: Family<DeliveryLabels, Counter>,
    pub failed: Family<DeliveryLabels, Counter>,
    pub dead_lettered: Family<DeliveryLabels, Counter>,
    pub latency: HistogramFamily,
}

impl Default for DeliveryCounters {
    fn default() -> Self {
        DeliveryCounters {
            sent: Family::default(),
            failed: Family::default(),
            dead_lettered: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
        }
    }
}

/// 5 ms to about 10 s: a local receiver answers in milliseconds, a slow one near its timeout.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 12))
}

impl DeliveryCounters {
    /// Counters for the configured deliveries, each series present (at zero) from the start,
    /// so `rate()` and `increase()` see the first webhook.
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> DeliveryCounters {
        let counters = DeliveryCounters::default();
        for name in names {
            let l = labels(name);
            drop(counters.sent.get_or_create(&l));
            drop(counters.failed.get_or_create(&l));
            drop(counters.dead_lettered.get_or_create(&l));
            drop(counters.latency.get_or_create(&l));
        }
        counters
    }
}

pub fn labels(delivery: &str) -> DeliveryLabels {
    vec![("delivery", delivery.to_owned())]
}
