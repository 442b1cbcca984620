//! `POST` creates over real HTTP: the record comes back in the API's envelope, shows up in
//! lists and single GETs, and bodies that break the documented schema are a 400 with the
//! real API's wording.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::{call, key, live_partner, path_id, serve, HISTORY_END};
use crate::{Clock, Resource};

const NOW: i64 = HISTORY_END + 60_000;

#[tokio::test]
async fn each_kind_is_created_from_its_body_and_is_then_listed_and_found() {
    let sim = serve(300, |_| {}).await;
    let s = &sim.simulator;
    s.set_clock(Clock::Frozen(NOW));
    let (partner_key, partnership) = live_partner(s);
    let group_key = s.keys(Resource::Group)[0].clone();
    let cases = [
        (
            Resource::Partnership,
            "part_",
            json!({"email": "new.partner@example.test", "first_name": "Nia", "last_name": "Osei", "tags": ["vip", "vip"], "group_key": group_key}),
        ),
        (
            Resource::Customer,
            "cust_",
            json!({"customer_key": "acct-new-1", "email": "c1@example.test", "partner_key": partner_key, "name": "C One", "meta": {"plan": "pro"}}),
        ),
        (
            Resource::Deal,
            "deal_",
            json!({"partner_key": partner_key, "external_key": "006-new", "amount": 120_000, "stage": "Qualified", "close_date": "2026-09-30"}),
        ),
        (
            Resource::Lead,
            "lead_",
            json!({"external_key": "lead@example.test", "partner_key": partner_key, "status": "open", "meta": {"first_name": "L", "last_name": "D"}}),
        ),
        (
            Resource::Transaction,
            "txn-",
            json!({"key": "txn-new-1", "customer_external_key": "acct-new-1", "amount": 9_900, "currency": "eur"}),
        ),
        (
            Resource::Action,
            "act_",
            json!({"target_type": "partnership", "target_key": partner_key, "type": "webinar_attended", "value": 2}),
        ),
        (
            Resource::Reward,
            "rwd_",
            json!({"amount": 500, "description": "Launch bonus", "target": {"type": "customer", "key": "acct-new-1"}}),
        ),
    ];
    for (kind, prefix, body) in cases {
        let answer = call(&sim, Method::POST, kind.path(), Some(body.clone())).await;
        assert_eq!((answer.status, answer.body["status"].clone()), (StatusCode::OK, json!(200)), "{kind}: {}", answer.body);
        assert!(answer.body["message"].is_string());
        let record = &answer.body["data"];
        let k = key(record);
        assert!(k.starts_with(prefix), "{kind}: {k}");
        assert_eq!(record["archived"], json!(false), "{kind}");
        assert_eq!((record["created_at"].as_i64(), record["updated_at"].as_i64()), (Some(NOW), Some(NOW)), "{kind}");
        assert_eq!(s.record(kind, &k).as_ref(), Some(record), "{kind}: stored as answered");
        assert_eq!(s.keys(kind)[0], k, "{kind}: the newest record");
        let listed = call(&sim, Method::GET, &format!("{}?limit=1", kind.path()), None).await;
        assert_eq!(listed.body["data"]["items"][0], *record, "{kind}: first in the list");
        assert_eq!(
            call(&sim, Method::GET, &format!("{}/{}", kind.path(), path_id(kind, record)), None).await.body["data"],
            *record,
            "{kind}"
        );
    }
    let customer = s.records(Resource::Customer)[0].clone();
    assert_eq!((customer["customer_key"].clone(), customer["partnership_key"].clone()), (json!("acct-new-1"), partnership["key"].clone()));
    assert_eq!((customer["meta"].clone(), customer["mdata"].clone()), (json!({}), json!({"plan": "pro"})), "meta reads back in mdata");
    let txn = s.record(Resource::Transaction, "txn-new-1").unwrap();
    assert_eq!((txn["customer_key"].clone(), txn["currency"].clone()), (customer["key"].clone(), json!("EUR")));
    let new_partner = s.records(Resource::Partnership)[0].clone();
    assert_eq!((new_partner["tags"].clone(), new_partner["group"]["key"].clone()), (json!(["vip"]), json!(group_key)));
    assert!(new_partner["partner_key"].as_str().unwrap().starts_with("niaosei"), "generated from the name");
    let deal = s.records(Resource::Deal)[0].clone();
    assert_eq!(
        (deal["stage"].clone(), deal["account_name"].clone(), deal["source"].clone()),
        (json!("Qualified"), json!(null), json!("partner"))
    );
    let reward = s.records(Resource::Reward)[0].clone();
    assert_eq!(reward["customer"]["external_key"], json!("acct-new-1"));
}

