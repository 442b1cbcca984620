//! The generated account: deterministic, shaped like the API's records, consistent.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::{config, key, simulator, HISTORY_END};
use crate::{Resource, Simulator};

#[test]
fn the_same_seed_gives_the_same_account_and_another_seed_another() {
    let (a, b, c) = (Simulator::new(config(400, 3)), Simulator::new(config(400, 3)), Simulator::new(config(400, 4)));
    for kind in Resource::ALL {
        assert_eq!(a.records(kind), b.records(kind), "{kind}");
    }
    assert_ne!(a.keys(Resource::Deal), c.keys(Resource::Deal));
}

#[test]
fn records_are_spread_over_the_object_types_like_a_real_account() {
    let sim = simulator(2_000);
    let count = |kind| sim.keys(kind).len();
    assert_eq!(count(Resource::Partnership), 300);
    assert_eq!(count(Resource::Customer), 400);
    assert_eq!(count(Resource::Transaction), 360);
    assert_eq!(count(Resource::Application), 100);
    assert!((5..=10).contains(&count(Resource::Group)));
    let members = count(Resource::PartnerTeamMember);
    assert!((100..=900).contains(&members), "{members} members for 300 teams");
    let oldest = sim.records(Resource::Deal).last().unwrap()["created_at"].as_i64().unwrap();
    assert!((HISTORY_END - 730 * 86_400_000..HISTORY_END - 100 * 86_400_000).contains(&oldest), "history spans about two years");
}

#[test]
fn every_record_has_its_timestamps_in_order_and_an_archived_flag() {
    let sim = simulator(1_500);
    for kind in Resource::ALL {
        let records = sim.records(kind);
        assert!(!records.is_empty(), "{kind}");
        for r in &records {
            let (created, updated) = (r["created_at"].as_i64().unwrap(), r["updated_at"].as_i64().unwrap());
            assert!(created <= updated && updated <= HISTORY_END, "{kind} {r}");
            assert!(r["archived"].is_boolean(), "{kind} {r}");
        }
    }
}

#[test]
fn keys_carry_their_type_prefix() {
    let sim = simulator(600);
    let prefixes = [
        (Resource::Partnership, "part_"),
        (Resource::Customer, "cust_"),
        (Resource::Deal, "deal_"),
        (Resource::Lead, "lead_"),
        (Resource::Transaction, "txn_"),
        (Resource::Reward, "rwd_"),
        (Resource::Action, "act_"),
        (Resource::Group, "grup_"),
        (Resource::Application, "appl_"),
        (Resource::PartnerTeamMember, "memb_"),
    ];
    for (kind, prefix) in prefixes {
        assert!(sim.keys(kind).iter().all(|k| k.starts_with(prefix)), "{kind}");
    }
    assert!(sim.team_keys().iter().all(|k| k.starts_with("stck_")));
}

/// References point at records that exist, created no later than the record itself.
#[test]
fn cross_references_point_at_existing_older_records() {
    let sim = simulator(1_500);
    let index = |kind| -> HashMap<String, Value> { sim.records(kind).into_iter().map(|r| (key(&r), r)).collect() };
    let (partnerships, customers, groups) = (index(Resource::Partnership), index(Resource::Customer), index(Resource::Group));
    let (transactions, actions) = (index(Resource::Transaction), index(Resource::Action));
    let partner_keys: HashSet<&str> = partnerships.values().map(|p| p["partner_key"].as_str().unwrap()).collect();
    assert_eq!(partner_keys.len(), partnerships.len(), "partner keys are unique");
    let not_after = |child: &Value, parents: &HashMap<String, Value>, parent_key: &Value| {
        let parent = &parents[parent_key.as_str().unwrap_or_else(|| panic!("no reference in {child}"))];
        assert!(parent["created_at"].as_i64() <= child["created_at"].as_i64(), "{child} is older than {parent}");
    };
    for p in partnerships.values() {
        assert!(groups.contains_key(p["group"]["key"].as_str().unwrap()));
    }
    for c in customers.values() {
        not_after(c, &partnerships, &c["partnership_key"]);
        assert_eq!(partnerships[c["partnership_key"].as_str().unwrap()]["partner_key"], c["partner_key"]);
    }
    for d in sim.records(Resource::Deal) {
        assert!(partner_keys.contains(d["partner_key"].as_str().unwrap()));
        if !d["customer_key"].is_null() {
            not_after(&d, &customers, &d["customer_key"]);
        }
    }
    for t in transactions.values() {
        not_after(t, &customers, &t["customer_key"]);
        assert_eq!(customers[t["customer_key"].as_str().unwrap()]["customer_key"], t["customer"]["external_key"]);
    }
    for r in sim.records(Resource::Reward) {
        assert!(partnerships.contains_key(r["partnership"]["key"].as_str().unwrap()));
        match (r["transaction"]["key"].as_str(), r["action"]["key"].as_str()) {
            (Some(_), None) => not_after(&r, &transactions, &r["transaction"]["key"]),
            (None, Some(_)) => not_after(&r, &actions, &r["action"]["key"]),
            _ => panic!("a reward pays for one transaction or action: {r}"),
        }
    }
    for a in sim.records(Resource::Application) {
        if a["approved"] == Value::Bool(true) {
            assert!(partnerships.contains_key(a["partnership_key"].as_str().unwrap()));
        }
    }
    let teams: HashSet<String> = sim.team_keys().into_iter().collect();
    assert!(partnerships.values().all(|p| teams.contains(p["team"]["key"].as_str().unwrap())));
    assert!(sim.records(Resource::PartnerTeamMember).iter().all(|m| teams.contains(m["team_key"].as_str().unwrap())));
}

/// Question 4 of docs/correctness.md: imports and bulk edits put many records in one millisecond.
#[test]
fn many_records_share_a_created_or_updated_millisecond() {
    let sim = simulator(2_000);
    for kind in [Resource::Customer, Resource::Transaction] {
        let records = sim.records(kind);
        let most_in_one_ms = |field: &str| {
            let mut counts: HashMap<i64, usize> = HashMap::new();
            records.iter().for_each(|r| *counts.entry(r[field].as_i64().unwrap()).or_default() += 1);
            counts.into_values().max().unwrap()
        };
        assert!(most_in_one_ms("created_at") >= 5, "{kind} created_at");
        assert!(most_in_one_ms("updated_at") >= 5, "{kind} updated_at");
    }
}

#[test]
fn the_newest_records_are_live_and_some_older_ones_archived() {
    let sim = simulator(2_000);
    let deals = sim.records(Resource::Deal);
    assert!(deals.iter().take(20).all(|d| d["archived"] == Value::Bool(false)));
    let archived =
        Resource::ALL.iter().map(|k| sim.records(*k).iter().filter(|r| r["archived"] == Value::Bool(true)).count()).sum::<usize>();
    assert!(archived > 0);
}
