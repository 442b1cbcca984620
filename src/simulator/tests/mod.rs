//! The simulator as its users see it: the data it generates, the changes it applies, and
//! the API over real HTTP.

mod cost;
mod data;
mod http;
mod mutations;

use serde_json::Value;

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
