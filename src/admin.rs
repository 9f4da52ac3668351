//! `vigil keys` (create, revoke and list API keys) and `vigil audit verify`: administration
//! from the command line, against the configured Postgres. Key changes made here are audited
//! like those made through the API, with the operating-system user as the actor.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Subcommand;
use sqlx::PgPool;
use vigil_api::Role;
use vigil_api::audit::{self, Trail, Verdict};
use vigil_api::keys::{self, NewKey};

use crate::cli::ConfigArg;
use vigil_app::db::{actor, block_on};
use vigil_app::output;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key and print it (shown this once; only its hash is stored)
    Create {
        /// ingest (post transactions and labels), investigator (read and work alerts) or admin
        /// (everything, with keys and lists)
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// Who or what uses the key (an investigator's name when they claim alerts)
        #[arg(long)]
        name: String,
        /// Requests per second this key may make (default: `api.default_rate_per_sec`)
        #[arg(long)]
        rate: Option<u32>,
        /// Days the key works for (default: until revoked); give keys a lifetime and rotate them
        #[arg(long, value_name = "DAYS")]
        expires_in_days: Option<u32>,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Revoke a key by its id: it stops working within 5 seconds
    Revoke {
        id: i64,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// List the keys (ids, names, roles, prefixes; never the keys themselves)
    List {
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the audit trail's hash chain; names the first broken record (exit status 1)
    Verify {
        /// Checkpoints taken before (`vigil audit checkpoint`), one a line: each must still be a
        /// record of the chain, with its hash; finds the newest records removed.
        #[arg(long)]
        checkpoints: Option<PathBuf>,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Print the newest record's checkpoint (`SEQ:HASH`), to keep outside the database, e.g.
    /// appended to a file only its writer may append to, for `verify --checkpoints`
    Checkpoint {
        #[command(flatten)]
        config: ConfigArg,
    },
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s).ok_or_else(|| format!("`{s}` is not a role: ingest, investigator or admin"))
}

pub fn keys(command: &KeysCommand) -> Result<()> {
    let config = match command {
        KeysCommand::Create { config, .. }
        | KeysCommand::Revoke { config, .. }
        | KeysCommand::List { config } => config.load()?,
    };
    // A change made here is audited with the services' key, which must be the one configured.
    if !matches!(command, KeysCommand::List { .. }) {
        config.check_secrets()?;
    }
    let trail = config.audit_trail();
    block_on(&config, async |pool| match command {
        KeysCommand::Create {
            role,
            name,
            rate,
            expires_in_days,
            ..
        } => {
            let new = NewKey {
                name: name.clone(),
                role: *role,
                rate_per_sec: *rate,
                expires_in_days: *expires_in_days,
            };
            let created = keys::create_key(&pool, &trail, &actor(), &new).await?;
            eprintln!(
                "created key {} ({}, role {}); it is shown this once:",
                created.key.id,
                created.key.name,
                created.key.role.as_str()
            );
            output::print(format!("{}\n", created.secret))
        }
        KeysCommand::Revoke { id, .. } => {
            let key = keys::revoke_key(&pool, &trail, &actor(), *id).await?;
            output::print(format!("revoked key {} ({})\n", key.id, key.name))
        }
        KeysCommand::List { .. } => {
            let mut lines = vec![format!(
                "{:>5}  {:<14} {:<13} {:<24} {:>6}  {}",
                "id", "prefix", "role", "name", "rate/s", "state"
            )];
            for key in keys::all(&pool).await? {
                let state = match (key.revoked_at, key.expires_at) {
                    (Some(at), _) => format!("revoked {at}"),
                    (None, Some(at)) if at <= chrono::Utc::now() => format!("expired {at}"),
                    (None, Some(at)) => format!("live until {at}"),
                    (None, None) => "live".to_owned(),
                };
                let rate = key.rate_per_sec.map_or("-".into(), |r| r.to_string());
                lines.push(format!(
                    "{:>5}  {:<14} {:<13} {:<24} {rate:>6}  {state}",
                    key.id,
                    key.prefix,
                    key.role.as_str(),
                    key.name
                ));
            }
            output::print(lines.join("\n") + "\n")
        }
    })
}

pub fn audit(command: &AuditCommand) -> Result<()> {
    match command {
        AuditCommand::Verify {
            checkpoints,
            config,
        } => {
            let checkpoints = checkpoints.as_deref().map(read_checkpoints).transpose()?;
            let config = config.load()?;
            config.check_secrets()?;
            let trail = config.audit_trail();
            block_on(&config, async |pool| {
                let checkpoints = checkpoints.as_deref().unwrap_or_default();
                match trail.verify(&pool, checkpoints).await? {
                    Verdict::Intact { records, unkeyed } => output::print(format!(
                        "audit trail intact: {records} records{}\n",
                        match unkeyed {
                            0 => String::new(),
                            n => format!(" (the first {n} from before the chain was keyed)"),
                        }
                    )),
                    Verdict::Broken { seq, reason } => {
                        anyhow::bail!("audit trail broken at record {seq}: {reason}")
                    }
                }
            })
        }
        AuditCommand::Checkpoint { config } => block_on(&config.load()?, async |pool| {
            let checkpoint = audit::checkpoint(&pool)
                .await?
                .context("the audit trail is empty: nothing to checkpoint")?;
            output::print(format!("{checkpoint}\n"))
        }),
    }
}

fn read_checkpoints(path: &Path) -> Result<Vec<audit::Checkpoint>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| audit::Checkpoint::parse(line).map_err(anyhow::Error::msg))
        .collect::<Result<_>>()
        .with_context(|| format!("in {}", path.display()))
}

/// Creates a key for the demo and the benchmarks.
pub async fn create_key(
    pool: &PgPool,
    trail: &Trail,
    name: &str,
    role: Role,
    rate: Option<u32>,
) -> Result<String> {
    let new = NewKey {
        name: name.into(),
        role,
        rate_per_sec: rate,
        expires_in_days: None,
    };
    Ok(keys::create_key(pool, trail, &actor(), &new).await?.secret)
}
