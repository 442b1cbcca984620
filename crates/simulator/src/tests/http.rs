//! The API over real HTTP, through reqwest as the mirror's client uses it.

use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};

use reqwest::{header::HeaderMap, StatusCode};
use serde_json::{json, Value};

use super::{key, serve};
use crate::{BoundSemantics, Fault, Mutation, Resource, RunningSimulator, SimulatorConfig};

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

async fn get_as(sim: &RunningSimulator, path: &str, user: &str, password: &str) -> Answer {
    let response =
        reqwest::Client::new().get(format!("{}/{path}", sim.base_url)).basic_auth(user, Some(password)).send().await.expect("an answer");
    let (status, headers) = (response.status(), response.headers().clone());
    let body = response.json().await.expect("a JSON body");
    Answer { status, headers, body }
}

async fn get(sim: &RunningSimulator, path: &str) -> Answer {
    let d = SimulatorConfig::default();
    get_as(sim, path, &d.public_key, &d.private_key).await
}

fn keys(a: &Answer) -> Vec<String> {
    a.body["data"]["items"].as_array().expect("a list envelope").iter().map(key).collect()
}

/// Every page of a listing, following `starting_after`.
async fn walk(sim: &RunningSimulator, path: &str, query: &str) -> Vec<String> {
    let mut all = Vec::new();
    loop {
        let cursor = all.last().map(|k| format!("&starting_after={k}")).unwrap_or_default();
        let page = get(sim, &format!("{path}?{query}{cursor}")).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        all.extend(keys(&page));
        if page.body["data"]["has_more"] != json!(true) {
            return all;
        }
    }
}

#[tokio::test]
async fn paging_with_starting_after_walks_every_record_once_newest_first() {
    let sim = serve(700, |_| {}).await;
    for kind in [Resource::Deal, Resource::Customer, Resource::Group, Resource::Reward] {
        assert_eq!(walk(&sim, kind.path(), "limit=7").await, sim.simulator.keys(kind), "{kind}");
    }
    let page = get(&sim, "deals").await;
    assert_eq!((page.body["status"].clone(), page.body["message"].is_string()), (json!(200), true));
    assert_eq!(keys(&page).len(), 10, "the default page size");
    let records = sim.simulator.records(Resource::Deal);
    assert_eq!(page.body["data"]["items"].as_array().unwrap()[..], records[..10], "items are the records as stored");
}

#[tokio::test]
async fn ending_before_pages_back_towards_the_newest() {
    let sim = serve(300, |_| {}).await;
    let all = sim.simulator.keys(Resource::Lead);
    let page = get(&sim, &format!("leads?limit=3&ending_before={}", all[5])).await;
    assert_eq!(keys(&page), all[2..5]);
    assert_eq!(page.body["data"]["has_more"], json!(true));
}

