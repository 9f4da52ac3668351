//! `vigil rules`: rules files and the published rule sets from the command line. `check` reads
//! a file; the rest work on the configured Postgres as `/v1/rules` and `/v1/rule-sets` do, with
//! the operating-system user as the actor: a draft made here is approved by someone else.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Result;
use chrono::{DateTime, Utc};
use clap::Subcommand;
use vigil_api::rules::{RuleBody, RuleSetVersion, book, history};
use vigil_engine::RuleSet;

use crate::cli::ConfigArg;
use vigil_app::backtest;
use vigil_app::db::{actor, block_on};
use vigil_app::output;

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Check a rules file and list its rules (without FILE: the default rules)
    Check {
        /// The rules file to check
        file: Option<PathBuf>,
    },
    /// The rules in force (the newest published version) and the drafts
    List(ConfigArg),
    /// Draft every rule of a rules file (`[[rule]]` tables, docs/rules.md): each is a new rule
    /// or a change to the live rule of its id, waiting for another person's approval
    Draft {
        file: PathBuf,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Draft the removal of a live rule
    Remove {
        id: String,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Drop a rule's draft
    Discard {
        id: String,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Test a rule's draft (or the live rule) on the stored decisions of a period: hits per
    /// day, precision on labelled hits, alerts added and removed, a sample
    Test {
        id: String,
        /// Start of the period (RFC 3339); default: 30 days before --to
        #[arg(long)]
        from: Option<DateTime<Utc>>,
        /// End of the period (RFC 3339); default: now
        #[arg(long)]
        to: Option<DateTime<Utc>>,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Approve a rule's draft (not your own): publishes the live rules with it as a new version,
    /// which the scoring service decides with within seconds
    Approve {
        id: String,
        /// The draft's revision you read: refused if it has changed since
        #[arg(long)]
        revision: Option<i32>,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// The published versions, newest (in force) first
    Versions(ConfigArg),
    /// Publish an earlier version's rules again as the newest version
    Rollback {
        version: i32,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Print a published version (default: the one in force) as a rules file, e.g. for
    /// `vigil backtest --rules`
    Export {
        #[arg(long)]
        version: Option<i32>,
        #[command(flatten)]
        config: ConfigArg,
    },
}

pub fn run(command: &RulesCommand) -> Result<()> {
    let config = match command {
        RulesCommand::Check { file } => return check(file.as_deref()),
        RulesCommand::List(config)
        | RulesCommand::Versions(config)
        | RulesCommand::Draft { config, .. }
        | RulesCommand::Remove { config, .. }
        | RulesCommand::Discard { config, .. }
        | RulesCommand::Test { config, .. }
        | RulesCommand::Approve { config, .. }
        | RulesCommand::Rollback { config, .. }
        | RulesCommand::Export { config, .. } => config,
    };
    let config = config.load()?;
    let changes = !matches!(
        command,
        RulesCommand::List(_)
            | RulesCommand::Versions(_)
            | RulesCommand::Test { .. }
            | RulesCommand::Export { .. }
    );
    if changes {
        // Audited with the services' key, which must be the one configured.
        config.check_secrets()?;
    }
    let trail = config.audit_trail();
    let me = actor();
    block_on(&config, async |pool| match command {
        RulesCommand::Check { .. } => unreachable!("checked without a database"),
        RulesCommand::List(_) => {
            let live = book::live(&mut *pool.acquire().await?).await?;
            let drafts = book::drafts(&pool).await?;
            let mut lines = vec![format!(
                "rule set version {} (published {} by {}, approved by {})",
                live.version, live.published_at, live.author, live.approver
            )];
            lines.extend(live.rules.iter().map(line));
            for draft in drafts {
                let what = draft.rule.as_ref().map_or("remove".to_owned(), line);
                lines.push(format!(
                    "draft of {} (revision {}, by {}): {what}",
                    draft.rule_id, draft.revision, draft.author
                ));
            }
            output::print(lines.join("\n") + "\n")
        }
        RulesCommand::Draft { file, .. } => {
            let rules = backtest::load_rules(Some(file))?;
            for spec in rules.specs() {
                let rule = RuleBody::from(spec);
                let draft =
                    book::save_draft(&pool, &trail, &me, &rule.id, book::Proposal::Change(&rule))
                        .await?;
                eprintln!(
                    "drafted {} (revision {}); another person approves it: vigil rules approve {} --revision {}",
                    draft.rule_id, draft.revision, draft.rule_id, draft.revision
                );
            }
            Ok(())
        }
        RulesCommand::Remove { id, .. } => {
            let draft = book::save_draft(&pool, &trail, &me, id, book::Proposal::Removal).await?;
            eprintln!(
                "drafted the removal of {id} (revision {}); another person approves it",
                draft.revision
            );
            Ok(())
        }
        RulesCommand::Discard { id, .. } => {
            book::discard_draft(&pool, &trail, &me, id).await?;
            eprintln!("dropped the draft of {id}");
            Ok(())
        }
        RulesCommand::Test { id, from, to, .. } => {
            let period = history::Period {
                from: *from,
                to: *to,
            };
            let report = history::test_rule(&pool, &config.engine, id, &period).await?;
            output::print(report_text(&report))
        }
        RulesCommand::Approve { id, revision, .. } => {
            let published = book::approve(&pool, &trail, &me, id, *revision).await?;
            output::print(format!("{}\n", published_line(&published)))
        }
        RulesCommand::Versions(_) => {
            let lines: Vec<String> = book::versions(&pool)
                .await?
                .iter()
                .map(|v| {
                    format!(
                        "{:>4}  {}  {:<40} by {}, approved by {} ({} rules)",
                        v.version,
                        v.published_at.format("%Y-%m-%d %H:%M:%S"),
                        v.summary,
                        v.author,
                        v.approver,
                        v.rules.len()
                    )
                })
                .collect();
            output::print(lines.join("\n") + "\n")
        }
        RulesCommand::Rollback { version, .. } => {
            let published = book::roll_back(&pool, &trail, &me, *version).await?;
            output::print(format!("{}\n", published_line(&published)))
        }
        RulesCommand::Export { version, .. } => {
            let chosen = match version {
                Some(v) => book::version(&pool, *v).await?,
                None => book::live(&mut *pool.acquire().await?).await?,
            };
            output::print(chosen.rule_set()?.to_toml())
        }
    })
}

fn check(file: Option<&Path>) -> Result<()> {
    let rules: RuleSet = backtest::load_rules(file)?;
    let mut lines: Vec<String> = rules
        .specs()
        .into_iter()
        .map(RuleBody::from)
        .map(|r| line(&r))
        .collect();
    lines.push(format!("{} rules, all valid\n", rules.rules().len()));
    output::print(lines.join("\n"))
}

fn line(rule: &RuleBody) -> String {
    format!(
        "{:<36} {:<30} {:<16} when {}",
        rule.id,
        rule.reason,
        rule.does(),
        rule.when
    )
}

fn published_line(published: &RuleSetVersion) -> String {
    format!(
        "published rule set version {}: {} (by {}, approved by {})",
        published.version, published.summary, published.author, published.approver
    )
}

fn report_text(r: &history::TestReport) -> String {
    let precision = r
        .precision
        .map_or("-".to_owned(), |p| format!("{:.1} %", p * 100.0));
    let tested = r.draft_revision.map_or("the live rule".to_owned(), |v| {
        format!("draft revision {v}")
    });
    let mut out = format!(
        "{} ({tested}) against rule set version {}, {} to {}\n\
         decisions {}, hits {} (live rule: {}), labelled fraud {}, genuine {}, precision {precision}\n\
         alerts added {}, removed {}, mean score shift on hits {:+.4}, shadow hits recorded {}\n\
         ({} ms)\n\nday          decisions      hits     fraud   genuine    shadow\n",
        r.rule_id,
        r.live_version,
        r.from,
        r.to,
        r.decisions,
        r.hits,
        r.live_hits,
        r.hits_fraud,
        r.hits_genuine,
        r.alerts_added,
        r.alerts_removed,
        r.mean_score_shift,
        r.shadow_hits_recorded,
        r.elapsed_ms,
    );
    for d in &r.days {
        let _ = writeln!(
            out,
            "{}  {:>9} {:>9} {:>9} {:>9} {:>9}",
            d.day, d.decisions, d.hits, d.fraud, d.genuine, d.shadow_hits_recorded
        );
    }
    out.push_str("\nsample of hits: transaction, time, amount, label, live -> draft\n");
    for h in &r.sample {
        let _ = writeln!(
            out,
            "{}  {}  {} {}  {}  {} {:.3} -> {} {:.3}",
            h.transaction_id,
            h.occurred_at,
            h.amount_minor,
            h.currency,
            h.label.unwrap_or("-"),
            h.live.decision,
            h.live.score,
            h.draft.decision,
            h.draft.score
        );
    }
    out
}
