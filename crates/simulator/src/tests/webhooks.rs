//! Webhooks over real HTTP: subscriptions made with `/v2/webhooks`, and what a receiver
//! gets when the account changes, in the current and the legacy style.

use reqwest::{Method, StatusCode};
use serde_json::json;

use super::{
    call, key, live_partner,
    receiver::{subscribe, Receiver},
    serve, HISTORY_END,
};
use crate::{build::DEAL_STAGES, Clock, Mutation, Resource, TrainingKind, WriteRequest};

#[tokio::test]
async fn subscriptions_are_created_listed_found_changed_and_archived_and_logged_as_writes() {
    let sim = serve(100, |_| {}).await;
    let s = &sim.simulator;
    s.set_clock(Clock::Frozen(HISTORY_END + 1));
    let first = call(
        &sim,
        Method::POST,
        "webhooks",
        Some(json!({"target": "http://127.0.0.1:9/a", "events": ["deal.updated", "deal.updated", "*"]})),
    )
    .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let first = first.body["data"].clone();
    let first_key = key(&first);
    assert!(first_key.starts_with("whk_"), "{first}");
    assert_eq!(first["target"], "http://127.0.0.1:9/a");
    assert_eq!(first["events"], json!(["deal.updated", "*"]), "each name once");
    assert_eq!((first["created_at"].as_i64(), first["updated_at"].as_i64()), (Some(HISTORY_END + 1), Some(HISTORY_END + 1)));
    s.set_clock(Clock::Frozen(HISTORY_END + 2));
    let second =
        call(&sim, Method::POST, "webhooks", Some(json!({"url": "https://example.test/b", "events": ["partnership.created"]}))).await;
    assert_eq!(second.body["data"]["target"], "https://example.test/b", "`url` stands for `target`");
    let second_key = key(&second.body["data"]);

    let listed = call(&sim, Method::GET, "webhooks", None).await;
    assert_eq!(listed.status, StatusCode::OK);
    let keys: Vec<String> = listed.body["data"]["items"].as_array().unwrap().iter().map(key).collect();
    assert_eq!(keys, [second_key.clone(), first_key.clone()], "newest first");
    assert_eq!(listed.body["data"]["has_more"], false);
    let one = call(&sim, Method::GET, &format!("webhooks/{first_key}"), None).await;
    assert_eq!(one.body["data"], first);

    for (body, message) in [
        (json!({"events": ["deal.updated"]}), "'target' is a required property"),
        (json!({"target": "ftp://example.test", "events": ["x"]}), "'ftp://example.test' is not a 'uri'"),
        (json!({"target": 5, "events": ["x"]}), "5 is not of type 'string'"),
        (json!({"target": "http://example.test"}), "'events' is a required property"),
        (json!({"target": "http://example.test", "events": []}), "[] is too short"),
        (json!({"target": "http://example.test", "events": "deal.updated"}), "'deal.updated' is not of type 'array'"),
        (json!({"target": "http://example.test", "events": ["a", 2]}), "2 is not of type 'string'"),
    ] {
        let refused = call(&sim, Method::POST, "webhooks", Some(body.clone())).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(refused.body, json!({"message": message, "status": 400}), "{body}");
    }

    let changed = call(&sim, Method::PATCH, &format!("webhooks/{first_key}"), Some(json!({"events": ["lead.created"]}))).await;
    assert_eq!(changed.body["data"]["events"], json!(["lead.created"]));
    assert_eq!(changed.body["data"]["target"], first["target"], "what the body leaves out stays");
    let archived = call(&sim, Method::DELETE, &format!("webhooks/{first_key}"), None).await;
    assert_eq!(archived.body, json!({"message": "The webhook was archived", "status": 200}));
    let listed = call(&sim, Method::GET, "webhooks", None).await;
    assert_eq!(listed.body["data"]["items"].as_array().unwrap().iter().map(key).collect::<Vec<_>>(), [second_key]);
    assert_eq!(call(&sim, Method::GET, &format!("webhooks/{first_key}"), None).await.body["data"]["archived"], true);
    assert_eq!(call(&sim, Method::DELETE, "webhooks/whk_nope", None).await.status, StatusCode::NOT_FOUND);
    assert_eq!(call(&sim, Method::GET, "webhooks/whk_nope", None).await.status, StatusCode::NOT_FOUND);
    let all = s.webhook_subscriptions();
    assert_eq!(
        all.iter().map(|w| (key(w), w["archived"].clone())).collect::<Vec<_>>(),
        [(key(&all[0]), json!(false)), (first_key, json!(true))]
    );

    let logged: Vec<(String, u16)> = s.writes().into_iter().map(|WriteRequest { method, status, .. }| (method, status)).collect();
    let mut expected = vec![("POST".to_owned(), 200), ("POST".to_owned(), 200)];
    expected.extend(std::iter::repeat_n(("POST".to_owned(), 400), 7));
    expected.extend([("PATCH".to_owned(), 200), ("DELETE".to_owned(), 200), ("DELETE".to_owned(), 404)]);
    assert_eq!(logged, expected);
    assert!(s.writes().iter().all(|w| w.path.starts_with("/api/v2/webhooks")));

    let anonymous = reqwest::Client::new().get(format!("{}/webhooks", sim.base_url)).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED, "the same auth as every route");
}

