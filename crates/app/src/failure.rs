//! Why a command failed, as the process reports it: configuration (exit 78) or anything else
//! (exit 1). Every module may fail with it; it depends on none of them but [`crate::config`].

use relay_ports::AdminError;
use relay_usecase::{ImportError, ManageError};

use crate::config::ConfigError;

/// Why a command (or building the service) failed.
#[derive(Debug)]
pub enum Failure {
    /// The configuration is wrong: retrying will not help (exit 78).
    Config(ConfigError),
    /// Anything else (exit 1).
    Other(anyhow::Error),
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Self {
        Self::Config(e)
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Self::Other(e)
    }
}

impl From<AdminError> for Failure {
    fn from(e: AdminError) -> Self {
        Self::Other(e.into())
    }
}

impl From<ImportError> for Failure {
    fn from(e: ImportError) -> Self {
        Self::Other(e.into())
    }
}

impl From<ManageError> for Failure {
    fn from(e: ManageError) -> Self {
        Self::Other(e.into())
    }
}
