//! `relay`: the ElevenLabs personalization webhook service and its admin CLI.
//!
//! This is the only crate that names concrete adapters: it reads the configuration, builds the
//! Postgres store and the Redis cache, hands them to the use cases as ports, and starts the HTTP
//! adapter or runs an admin command.

mod cli;
mod commands;
mod config;
mod csv_source;
mod import_outcome;
mod stores;
mod telemetry;

use std::process::ExitCode;

use clap::Parser as _;

use crate::cli::Cli;
use crate::config::{ConfigError, Env};

/// sysexits' EX_CONFIG: the configuration is wrong, retrying will not help.
const EXIT_CONFIG: u8 = 78;

fn main() -> ExitCode {
    let command = Cli::parse().into_command();
    let serving = matches!(command, cli::Command::Serve);
    // Telemetry starts before the runtime (the OTLP exporter's blocking client must not be
    // built inside it) and is flushed after the runtime is gone.
    let telemetry = match trace_export(serving).and_then(|e| telemetry::init(serving, e)) {
        Ok(telemetry) => telemetry,
        Err(error) => return config_error(&error),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln_error(&format!("error: cannot start the async runtime: {error}"));
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(commands::run(command, telemetry.tracing_enabled()));
    // Blocking tasks (a DNS lookup stuck on a dead resolver) must not hold the exit past the
    // grace period.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    telemetry.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(commands::Failure::Config(error)) => config_error(&error),
        Err(commands::Failure::Other(error)) => {
            eprintln_error(&format!("error: {error:#}"));
            ExitCode::FAILURE
        }
    }
}

fn trace_export(serving: bool) -> Result<Option<telemetry::TraceExport>, ConfigError> {
    if !serving {
        return Ok(None);
    }
    telemetry::TraceExport::from_env(&Env(|name: &str| std::env::var(name).ok()))
}

fn config_error(error: &ConfigError) -> ExitCode {
    eprintln_error(&format!("configuration error: {error}"));
    ExitCode::from(EXIT_CONFIG)
}

#[allow(clippy::print_stderr, reason = "the CLI's diagnostics go to stderr")]
fn eprintln_error(message: &str) {
    eprintln!("{message}");
}
