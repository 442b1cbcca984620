//! The API client's series, read from the client at each scrape: its request tallies, the
//! time it spent paused by 429s, its request budget now, and whether the keys are rejected.

use prometheus_client::{
    collector::Collector,
    encoding::DescriptorEncoder,
    metrics::{counter::ConstCounter, gauge::ConstGauge},
};

use super::{write_family, write_one};
use crate::partnerstack::{ApiClient, Priority};

pub(super) struct Requests(pub ApiClient);

impl std::fmt::Debug for Requests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Requests")
    }
}

impl Collector for Requests {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let api = &self.0;
        let e = &mut encoder;
        let counts = api.request_counts();
        write_family(
            e,
            "api_requests",
            "PartnerStack API requests sent, retries included, by endpoint, status and purpose (poll, rescan, key_scan, team, \
             write_back, webhook, probe, backfill)",
            counts.iter().map(|(endpoint, status, purpose, n)| {
                ([("endpoint", endpoint.as_str()), ("status", status.as_str()), ("purpose", purpose.label())], ConstCounter::new(*n))
            }),
        )?;
        write_one(
            e,
            "api_throttled_seconds",
            "Wall-clock seconds the API client spent paused by PartnerStack's rate limit (429)",
            ConstCounter::new(api.throttled_seconds()),
        )?;
        let budget = api.budget();
        if let Some(rate) = budget.rate {
            write_one(
                e,
                "api_rate_limit_per_second",
                "Requests per second the client allows itself now, found from PartnerStack's 429s (absent without a client-side limit)",
                ConstGauge::new(rate),
            )?;
        }
        let priority = |p: Priority| [("priority", p.label())];
        write_family(
            e,
            "api_permits_waiting",
            "Requests waiting for their turn in the request budget, by priority",
            Priority::ALL.map(|p| (priority(p), ConstGauge::new(budget.waiting(p) as i64))),
        )?;
        write_family(
            e,
            "api_permit_wait_seconds",
            "Time requests have waited for their turn in the request budget, added up, by priority",
            Priority::ALL.map(|p| (priority(p), ConstCounter::new(budget.waited(p).as_secs_f64()))),
        )?;
        write_one(
            e,
            "api_credentials_rejected",
            "1 while PartnerStack rejects the credentials (401/403): sync and write-back are paused",
            ConstGauge::new(i64::from(api.credentials_rejected().is_some())),
        )
    }
}
