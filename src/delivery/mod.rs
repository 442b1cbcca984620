//! Webhook delivery: every `[[delivery]]` POSTs the events matching its patterns to its URL,
//! signed as the Standard Webhooks specification says.
//!
//! At least once, in order per record: a delivery keeps a position in `deliveries` (every
//! event up to it is done: accepted, dead-lettered, or not matching) and moves it only past
//! events that are done, so a crash sends again only what may not have arrived, under the
//! same `webhook-id`. Events of one record go one at a time in id order (`lanes`); up to
//! `parallelism` records are sent at once, and a bounded window of events is read ahead, so
//! memory stays flat however far behind a delivery is. One daemon delivers a delivery at a
//! time, under a lease fenced by an epoch; the others wait and take over when it lapses.
//! Each delivery runs in its own loop with its own HTTP client, so a slow or failing endpoint
//! delays only its own delivery, never another one nor the sync.

mod counters;
mod lanes;
mod send;
mod session;
pub mod sign;

use std::{sync::Arc, time::Duration};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use url::Url;

pub use counters::{labels, DeliveryCounters};
pub use send::Answer;
pub use sign::{BadSecret, Signer};

use self::session::{End, Session};
use crate::{
    backoff::Backoff,
    config::{DeliveryConfig, OnFailure, Start},
    liveness,
    store::{DeliveryClaim, DeliveryLease, Store},
    telemetry::error_chain,
};

/// How often a disabled delivery looks whether `delivery enable` turned it back on.
const DISABLED_POLL: Duration = Duration::from_secs(5);

/// How one delivery behaves (from its `[[delivery]]` and `sync.lease_ttl`).
#[derive(Debug)]
pub struct DeliverySettings {
    pub name: String,
    pub url: Url,
    /// Event-type patterns; `*` matches anything.
    pub patterns: Vec<String>,
    pub signer: Signer,
    pub timeout: Duration,
    pub max_attempts: u32,
    pub on_failure: OnFailure,
    pub parallelism: usize,
    /// A delivery seen for the first time starts after the last event (not at the first).
    pub start_now: bool,
    pub backoff: Backoff,
    pub lease_ttl: Duration,
    /// The longest wait for new events when no notification comes.
    pub poll: Duration,
}

impl DeliverySettings {
    pub fn from_config(c: &DeliveryConfig, lease_ttl: Duration) -> Result<DeliverySettings, BadSecret> {
        Ok(DeliverySettings {
            name: c.name.clone(),
            url: c.url.clone(),
            patterns: c.events.clone(),
            signer: Signer::new(&c.secret)?,
            timeout: c.timeout,
            max_attempts: c.max_attempts,
            on_failure: c.on_failure,
            parallelism: c.parallelism,
            start_now: c.start == Start::Now,
            backoff: Backoff::new(c.min_backoff, c.max_backoff),
            lease_ttl,
            poll: Duration::from_secs(1),
        })
    }
}

/// Why a delivery could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("delivery {name}: cannot build its HTTP client")]
    Client {
        name: String,
        #[source]
        source: reqwest::Error,
    },
}

/// One delivery's loop, ready to run.
pub struct Delivery {
    settings: Arc<DeliverySettings>,
    store: Store,
    holder: String,
    counters: DeliveryCounters,
    client: reqwest::Client,
    wake: Option<watch::Receiver<u64>>,
}

impl Delivery {
    pub fn new(settings: DeliverySettings, store: Store, holder: &str, counters: DeliveryCounters) -> Result<Delivery, DeliveryError> {
        let client = send::client(settings.timeout).map_err(|source| DeliveryError::Client { name: settings.name.clone(), source })?;
        Ok(Delivery { settings: Arc::new(settings), store, holder: holder.to_owned(), counters, client, wake: None })
    }

    pub fn name(&self) -> &str {
        &self.settings.name
    }

    /// New events wake the delivery through `wake` (see [`listen`]) instead of its poll.
    pub fn woken_by(self, wake: watch::Receiver<u64>) -> Delivery {
        Delivery { wake: Some(wake), ..self }
    }

    /// Delivers until `shutdown`: takes the lease when it is free, delivers while it holds
    /// it, waits while another daemon holds it or the delivery is disabled.
    pub async fn run(self, shutdown: CancellationToken) {
        let s = self.settings.clone();
        let mut failures: u32 = 0;
        let mut said: Option<String> = None;
        while !shutdown.is_cancelled() {
            liveness::step();
            let claim = async {
                self.store.ensure_delivery(&s.name, s.start_now).await?;
                self.store.claim_delivery(&s.name, &self.holder, s.lease_ttl).await
            }
            .await;
            let pause = match claim {
                Ok(DeliveryClaim::Granted { epoch, position, holding }) => {
                    said = None;
                    info!(delivery = %s.name, position, epoch, "delivering webhooks");
                    let lease = DeliveryLease { name: s.name.clone(), holder: self.holder.clone(), epoch, ttl: s.lease_ttl };
                    match Session::new(&self, lease, position, holding).run(&shutdown).await {
                        End::Stopped => return,
                        End::Lost => {
                            warn!(delivery = %s.name, "another daemon took this delivery's lease over; waiting for it to lapse");
                            s.lease_ttl / 3
                        }
                        End::Disabled => Duration::ZERO,
                        End::Failed(e) => {
                            failures += 1;
                            warn!(delivery = %s.name, error = %error_chain(&e), "delivery interrupted by a database error; resuming from its position");
                            s.backoff.delay(failures)
                        }
                    }
                }
                Ok(DeliveryClaim::Busy { holder }) => {
                    failures = 0;
                    if said.as_deref() != Some(holder.as_str()) {
                        info!(delivery = %s.name, %holder, "another daemon delivers this delivery; taking over if its lease lapses");
                        said = Some(holder);
                    }
                    (s.lease_ttl / 3).max(Duration::from_millis(100))
                }
                Ok(DeliveryClaim::Disabled { reason }) => {
                    failures = 0;
                    if said.as_deref() != Some(reason.as_str()) {
                        error!(delivery = %s.name, %reason, "delivery disabled");
                        said = Some(reason);
                    }
                    DISABLED_POLL
                }
                Err(e) => {
                    failures += 1;
                    warn!(delivery = %s.name, error = %error_chain(&e), "cannot take the delivery's lease; trying again");
                    s.backoff.delay(failures)
                }
            };
            liveness::wait_for(pause);
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }
}
