//! Deal attachments, writes whose answer is lost, and the write log, over real HTTP.

use reqwest::{Method, StatusCode};
use serde_json::json;

use super::{call, live_partner, serve};
use crate::{Fault, Resource, SimulatorConfig, WriteRequest};

#[tokio::test]
async fn deal_files_are_listed_linked_and_downloaded_without_credentials() {
    let sim = serve(300, |_| {}).await;
    let deals = sim.simulator.keys(Resource::Deal);
    let mut downloaded = 0;
    for deal in deals.iter().take(8) {
        let listing = call(&sim, Method::GET, &format!("deals/{deal}/files"), None).await;
        assert_eq!(listing.status, StatusCode::OK, "{}", listing.body);
        let files = listing.body["data"]["deal_files"].as_array().unwrap().clone();
        assert!(files.len() <= 2);
        for file in files {
            assert!(file["name"].is_string() && file["field_key"].is_string(), "{file}");
            let file_key = file["key"].as_str().unwrap();
            let link = call(&sim, Method::GET, &format!("deals/{deal}/file/{file_key}"), None).await;
            let url = link.body["data"]["url"].as_str().unwrap().to_owned();
            assert_eq!(url, format!("{}/files/{deal}/{file_key}", sim.base_url.trim_end_matches("/api/v2")));
            let response = reqwest::get(&url).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
            let bytes = response.bytes().await.unwrap();
            assert!(bytes.len() > 1_000, "{} bytes", bytes.len());
            if content_type == "application/pdf" {
                assert!(bytes.starts_with(b"%PDF-"));
            }
            assert_eq!(reqwest::get(&url).await.unwrap().bytes().await.unwrap(), bytes, "the same bytes every time");
            downloaded += 1;
        }
    }
    assert!(downloaded > 0, "some of the newest deals have attachments");
    assert_eq!(call(&sim, Method::GET, &format!("deals/{}/file/dfil_nope", deals[0]), None).await.status, StatusCode::NOT_FOUND);
    assert_eq!(call(&sim, Method::GET, "deals/deal_nope/files", None).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        reqwest::get(format!("{}/files/deal_nope/x", sim.base_url.trim_end_matches("/api/v2"))).await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn apply_then_drop_applies_the_next_write_once_and_the_client_sees_no_answer() {
    let sim = serve(300, |_| {}).await;
    let s = &sim.simulator;
    let (partner_key, _) = live_partner(s);
    s.inject(Fault::ApplyThenDrop, 1);
    assert_eq!(call(&sim, Method::GET, "deals", None).await.status, StatusCode::OK, "reads pass and leave the fault queued");

    let d = SimulatorConfig::default();
    let body = json!({"customer_key": "dropped-1", "email": "d@example.test", "partner_key": partner_key});
    let sent = reqwest::Client::new()
        .post(format!("{}/customers", sim.base_url))
        .basic_auth(&d.public_key, Some(&d.private_key))
        .json(&body)
        .send()
        .await;
    assert!(sent.is_err(), "a transport error, not an answer: {sent:?}");
    let created = s.records(Resource::Customer).into_iter().filter(|c| c["customer_key"] == "dropped-1").count();
    assert_eq!(created, 1, "the write was applied");
    assert_eq!(call(&sim, Method::GET, "customers/dropped-1", None).await.status, StatusCode::OK);

    let again = call(&sim, Method::POST, "customers", Some(body)).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST, "the fault is used up; a resend meets the duplicate");
    let posts: Vec<u16> = s.writes().iter().map(|w| w.status).collect();
    assert_eq!(posts, [0, 400]);
}

#[tokio::test]
async fn the_write_log_holds_every_write_in_order_with_its_answered_status() {
    let sim = serve(300, |_| {}).await;
    let s = &sim.simulator;
    let deal = s.keys(Resource::Deal)[0].clone();
    call(&sim, Method::GET, "deals", None).await;
    call(&sim, Method::PATCH, &format!("deals/{deal}"), Some(json!({"amount": 1}))).await;
    call(&sim, Method::PATCH, "deals/deal_nope", Some(json!({"amount": 1}))).await;
    s.inject(Fault::ServerError(503), 1);
    call(&sim, Method::DELETE, &format!("deals/{deal}"), None).await;
    s.inject(Fault::DropConnection, 1);
    let d = SimulatorConfig::default();
    let dropped = reqwest::Client::new()
        .post(format!("{}/rewards", sim.base_url))
        .basic_auth(&d.public_key, Some(&d.private_key))
        .json(&json!({"amount": 5}))
        .send()
        .await;
    assert!(dropped.is_err());

    // After the one GET, each write is the next request received.
    let w = |method: &str, path: String, status: u16, received_before: u64| WriteRequest {
        method: method.into(),
        path,
        status,
        received_before,
    };
    assert_eq!(
        s.writes(),
        [
            w("PATCH", format!("/api/v2/deals/{deal}"), 200, 1),
            w("PATCH", "/api/v2/deals/deal_nope".into(), 404, 2),
            w("DELETE", format!("/api/v2/deals/{deal}"), 503, 3),
            w("POST", "/api/v2/rewards".into(), 0, 4),
        ]
    );
    assert_eq!(s.record(Resource::Deal, &deal).unwrap()["archived"], json!(false), "a 503 applied nothing");
    assert_eq!(s.records(Resource::Reward).iter().filter(|r| r["amount"] == 5).count(), 0, "a plain drop applied nothing");
}
