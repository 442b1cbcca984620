//! Changes: what they do to a record, and the events they report.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::{config, key, simulator};
use crate::{Clock, Mutation, MutationError, Resource, Simulator};

fn events(sim: &Simulator, m: Mutation) -> Vec<String> {
    sim.apply(m).unwrap().event_types
}

#[test]
fn a_change_stamps_the_clock_time_and_never_moves_created_at() {
    let sim = simulator(300);
    sim.set_clock(Clock::Frozen(1_900_000_000_000));
    let deal = sim.keys(Resource::Deal)[3].clone();
    let before = sim.record(Resource::Deal, &deal).unwrap();
    assert_eq!(events(&sim, Mutation::DealStage { key: deal.clone() }), ["deal.updated", "deal.stage_updated"]);
    let after = sim.record(Resource::Deal, &deal).unwrap();
    assert_ne!(before["stage"], after["stage"]);
    assert_eq!(before["created_at"], after["created_at"]);
    assert_eq!(after["updated_at"], json!(1_900_000_000_000_i64));
    // The order is by created_at, so the changed deal keeps its place.
    assert_eq!(sim.keys(Resource::Deal)[3], deal);
}

#[test]
fn a_created_record_is_the_newest_and_reports_created() {
    let sim = simulator(300);
    for kind in Resource::ALL {
        let applied = sim.apply(Mutation::Create(kind)).unwrap();
        assert_eq!(applied.kind, kind);
        assert_eq!(sim.keys(kind)[0], applied.key, "{kind}");
        let record = sim.record(kind, &applied.key).unwrap();
        assert_eq!(record["created_at"], record["updated_at"]);
        let mut expected = vec![format!("{}.created", kind.singular())];
        if kind == Resource::PartnerTeamMember {
            expected.push("partner_team.member_joined".into());
        }
        assert_eq!(applied.event_types, expected);
    }
}

#[test]
fn each_specific_change_reports_its_specific_event() {
    let sim = simulator(600);
    let nth = |kind, n: usize| sim.keys(kind)[n].clone();
    let p = nth(Resource::Partnership, 0);
    let old_group = sim.record(Resource::Partnership, &p).unwrap()["group"]["key"].clone();
    assert_eq!(events(&sim, Mutation::PartnershipGroup { key: p.clone() }), ["partnership.updated", "partnership.group_updated"]);
    assert_ne!(sim.record(Resource::Partnership, &p).unwrap()["group"]["key"], old_group);

    let tags = Mutation::PartnershipTags { key: p.clone(), add: vec!["zz-new".into()], remove: vec![] };
    assert_eq!(events(&sim, tags.clone()), ["partnership.updated", "partnership.tags_updated"]);
    assert!(sim.record(Resource::Partnership, &p).unwrap()["tags"].as_array().unwrap().contains(&json!("zz-new")));
    assert_eq!(events(&sim, tags), ["partnership.updated"], "adding a tag it has changes no tags");

    let lead = nth(Resource::Lead, 0);
    assert_eq!(events(&sim, Mutation::LeadDecision { key: lead.clone(), approved: false }).last().unwrap(), "lead.declined");
    assert_eq!(events(&sim, Mutation::LeadDecision { key: lead.clone(), approved: true }), ["lead.updated", "lead.approved"]);
    assert_eq!(events(&sim, Mutation::LeadDecision { key: lead.clone(), approved: true }), ["lead.updated"]);
    assert_eq!(events(&sim, Mutation::LeadStatus { key: lead }), ["lead.updated", "lead.status_updated"]);

    let application = nth(Resource::Application, 0);
    assert_eq!(
        events(&sim, Mutation::ApplicationDecision { key: application.clone(), approved: false }).last().unwrap(),
        "application.declined"
    );
    assert_eq!(sim.record(Resource::Application, &application).unwrap()["approved"], json!(false));

    let reward = nth(Resource::Reward, 0);
    let mut statuses = BTreeSet::new();
    for _ in 0..12 {
        assert_eq!(events(&sim, Mutation::RewardStatus { key: reward.clone() }), ["reward.updated", "reward.status_updated"]);
        statuses.insert(sim.record(Resource::Reward, &reward).unwrap()["reward_status"].as_str().unwrap().to_owned());
    }
    assert!(statuses.contains("paid") && statuses.contains("approved"), "{statuses:?}");

    let txn = nth(Resource::Transaction, 0);
    let before = sim.record(Resource::Transaction, &txn).unwrap()["approved"].clone();
    assert_eq!(events(&sim, Mutation::TransactionUpdate { key: txn.clone() }), ["transaction.updated"]);
    assert_ne!(sim.record(Resource::Transaction, &txn).unwrap()["approved"], before);

    let team = sim.record(Resource::Partnership, &p).unwrap()["team"]["key"].as_str().unwrap().to_owned();
    let joined = sim.apply(Mutation::TeamMemberJoin { team_key: team.clone() }).unwrap();
    assert_eq!(joined.event_types, ["partner_team.created", "partner_team.member_joined"]);
    assert_eq!(sim.record(Resource::PartnerTeamMember, &joined.key).unwrap()["team_key"], json!(team));
}

