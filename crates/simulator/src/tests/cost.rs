//! What a large backfill costs the simulator itself (the HTTP client's share excluded).

use std::time::{Duration, Instant};

use axum::http::Method;

use super::simulator;
use crate::{api, route::Route, Resource};

/// Run with `cargo test --release -p partnerstack-simulator --lib tests::cost -- --ignored --nocapture`:
/// 200,000 records, every list read in pages of 250 (~800 pages), as a backfill does.
#[test]
#[ignore = "a timing measurement: meaningful in release builds only"]
fn a_backfill_of_200_000_records_costs_the_simulator_little() {
    let started = Instant::now();
    let sim = simulator(200_000);
    let generated = started.elapsed();
    let (mut pages, mut bytes, mut serving) = (0, 0, Duration::ZERO);
    for kind in Resource::ALL.into_iter().filter(|k| *k != Resource::PartnerTeamMember) {
        let mut after: Option<String> = None;
        loop {
            let mut params = vec![("limit".to_owned(), "250".to_owned())];
            params.extend(after.take().map(|k| ("starting_after".to_owned(), k)));
            let mut state = sim.lock();
            let t = Instant::now();
            let reply = api::answer(&mut state, &Method::GET, Route::List(kind), &params, b"", "http://127.0.0.1");
            serving += t.elapsed();
            drop(state);
            pages += 1;
            bytes += reply.body.len();
            let page: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
            after = page["data"]["items"].as_array().unwrap().last().map(super::key);
            if page["data"]["has_more"] != serde_json::json!(true) {
                break;
            }
        }
    }
    eprintln!("generated in {generated:?}; {pages} pages, {} MB served in {serving:?}", bytes / 1_000_000);
    assert!((790..=810).contains(&pages));
    assert!(serving < Duration::from_secs(2), "{serving:?}");
}
