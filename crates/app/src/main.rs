//! `relay`: the ElevenLabs personalization webhook service and its admin CLI.
//!
//! This is the only crate that names concrete adapters: it reads the configuration, builds the
//! Postgres store and the Redis cache, hands them to the use cases as ports, and starts the HTTP
//! adapter or runs an admin command.

mod cli;
mod commands;
mod config;
mod stores;
mod telemetry;

use std::process::ExitCode;

use clap::Parser as _;

use crate::cli::Cli;

/// sysexits' EX_CONFIG: the configuration is wrong, retrying will not help.
const EXIT_CONFIG: u8 = 78;

#[tokio::main]
async fn main() -> ExitCode {
    let command = Cli::parse().into_command();
    telemetry::init(matches!(command, cli::Command::Serve));
    match commands::run(command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(commands::Failure::Config(error)) => {
            eprintln_error(&format!("configuration error: {error}"));
            ExitCode::from(EXIT_CONFIG)
        }
        Err(commands::Failure::Other(error)) => {
            eprintln_error(&format!("error: {error:#}"));
            ExitCode::FAILURE
        }
    }
}

#[allow(clippy::print_stderr, reason = "the CLI's diagnostics go to stderr")]
fn eprintln_error(message: &str) {
    eprintln!("{message}");
}
