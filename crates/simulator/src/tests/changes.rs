//! `PATCH`, `DELETE`, tags and conversions over real HTTP: the change lands in the record
//! with a new `updated_at`, so the mirror's `min_updated` polls find it.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::{call, key, live_partner, path_id, serve, HISTORY_END};
use crate::{Clock, Resource};

const NOW: i64 = HISTORY_END + 120_000;

/// Whether a `min_updated = NOW` poll lists the record.
async fn polled(sim: &crate::RunningSimulator, kind: Resource, k: &str) -> bool {
    let page = call(sim, Method::GET, &format!("{}?limit=250&min_updated={NOW}", kind.path()), None).await;
    page.body["data"]["items"].as_array().unwrap().iter().any(|r| key(r) == k)
}

#[tokio::test]
async fn a_patch_merges_the_documented_fields_and_bumps_updated_at() {
    let sim = serve(300, |_| {}).await;
    let s = &sim.simulator;
    s.set_clock(Clock::Frozen(NOW));
    let deal = s.records(Resource::Deal)[2].clone();
    let lead = s.records(Resource::Lead)[2].clone();
    let customer = s.records(Resource::Customer).into_iter().find(|c| c["customer_key"].is_string()).unwrap();
    let (_, partnership) = live_partner(s);
    let group = s.records(Resource::Group).into_iter().find(|g| g["key"] != partnership["group"]["key"]).unwrap();
    let tier = s.records(Resource::Partnership).iter().map(|p| p["tier"].clone()).find(|t| *t != partnership["tier"]).unwrap();

    let cases = [
        (Resource::Deal, key(&deal), json!({"stage": "Closed Won", "amount": 777_000}), json!({"stage": "Closed Won", "amount": 777_000})),
        (Resource::Deal, deal["external_key"].as_str().unwrap().to_owned(), json!({"lost_reason": null}), json!({"lost_reason": null})),
        (Resource::Lead, key(&lead), json!({"status": "closed won", "approved": true}), json!({"status": "closed won", "approved": true})),
        (
            Resource::Customer,
            customer["customer_key"].as_str().unwrap().to_owned(),
            json!({"name": "Renamed", "email": "renamed@example.test"}),
            json!({"name": "Renamed", "email": "renamed@example.test"}),
        ),
        (
            Resource::Partnership,
            partnership["partner_key"].as_str().unwrap().to_owned(),
            json!({"group_key": group["key"], "tier_key": tier["key"], "manager_name": "Mo Reyes"}),
            json!({"group": {"key": group["key"], "name": group["name"], "slug": group["slug"]}, "tier": tier}),
        ),
    ];
    for (kind, id, body, expected) in cases {
        let answer = call(&sim, Method::PATCH, &format!("{}/{id}", kind.path()), Some(body)).await;
        assert_eq!(answer.status, StatusCode::OK, "{kind} {id}: {}", answer.body);
        let record = &answer.body["data"];
        for (field, value) in expected.as_object().unwrap() {
            assert_eq!(record[field], *value, "{kind}.{field}");
        }
        assert_eq!(record["updated_at"], json!(NOW));
        assert_eq!(s.record(kind, &key(record)).as_ref(), Some(record), "{kind}: stored as answered");
        assert!(polled(&sim, kind, &key(record)).await, "{kind}: a min_updated poll sees the change");
    }
    let p = s.record(Resource::Partnership, &key(&partnership)).unwrap();
    assert_eq!(p["manager"]["name"], json!("Mo Reyes"));
    assert_eq!(s.record(Resource::Deal, &key(&deal)).unwrap()["created_at"], deal["created_at"], "created_at never moves");

    let unknown = call(&sim, Method::PATCH, "deals/deal_nope", Some(json!({"stage": "Qualified"}))).await;
    assert_eq!((unknown.status, unknown.body["message"].clone()), (StatusCode::NOT_FOUND, json!("No deal found with key 'deal_nope'")));
    let invalid = call(&sim, Method::PATCH, &format!("deals/{}", key(&deal)), Some(json!({"stage": "Won"}))).await;
    assert_eq!(invalid.status, StatusCode::BAD_REQUEST);
    assert!(invalid.body["message"].as_str().unwrap().starts_with("'Won' is not one of"));
    assert_eq!(s.record(Resource::Deal, &key(&deal)).unwrap()["stage"], json!("Closed Won"), "a refused patch changes nothing");
}

