//! What each command does: read its configuration, build what it needs, call the use cases.
//! `serve` builds the [`Application`]; the admin commands open the store the configuration names.

use std::io::IsTerminal as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use relay_domain::{OrgId, OrgName, Region, mask_phone};
use relay_ports::Store;
use relay_usecase::post_call::SecretSealer;
use relay_usecase::{
    CallHistory, ForgetCaller, ForgetError, ManageError, Management, ManagementPorts, OrgChange,
    Principal, Retention, WebhookSecret, WebhookSecretError, check_prompt_text,
};

use crate::application::Application;
use crate::cli::{
    AuditCommand, CallsCommand, Command, ContactsCommand, ImportFile, KeysCommand, OrgCommand,
    SecretCommand,
};
use crate::config::{ConfigError, Env, ServeConfig, StoreConfig, webhook_sealer_from_env};
use crate::failure::Failure;
use crate::signals::Signals;
use crate::{adapters, import_outcome};

fn process_env() -> Env<impl Fn(&str) -> Option<String>> {
    Env(|name: &str| std::env::var(name).ok())
}

pub(crate) async fn run(command: Command, tracing_enabled: bool) -> Result<(), Failure> {
    let env = process_env();
    match command {
        Command::Serve => serve(ServeConfig::from_env(&env)?, tracing_enabled).await,
        Command::Healthcheck => healthcheck(ServeConfig::listen_addr_from_env(&env)?).await,
        Command::Migrate { create_database } => {
            adapters::migrate(&StoreConfig::from_env(&env)?, create_database).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Org(cmd) => org(cmd, &env).await,
        Command::Calls(cmd) => calls(cmd, &StoreConfig::from_env(&env)?).await,
        Command::Secret(cmd) => secret(cmd, &StoreConfig::from_env(&env)?).await,
        Command::Contacts(ContactsCommand::Import { org_id, file }) => {
            import(org_id, &file, &StoreConfig::from_env(&env)?).await
        }
        Command::Contacts(ContactsCommand::Forget { org_id, phone }) => {
            forget(org_id, &phone, &ServeConfig::from_env(&env)?).await
        }
        Command::Purge => purge(&StoreConfig::from_env(&env)?).await,
        Command::Keys(cmd) => keys(cmd, &StoreConfig::from_env(&env)?).await,
        Command::Audit(cmd) => audit(cmd, &StoreConfig::from_env(&env)?).await,
    }
}

/// `relay purge`: one bounded run of the service's retention job.
#[allow(clippy::print_stdout, reason = "stdout is the command's result")]
async fn purge(config: &StoreConfig) -> Result<(), Failure> {
    let purged = Retention::new(admin_store(config).await?)
        .purge(chrono::Utc::now())
        .await
        .map_err(relay_ports::AdminError::from)?;
    if purged.ran {
        println!(
            "memories\t{}\nsummaries\t{}",
            purged.memories, purged.summaries
        );
    } else {
        println!("skipped: another replica is purging now");
    }
    Ok(())
}

/// `relay contacts forget`: erasure through the store and the cache the service uses.
#[allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "stdout is what was removed; notes go to stderr"
)]
async fn forget(org_id: OrgId, phone: &str, config: &ServeConfig) -> Result<(), Failure> {
    let adapters = adapters::Adapters::open(config).await?;
    let forget = ForgetCaller::new(
        adapters.store.clone(),
        adapters.store.clone(),
        adapters.cache.clone(),
    );
    let print = |report: &relay_usecase::ForgetReport| {
        let contacts: Vec<String> = report
            .stored
            .contacts
            .iter()
            .map(ToString::to_string)
            .collect();
        println!(
            "contacts\t{}\t{}\nmemories\t{}\ncall records\t{}\ncached contexts\t{}",
            contacts.len(),
            contacts.join(","),
            report.stored.memories,
            report.stored.calls,
            report.cached_contexts,
        );
    };
    match forget.forget(org_id, phone).await {
        Ok(report) => {
            print(&report);
            if !report.is_empty() {
                management(&config.store, None)
                    .await?
                    .record(&Principal::CLI, Some(org_id), "caller.forget", None)
                    .await;
            }
            if report.is_empty() {
                eprintln!("nothing of this caller was left: already forgotten, or never known");
            }
            if adapters.cache_kind == adapters::CacheKind::InProcess {
                eprintln!(
                    "note: without REDIS_URL the call contexts live in the running service's \
                     memory, which this command cannot reach; they expire within 24 h or at \
                     its restart"
                );
            }
            Ok(())
        }
        Err(ForgetError::Cache(error, report)) => {
            print(&report);
            Err(anyhow::Error::new(error)
                .context(
                    "the store is done but the cache could not be reached; run the command again",
                )
                .into())
        }
        Err(ForgetError::Phone(reason)) => {
            Err(anyhow::anyhow!("PHONE is not a phone number: {reason}; nothing removed").into())
        }
        Err(ForgetError::Store(error)) => Err(error.into()),
    }
}

