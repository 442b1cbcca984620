//! partnerstack-mirror: keeps a PostgreSQL schema in step with a PartnerStack account,
//! turns every change it sees into rows of an events table.
//!
//! Crate map, one module per responsibility:
//! - [`object`]: the catalogue of object types, their tables, API paths and typed columns.
//! - [`config`]: TOML + environment configuration, validated once, secrets redacted.
//! - [`partnerstack`]: the vendor API client, one method per endpoint (paths and HTTP methods live there only), and its one request budget (knows nothing of Postgres).
//! - [`record`]: one API record checked and turned into typed column values.
//! - [`diff`]: old row + new record → change events (pure).
//! - [`store`]: all SQL: migrations, page writes, bookkeeping, queue, reporting views (no HTTP).
//! - [`sync`]: one pass of one object: windows, pages, cursor.
//! - [`scheduler`]: when passes run; passes never overlap.
//! - [`intake`]: PartnerStack webhooks in: hints that trigger reads, training completions.
//! - [`subscriptions`]: which PartnerStack webhooks the mirror subscribes to.
//! - [`write_back`]: the write-back catalogue: operations, the objects they apply to, payload rules, natural keys.
//! - [`push`]: pushes: a query says what PartnerStack should hold; what differs is queued, exactly once.
//! - [`queue`]: the write-back workers: claim, call the API, record the outcome.
//! - [`renewal`]: keeps a lease alive beside the work it guards, never instead of it.
//! - [`backoff`]: the one exponential backoff with jitter that every retry uses.
//! - [`delivery`]: webhook delivery of events, signed (Standard Webhooks), in order per record.
//! - [`retention`]: prunes old events (never unread ones), finished requests and runs.
//! - [`progress`]: what this process has done, counted by the sync and read by the edges.
//! - [`live_rate`]: the records per second of the last few seconds, for progress lines.
//! - [`liveness`]: the loops' promises, which tell waiting from hanging.
//! - [`daemon`]: the composition root: builds the parts, supervises the loops, stops them.
//! - [`supervisor`]: the daemon's tasks by name; one that dies stops the daemon.
//! - [`systemd`]: the notify protocol (`READY=1`, `STATUS=`, `WATCHDOG=1`, `STOPPING=1`).
//! - [`http`]: `/healthz`, `/readyz`, `/metrics`, and the webhook intake endpoint.
//! - [`metrics`]: the one registry `/metrics` encodes, built at start; what the parts count and what is read when scraped.
//! - [`private_postgres`]: a throwaway PostgreSQL server for the demo and the tests.
//! - [`reference`]: the reference pages generated from the code (`docs/configuration.md`, `docs/schema.md`).
//! - [`doctor`]: read-only probes of the live API's undocumented behaviours.
//! - [`demo`]: the first thing a new user runs: simulator, private database, daemon.
//! - [`cli`]: the command line: parses arguments and runs one command.
//! - [`telemetry`]: logs, pretty on a terminal and JSON under systemd.
//!
//! The faithful local PartnerStack API that `demo`, `simulate` and the tests run against is
//! the crate `partnerstack-simulator` (`crates/simulator/`), outside this one.

pub mod backoff;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod delivery;
#[cfg(feature = "simulator")]
pub mod demo;
pub mod diff;
pub mod doctor;
pub mod http;
pub mod intake;
pub mod live_rate;
pub mod liveness;
pub mod metrics;
pub mod object;
pub mod partnerstack;
pub mod private_postgres;
pub mod progress;
pub mod push;
pub mod queue;
pub mod record;
pub mod reference;
pub mod renewal;
pub mod request_books;
pub mod retention;
pub mod scheduler;
pub mod store;
pub mod subscriptions;
pub mod supervisor;
pub mod sync;
pub mod systemd;
pub mod telemetry;
pub mod write_back;