#[tokio::test]
async fn delete_archives_and_an_unlisted_archive_is_still_found_by_key() {
    let sim = serve(300, |c| c.archived_listed = false).await;
    let s = &sim.simulator;
    s.set_clock(Clock::Frozen(NOW));
    for kind in [Resource::Lead, Resource::Deal, Resource::Customer, Resource::Partnership] {
        let k = s.keys(kind)[0].clone();
        let id = path_id(kind, &s.record(kind, &k).unwrap());
        let answer = call(&sim, Method::DELETE, &format!("{}/{id}", kind.path()), None).await;
        assert_eq!((answer.status, answer.body["status"].clone()), (StatusCode::OK, json!(200)), "{kind}");
        assert!(answer.body["message"].is_string() && answer.body.get("data").is_none(), "{kind}: {}", answer.body);
        let record = call(&sim, Method::GET, &format!("{}/{id}", kind.path()), None).await.body["data"].clone();
        assert_eq!((record["archived"].clone(), record["updated_at"].clone()), (json!(true), json!(NOW)), "{kind}");
        assert!(!polled(&sim, kind, &k).await, "{kind}: gone from lists");
        let again = call(&sim, Method::DELETE, &format!("{}/{id}", kind.path()), None).await;
        assert_eq!(again.status, StatusCode::OK, "{kind}: deleting again is harmless");
    }
    assert_eq!(call(&sim, Method::DELETE, "customers/nobody", None).await.status, StatusCode::NOT_FOUND);
    assert_eq!(call(&sim, Method::DELETE, "groups/grup_x", None).await.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn tags_are_added_and_removed_and_bad_lists_are_refused() {
    let sim = serve(300, |_| {}).await;
    sim.simulator.set_clock(Clock::Frozen(NOW));
    let (_, partnership) = live_partner(&sim.simulator);
    let path = format!("partnerships/{}/tags", key(&partnership));
    let added = call(&sim, Method::PATCH, &path, Some(json!({"add": ["wb-tag", "vip"]}))).await;
    assert_eq!(added.status, StatusCode::OK, "{}", added.body);
    let tags = |v: &Value| v["data"]["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_owned()).collect::<Vec<_>>();
    assert!(tags(&added.body).ends_with(&["wb-tag".to_owned(), "vip".to_owned()]), "{:?}", tags(&added.body));
    assert_eq!(added.body["data"]["updated_at"], json!(NOW));
    let removed = call(&sim, Method::PATCH, &path, Some(json!({"remove": ["vip"]}))).await;
    assert!(tags(&removed.body).contains(&"wb-tag".to_owned()) && !tags(&removed.body).contains(&"vip".to_owned()));
    let bad = call(&sim, Method::PATCH, &path, Some(json!({"add": "vip"}))).await;
    assert_eq!((bad.status, bad.body["message"].clone()), (StatusCode::BAD_REQUEST, json!("'vip' is not of type 'array'")));
    assert_eq!(call(&sim, Method::PATCH, "partnerships/part_nope/tags", Some(json!({}))).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn converting_a_deal_or_a_lead_creates_a_customer_of_its_partner() {
    let sim = serve(300, |_| {}).await;
    let s = &sim.simulator;
    s.set_clock(Clock::Frozen(NOW));
    let deal = s.records(Resource::Deal)[1].clone();
    let converted = call(
        &sim,
        Method::POST,
        &format!("deals/{}/convert", key(&deal)),
        Some(json!({"email": "buyer@example.test", "customer_key": "conv-1"})),
    )
    .await;
    assert_eq!(converted.status, StatusCode::OK, "{}", converted.body);
    let customer = converted.body["data"].clone();
    assert_eq!((customer["customer_key"].clone(), customer["email"].clone()), (json!("conv-1"), json!("buyer@example.test")));
    assert_eq!((customer["partner_key"].clone(), customer["created_at"].clone()), (deal["partner_key"].clone(), json!(NOW)));
    assert_eq!(s.record(Resource::Customer, &key(&customer)).as_ref(), Some(&customer));
    let deal_now = s.record(Resource::Deal, &key(&deal)).unwrap();
    assert_eq!((deal_now["customer_key"].clone(), deal_now["updated_at"].clone()), (customer["key"].clone(), json!(NOW)));

    let lead = s.records(Resource::Lead)[1].clone();
    let by_external = lead["external_key"].as_str().unwrap();
    let from_lead = call(&sim, Method::POST, &format!("leads/{by_external}/convert"), Some(json!({}))).await;
    assert_eq!(from_lead.status, StatusCode::OK, "{}", from_lead.body);
    let c = &from_lead.body["data"];
    assert_eq!(
        (c["customer_key"].as_str(), c["email"].as_str()),
        (Some(by_external), Some(by_external)),
        "both default to the external_key"
    );
    assert_eq!(c["partner_key"], lead["partner_key"]);

    let no_email = call(&sim, Method::POST, &format!("deals/{}/convert", key(&deal)), Some(json!({"customer_key": "conv-2"}))).await;
    assert_eq!((no_email.status, no_email.body["message"].clone()), (StatusCode::BAD_REQUEST, json!("'email' is a required property")));
    let twice = call(&sim, Method::POST, &format!("leads/{}/convert", key(&lead)), Some(json!({}))).await;
    assert_eq!(twice.status, StatusCode::BAD_REQUEST, "the customer_key is taken now: {}", twice.body);
    assert_eq!(call(&sim, Method::POST, "deals/deal_nope/convert", Some(json!({"email": "a@b.test"}))).await.status, StatusCode::NOT_FOUND);
}
