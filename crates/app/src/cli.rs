//! The command line (clap). stdout carries only each command's result, so scripts can use it;
//! diagnostics go to stderr.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use relay_domain::{OrgId, SecretId};

/// ElevenLabs personalization webhook: greets callers by name.
///
/// Configuration comes from the environment (DATABASE_URL, REDIS_URL, LISTEN_ADDR, ...);
/// see the README for the full list.
#[derive(Debug, Parser)]
#[command(name = "relay", version, about, long_about = None)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Serve the webhook (the default when no command is given).
    Serve,
    /// Apply pending database migrations, then exit.
    Migrate {
        /// Create the database first if it does not exist (local development).
        #[arg(long)]
        create_database: bool,
    },
    /// Manage organizations.
    #[command(subcommand)]
    Org(OrgCommand),
    /// Manage an organization's tool secrets (the webhook's Bearer tokens).
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Manage contacts.
    #[command(subcommand)]
    Contacts(ContactsCommand),
    /// Exit 0 when the service on LISTEN_ADDR's port answers `GET /healthz` with 200 (for a
    /// container HEALTHCHECK: the runtime image has no shell or curl).
    Healthcheck,
}

#[derive(Debug, Subcommand)]
pub(crate) enum OrgCommand {
    /// Create an organization; prints its id.
    Create {
        /// Display name, said by the agent as `org_name`.
        #[arg(long)]
        name: String,
        /// ISO 3166-1 alpha-2 region in which national numbers are read (CA, US, GB, ...).
        #[arg(long, default_value = "US")]
        region: String,
    },
    /// List organizations: id, region and name, tab-separated.
    List,
}

#[derive(Debug, Subcommand)]
pub(crate) enum SecretCommand {
    /// Create a new tool secret; prints the token, which is shown this once only.
    Add {
        /// The organization.
        org_id: OrgId,
    },
    /// List an organization's secrets: id, created, revoked (never the tokens).
    List {
        /// The organization.
        org_id: OrgId,
    },
    /// Revoke a secret: it stops authenticating within ORG_CACHE_TTL_SECONDS (10 s by default),
    /// the time a replica keeps the organization found for a token.
    Revoke {
        /// The secret (from `relay secret list`).
        secret_id: SecretId,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ContactsCommand {
    /// Import contacts from a CSV file with a header row.
    ///
    /// Columns first_name, last_name and phone, in any order; other columns are ignored.
    /// Re-importing is idempotent: contacts are keyed on their normalized number.
    Import {
        /// The organization.
        org_id: OrgId,
        /// The CSV file.
        file: PathBuf,
    },
}

impl Cli {
    /// The command to run; `relay` alone serves.
    pub(crate) fn into_command(self) -> Command {
        self.command.unwrap_or(Command::Serve)
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        <Cli as clap::CommandFactory>::command().debug_assert();
    }
}