#[tokio::test]
async fn invalid_paging_parameters_are_a_400_with_the_api_error_body() {
    let sim = serve(100, |_| {}).await;
    for query in [
        "limit=0",
        "limit=251",
        "limit=ten",
        "limit=-5",
        "min_updated=yesterday",
        "starting_after=deal_nope",
        "starting_after=a&ending_before=b",
    ] {
        let answer = get(&sim, &format!("deals?{query}")).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(answer.body["status"], json!(400), "{query}");
        assert!(answer.body["message"].is_string(), "{query}");
    }
    for query in ["limit=1", "limit=250"] {
        assert_eq!(get(&sim, &format!("deals?{query}")).await.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn wrong_or_missing_credentials_are_a_401() {
    let sim = serve(50, |_| {}).await;
    let answer = get_as(&sim, "deals", "pk_simulator", "sk_wrong").await;
    assert_eq!((answer.status, answer.body["status"].clone()), (StatusCode::UNAUTHORIZED, json!(401)));
    let anonymous = reqwest::get(format!("{}/deals", sim.base_url)).await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn inclusive_and_exclusive_bounds_differ_exactly_at_the_boundary_millisecond() {
    for bounds in [BoundSemantics::Inclusive, BoundSemantics::Exclusive] {
        let sim = serve(300, |c| c.bounds = bounds).await;
        let deal = sim.simulator.records(Resource::Deal)[4].clone();
        let (k, created, updated) = (key(&deal), deal["created_at"].as_i64().unwrap(), deal["updated_at"].as_i64().unwrap());
        let inclusive = bounds == BoundSemantics::Inclusive;
        for (min, max) in [("min_updated", "max_updated"), ("min_created", "max_created")] {
            let at = if min == "min_updated" { updated } else { created };
            let exact = get(&sim, &format!("deals?limit=250&{min}={at}&{max}={at}")).await;
            assert_eq!(keys(&exact).contains(&k), inclusive, "{bounds:?} {min}");
            if !inclusive {
                assert!(keys(&exact).is_empty());
            }
            let around = get(&sim, &format!("deals?limit=250&{min}={}&{max}={}", at - 1, at + 1)).await;
            assert!(keys(&around).contains(&k), "{bounds:?} {min} one millisecond wider");
        }
    }
}

#[tokio::test]
async fn created_only_objects_ignore_the_updated_filter_when_the_switch_is_on() {
    let future = 4_000_000_000_000_i64;
    for ignore in [true, false] {
        let sim = serve(300, |c| c.created_only_ignore_updated_filter = ignore).await;
        for path in ["transactions", "rewards"] {
            let answer = get(&sim, &format!("{path}?min_updated={future}")).await;
            assert_eq!(keys(&answer).is_empty(), !ignore, "{path} ignore={ignore}");
        }
        assert!(keys(&get(&sim, &format!("deals?min_updated={future}")).await).is_empty());
    }
}

#[tokio::test]
async fn an_injected_server_error_answers_that_status_once_then_the_api_recovers() {
    let sim = serve(100, |_| {}).await;
    sim.simulator.inject(Fault::ServerError(503), 1);
    let failed = get(&sim, "deals").await;
    assert_eq!((failed.status, failed.body["status"].clone()), (StatusCode::SERVICE_UNAVAILABLE, json!(503)));
    assert_eq!(get(&sim, "deals").await.status, StatusCode::OK);
    assert_eq!(sim.simulator.request_count(), 2);
}

#[tokio::test]
async fn dropped_truncated_and_html_answers_fail_the_way_a_client_sees_them() {
    let sim = serve(100, |_| {}).await;
    let d = SimulatorConfig::default();
    let client = reqwest::Client::new();
    let send = || client.get(format!("{}/deals?limit=50", sim.base_url)).basic_auth(&d.public_key, Some(&d.private_key)).send();

    sim.simulator.inject(Fault::DropConnection, 1);
    let dropped = send().await;
    assert!(dropped.is_err(), "a transport error, not an answer: {dropped:?}");

    sim.simulator.inject(Fault::Truncated, 1);
    let truncated = send().await.unwrap();
    assert_eq!(truncated.status(), StatusCode::OK);
    let text = truncated.text().await.unwrap();
    assert!(text.starts_with('{') && serde_json::from_str::<Value>(&text).is_err(), "{text}");

    sim.simulator.inject(Fault::NotJson, 1);
    let html = send().await.unwrap();
    assert_eq!(html.status(), StatusCode::OK);
    assert!(html.json::<Value>().await.is_err());

    assert_eq!(send().await.unwrap().status(), StatusCode::OK, "faults are used up");
}

#[tokio::test]
async fn above_the_rate_limit_the_answer_is_429_with_or_without_retry_after() {
    for header in [true, false] {
        let sim = serve(50, |c| {
            c.rate_limit_per_sec = Some(5.0);
            c.retry_after_header = header;
        })
        .await;
        let mut limited = Vec::new();
        for _ in 0..30 {
            let answer = get(&sim, "groups").await;
            if answer.status == StatusCode::TOO_MANY_REQUESTS {
                assert_eq!(answer.body["status"], json!(429));
                limited.push(answer.headers.get("retry-after").map(|v| v.to_str().unwrap().to_owned()));
            }
        }
        assert!(limited.len() >= 10, "a burst of 30 against 5/s is mostly refused: {}", limited.len());
        let expected = if header { Some("1".to_owned()) } else { None };
        assert!(limited.iter().all(|h| *h == expected), "{limited:?}");
        sim.simulator.configure(|c| c.rate_limit_per_sec = None);
        assert_eq!(get(&sim, "groups").await.status, StatusCode::OK);
    }
}

#[tokio::test]
async fn an_after_pages_hook_runs_between_two_pages_of_one_listing() {
    let sim = serve(400, |_| {}).await;
    let first_key = sim.simulator.keys(Resource::Deal)[0].clone();
    let ran = Arc::new(AtomicBool::new(false));
    let flag = ran.clone();
    let archived = first_key.clone();
    sim.simulator.after_pages(
        1,
        Box::new(move |s| {
            s.apply(Mutation::Archive { kind: Resource::Deal, key: archived }).unwrap();
            s.apply(Mutation::Create(Resource::Deal)).unwrap();
            flag.store(true, Ordering::SeqCst);
        }),
    );
    assert!(!ran.load(Ordering::SeqCst));
    let first = get(&sim, "deals?limit=5").await;
    assert!(ran.load(Ordering::SeqCst), "the hook ran before the first page was answered");
    let items = first.body["data"]["items"].as_array().unwrap();
    assert_eq!(
        (key(&items[0]), items[0]["archived"].clone()),
        (first_key.clone(), json!(false)),
        "the first page was fixed before the hook"
    );
    // The second page continues after the first page's last key; the new deal is ahead of it.
    let second = get(&sim, &format!("deals?limit=5&starting_after={}", key(&items[4]))).await;
    assert_eq!(keys(&second), sim.simulator.keys(Resource::Deal)[6..11]);
}

#[tokio::test]
async fn archived_records_are_listed_or_vanish_per_the_switch_but_a_single_get_finds_them() {
    for listed in [true, false] {
        let sim = serve(200, |c| c.archived_listed = listed).await;
        let deal = sim.simulator.keys(Resource::Deal)[2].clone();
        sim.simulator.apply(Mutation::Archive { kind: Resource::Deal, key: deal.clone() }).unwrap();
        assert_eq!(walk(&sim, "deals", "limit=250").await.contains(&deal), listed);
        let one = get(&sim, &format!("deals/{deal}")).await;
        assert_eq!((one.status, one.body["data"]["archived"].clone()), (StatusCode::OK, json!(true)));
    }
}

#[tokio::test]
async fn single_gets_find_records_by_key_or_external_key_and_404_otherwise() {
    let sim = serve(200, |_| {}).await;
    let customer = sim.simulator.records(Resource::Customer)[0].clone();
    let by_key = get(&sim, &format!("customers/{}", key(&customer))).await;
    assert_eq!(by_key.status, StatusCode::NOT_FOUND, "customers are addressed by customer_key only");
    let deal = sim.simulator.records(Resource::Deal)[0].clone();
    assert_eq!(get(&sim, &format!("deals/{}", key(&deal))).await.body["data"], deal);
    let by_external = get(&sim, &format!("customers/{}", customer["customer_key"].as_str().unwrap())).await;
    assert_eq!(by_external.body["data"], customer);
    let missing = get(&sim, "customers/cust_nope").await;
    assert_eq!((missing.status, missing.body["status"].clone()), (StatusCode::NOT_FOUND, json!(404)));
    assert_eq!(get(&sim, "widgets").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_partner_team_lists_its_members_and_an_unknown_team_is_a_404() {
    let sim = serve(300, |_| {}).await;
    let members = sim.simulator.records(Resource::PartnerTeamMember);
    let team = members[0]["team_key"].as_str().unwrap().to_owned();
    let expected: Vec<String> = members.iter().filter(|m| m["team_key"] == json!(team)).map(key).collect();
    assert_eq!(walk(&sim, &format!("partner-team/{team}"), "limit=1").await, expected);
    assert_eq!(get(&sim, "partner-team/stck_nope").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn only_actions_carry_a_total() {
    let sim = serve(400, |_| {}).await;
    let actions = get(&sim, "actions?limit=2").await;
    assert_eq!(actions.body["data"]["total"], json!(sim.simulator.keys(Resource::Action).len()));
    assert!(get(&sim, "deals").await.body["data"].get("total").is_none());
}

#[tokio::test]
async fn the_background_generator_changes_the_account_while_running() {
    let sim = serve(200, |c| c.mutations_per_sec = 500.0).await;
    let snapshot = |sim: &RunningSimulator| Resource::ALL.map(|k| sim.simulator.records(k));
    let before = snapshot(&sim);
    let changed = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while snapshot(&sim) == before {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(changed.is_ok(), "records changed within 10 s");
    sim.stop().await;
}