#[tokio::test]
async fn a_body_breaking_the_schema_is_a_400_with_the_validator_message() {
    let sim = serve(300, |_| {}).await;
    let (partner_key, _) = live_partner(&sim.simulator);
    let customer = sim.simulator.records(Resource::Customer).into_iter().find(|c| c["customer_key"].is_string()).unwrap();
    let taken = customer["customer_key"].as_str().unwrap();
    let cases: Vec<(&str, Value, String)> = vec![
        ("customers", json!({"email": "a@b.test", "partner_key": partner_key}), "'customer_key' is a required property".into()),
        (
            "customers",
            json!({"customer_key": "x", "email": "a@b.test", "partner_key": "nobody"}),
            "No partnership found with partner_key 'nobody' in your program".into(),
        ),
        (
            "customers",
            json!({"customer_key": taken, "email": "a@b.test", "partner_key": partner_key}),
            format!("A customer with customer_key '{taken}' already exists"),
        ),
        (
            "customers",
            json!({"customer_key": "x", "email": "not-an-email", "partner_key": partner_key}),
            "'not-an-email' is not a 'email'".into(),
        ),
        ("deals", json!({"amount": 5}), "'partner_key' is a required property".into()),
        ("deals", json!({"partner_key": partner_key, "stage": "Won"}), "'Won' is not one of ['Prospecting'".into()),
        ("deals", json!({"partner_key": partner_key, "amount": "12"}), "'12' is not of type 'integer', 'null'".into()),
        (
            "leads",
            json!({"external_key": "l@x.test", "partner_key": partner_key, "status": "won"}),
            "'won' is not one of ['open', 'closed', 'dead', 'closed won', 'closed lost']".into(),
        ),
        ("leads", json!({"partner_key": partner_key, "status": "open"}), "'external_key' is a required property".into()),
        ("partnerships", json!({"first_name": "No"}), "'email' is a required property".into()),
        (
            "partnerships",
            json!({"email": "p@x.test", "partner_key": live_partner(&sim.simulator).0}),
            format!("A partnership with partner_key '{partner_key}' already exists"),
        ),
        ("transactions", json!({"currency": "USD", "customer_key": customer["key"]}), "'amount' is a required property".into()),
        ("transactions", json!({"amount": 1, "currency": "US", "customer_key": customer["key"]}), "'US' does not match".into()),
        (
            "transactions",
            json!({"amount": 1, "currency": "USD"}),
            "Exactly one of 'customer_key', 'customer_external_key' or 'customer_email'".into(),
        ),
        (
            "transactions",
            json!({"amount": 1, "currency": "USD", "customer_key": taken, "customer_email": "a@b.test"}),
            "Exactly one of".into(),
        ),
        (
            "transactions",
            json!({"amount": 1, "currency": "USD", "customer_email": "ghost@nowhere.test"}),
            "No customer found with customer_email 'ghost@nowhere.test'".into(),
        ),
        ("actions", json!({"customer_key": "x", "type": "signup", "value": 1}), "'target_type' is a required property".into()),
        (
            "actions",
            json!({"target_type": "partnership", "target_key": partner_key, "type": "signup", "value": 0}),
            "0 is less than the minimum of 1".into(),
        ),
        (
            "actions",
            json!({"target_type": "team", "target_key": partner_key, "type": "signup", "value": 1}),
            "'team' is not one of ['partnership', 'customer']".into(),
        ),
        ("rewards", json!({"description": "no amount"}), "'amount' is a required property".into()),
    ];
    for (path, body, expected) in cases {
        let answer = call(&sim, Method::POST, path, Some(body.clone())).await;
        assert_eq!((answer.status, answer.body["status"].clone()), (StatusCode::BAD_REQUEST, json!(400)), "{path} {body}: {}", answer.body);
        let message = answer.body["message"].as_str().unwrap();
        assert!(message.contains(&expected), "{path} {body}: {message}");
        assert!(answer.body.get("data").is_none());
    }
    let keys_before = sim.simulator.keys(Resource::Transaction).len();
    let dup = json!({"key": "txn-dup-1", "amount": 1, "currency": "USD", "customer_key": customer["key"]});
    assert_eq!(call(&sim, Method::POST, "transactions", Some(dup.clone())).await.status, StatusCode::OK);
    let again = call(&sim, Method::POST, "transactions", Some(dup)).await;
    assert_eq!(again.body["message"], json!("A transaction with key 'txn-dup-1' already exists"));
    assert_eq!(sim.simulator.keys(Resource::Transaction).len(), keys_before + 1, "only the first was created");
}

#[tokio::test]
async fn kinds_without_a_create_endpoint_and_unparsable_bodies_are_refused() {
    let sim = serve(100, |_| {}).await;
    assert_eq!(call(&sim, Method::POST, "groups", Some(json!({"name": "x"}))).await.status, StatusCode::METHOD_NOT_ALLOWED);
    let d = crate::SimulatorConfig::default();
    let garbled = reqwest::Client::new()
        .post(format!("{}/customers", sim.base_url))
        .basic_auth(&d.public_key, Some(&d.private_key))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(garbled.status(), StatusCode::BAD_REQUEST);
    let anonymous = reqwest::Client::new().post(format!("{}/customers", sim.base_url)).json(&json!({})).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}
