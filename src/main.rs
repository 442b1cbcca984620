//! The `partnerstack-mirror` binary: everything lives in the library; this only parses the
//! command line and hands over.

use std::process::ExitCode;

use clap::Parser;
use partnerstack_mirror::cli::{self, Cli};

#[tokio::main]
async fn main() -> ExitCode {
    cli::main(Cli::parse()).await
}
