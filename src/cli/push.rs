//! `push plan NAME`, `push run NAME [--force]` and `push list`: a push's plan printed per
//! record (field: mirror value → desired value) and in totals, one run from a shell, and the
//! last run of each push.

use std::process::ExitCode;

use anyhow::Context;
use serde_json::Value;

use super::PushCommand;
use crate::{
    config::{Config, PushConfig, Schedule},
    daemon,
    push::{brake_limit, shell_holder, PushCounters, Pusher, Tally},
    store::{PlannedRequest, PushPlan, PushRunLine, Store},
};

pub(super) async fn push(config: Config, command: PushCommand) -> anyhow::Result<ExitCode> {
    let store = daemon::existing_mirror(&config).await?;
    store.migrate().await?;
    match command {
        PushCommand::List => list(&config, &store).await,
        PushCommand::Plan { name, limit } => {
            let Some(pusher) = pusher(&config, &store, &name).await? else { return Ok(ExitCode::from(2)) };
            let plan = pusher.plan().await?;
            print!("{}", describe_plan(pusher.config(), &plan, limit));
            Ok(ExitCode::SUCCESS)
        }
        PushCommand::Run { name, force } => {
            let Some(pusher) = pusher(&config, &store, &name).await? else { return Ok(ExitCode::from(2)) };
            let report = pusher.run(force).await?;
            let line = &report.line;
            println!("{}", summary(line));
            if line.outcome == "braked" {
                eprintln!("error: push {name}: {}", line.error.as_deref().unwrap_or("the brake held"));
                return Ok(ExitCode::from(1));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The named push, its query described and checked; `None` (after saying so): no such push.
async fn pusher(config: &Config, store: &Store, name: &str) -> anyhow::Result<Option<Pusher>> {
    let Some(push) = config.pushes.iter().find(|p| p.name == name) else {
        let names: Vec<&str> = config.pushes.iter().map(|p| p.name.as_str()).collect();
        match names.is_empty() {
            true => eprintln!("error: there is no push {name}: the configuration has no [[push]]"),
            false => eprintln!("error: there is no push {name} in the configuration (pushes: {})", names.join(", ")),
        }
        return Ok(None);
    };
    let pusher = Pusher::prepare(store, push, &shell_holder(), PushCounters::default()).await?;
    Ok(Some(pusher.leased_for(config.sync.lease_ttl)))
}

async fn list(config: &Config, store: &Store) -> anyhow::Result<ExitCode> {
    let runs = store.last_push_runs().await.context("cannot read push_runs")?;
    if config.pushes.is_empty() && runs.is_empty() {
        println!("no pushes: add a [[push]] to the configuration (see docs/push.md)");
    }
    for p in &config.pushes {
        let when = match &p.schedule {
            Schedule::Every(every) => format!("every {}", humantime_serde::re::humantime::format_duration(*every)),
            Schedule::Cron(expr) => format!("at `{expr}`"),
        };
        println!("push {} ({}, key = {}, {when})", p.name, p.object, p.key);
        match runs.iter().find(|r| r.push == p.name) {
            Some(run) => println!("  last run: {run}"),
            None => println!("  not run yet"),
        }
    }
    for run in runs.iter().filter(|r| !config.pushes.iter().any(|p| p.name == r.push)) {
        println!("push {} (not in this configuration)\n  last run: {run}", run.push);
    }
    Ok(ExitCode::SUCCESS)
}

/// One line on what a run did.
fn summary(line: &PushRunLine) -> String {
    format!(
        "push {}: {}: {} rows read, {} unchanged, {} changes ({} requests queued), {} in flight, {} held, {} skipped (NULL key), {} not found",
        line.push,
        line.outcome,
        line.rows_read,
        line.unchanged,
        line.changes,
        line.requests_queued,
        line.in_flight,
        line.held,
        line.skipped,
        line.not_found
    )
}

/// What `push plan` prints: each request a run would queue (at most `limit` lines), those on
/// their way or held, then the totals and what the brake would do.
pub fn describe_plan(push: &PushConfig, plan: &PushPlan, limit: usize) -> String {
    let mut out = format!("push {} ({}, key = {}): what a run would do now; nothing is changed\n", push.name, push.object, push.key);
    if !plan.loaded {
        out.push_str(&format!(
            "  (the mirror has not finished its first load of {}: a run waits for it, as a missing record means nothing yet)\n",
            push.object
        ));
    }
    let singular = push.object.singular();
    let mut shown = 0;
    for decision in ["queue", "in_flight", "held"] {
        for r in plan.requests.iter().filter(|r| r.decision == decision) {
            if shown == limit {
                break;
            }
            shown += 1;
            let prefix = match decision {
                "queue" => String::new(),
                "in_flight" => "in flight: ".to_owned(),
                _ => "held: ".to_owned(),
            };
            out.push_str(&format!("  {prefix}{} {singular} {}: {}\n", r.operation, target(r), changes(r)));
            if let Some(reason) = r.reason.as_deref().filter(|_| decision != "queue") {
                out.push_str(&format!("    ({reason})\n"));
            }
        }
    }
    if plan.requests.len() > shown {
        out.push_str(&format!("  … and {} more (--limit N shows more)\n", plan.requests.len() - shown));
    }
    let tally = Tally::of(plan);
    let queued = plan.requests.iter().filter(|r| r.decision == "queue").count();
    out.push_str(&format!(
        "totals: {} rows read, {} unchanged, {} to change ({queued} requests), {} in flight, {} held, {} skipped (NULL key), {} not found\n",
        plan.rows_read, tally.unchanged, tally.changes, tally.in_flight, tally.held, plan.skipped, plan.not_found
    ));
    if let Some(key) = &plan.duplicate {
        out.push_str(&format!("a run would refuse: the query returns the key {key:?} more than once (each row must be one record)\n"));
        return out;
    }
    let limit = brake_limit(push, plan);
    let source = if push.max_changes.is_some() { "max_changes" } else { "10% of the object's rows, at least 10" };
    if tally.changes > limit {
        out.push_str(&format!(
            "the brake would hold: {} changes, more than {limit} ({source}); a run would queue nothing. \
             `partnerstack-mirror push run {} --force` lets it through once\n",
            tally.changes, push.name
        ));
    } else {
        out.push_str(&format!("the brake allows {limit} changes ({source})\n"));
    }
    out
}

/// The record a request is for: its key in the mirror, and the key column's value when that
/// is another (an external key).
fn target(r: &PlannedRequest) -> String {
    match r.object_key.as_deref() {
        Some(key) if key == r.record => key.to_owned(),
        Some(key) => format!("{key} ({})", r.record),
        None => r.record.clone(),
    }
}

/// `field: old → new, …` for changes, `field = value, …` for a create.
fn changes(r: &PlannedRequest) -> String {
    let Some(fields) = r.changes.as_object() else { return r.changes.to_string() };
    let parts: Vec<String> = fields
        .iter()
        .map(|(field, change)| match (r.operation.as_str(), change.get("old"), change.get("new")) {
            ("create", ..) => format!("{field} = {}", value(change)),
            (_, Some(old), Some(new)) => format!("{field}: {} → {}", value(old), value(new)),
            _ => format!("{field}: {}", value(change)),
        })
        .collect();
    parts.join(", ")
}

fn value(v: &Value) -> String {
    v.to_string()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn request(operation: &str, decision: &str, changes: Value) -> PlannedRequest {
        PlannedRequest {
            record: "crm-1".into(),
            object_key: (operation != "create").then(|| "deal_1".into()),
            operation: operation.into(),
            payload: json!({}),
            changes,
            digest: "d".into(),
            seq: 1,
            failures: 0,
            decision: decision.into(),
            reason: (decision != "queue").then(|| "request 7 for these values is pending".into()),
        }
    }

    #[test]
    fn a_plan_shows_each_change_as_mirror_value_to_desired_value_with_totals_and_the_brake() {
        let push = Config::from_toml(
            "[[push]]\nname = \"crm\"\nobject = \"deals\"\nkey = \"external_key\"\nquery = \"SELECT 1\"\nmax_changes = 1",
        )
        .unwrap()
        .pushes
        .remove(0);
        let plan = PushPlan {
            rows_read: 5,
            compared: 3,
            object_rows: 100,
            loaded: true,
            requests: vec![
                request("update", "queue", json!({"stage": {"old": "Qualified", "new": "Closed Won"}})),
                request("create", "queue", json!({"external_key": "crm-2", "amount": 100})),
                request("update", "in_flight", json!({"amount": {"old": 1, "new": 2}})),
            ],
            ..PushPlan::default()
        };
        let mut plan = plan;
        plan.requests[1].record = "crm-2".into();
        plan.requests[2].record = "crm-3".into();
        let text = describe_plan(&push, &plan, 10);
        assert!(text.contains("  update deal deal_1 (crm-1): stage: \"Qualified\" → \"Closed Won\"\n"), "{text}");
        assert!(text.contains("  create deal crm-2: amount = 100, external_key = \"crm-2\"\n"), "{text}");
        assert!(
            text.contains("  in flight: update deal deal_1 (crm-3): amount: 1 → 2\n    (request 7 for these values is pending)"),
            "{text}"
        );
        assert!(text.contains("totals: 5 rows read, 1 unchanged, 2 to change (2 requests), 1 in flight, 0 held"), "{text}");
        assert!(
            text.contains("the brake would hold: 2 changes, more than 1 (max_changes)") && text.contains("push run crm --force"),
            "{text}"
        );
        let short = describe_plan(&push, &plan, 1);
        assert!(short.contains("… and 2 more"), "{short}");
    }
}
