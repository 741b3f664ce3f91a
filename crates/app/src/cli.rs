//! The command line (clap). stdout carries only each command's result, so scripts can use it;
//! diagnostics go to stderr.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use relay_domain::{ApiKeyId, OrgId, SecretId};

/// ElevenLabs personalization webhook: greets callers by name.
///
/// Configuration comes from the environment (DATABASE_URL, REDIS_URL, LISTEN_ADDR, ...);
/// see the README for the full list.
#[derive(Debug, Parser)]
#[command(name = "relay", version, long_about = None)]
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
    /// Call records from ElevenLabs' post-call webhook.
    #[command(subcommand)]
    Calls(CallsCommand),
    /// Management API keys: create (shown once), list, revoke.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// The audit trail: every change made through the management API or this CLI.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Delete returning-caller memory and call summaries past each organization's retention,
    /// now (the service does it every MEMORY_PURGE_INTERVAL_SECONDS by itself).
    Purge,
    /// Exit 0 when the service on LISTEN_ADDR's port answers `GET /healthz` with 200 (for a
    /// container HEALTHCHECK: the runtime image has no shell or curl).
    Healthcheck,
}

#[derive(Debug, Subcommand)]
pub(crate) enum OrgCommand {
    /// Create an organization; prints its id.
    Create {
        /// Display name, said by the agent as `org_name`, so exactly as it should hear it: one
        /// line, at most 64 characters, single spaces, none of { } [ ] < > " ` | \ $.
        #[arg(long)]
        name: String,
        /// ISO 3166-1 alpha-2 region in which national numbers are read (CA, US, GB, ...).
        #[arg(long, default_value = "US")]
        region: String,
    },
    /// List organizations: id, region, memory setting and name, tab-separated.
    List,
    /// Set the returning-caller memory rules: how many days a caller's previous calls are
    /// remembered (0 turns memory off), and whether callers who are not contacts are remembered
    /// too. What is not given stays as it is (new organizations: 90 days, unknown callers off).
    SetMemory {
        org_id: OrgId,
        /// Days to remember (0: off, at most 3650).
        #[arg(long, value_parser = clap::value_parser!(u16).range(0..=3650))]
        retention_days: Option<u16>,
        /// Remember callers who are not contacts.
        #[arg(long, value_name = "on|off", value_parser = on_off)]
        unknown_callers: Option<bool>,
    },
    /// Set what ElevenLabs' initiation route calls a caller it does not recognize
    /// (`caller_name` and `caller_first_name`, as in "Hi there"); "" clears it.
    SetFallback {
        /// The organization.
        org_id: OrgId,
        /// The word or name exactly as the agent should get it: one line, at most 64
        /// characters, single spaces, none of { } [ ] < > " ` | \ $ (refused otherwise).
        #[arg(long)]
        caller_name: String,
    },
    /// Store the post-call webhook's HMAC secret (as ElevenLabs shows it), read from stdin and
    /// encrypted with WEBHOOK_SECRET_KEY. Replaces the earlier one.
    ///
    /// All of stdin is read (at most 4 KiB) and trimmed; a secret still holding a line break,
    /// a space or another control or invisible character is refused and nothing is stored.
    SetWebhookSecret {
        /// The organization.
        org_id: OrgId,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Creates a management API key and prints it (once): an organization's key with `--org`,
    /// an operator key (every organization) without.
    Create {
        /// The organization the key reaches; without it, an operator key.
        #[arg(long, value_name = "ORG_ID")]
        org: Option<OrgId>,
        /// What the key is for ("crm-sync"); shown in `keys list`.
        #[arg(long)]
        label: String,
    },
    /// Lists keys (never the keys themselves): an organization's with `--org`, the operator
    /// keys without. `id<TAB>scope<TAB>created<TAB>live|revoked TIME<TAB>label`.
    List {
        /// The organization whose keys to list.
        #[arg(long, value_name = "ORG_ID")]
        org: Option<OrgId>,
    },
    /// Revokes a key at once: from the next request on it authenticates nothing.
    Revoke {
        /// The key's id (from `keys create` or `keys list`).
        key_id: ApiKeyId,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// The newest entries first: `seq<TAB>time<TAB>actor<TAB>organization<TAB>action<TAB>target`.
    List {
        /// Only this organization's changes.
        #[arg(long, value_name = "ORG_ID")]
        org: Option<OrgId>,
        /// Most entries printed.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=500))]
        limit: u32,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum CallsCommand {
    /// Recent calls of an organization, newest first, tab-separated: received at, kind, call id,
    /// conversation id, contact id (or -), direction, caller (masked), status, success,
    /// duration in seconds, summary.
    List {
        /// The organization.
        org_id: OrgId,
        /// Only calls received at or after this time: RFC 3339 (2026-11-28T09:00:00Z) or an age
        /// (90m, 24h, 7d).
        #[arg(long)]
        since: Option<Since>,
        /// At most this many.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        limit: u32,
    },
}

/// `--since`: an instant, or an age counted back from now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Since {
    /// RFC 3339.
    At(chrono::DateTime<chrono::Utc>),
    /// `90m`, `24h`, `7d`.
    Ago(chrono::TimeDelta),
}

impl Since {
    /// The instant it names, `now` being now.
    pub(crate) fn resolve(
        self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> chrono::DateTime<chrono::Utc> {
        match self {
            Self::At(at) => at,
            // An age beyond the calendar means "everything", not a panic.
            Self::Ago(age) => now
                .checked_sub_signed(age)
                .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC),
        }
    }
}

impl std::str::FromStr for Since {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(at) = chrono::DateTime::parse_from_rfc3339(s) {
            return Ok(Self::At(at.to_utc()));
        }
        let bad = || {
            format!("expected RFC 3339 (2026-11-28T09:00:00Z) or an age (90m, 24h, 7d), got {s:?}")
        };
        let unit = s.chars().last().ok_or_else(bad)?;
        let digits = &s[..s.len() - unit.len_utf8()];
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let n: i64 = digits.parse().map_err(|_| bad())?;
        let age = match unit {
            'm' => chrono::TimeDelta::try_minutes(n),
            'h' => chrono::TimeDelta::try_hours(n),
            'd' => chrono::TimeDelta::try_days(n),
            _ => None,
        };
        age.filter(|a| *a >= chrono::TimeDelta::zero())
            .map(Self::Ago)
            .ok_or_else(bad)
    }
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
    /// Columns first_name, last_name and phone, in any order, each at most once; other columns
    /// are ignored. Re-importing is idempotent: contacts are keyed on their normalized number.
    /// Bad rows are skipped and reported (the first 20 by line). Exits 1 when nothing was
    /// imported or more than --max-rejected percent of the rows were rejected (the other rows
    /// stay imported), and at a line longer than 64 KiB (not a contacts CSV).
    Import {
        /// The organization.
        org_id: OrgId,
        #[command(flatten)]
        file: ImportFile,
    },
    /// Erase a caller on request: delete the organization's contacts with this number (any
    /// format, read in the organization's region), the number's memory, the summary and
    /// numbers of its call records and its cached call contexts, and print what was removed.
    /// Running it again removes nothing.
    Forget {
        /// The organization.
        org_id: OrgId,
        /// The caller's number.
        phone: String,
    },
}

/// `on` or `off`.
fn on_off(raw: &str) -> Result<bool, String> {
    match raw {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("expected on or off, got {raw:?}")),
    }
}

/// The CSV file of `contacts import` and how much of it may be rejected.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ImportFile {
    /// The CSV file.
    #[arg(value_name = "FILE")]
    pub(crate) path: PathBuf,
    /// Exit 1 when more than this percentage of the rows is rejected (0-100).
    #[arg(
        long,
        value_name = "PERCENT",
        default_value_t = 10,
        value_parser = clap::value_parser!(u8).range(0..=100)
    )]
    pub(crate) max_rejected: u8,
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

    #[test]
    fn since_reads_an_instant_or_an_age() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-28T12:00:00Z")
            .unwrap()
            .to_utc();
        let at = |s: &str| s.parse::<Since>().unwrap().resolve(now).to_rfc3339();
        assert_eq!(at("2026-11-28T09:00:00Z"), "2026-11-28T09:00:00+00:00");
        assert_eq!(at("90m"), "2026-11-28T10:30:00+00:00");
        assert_eq!(at("24h"), "2026-11-27T12:00:00+00:00");
        assert_eq!(at("7d"), "2026-11-21T12:00:00+00:00");
        assert_eq!(
            "99999999999d".parse::<Since>().unwrap().resolve(now),
            chrono::DateTime::<chrono::Utc>::MIN_UTC,
            "an age beyond the calendar means everything, not a panic"
        );
        for bad in ["", "h", "-1h", "3w", "yesterday", "1.5h", "1é", "é"] {
            assert!(bad.parse::<Since>().is_err(), "{bad:?}");
        }
    }
}