async fn admin_store(config: &StoreConfig) -> Result<Arc<dyn Store>, Failure> {
    adapters::for_command(config).await
}

/// The management operations the CLI shares with the management API, acting as
/// [`Principal::CLI`] (an operator, audited as `cli`). No CLI command deletes single contacts, so
/// the call-context cache is an empty in-process one (`contacts forget` opens the real one).
async fn management(
    config: &StoreConfig,
    sealer: Option<Arc<SecretSealer>>,
) -> Result<Management, Failure> {
    let store = admin_store(config).await?;
    Ok(Management::new(
        ManagementPorts {
            orgs: store.clone(),
            contacts: store.clone(),
            import: store.clone(),
            keys: store.clone(),
            audit: store.clone(),
            calls: store,
            cache: Arc::new(relay_memory_cache::MemoryCache::new(1)),
        },
        sealer,
    ))
}

/// A refused value, as the CLI names its flag.
fn refused(error: ManageError, flag: &str) -> Failure {
    match error {
        ManageError::Invalid { reason, .. } => {
            anyhow::anyhow!("{flag} refused, nothing stored: {reason}").into()
        }
        other => other.into(),
    }
}

#[allow(clippy::print_stdout, reason = "stdout is the command's result")]
async fn keys(cmd: KeysCommand, config: &StoreConfig) -> Result<(), Failure> {
    let manage = management(config, None).await?;
    let who = Principal::CLI;
    let line = |k: &relay_domain::ApiKeyInfo| {
        let scope = k
            .scope
            .org()
            .map_or_else(|| "operator".to_owned(), |o| format!("org:{o}"));
        let state = k.revoked_at.map_or_else(
            || "live".to_owned(),
            |t| format!("revoked {}", t.to_rfc3339()),
        );
        format!(
            "{}\t{scope}\t{}\t{state}\t{}",
            k.id,
            k.created_at.to_rfc3339(),
            k.label.as_str()
        )
    };
    match cmd {
        KeysCommand::Create { org, label } => {
            let issued = manage
                .create_key(&who, org, &label)
                .await
                .map_err(|e| refused(e, "--label"))?;
            #[allow(clippy::print_stderr, reason = "a note beside the result")]
            {
                eprintln!(
                    "key {} created; the key below is shown only once",
                    issued.info.id
                );
            }
            println!("{}", issued.token.expose());
        }
        KeysCommand::List { org } => {
            for key in manage.list_keys(&who, org).await? {
                println!("{}", line(&key));
            }
        }
        KeysCommand::Revoke { key_id } => {
            let key = manage.revoke_key(&who, key_id).await?;
            println!("{}", line(&key));
        }
    }
    Ok(())
}

#[allow(clippy::print_stdout, reason = "stdout is the command's result")]
async fn audit(cmd: AuditCommand, config: &StoreConfig) -> Result<(), Failure> {
    let manage = management(config, None).await?;
    let AuditCommand::List { org, limit } = cmd;
    let page = manage
        .audit_trail(&Principal::CLI, org, None, Some(limit))
        .await?;
    for e in page.items {
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}",
            e.seq,
            e.at.to_rfc3339(),
            e.actor,
            e.org_id.map_or_else(|| "-".to_owned(), |o| o.to_string()),
            e.action,
            e.target.as_deref().unwrap_or("-"),
        );
    }
    Ok(())
}

async fn serve(config: ServeConfig, tracing_enabled: bool) -> Result<(), Failure> {
    // Installed first: from here on SIGTERM drains instead of killing the process.
    let mut signals = Signals::install().context("cannot install the signal handlers")?;
    Application::build(config, tracing_enabled)
        .await?
        .run_until_stopped(&mut signals)
        .await
}

