//! Integration tests: a real PostgreSQL server (`DATABASE_URL`, or a private throwaway one)
//! and the project's PartnerStack simulator over real HTTP. One binary, so it links once.

mod support;

mod budget;
mod compatibility;
mod crash;
mod delivery;
mod demo;
mod doctor;
mod events;
mod first_load;
mod monitoring;
mod operations;
mod production;
mod push;
mod quarantine;
mod queue;
mod reconcile;
mod reporting;
mod retention;
mod simulator_contract;
mod steady_state;
mod sync_backfill;
mod sync_changes;
mod sync_failures;
mod sync_windows;
mod webhooks;
mod your_database;
