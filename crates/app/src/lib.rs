//! The relay service: configuration, the composition root, the command line and start-up.
//!
//! - [`config`]: the environment, read once into a typed [`ServeConfig`] / [`config::StoreConfig`].
//! - [`adapters`]: which adapter backs each port, chosen by configuration in this one place.
//! - [`Application`] / [`Service`]: the composition root. One function builds the whole service
//!   (ports observed, use cases wired, background loops started); `relay serve` runs it, and the
//!   HTTP and end-to-end tests build their world through it.
//! - The CLI (`relay org ...`, `relay contacts import ...`): thin commands over the use cases.
//!
//! This is the only crate that names concrete adapters. The binary (`src/main.rs`) is
//! [`main`].

pub mod adapters;
mod application;
mod cli;
mod commands;
pub mod config;
mod demo;
mod failure;
mod import_outcome;
mod signals;
mod telemetry;

use std::process::ExitCode;

use clap::Parser as _;

pub use crate::adapters::{Adapters, CacheKind, StoreKind};
pub use crate::application::{Application, Service, StopSignals};
use crate::cli::Cli;
pub use crate::config::{ConfigError, Env, ServeConfig};
pub use crate::failure::Failure;

/// sysexits' EX_CONFIG: the configuration is wrong, retrying will not help.
const EXIT_CONFIG: u8 = 78;

/// The `relay` program: parses the command line, starts telemetry and the runtime, runs the
/// command, and maps its outcome to an exit code (0, 1, or 78 for configuration errors).
pub fn main() -> ExitCode {
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
        Err(Failure::Config(error)) => config_error(&error),
        Err(Failure::Other(error)) => {
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
