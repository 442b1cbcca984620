//! The simulator against the mirror's catalogue. The simulator fakes the vendor in its own
//! vocabulary (`Resource`) and knows nothing of our typed columns; these tests check that
//! what it serves is what the catalogue expects, so the other tests, run against it, test
//! the mirror against records shaped like the real API's.

use partnerstack_simulator::AsResource;

use crate::support;
use partnerstack_mirror::{
    object::{ChangeFilter, Column, ColumnType, ObjectKind},
    record::{self, RecordError},
};
use partnerstack_simulator::{Clock, Poison, Resource, RunningSimulator, Simulator, SimulatorConfig};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// A fixed end of history, so records are stamped alike on every run.
const HISTORY_END: i64 = 1_780_000_000_000;
const NOW: i64 = HISTORY_END + 60_000;

fn config(records: usize) -> SimulatorConfig {
    SimulatorConfig { records, seed: 7, history_end_ms: Some(HISTORY_END), ..SimulatorConfig::default() }
}

async fn serve(records: usize) -> RunningSimulator {
    Simulator::new(config(records)).start("127.0.0.1:0".parse().unwrap()).await.expect("the simulator starts")
}

/// One authenticated request; the status and the JSON body.
async fn call(sim: &RunningSimulator, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let d = SimulatorConfig::default();
    let mut request =
        reqwest::Client::new().request(method, format!("{}/{path}", sim.base_url)).basic_auth(&d.public_key, Some(&d.private_key));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("an answer");
    (response.status(), response.json().await.expect("a JSON body"))
}

/// A typed column's value in `record`, checked: present, and of its JSON type or null.
/// `None` when the object holding it is itself null (e.g. a deal without a team).
fn typed_column<'a>(kind: ObjectKind, record: &'a Value, column: &Column) -> Option<&'a Value> {
    let (parent, leaf) = column.path.split_at(column.path.len() - 1);
    let holder = parent.iter().fold(record, |v, p| &v[p]);
    if holder.is_null() {
        return None;
    }
    let v = holder.get(leaf[0]).unwrap_or_else(|| panic!("{kind}.{} missing in {record}", column.name));
    let typed = match column.ty {
        ColumnType::Text => v.is_string(),
        ColumnType::BigInt | ColumnType::Timestamp => v.is_i64(),
        ColumnType::Bool => v.is_boolean(),
        ColumnType::Date => v.as_str().is_some_and(|s| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()),
        ColumnType::TextArray => v.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
    };
    assert!(v.is_null() || typed, "{kind}.{} is {v}", column.name);
    Some(v)
}

#[test]
fn the_simulator_names_every_object_type_as_the_catalogue_does() {
    assert_eq!(Resource::ALL.map(support::kind_of), ObjectKind::ALL);
    for kind in ObjectKind::ALL {
        let resource = kind.resource();
        assert_eq!(support::kind_of(resource), kind);
        assert_eq!(resource.path(), kind.api_path(), "{kind}");
        assert_eq!(resource.singular(), kind.singular(), "{kind}");
        assert_eq!(resource.created_only(), kind.change_filter() == ChangeFilter::CreatedOnly, "{kind}");
        assert_eq!(resource.to_string(), kind.to_string());
    }
}

/// Every field a typed column reads exists in every record, with the column's JSON type
/// or null, and is filled in at least one record.
#[test]
fn every_catalogued_column_is_generated_with_its_json_type() {
    let sim = Simulator::new(config(1_500));
    for kind in ObjectKind::ALL {
        let records = sim.records(kind);
        assert!(!records.is_empty(), "{kind}");
        for column in kind.columns() {
            let mut filled = 0;
            for r in &records {
                if let Some(v) = typed_column(kind, r, column) {
                    filled += usize::from(!v.is_null());
                }
            }
            assert!(filled > 0, "{kind}.{} is never filled", column.name);
        }
    }
}

/// A record created through the API has every typed column the mirror extracts, each of
/// its JSON type or null, like a generated record.
#[tokio::test]
async fn records_created_through_the_api_have_every_catalogued_column_with_its_json_type() {
    let sim = serve(300).await;
    let s = &sim.simulator;
    s.set_clock(Clock::Frozen(NOW));
    let partnership = s.records(ObjectKind::Partnership).into_iter().find(|p| p["archived"] == false).expect("a live partnership");
    let partner_key = partnership["partner_key"].as_str().expect("partner keys are strings").to_owned();
    let group_key = s.keys(ObjectKind::Group)[0].clone();
    let cases = [
        (
            ObjectKind::Partnership,
            json!({"email": "new.partner@example.test", "first_name": "Nia", "last_name": "Osei", "tags": ["vip", "vip"], "group_key": group_key}),
        ),
        (
            ObjectKind::Customer,
            json!({"customer_key": "acct-new-1", "email": "c1@example.test", "partner_key": partner_key, "name": "C One", "meta": {"plan": "pro"}}),
        ),
        (
            ObjectKind::Deal,
            json!({"partner_key": partner_key, "external_key": "006-new", "amount": 120_000, "stage": "Qualified", "close_date": "2026-09-30"}),
        ),
        (
            ObjectKind::Lead,
            json!({"external_key": "lead@example.test", "partner_key": partner_key, "status": "open", "meta": {"first_name": "L", "last_name": "D"}}),
        ),
        (ObjectKind::Transaction, json!({"key": "txn-new-1", "customer_external_key": "acct-new-1", "amount": 9_900, "currency": "eur"})),
        (ObjectKind::Action, json!({"target_type": "partnership", "target_key": partner_key, "type": "webinar_attended", "value": 2})),
        (ObjectKind::Reward, json!({"amount": 500, "description": "Launch bonus", "target": {"type": "customer", "key": "acct-new-1"}})),
    ];
    for (kind, body) in cases {
        let (status, answer) = call(&sim, Method::POST, kind.api_path(), Some(body)).await;
        assert_eq!(status, StatusCode::OK, "{kind}: {answer}");
        for column in kind.columns() {
            typed_column(kind, &answer["data"], column);
        }
    }
}

/// `Poison::WrongType` spoils a field the catalogue types, so the mirror quarantines the
/// record instead of storing it.
#[tokio::test]
async fn a_record_poisoned_with_a_wrong_type_fails_the_mirrors_check() {
    let sim = serve(300).await;
    // Team members are listed per team, where nothing is served poisoned.
    for kind in ObjectKind::ALL.into_iter().filter(|k| *k != ObjectKind::PartnerTeamMember) {
        let newest = sim.simulator.keys(kind)[0].clone();
        sim.simulator.poison(kind, &newest, Poison::WrongType);
        let (status, page) = call(&sim, Method::GET, &format!("{}?limit=1", kind.api_path()), None).await;
        assert_eq!(status, StatusCode::OK, "{kind}: {page}");
        let served = serde_json::value::to_raw_value(&page["data"]["items"][0]).unwrap();
        let rejected = record::check(kind, served.clone()).expect_err(&format!("{kind}: {served}"));
        let RecordError::WrongType { field, .. } = &rejected.error else { panic!("{kind}: {:?}", rejected.error) };
        assert!(kind.columns().iter().any(|c| c.path.join(".") == *field), "{kind}: {field} is a typed column");
        assert_eq!(rejected.key.as_deref(), Some(newest.as_str()), "{kind}");
    }
}