#[tokio::test]
async fn a_change_reaches_the_subscribers_of_its_event_names_with_the_record_as_the_api_serves_it() {
    let sim = serve(300, |_| {}).await;
    let s = &sim.simulator;
    let (deals, partners) = (Receiver::start(StatusCode::OK).await, Receiver::start(StatusCode::OK).await);
    subscribe(&sim, &deals.url, &["deal.updated", "deal.stage_updated"]).await;
    subscribe(&sim, &partners.url, &["partnership.created"]).await;
    let deal = s.keys(Resource::Deal)[0].clone();
    s.apply(Mutation::DealStage { key: deal.clone() }).unwrap();

    let got = deals.wait_for(2).await;
    let record = s.record(Resource::Deal, &deal).unwrap();
    assert_eq!(
        got.iter().map(|r| r.body.clone()).collect::<Vec<_>>(),
        [json!({"event": "deal.updated", "data": record}), json!({"event": "deal.stage_updated", "data": record})]
    );
    assert!(got.iter().all(|r| r.content_type == "application/json"));

    // Deliveries go out in order, so had the deal's events reached the partnerships'
    // subscriber they would come before this.
    let created = s.apply(Mutation::Create(Resource::Partnership)).unwrap();
    let got = partners.wait_for(1).await;
    assert_eq!(got[0].body, json!({"event": "partnership.created", "data": s.record(Resource::Partnership, &created.key).unwrap()}));
    assert_eq!(partners.got().len(), 1);
    assert_eq!(deals.got().len(), 2);

    let sent = s.webhooks_sent();
    let summary: Vec<(&str, &str, u16)> = sent.iter().map(|w| (w.target.as_str(), w.event.as_str(), w.status)).collect();
    assert_eq!(
        summary,
        [
            (deals.url.as_str(), "deal.updated", 200),
            (deals.url.as_str(), "deal.stage_updated", 200),
            (partners.url.as_str(), "partnership.created", 200)
        ]
    );
    assert_eq!(sent[2].body, got[0].body, "the body as sent");
    assert_eq!(s.webhook_stats().sent, 3);
}

#[tokio::test]
async fn legacy_payloads_are_flat_with_underscored_names_and_partnerships_look_like_the_legacy_sample() {
    let sim = serve(300, |c| c.webhooks.legacy_payloads = true).await;
    let s = &sim.simulator;
    let rx = Receiver::start(StatusCode::OK).await;
    // A legacy spelling subscribes too.
    subscribe(&sim, &rx.url, &["partnership.updated", "deal_stage_updated"]).await;
    let (_, partnership) = live_partner(s);
    let partnership_key = key(&partnership);
    s.apply(Mutation::Touch { kind: Resource::Partnership, key: partnership_key.clone() }).unwrap();
    let deal = s.keys(Resource::Deal)[0].clone();
    s.apply(Mutation::DealStage { key: deal.clone() }).unwrap();

    let got = rx.wait_for(2).await;
    let mut expected = s.record(Resource::Partnership, &partnership_key).unwrap();
    let fields = expected.as_object_mut().unwrap();
    fields.remove("key");
    fields.insert("archived".into(), "false".into());
    fields.insert("event".into(), "partnership_updated".into());
    let id = got[0].body["id"].as_u64().expect("an integer id instead of the key");
    fields.insert("id".into(), id.into());
    assert_eq!(got[0].body, expected);

    let mut expected = s.record(Resource::Deal, &deal).unwrap();
    expected["event"] = "deal_stage_updated".into();
    assert_eq!(got[1].body, expected, "flat, with the key; `deal.updated` was not asked for");
    assert_eq!(s.webhooks_sent().iter().map(|w| w.event.clone()).collect::<Vec<_>>(), ["partnership_updated", "deal_stage_updated"]);
}