/// `GET /healthz` on the loopback address of `listen_addr`'s port, within 2 s.
async fn healthcheck(listen_addr: std::net::SocketAddr) -> Result<(), Failure> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let target = if listen_addr.ip().is_unspecified() {
        std::net::SocketAddr::new(
            if listen_addr.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            },
            listen_addr.port(),
        )
    } else {
        listen_addr
    };
    let check = async {
        let mut stream = tokio::net::TcpStream::connect(target).await?;
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await?;
        Ok::<_, std::io::Error>(head)
    };
    let head = tokio::time::timeout(Duration::from_secs(2), check)
        .await
        .map_err(|_| anyhow::anyhow!("{target} did not answer /healthz within 2 s"))?
        .with_context(|| format!("cannot reach {target}"))?;
    if head.starts_with(b"HTTP/1.1 200") {
        Ok(())
    } else {
        Err(anyhow::anyhow!(
            "{target} answered /healthz with {:?}",
            String::from_utf8_lossy(&head)
        )
        .into())
    }
}

#[allow(clippy::print_stdout, reason = "stdout is the command's result")]
async fn org<F: Fn(&str) -> Option<String>>(cmd: OrgCommand, env: &Env<F>) -> Result<(), Failure> {
    if let OrgCommand::SetWebhookSecret { org_id } = cmd {
        return set_webhook_secret(org_id, env).await;
    }
    let manage = management(&StoreConfig::from_env(env)?, None).await?;
    let who = Principal::CLI;
    match cmd {
        OrgCommand::Create { name, region } => {
            // `org_name` reaches the agent's prompt: refuse what it would not get as typed
            // rather than store one name and have the agent say another.
            check_prompt_text(&name)
                .map_err(|e| anyhow::anyhow!("--name refused, nothing stored: {e}"))?;
            OrgName::parse(&name).map_err(|e| anyhow::anyhow!("--name: {e}"))?;
            Region::parse(&region).map_err(|e| anyhow::anyhow!("--region: {e}"))?;
            let org = manage.create_organization(&who, &name, &region).await?;
            println!("{}", org.id);
        }
        OrgCommand::List => {
            for org in manage.list_organizations(&who).await? {
                println!(
                    "{}\t{}\t{}\t{}",
                    org.id, org.default_region, org.memory, org.name
                );
            }
        }
        OrgCommand::SetFallback {
            org_id,
            caller_name,
        } => {
            let change = OrgChange {
                unknown_caller_name: Some(caller_name),
                ..OrgChange::default()
            };
            let org = manage
                .update_organization(&who, org_id, change)
                .await
                .map_err(|e| refused(e, "--caller-name"))?;
            println!("{}\t{:?}", org.id, org.unknown_caller_name);
        }
        OrgCommand::SetMemory {
            org_id,
            retention_days,
            unknown_callers,
        } => {
            let change = OrgChange {
                memory_retention_days: retention_days,
                memory_unknown_callers: unknown_callers,
                ..OrgChange::default()
            };
            let org = manage
                .update_organization(&who, org_id, change)
                .await
                .map_err(|e| refused(e, "--retention-days"))?;
            println!("{}\t{}", org.id, org.memory);
        }
        OrgCommand::SetWebhookSecret { .. } => unreachable!("handled above"),
    }
    Ok(())
}

/// `relay org set-webhook-secret`: the key is checked before connecting (a missing key is a
/// configuration error, not a store error), the secret read from all of stdin.
#[allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "stdout is the command's result; the prompt goes to stderr"
)]
async fn set_webhook_secret<F: Fn(&str) -> Option<String>>(
    org_id: OrgId,
    env: &Env<F>,
) -> Result<(), Failure> {
    use secrecy::ExposeSecret as _;
    use std::io::Read as _;
    /// A secret is well under 1 KiB; more on stdin is the wrong file piped in.
    const MAX_STDIN_BYTES: u64 = 4 * 1024;
    let sealer = webhook_sealer_from_env(env)?.ok_or(ConfigError::Invalid {
        name: "WEBHOOK_SECRET_KEY",
        reason: "must be set to store a webhook secret (openssl rand -base64 32)".into(),
    })?;
    if std::io::stdin().is_terminal() {
        eprintln!("paste the webhook secret, then Enter and Ctrl-D");
    }
    // All of stdin, not its first line: a second line would otherwise be dropped without a word.
    let mut input = Vec::new();
    std::io::stdin()
        .take(MAX_STDIN_BYTES + 1)
        .read_to_end(&mut input)
        .context("cannot read the webhook secret from stdin")?;
    let input = secrecy::SecretBox::new(Box::new(input));
    let refused = |why: &str| anyhow::anyhow!("{why}; nothing stored");
    if input.expose_secret().len() as u64 > MAX_STDIN_BYTES {
        return Err(refused("stdin holds more than 4096 bytes, not one webhook secret").into());
    }
    let text = std::str::from_utf8(input.expose_secret())
        .map_err(|_| refused("the webhook secret on stdin is not valid UTF-8"))?;
    // Checked here for the CLI's own messages; the shared operation checks it again.
    WebhookSecret::parse(&secrecy::SecretString::from(text)).map_err(|e| match e {
        WebhookSecretError::Empty => anyhow::anyhow!(
            "{e}: pipe it on stdin, e.g. `relay org set-webhook-secret {org_id} < secret.txt`; \
             nothing stored"
        ),
        _ => refused(&e.to_string()),
    })?;
    management(&StoreConfig::from_env(env)?, Some(sealer))
        .await?
        .set_webhook_secret(&Principal::CLI, org_id, &secrecy::SecretString::from(text))
        .await?;
    println!("{org_id}\twebhook secret stored (encrypted)");
    Ok(())
}