#[test]
fn archive_restore_and_hard_delete_report_deleted_and_restored() {
    let sim = simulator(300);
    let customer = sim.keys(Resource::Customer)[0].clone();
    let archive = Mutation::Archive { kind: Resource::Customer, key: customer.clone() };
    assert_eq!(events(&sim, archive.clone()), ["customer.updated", "customer.deleted"]);
    assert_eq!(sim.record(Resource::Customer, &customer).unwrap()["archived"], json!(true));
    assert!(matches!(sim.apply(archive), Err(MutationError::NotApplicable { .. })));
    assert_eq!(
        events(&sim, Mutation::Restore { kind: Resource::Customer, key: customer.clone() }),
        ["customer.updated", "customer.restored"]
    );

    assert_eq!(events(&sim, Mutation::HardDelete { kind: Resource::Customer, key: customer.clone() }), ["customer.deleted"]);
    assert!(sim.record(Resource::Customer, &customer).is_none());
    assert!(!sim.keys(Resource::Customer).contains(&customer));
    let missing = sim.apply(Mutation::Touch { kind: Resource::Customer, key: customer });
    assert!(matches!(missing, Err(MutationError::NotFound { kind: Resource::Customer, .. })), "{missing:?}");

    // Hard-deleting what is already archived adds no event: the mirror saw the delete.
    let deal = sim.keys(Resource::Deal)[0].clone();
    sim.apply(Mutation::Archive { kind: Resource::Deal, key: deal.clone() }).unwrap();
    assert!(events(&sim, Mutation::HardDelete { kind: Resource::Deal, key: deal }).is_empty());
}

#[test]
fn a_change_to_a_key_of_another_type_is_not_found() {
    let sim = simulator(200);
    let lead = sim.keys(Resource::Lead)[0].clone();
    assert!(matches!(sim.apply(Mutation::DealStage { key: lead }), Err(MutationError::NotFound { .. })));
    assert!(matches!(sim.apply(Mutation::TeamMemberJoin { team_key: "stck_nope".into() }), Err(MutationError::NotFound { .. })));
}

#[test]
fn random_mutations_cover_every_variant_and_replay_from_the_seed() {
    let run = || {
        let sim = Simulator::new(config(400, 11));
        sim.set_clock(Clock::Frozen(1_900_000_000_000));
        (0..3_000).map(|_| sim.apply_random()).collect::<Vec<_>>()
    };
    let (a, b) = (run(), run());
    assert_eq!(a, b);
    let seen: BTreeSet<&str> = a.iter().flat_map(|x| x.event_types.iter()).map(|e| e.split_once('.').unwrap().1).collect();
    for expected in [
        "created",
        "updated",
        "stage_updated",
        "tags_updated",
        "group_updated",
        "approved",
        "declined",
        "status_updated",
        "deleted",
        "restored",
        "member_joined",
    ] {
        assert!(seen.contains(expected), "{expected} never happened: {seen:?}");
    }
    let kinds: BTreeSet<_> = a.iter().map(|x| x.kind).collect();
    assert_eq!(kinds.len(), Resource::ALL.len());
}

#[test]
fn records_after_mutations_still_have_the_api_shape() {
    let sim = simulator(400);
    sim.set_clock(Clock::Frozen(1_900_000_000_000));
    for _ in 0..1_000 {
        sim.apply_random();
    }
    for kind in Resource::ALL {
        for r in sim.records(kind) {
            assert!(
                r["key"].is_string() && r["created_at"].is_i64() && r["updated_at"].is_i64() && r["archived"].is_boolean(),
                "{kind} {r}"
            );
            assert!(r["created_at"].as_i64() <= r["updated_at"].as_i64(), "{kind} {r}");
            if kind == Resource::Partnership {
                assert!(r["tags"].as_array().unwrap().iter().all(Value::is_string));
            }
        }
        let keys = sim.keys(kind);
        assert_eq!(keys, sim.records(kind).iter().map(key).collect::<Vec<_>>());
    }
}