#[tokio::test]
async fn writes_over_the_api_send_webhooks_for_creates_updates_archives_tags_and_conversions() {
    let sim = serve(300, |_| {}).await;
    let s = &sim.simulator;
    let rx = Receiver::start(StatusCode::OK).await;
    subscribe(&sim, &rx.url, &["*"]).await;
    let (partner_key, partnership) = live_partner(s);
    let customer = call(
        &sim,
        Method::POST,
        "customers",
        Some(json!({"customer_key": "hook-1", "email": "h@example.test", "partner_key": partner_key})),
    )
    .await;
    let deals = s.records(Resource::Deal);
    let deal = deals.iter().find(|d| d["archived"] == false && d["partner_key"].is_string()).unwrap();
    let stage = DEAL_STAGES.iter().find(|st| deal["stage"] != **st).unwrap();
    call(&sim, Method::PATCH, &format!("deals/{}", key(deal)), Some(json!({"stage": stage}))).await;
    let lead = s.records(Resource::Lead).into_iter().find(|l| l["archived"] == false).unwrap();
    call(&sim, Method::DELETE, &format!("leads/{}", key(&lead)), None).await;
    let again = call(&sim, Method::DELETE, &format!("leads/{}", key(&lead)), None).await;
    assert_eq!(again.status, StatusCode::OK, "archiving twice changes nothing, so it sends nothing");
    call(&sim, Method::PATCH, &format!("partnerships/{}/tags", key(&partnership)), Some(json!({"add": ["brand-new-tag"]}))).await;
    let converted = call(&sim, Method::POST, &format!("deals/{}/convert", key(deal)), Some(json!({"email": "conv@example.test"}))).await;
    assert_eq!(converted.status, StatusCode::OK, "{}", converted.body);

    let got = rx.wait_for(9).await;
    let seen: Vec<(&str, &str)> = got.iter().map(|r| (r.event(), r.data_key())).collect();
    let customer_key = key(&customer.body["data"]);
    let converted_key = key(&converted.body["data"]);
    assert_eq!(
        seen,
        [
            ("customer.created", customer_key.as_str()),
            ("deal.updated", key(deal).as_str()),
            ("deal.stage_updated", key(deal).as_str()),
            ("lead.updated", key(&lead).as_str()),
            ("lead.deleted", key(&lead).as_str()),
            ("partnership.updated", key(&partnership).as_str()),
            ("partnership.tags_updated", key(&partnership).as_str()),
            ("customer.created", converted_key.as_str()),
            ("deal.updated", key(deal).as_str()),
        ]
    );
    assert_eq!(got[8].body["data"]["customer_key"], json!(converted_key), "the deal as it is after the conversion");
}

#[tokio::test]
async fn the_random_mutation_generator_sends_webhooks_too() {
    let sim = serve(300, |_| {}).await;
    let s = &sim.simulator;
    let rx = Receiver::start(StatusCode::OK).await;
    subscribe(&sim, &rx.url, &["*"]).await;
    s.configure(|c| c.mutations_per_sec = 200.0);
    let got = rx.wait_for(20).await;
    s.configure(|c| c.mutations_per_sec = 0.0);
    let singular: Vec<&str> = Resource::ALL.iter().map(|k| k.singular()).collect();
    for r in got {
        let (object, verb) = r.event().split_once('.').unwrap_or_else(|| panic!("a dotted name: {}", r.body));
        assert!(singular.contains(&object) && !verb.is_empty(), "{}", r.body);
        assert!(r.body["data"]["key"].is_string(), "{}", r.body);
    }
}