#[allow(clippy::print_stdout, reason = "stdout is the command's result")]
async fn calls(cmd: CallsCommand, config: &StoreConfig) -> Result<(), Failure> {
    let history = CallHistory::new(admin_store(config).await?);
    match cmd {
        CallsCommand::List {
            org_id,
            since,
            limit,
        } => {
            let since = since.map(|s| s.resolve(chrono::Utc::now()));
            for call in history.recent(org_id, since, limit).await? {
                let one_line = |s: Option<&str>| {
                    s.map_or_else(
                        || "-".to_owned(),
                        |s| s.split_whitespace().collect::<Vec<_>>().join(" "),
                    )
                };
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    call.received_at.to_rfc3339(),
                    call.kind.as_str(),
                    call.id,
                    call.conversation_id,
                    call.contact_id
                        .map_or_else(|| "-".to_owned(), |c| c.to_string()),
                    one_line(call.direction.as_deref()),
                    call.external_number
                        .as_deref()
                        .map_or_else(|| "-".to_owned(), mask_phone),
                    one_line(call.status.as_deref()),
                    one_line(call.call_successful.as_deref()),
                    call.duration_secs
                        .map_or_else(|| "-".to_owned(), |d| d.to_string()),
                    one_line(call.summary.as_deref()),
                );
            }
        }
    }
    Ok(())
}

#[allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "stdout is the result; notes go to stderr"
)]
async fn secret(cmd: SecretCommand, config: &StoreConfig) -> Result<(), Failure> {
    let manage = management(config, None).await?;
    let who = Principal::CLI;
    match cmd {
        SecretCommand::Add { org_id } => {
            let issued = manage.issue_secret(&who, org_id).await?;
            eprintln!(
                "secret {} created for organization {org_id}; the token below is shown only once",
                issued.info.id
            );
            println!("{}", issued.token.expose());
        }
        SecretCommand::List { org_id } => {
            for s in manage.list_secrets(&who, org_id).await? {
                let revoked = s.revoked_at.map_or_else(
                    || "live".to_owned(),
                    |t| format!("revoked {}", t.to_rfc3339()),
                );
                println!("{}\t{}\t{revoked}", s.id, s.created_at.to_rfc3339());
            }
        }
        SecretCommand::Revoke { secret_id } => {
            let s = manage.revoke_secret_by_id(&who, secret_id).await?;
            let at = s.revoked_at.map(|t| t.to_rfc3339()).unwrap_or_default();
            println!("{}\t{at}", s.id);
        }
    }
    Ok(())
}

#[allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "stdout is the summary; rejections go to stderr"
)]
async fn import(org_id: OrgId, file: &ImportFile, config: &StoreConfig) -> Result<(), Failure> {
    let manage = management(config, None).await?;
    manage.organization(&Principal::CLI, org_id).await?;
    let (rows, stopped) =
        relay_contact_files::csv::open(&file.path).map_err(anyhow::Error::from)?;

    let progress = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {human_pos} rows  {per_sec}  {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let started = std::time::Instant::now();
    let report = manage
        .import_contacts(&Principal::CLI, org_id, rows, |n| progress.set_position(n))
        .await?;
    progress.finish_and_clear();

    for line in import_outcome::rejection_lines(&report) {
        eprintln!("{line}");
    }
    eprintln!("imported in {:.1} s", started.elapsed().as_secs_f64());
    println!("{}", import_outcome::summary(&report));
    if let Some(error) = stopped.take() {
        return Err(import_outcome::stopped(&file.path, &error, &report).into());
    }
    import_outcome::verdict(&report, file.max_rejected)?;
    Ok(())
}
