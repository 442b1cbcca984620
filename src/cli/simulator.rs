//! The commands that run the PartnerStack simulator (the fake vendor): `simulate`, and `demo`,
//! which also starts a private PostgreSQL and the daemon. Built with the `simulator` feature
//! (on by default); without it the product has no fake vendor in it, and these commands say so.

use std::{net::SocketAddr, process::ExitCode};

use tokio_util::sync::CancellationToken;

/// What `simulate` was asked for.
#[cfg_attr(not(feature = "simulator"), allow(dead_code))]
pub(super) struct SimulateOptions {
    pub listen: SocketAddr,
    pub seed: u64,
    pub records: usize,
    pub mutations_per_sec: f64,
    pub rate_limit: Option<f64>,
    pub poison: usize,
}

#[cfg(feature = "simulator")]
pub(super) async fn simulate(options: SimulateOptions, shutdown: CancellationToken) -> anyhow::Result<ExitCode> {
    use anyhow::Context;
    use partnerstack_simulator::{Poison, Simulator, SimulatorConfig};

    use crate::object::ObjectKind;

    let SimulateOptions { listen, seed, records, mutations_per_sec, rate_limit, poison } = options;
    let config = SimulatorConfig { seed, records, mutations_per_sec, rate_limit_per_sec: rate_limit, ..SimulatorConfig::default() };
    let (public_key, private_key) = (config.public_key.clone(), config.private_key.clone());
    let simulator = Simulator::new(config);
    let kinds = [Poison::NulCharacter, Poison::WrongType, Poison::MissingKey, Poison::BadTimestamp, Poison::Huge];
    for kind in ObjectKind::ALL {
        for (i, key) in simulator.keys(kind).into_iter().take(poison).enumerate() {
            simulator.poison(kind, &key, kinds[i % kinds.len()]);
        }
    }
    let running = simulator.start(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    println!("PartnerStack simulator at {}", running.base_url);
    println!("  public key {public_key}  private key {private_key}");
    println!("  curl -u {public_key}:{private_key} '{}/deals?limit=2'", running.base_url);
    shutdown.cancelled().await;
    running.stop().await;
    Ok(ExitCode::SUCCESS)
}

#[cfg(feature = "simulator")]
pub(super) async fn demo(options: crate::demo::DemoOptions, shutdown: CancellationToken) -> anyhow::Result<ExitCode> {
    crate::demo::run(options, shutdown).await
}

#[cfg(not(feature = "simulator"))]
pub(super) async fn simulate(_: SimulateOptions, _: CancellationToken) -> anyhow::Result<ExitCode> {
    without_simulator("simulate")
}

#[cfg(not(feature = "simulator"))]
pub(super) async fn demo(_: DemoOptions, _: CancellationToken) -> anyhow::Result<ExitCode> {
    without_simulator("demo")
}

/// What `demo` was asked for, in a build without the simulator.
#[cfg(not(feature = "simulator"))]
#[allow(dead_code)]
pub(super) struct DemoOptions {
    pub records: usize,
    pub mutations_per_sec: f64,
    pub seed: u64,
    pub schema: String,
}

#[cfg(not(feature = "simulator"))]
fn without_simulator(command: &str) -> anyhow::Result<ExitCode> {
    eprintln!("error: `{command}` needs the PartnerStack simulator, which this build leaves out (cargo feature `simulator`)");
    Ok(ExitCode::from(2))
}