#[tokio::test]
async fn archiving_a_subscription_stops_its_deliveries() {
    let sim = serve(300, |_| {}).await;
    let s = &sim.simulator;
    let (archived, live) = (Receiver::start(StatusCode::OK).await, Receiver::start(StatusCode::OK).await);
    let gone = subscribe(&sim, &archived.url, &["customer.updated"]).await;
    subscribe(&sim, &live.url, &["customer.updated"]).await;
    let customers = s.keys(Resource::Customer);
    s.apply(Mutation::Touch { kind: Resource::Customer, key: customers[0].clone() }).unwrap();
    archived.wait_for(1).await;
    live.wait_for(1).await;

    assert_eq!(call(&sim, Method::DELETE, &format!("webhooks/{gone}"), None).await.status, StatusCode::OK);
    s.apply(Mutation::Touch { kind: Resource::Customer, key: customers[1].clone() }).unwrap();
    s.apply(Mutation::Touch { kind: Resource::Customer, key: customers[2].clone() }).unwrap();
    live.wait_for(3).await;
    assert_eq!(archived.got().len(), 1, "nothing after the archive (deliveries go out in order)");
}

#[tokio::test]
async fn a_failing_or_unreachable_target_is_logged_with_its_status_and_never_retried() {
    let sim = serve(300, |_| {}).await;
    let s = &sim.simulator;
    let failing = Receiver::start(StatusCode::INTERNAL_SERVER_ERROR).await;
    let ok = Receiver::start(StatusCode::OK).await;
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/hook", listener.local_addr().unwrap())
    };
    for target in [&failing.url, &closed, &ok.url] {
        subscribe(&sim, target, &["customer.updated"]).await;
    }
    let customers = s.keys(Resource::Customer);
    s.apply(Mutation::Touch { kind: Resource::Customer, key: customers[0].clone() }).unwrap();
    s.apply(Mutation::Touch { kind: Resource::Customer, key: customers[1].clone() }).unwrap();
    // Once the second change reached `ok`, every delivery of the first is over.
    ok.wait_until("the second change", |got| got.iter().any(|r| r.data_key() == customers[1])).await;

    let first: Vec<(String, u16)> =
        s.webhooks_sent().into_iter().filter(|w| w.body["data"]["key"] == customers[0].as_str()).map(|w| (w.target, w.status)).collect();
    let mut first_sorted = first.clone();
    first_sorted.sort();
    let mut expected = vec![(failing.url.clone(), 500), (closed, 0), (ok.url.clone(), 200)];
    expected.sort();
    assert_eq!(first_sorted, expected, "one attempt each: {first:?}");
    assert_eq!(failing.got().iter().filter(|r| r.data_key() == customers[0]).count(), 1);
}

#[tokio::test]
async fn training_completions_arrive_with_the_documented_shape_in_both_styles() {
    let sim = serve(300, |_| {}).await;
    let s = &sim.simulator;
    let rx = Receiver::start(StatusCode::OK).await;
    subscribe(&sim, &rx.url, &["training.course_completed"]).await;
    let course = s.random_training_completion(TrainingKind::Course).unwrap();
    let partnership = s.record(Resource::Partnership, course.partnership_key.as_deref().unwrap()).expect("an existing partnership");
    assert_eq!(course.partner_key.as_deref(), partnership["partner_key"].as_str());
    assert_eq!(course.email.as_deref(), partnership["email"].as_str());
    assert!(course.company_key.as_deref().is_some_and(|k| k.starts_with("comp_")), "{course:?}");
    s.complete_training(course.clone());
    s.complete_training(s.random_training_completion(TrainingKind::LearningPath).unwrap());
    s.configure(|c| c.webhooks.legacy_payloads = true);
    let legacy = s.random_training_completion(TrainingKind::Course).unwrap();
    s.complete_training(legacy.clone());

    let got = rx.wait_for(2).await;
    let data = |c: &crate::TrainingCompletion| {
        json!({
            "id": c.id, "name": c.name, "partnership": {"key": c.partnership_key, "partner_key": c.partner_key, "email": c.email},
            "company_key": c.company_key, "completed_at": c.completed_at_ms,
        })
    };
    assert_eq!(got[0].body, json!({"event": "training.course_completed", "data": data(&course)}));
    let mut flat = data(&legacy);
    flat["event"] = "training_course_completed".into();
    assert_eq!(got[1].body, flat, "the learning path was not asked for; the legacy body is flat");
    assert!(got[0].body["data"]["completed_at"].is_i64());
    assert_eq!(rx.got().len(), 2);
}
