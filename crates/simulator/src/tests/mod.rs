//! The simulator as its users see it: the data it generates, the changes it applies, and
//! the API over real HTTP.

mod changes;
mod cost;
mod creates;
mod data;
mod http;
mod mutations;
mod receiver;
mod transport;
mod webhook_switches;
mod webhooks;

use serde_json::Value;

use reqwest::{Method, StatusCode};

use super::{RunningSimulator, Simulator, SimulatorConfig};

/// A fixed end of history, so two simulators built at different moments agree.
const HISTORY_END: i64 = 1_780_000_000_000;

fn config(records: usize, seed: u64) -> SimulatorConfig {
    SimulatorConfig { records, seed, history_end_ms: Some(HISTORY_END), ..SimulatorConfig::default() }
}

fn simulator(records: usize) -> Simulator {
    Simulator::new(config(records, 7))
}

async fn serve(records: usize, configure: impl FnOnce(&mut SimulatorConfig)) -> RunningSimulator {
    let mut c = config(records, 7);
    configure(&mut c);
    Simulator::new(c).start("127.0.0.1:0".parse().unwrap()).await.expect("the simulator starts")
}

fn key(v: &Value) -> String {
    v["key"].as_str().expect("records have string keys").to_owned()
}

/// The identifier a record's URL path takes: a customer's `customer_key`, else its `key`.
fn path_id(kind: crate::Resource, v: &Value) -> String {
    match kind {
        crate::Resource::Customer => v["customer_key"].as_str().expect("customers have a customer_key").to_owned(),
        _ => key(v),
    }
}

/// An API answer: the status and the JSON body.
struct Reply {
    status: StatusCode,
    body: Value,
}

/// One authenticated request to the API with an optional JSON body.
async fn call(sim: &RunningSimulator, method: Method, path: &str, body: Option<Value>) -> Reply {
    let d = SimulatorConfig::default();
    let mut request =
        reqwest::Client::new().request(method, format!("{}/{path}", sim.base_url)).basic_auth(&d.public_key, Some(&d.private_key));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("an answer");
    let status = response.status();
    Reply { status, body: response.json().await.expect("a JSON body") }
}

/// A live partnership's `partner_key` and its record.
fn live_partner(sim: &Simulator) -> (String, Value) {
    let p = sim.records(crate::Resource::Partnership).into_iter().find(|p| p["archived"] == false).expect("a live partnership");
    (p["partner_key"].as_str().expect("partner keys are strings").to_owned(), p)
}
