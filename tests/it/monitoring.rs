//! The operator kit against the real daemon: every metric the alert rules
//! (`deploy/prometheus/alerts.yml`) and the dashboard (`deploy/grafana/partnerstack-mirror.json`)
//! name exists in a live scrape with the type its functions need, and every expression parses.

use std::{collections::BTreeMap, time::Duration};

use partnerstack_mirror::object::ObjectKind;
use partnerstack_simulator::Poison;
use promql_parser::parser::{self, Expr};
use serde_json::{json, Value};

use crate::support;

const ALERTS: &str = include_str!("../../deploy/prometheus/alerts.yml");
const DASHBOARD: &str = include_str!("../../deploy/grafana/partnerstack-mirror.json");

/// Series Prometheus adds to every target itself.
const FROM_PROMETHEUS: &[&str] = &["up"];

/// Functions whose argument must be a counter (or a histogram's cumulative series).
const COUNTER_FUNCTIONS: &[&str] = &["rate", "irate", "increase", "resets"];
/// Functions whose argument must be a gauge.
const GAUGE_FUNCTIONS: &[&str] = &["delta", "idelta", "deriv", "predict_linear", "double_exponential_smoothing", "holt_winters"];

/// Every `expr` of the alert rules, as Prometheus reads the YAML.
fn alert_expressions() -> Vec<(String, String)> {
    let docs = yaml_rust2::YamlLoader::load_from_str(ALERTS).expect("alerts.yml is YAML");
    let groups = docs[0]["groups"].as_vec().expect("alerts.yml has groups");
    let mut exprs = Vec::new();
    for group in groups {
        for rule in group["rules"].as_vec().expect("every group has rules") {
            let name = rule["alert"].as_str().expect("every rule is an alert").to_owned();
            let expr = rule["expr"].as_str().unwrap_or_else(|| panic!("{name} has an expr")).to_owned();
            assert!(rule["annotations"]["summary"].as_str().is_some(), "{name} has a summary");
            exprs.push((name, expr));
        }
    }
    exprs
}

/// Every query of the dashboard's panels, with Grafana's interval variables filled in.
fn dashboard_expressions() -> Vec<(String, String)> {
    let dashboard: Value = serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("every target has an expr");
            exprs.push((panel["title"].as_str().unwrap_or("?").to_owned(), expr.replace("$__rate_interval", "1m")));
        }
    }
    exprs
}

/// `name → type` from the `# TYPE` lines of a scrape, and the series that have samples.
fn families(scrape: &str) -> (BTreeMap<String, String>, Vec<String>) {
    let types = scrape
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(name, kind)| (name.to_owned(), kind.to_owned()))
        .collect();
    let series = scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap_or_default().to_owned())
        .collect();
    (types, series)
}

/// What a series name in an expression is: its family's type and whether it is cumulative
/// (a counter's `_total`, a histogram's `_bucket`, `_count`, `_sum`).
fn resolve<'a>(name: &str, types: &'a BTreeMap<String, String>) -> Option<(&'a str, bool)> {
    if let Some(kind) = types.get(name) {
        // A counter family is only ever exposed as `<name>_total`.
        return (kind != "counter" && kind != "histogram").then_some((kind.as_str(), false));
    }
    for (suffix, kinds) in [("_total", &["counter"][..]), ("_bucket", &["histogram"]), ("_count", &["histogram"]), ("_sum", &["histogram"])]
    {
        if let Some(kind) = name.strip_suffix(suffix).and_then(|family| types.get(family)) {
            if kinds.contains(&kind.as_str()) {
                return Some((kind.as_str(), true));
            }
        }
    }
    None
}

