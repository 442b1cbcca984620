//! `doctor` gives the right answer to each open question of docs/correctness.md under each simulator switch.

use partnerstack_mirror::{
    config::Config,
    doctor::{self, Answer},
    object::ObjectKind,
};
use partnerstack_simulator::AsResource;
use partnerstack_simulator::{BoundSemantics, Mutation, RunningSimulator, SimulatorConfig};

use crate::support;

fn config_for(sim: &RunningSimulator) -> partnerstack_mirror::config::PartnerStackConfig {
    let d = SimulatorConfig::default();
    Config::from_toml(&format!(
        "[partnerstack]\napi_url = \"{}\"\npublic_key = \"{}\"\nprivate_key = \"{}\"",
        sim.base_url, d.public_key, d.private_key
    ))
    .unwrap()
    .partnerstack
}

#[tokio::test]
async fn doctor_reports_each_answer_the_simulator_is_switched_to() {
    for (bounds, archived_listed, ignore_updated, retry_after) in
        [(BoundSemantics::Inclusive, true, true, true), (BoundSemantics::Exclusive, false, false, false)]
    {
        let sim = support::simulator(400, |c| {
            c.bounds = bounds;
            c.archived_listed = archived_listed;
            c.created_only_ignore_updated_filter = ignore_updated;
            c.retry_after_header = retry_after;
        })
        .await;
        let deal = sim.simulator.keys(ObjectKind::Deal)[0].clone();
        sim.simulator.apply(Mutation::Archive { kind: ObjectKind::Deal.resource(), key: deal }).unwrap();
        let api = support::client(&sim, 250);
        let report = doctor::examine(&api, &config_for(&sim)).await;
        let answer = |q: &str| report.find(q).unwrap_or_else(|| panic!("no finding for {q}:\n{report}")).answer.clone();

        assert_eq!(answer("Credentials"), Answer::Ok, "{report}");
        assert_eq!(answer("Clock"), Answer::Ok, "{report}");
        let expected = if bounds == BoundSemantics::Inclusive { Answer::Yes } else { Answer::No };
        assert_eq!(answer("9.1"), expected, "{report}");
        assert_eq!(answer("9.2"), if archived_listed { Answer::Yes } else { Answer::Undetermined }, "{report}");
        let honoured = if ignore_updated { Answer::No } else { Answer::Yes };
        assert_eq!(answer("9.3 Is min_updated honoured on /transactions"), honoured, "{report}");
        assert_eq!(answer("9.3 Is min_updated honoured on /rewards"), honoured, "{report}");
        assert_eq!(answer("9.4"), Answer::Yes, "the simulator writes bursts in one millisecond: {report}");
        assert_eq!(answer("9.5"), Answer::Undetermined, "no rate limit, no 429: {report}");
        assert_eq!(answer("9.6"), Answer::Undetermined, "never probed: {report}");

        sim.simulator.configure(|c| c.rate_limit_per_sec = Some(10.0));
        let burst = doctor::retry_after(&config_for(&sim)).await;
        assert_eq!(burst.answer, if retry_after { Answer::Yes } else { Answer::No }, "{burst:?}");
    }
}

#[tokio::test]
async fn doctor_flags_rejected_credentials() {
    let sim = support::simulator(50, |c| c.private_key = "sk_other".into()).await;
    let report = doctor::examine(&support::client(&sim, 250), &config_for(&sim)).await;
    assert_eq!(report.find("Credentials").unwrap().answer, Answer::Problem);
    assert!(!report.healthy());
}