/// Every metric name an expression selects, with the range function applied to it, if any.
fn selections(expr: &Expr, function: Option<&'static str>, out: &mut Vec<(String, Option<&'static str>)>) {
    match expr {
        Expr::Aggregate(a) => {
            selections(&a.expr, function, out);
            if let Some(p) = &a.param {
                selections(p, function, out);
            }
        }
        Expr::Unary(u) => selections(&u.expr, function, out),
        Expr::Binary(b) => {
            selections(&b.lhs, function, out);
            selections(&b.rhs, function, out);
        }
        Expr::Paren(p) => selections(&p.expr, function, out),
        Expr::Subquery(s) => selections(&s.expr, function, out),
        Expr::VectorSelector(v) => out.push((v.name.clone().expect("selectors name their metric"), function)),
        Expr::MatrixSelector(m) => out.push((m.vs.name.clone().expect("selectors name their metric"), function)),
        Expr::Call(call) => {
            let name = call.func.name;
            let typed = COUNTER_FUNCTIONS.iter().chain(GAUGE_FUNCTIONS).find(|f| **f == name).copied();
            for arg in &call.args.args {
                selections(arg, typed.or(function), out);
            }
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_in_the_alert_rules_and_the_dashboard_exists_in_a_live_scrape_with_the_right_type() {
    let sim = support::simulator(300, |_| {}).await;
    let store = support::store().await;
    // Something in every database gauge: a quarantined record, a queued request, a failure.
    let poisoned = sim.simulator.keys(ObjectKind::Lead)[3].clone();
    sim.simulator.poison(ObjectKind::Lead, &poisoned, Poison::WrongType);
    let deal = sim.simulator.keys(ObjectKind::Deal)[0].clone();
    sqlx::query("INSERT INTO write_queue (operation, object_type, object_key, payload) VALUES ('update', 'deal', $1, $2)")
        .bind(&deal)
        .bind(json!({"amount": 4_200}))
        .execute(store.pool())
        .await
        .unwrap();
    let port = support::free_port();
    // A delivery to a port nobody listens on: its series exist, its attempts fail.
    let nowhere = support::free_port();
    let delivery = format!(
        r#"[{{name="ops", url="http://127.0.0.1:{nowhere}/hooks", secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", start="beginning"}}]"#
    );
    // A push: its series exist (at zero) from the start.
    let push = format!(
        r#"[{{name="tiers", object="partnerships", query="SELECT key, tags FROM {}.partnerships", manage_tags=["tier:*"]}}]"#,
        store.schema()
    );
    let env = [("PSM_HTTP__LISTEN", format!("127.0.0.1:{port}")), ("PSM_DELIVERY", delivery), ("PSM_PUSH", push)];
    let mut daemon = support::daemon(&sim, &store, &env);
    let url = format!("http://127.0.0.1:{port}/metrics");
    support::eventually("the daemon to sync every object", Duration::from_secs(60), || async {
        let synced: i64 =
            sqlx::query_scalar("SELECT count(*) FROM sync_state WHERE last_success_at IS NOT NULL").fetch_one(store.pool()).await.unwrap();
        synced as usize >= ObjectKind::default_set().len()
    })
    .await;
    sqlx::query("UPDATE sync_state SET last_error = 'a failure for the test', last_error_at = now() WHERE object = 'deals'")
        .execute(store.pool())
        .await
        .unwrap();
    let last = std::cell::RefCell::new(String::new());
    let (last, url) = (&last, &url);
    support::eventually("a scrape with every database gauge", Duration::from_secs(30), || async move {
        // As Prometheus scrapes: asking for OpenMetrics.
        let text = match reqwest::Client::new().get(url).header("accept", "application/openmetrics-text; version=1.0.0").send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        let complete = [
            "last_error_timestamp_seconds{",
            "quarantined_records{",
            "queue_depth{",
            "sync_lag_seconds{",
            "api_requests_total{",
            "delivery_lag_events{",
        ]
        .iter()
        .all(|s| text.contains(&format!("partnerstack_mirror_{s}")));
        *last.borrow_mut() = text;
        complete
    })
    .await;
    let scrape = last.take();
    // Without asking, the classic text format: the same series, counters typed by their `_total` name.
    let classic = reqwest::get(url).await.unwrap();
    assert!(classic.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let classic = classic.text().await.unwrap();
    assert!(classic.contains("# TYPE partnerstack_mirror_api_requests_total counter\n"), "{classic}");
    assert!(!classic.contains("# EOF"));
    let names = |text: &str| -> std::collections::BTreeSet<String> {
        text.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.split(['{', ' ']).next()).map(str::to_owned).collect()
    };
    assert_eq!(names(&classic), names(&scrape), "the same series in both formats");
    support::sigterm(&daemon).await;
    let _ = daemon.wait().await;

    let (types, series) = families(&scrape);
    let mut problems = Vec::new();
    let exprs: Vec<(String, String)> = alert_expressions().into_iter().chain(dashboard_expressions()).collect();
    assert!(exprs.len() > 30, "{exprs:?}");
    for (what, text) in &exprs {
        let expr = match parser::parse(text) {
            Ok(expr) => expr,
            Err(e) => {
                problems.push(format!("{what}: does not parse: {e}\n  {text}"));
                continue;
            }
        };
        let mut selected = Vec::new();
        selections(&expr, None, &mut selected);
        assert!(!selected.is_empty(), "{what} selects nothing");
        for (name, function) in selected {
            if FROM_PROMETHEUS.contains(&name.as_str()) {
                continue;
            }
            let Some((kind, cumulative)) = resolve(&name, &types) else {
                problems.push(format!("{what}: `{name}` is not in the scrape"));
                continue;
            };
            if !series.contains(&name) {
                problems.push(format!("{what}: `{name}` ({kind}) has no sample in the scrape"));
            }
            match function {
                Some(f) if COUNTER_FUNCTIONS.contains(&f) && !cumulative => {
                    problems.push(format!("{what}: {f}() applied to `{name}`, a {kind}, not a counter"))
                }
                Some(f) if GAUGE_FUNCTIONS.contains(&f) && kind != "gauge" => {
                    problems.push(format!("{what}: {f}() applied to `{name}`, a {kind}, not a gauge"))
                }
                _ => {}
            }
        }
    }
    // Names outside expressions (the dashboard's instance variable) exist too.
    for name in DASHBOARD.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("partnerstack_mirror_")) {
        if resolve(name, &types).is_none() {
            problems.push(format!("dashboard: `{name}` is not in the scrape"));
        }
    }
    assert!(problems.is_empty(), "{}\n\nscrape:\n{scrape}", problems.join("\n"));
}

#[test]
fn the_type_check_tells_counters_from_gauges() {
    let scrape = "# TYPE a_requests counter\na_requests_total 1\n# TYPE a_depth gauge\na_depth 2\n# TYPE a_latency histogram\n";
    let (types, _) = families(scrape);
    assert_eq!(resolve("a_requests_total", &types), Some(("counter", true)));
    assert_eq!(resolve("a_requests", &types), None, "a counter is exposed as _total only");
    assert_eq!(resolve("a_depth", &types), Some(("gauge", false)));
    assert_eq!(resolve("a_latency_bucket", &types), Some(("histogram", true)));
    let mut selected = Vec::new();
    selections(&parser::parse("increase(a_depth[1h]) > 0 and rate(a_requests_total[5m]) > 1").unwrap(), None, &mut selected);
    assert_eq!(selected, [("a_depth".to_owned(), Some("increase")), ("a_requests_total".to_owned(), Some("rate"))]);
}
