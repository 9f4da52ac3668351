//! The rule book in Postgres: published rule set versions (immutable, newest in force) and
//! drafts (a change to one rule, waiting for a second admin). What the routes, the console and
//! `vigil rules` do, with the caller's name as the actor; every change is audited in the same
//! transaction.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::types::Json as Jsonb;
use sqlx::{PgConnection, PgPool};
use utoipa::ToSchema;
use vigil_engine::{HardAction, RuleSet, RuleSpec};

use crate::audit::{Change, Trail};
use crate::error::ApiError;

/// A rule as written: the fields of the rules language (docs/rules.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleBody {
    /// `lower_snake_case`, unique in the rule set.
    #[schema(pattern = "^[a-z0-9_]{1,64}$")]
    pub id: String,
    #[schema(max_length = 1000)]
    pub description: String,
    /// The condition over features and event fields.
    #[schema(min_length = 1, max_length = 4000)]
    pub when: String,
    /// Log-odds added to the model's when the rule holds (-100 to 100); or give `action`.
    pub score: Option<f64>,
    /// The decision at least this severe when the rule holds; or give `score`.
    pub action: Option<RuleAction>,
    /// `UPPER_SNAKE_CASE` reason code shown to investigators.
    #[schema(pattern = "^[A-Z0-9_]{1,64}$")]
    pub reason: String,
    /// Evaluate and record the rule's hits without acting on them.
    #[serde(default)]
    pub shadow: bool,
}

/// The decision a rule may force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RuleAction {
    Review,
    Decline,
}

impl From<RuleSpec> for RuleBody {
    fn from(spec: RuleSpec) -> Self {
        Self {
            id: spec.id,
            description: spec.description,
            when: spec.when,
            score: spec.score,
            action: spec.action.map(|a| match a {
                HardAction::Review => RuleAction::Review,
                HardAction::Decline => RuleAction::Decline,
            }),
            reason: spec.reason,
            shadow: spec.shadow,
        }
    }
}

impl From<RuleBody> for RuleSpec {
    fn from(body: RuleBody) -> Self {
        Self {
            id: body.id,
            description: body.description,
            when: body.when,
            score: body.score,
            action: body.action.map(|a| match a {
                RuleAction::Review => HardAction::Review,
                RuleAction::Decline => HardAction::Decline,
            }),
            reason: body.reason,
            shadow: body.shadow,
        }
    }
}

impl RuleBody {
    /// What the rule does when it holds, as people read it: `score +2.5`, `review`,
    /// `decline`, with `(shadow)` when it does not act.
    pub fn does(&self) -> String {
        let does = match (self.action, self.score) {
            (Some(RuleAction::Review), _) => "review".to_owned(),
            (Some(RuleAction::Decline), _) => "decline".to_owned(),
            (None, Some(s)) => format!("score {s:+}"),
            (None, None) => String::new(),
        };
        if self.shadow {
            format!("{does} (shadow)")
        } else {
            does
        }
    }

    /// Refuses text too long to be a rule's (before it is compiled, which says the rest).
    fn check_lengths(&self) -> Result<(), ApiError> {
        let limits = [
            ("id", &self.id, 64),
            ("description", &self.description, 1000),
            ("when", &self.when, 4000),
            ("reason", &self.reason, 64),
        ];
        for (field, value, most) in limits {
            if value.chars().count() > most {
                return Err(ApiError::BadRequest(format!(
                    "{field}: at most {most} characters"
                )));
            }
        }
        Ok(())
    }
}

/// A change to one rule, waiting for approval.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Draft {
    pub rule_id: String,
    /// The rule as it would be; absent when the draft removes it.
    pub rule: Option<RuleBody>,
    /// Counts the draft's changes: approve names the revision its approver read.
    pub revision: i32,
    /// Who made the last change: someone else approves it.
    pub author: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A published rule set.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RuleSetVersion {
    pub version: i32,
    pub author: String,
    pub approver: String,
    /// What the version changed.
    pub summary: String,
    pub published_at: DateTime<Utc>,
    pub rules: Vec<RuleBody>,
}

impl RuleSetVersion {
    /// The rules compiled, as the scorer holds them.
    pub fn rule_set(&self) -> Result<RuleSet, ApiError> {
        let specs = self.rules.iter().cloned().map(RuleSpec::from).collect();
        RuleSet::from_specs(specs).map_err(|e| {
            ApiError::unavailable("postgres", &format!("version {}: {e}", self.version))
        })
    }

    pub fn rule(&self, id: &str) -> Option<&RuleBody> {
        self.rules.iter().find(|r| r.id == id)
    }
}

type VersionRow = (
    i32,
    String,
    String,
    String,
    DateTime<Utc>,
    Jsonb<Vec<RuleSpec>>,
);

macro_rules! version_columns {
    () => {
        "version, author, approver, summary, published_at, rules"
    };
}

fn version_of(row: VersionRow) -> RuleSetVersion {
    let (version, author, approver, summary, published_at, rules) = row;
    RuleSetVersion {
        version,
        author,
        approver,
        summary,
        published_at,
        rules: rules.0.into_iter().map(RuleBody::from).collect(),
    }
}

type DraftRow = (
    String,
    Option<Jsonb<RuleSpec>>,
    i32,
    String,
    DateTime<Utc>,
    DateTime<Utc>,
);

macro_rules! draft_columns {
    () => {
        "rule_id, rule, revision, author, created_at, updated_at"
    };
}

fn draft_of(row: DraftRow) -> Draft {
    let (rule_id, rule, revision, author, created_at, updated_at) = row;
    Draft {
        rule_id,
        rule: rule.map(|r| r.0.into()),
        revision,
        author,
        created_at,
        updated_at,
    }
}

/// The rule set in force: the newest version.
pub async fn live(db: &mut PgConnection) -> Result<RuleSetVersion, ApiError> {
    let row: Option<VersionRow> = sqlx::query_as(concat!(
        "SELECT ",
        version_columns!(),
        " FROM rule_set_versions ORDER BY version DESC LIMIT 1"
    ))
    .fetch_optional(db)
    .await?;
    row.map(version_of).ok_or_else(|| {
        ApiError::InvalidChange(
            "no rule set is published yet: the scoring service publishes its rules file as \
             version 1 when it first starts"
                .into(),
        )
    })
}

pub async fn version(pool: &PgPool, version: i32) -> Result<RuleSetVersion, ApiError> {
    let row: Option<VersionRow> = sqlx::query_as(concat!(
        "SELECT ",
        version_columns!(),
        " FROM rule_set_versions WHERE version = $1"
    ))
    .bind(version)
    .fetch_optional(pool)
    .await?;
    row.map(version_of)
        .ok_or_else(|| ApiError::NotFound(format!("no rule set version {version}")))
}

/// Every version, newest first.
pub async fn versions(pool: &PgPool) -> Result<Vec<RuleSetVersion>, ApiError> {
    let rows: Vec<VersionRow> = sqlx::query_as(concat!(
        "SELECT ",
        version_columns!(),
        " FROM rule_set_versions ORDER BY version DESC"
    ))
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(version_of).collect())
}

pub async fn drafts(pool: &PgPool) -> Result<Vec<Draft>, ApiError> {
    let rows: Vec<DraftRow> = sqlx::query_as(concat!(
        "SELECT ",
        draft_columns!(),
        " FROM rule_drafts ORDER BY rule_id"
    ))
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(draft_of).collect())
}

/// The draft of `rule_id`, locked until `db`'s transaction ends (if it is in one): a change
/// saved while it is approved waits, and becomes a new draft after.
pub async fn draft(db: &mut PgConnection, rule_id: &str) -> Result<Option<Draft>, ApiError> {
    let row: Option<DraftRow> = sqlx::query_as(concat!(
        "SELECT ",
        draft_columns!(),
        " FROM rule_drafts WHERE rule_id = $1 FOR UPDATE"
    ))
    .bind(rule_id)
    .fetch_optional(db)
    .await?;
    Ok(row.map(draft_of))
}

/// `rules` with `rule_id` replaced by `change` (added at the end when new; removed when
/// `None`).
pub fn applied(rules: &[RuleBody], rule_id: &str, change: Option<&RuleBody>) -> Vec<RuleBody> {
    let mut out: Vec<RuleBody> = rules.iter().filter(|r| r.id != rule_id).cloned().collect();
    if let Some(rule) = change {
        match rules.iter().position(|r| r.id == rule_id) {
            Some(at) => out.insert(at, rule.clone()),
            None => out.push(rule.clone()),
        }
    }
    out
}

/// Compiles `rules`: a rule that cannot be used is refused with its field, line and column.
pub fn compile(rules: &[RuleBody]) -> Result<RuleSet, ApiError> {
    for rule in rules {
        rule.check_lengths()?;
    }
    RuleSet::from_specs(rules.iter().cloned().map(RuleSpec::from).collect())
        .map_err(ApiError::InvalidRule)
}

/// What a draft is asked to be.
#[derive(Debug, Clone, Copy)]
pub enum Proposal<'a> {
    /// A rule that is not in the live set nor drafted yet.
    New(&'a RuleBody),
    /// The rule as it should be, whether live or new.
    Change(&'a RuleBody),
    /// The live rule removed.
    Removal,
}

/// Saves the draft of `rule_id` (made or replaced), checked against the live set: it must
/// compile there.
pub async fn save_draft(
    pool: &PgPool,
    audit: &Trail,
    actor: &str,
    rule_id: &str,
    proposal: Proposal<'_>,
) -> Result<Draft, ApiError> {
    ApiError::check_id("rule id", rule_id)?;
    let mut tx = pool.begin().await?;
    let live = live(&mut tx).await?;
    let before = draft(&mut tx, rule_id).await?;
    let rule = match proposal {
        Proposal::New(rule) | Proposal::Change(rule) => Some(rule),
        Proposal::Removal => None,
    };
    if let Proposal::New(_) = proposal
        && (live.rule(rule_id).is_some() || before.is_some())
    {
        return Err(ApiError::Conflict(format!(
            "rule `{rule_id}` exists already: change it with PUT /v1/rules/{rule_id}"
        )));
    }
    if rule.is_some_and(|r| r.id != rule_id) {
        return Err(ApiError::BadRequest(format!(
            "id: the rule's id must be `{rule_id}`, as in the path"
        )));
    }
    if rule.is_none() && live.rule(rule_id).is_none() {
        return Err(ApiError::NotFound(format!(
            "no live rule `{rule_id}` to remove (to drop a draft, DELETE /v1/rules/{rule_id}/draft)"
        )));
    }
    compile(&applied(&live.rules, rule_id, rule))?;
    let row: DraftRow = sqlx::query_as(concat!(
        "INSERT INTO rule_drafts (rule_id, rule, author) VALUES ($1, $2, $3)
         ON CONFLICT (rule_id) DO UPDATE SET rule = EXCLUDED.rule, author = EXCLUDED.author,
             revision = rule_drafts.revision + 1, updated_at = now()
         RETURNING ",
        draft_columns!()
    ))
    .bind(rule_id)
    .bind(rule.map(|r| Jsonb(RuleSpec::from(r.clone()))))
    .bind(actor)
    .fetch_one(&mut *tx)
    .await?;
    let saved = draft_of(row);
    audit
        .append(
            &mut tx,
            Change {
                actor,
                action: "rule.draft",
                target: &format!("rule {rule_id}"),
                before: before.as_ref().map(to_json),
                after: Some(to_json(&saved)),
            },
        )
        .await?;
    tx.commit().await?;
    Ok(saved)
}

/// Drops the draft of `rule_id`.
pub async fn discard_draft(
    pool: &PgPool,
    audit: &Trail,
    actor: &str,
    rule_id: &str,
) -> Result<(), ApiError> {
    let mut tx = pool.begin().await?;
    let row: Option<DraftRow> = sqlx::query_as(concat!(
        "DELETE FROM rule_drafts WHERE rule_id = $1 RETURNING ",
        draft_columns!()
    ))
    .bind(rule_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(dropped) = row.map(draft_of) else {
        return Err(ApiError::NotFound(format!("no draft of rule `{rule_id}`")));
    };
    audit
        .append(
            &mut tx,
            Change {
                actor,
                action: "rule.discard",
                target: &format!("rule {rule_id}"),
                before: Some(to_json(&dropped)),
                after: None,
            },
        )
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Publishes the live set with the draft of `rule_id` applied, approved by `approver`: not
/// the draft's author, and (when `revision` is given) having read that revision of it.
pub async fn approve(
    pool: &PgPool,
    audit: &Trail,
    approver: &str,
    rule_id: &str,
    revision: Option<i32>,
) -> Result<RuleSetVersion, ApiError> {
    let mut tx = pool.begin().await?;
    lock_versions(&mut tx).await?;
    let Some(drafted) = draft(&mut tx, rule_id).await? else {
        return Err(ApiError::NotFound(format!("no draft of rule `{rule_id}`")));
    };
    if drafted.author == approver {
        return Err(ApiError::SelfApproval(rule_id.to_owned()));
    }
    if revision.is_some_and(|r| r != drafted.revision) {
        return Err(ApiError::Conflict(format!(
            "the draft changed since revision {}: it is at revision {}; read it again",
            revision.unwrap_or_default(),
            drafted.revision
        )));
    }
    let live = live(&mut tx).await?;
    let rules = applied(&live.rules, rule_id, drafted.rule.as_ref());
    compile(&rules)?;
    let summary = match (&drafted.rule, live.rule(rule_id)) {
        (None, _) => format!("remove rule {rule_id}"),
        (Some(_), None) => format!("add rule {rule_id}"),
        (Some(_), Some(_)) => format!("change rule {rule_id}"),
    };
    let published = publish(
        &mut tx,
        live.version + 1,
        &rules,
        &drafted.author,
        approver,
        &summary,
    )
    .await?;
    sqlx::query("DELETE FROM rule_drafts WHERE rule_id = $1")
        .bind(rule_id)
        .execute(&mut *tx)
        .await?;
    audit
        .append(
            &mut tx,
            Change {
                actor: approver,
                action: "rule.approve",
                target: &format!("rule {rule_id}"),
                before: live.rule(rule_id).map(to_json),
                after: Some(serde_json::json!({
                    "rule": drafted.rule,
                    "revision": drafted.revision,
                    "author": drafted.author,
                    "version": published.version,
                })),
            },
        )
        .await?;
    tx.commit().await?;
    Ok(published)
}

/// Publishes `version`'s rules again as the newest version: restores an approved set at once,
/// so it needs no second approval (the trail records who did it).
pub async fn roll_back(
    pool: &PgPool,
    audit: &Trail,
    actor: &str,
    to: i32,
) -> Result<RuleSetVersion, ApiError> {
    let earlier = version(pool, to).await?;
    let mut tx = pool.begin().await?;
    lock_versions(&mut tx).await?;
    let live = live(&mut tx).await?;
    if live.version == to {
        return Err(ApiError::InvalidChange(format!(
            "version {to} is the one in force"
        )));
    }
    let published = publish(
        &mut tx,
        live.version + 1,
        &earlier.rules,
        actor,
        actor,
        &format!("roll back to version {to}"),
    )
    .await?;
    audit
        .append(
            &mut tx,
            Change {
                actor,
                action: "rule_set.rollback",
                target: &format!("rule set version {}", published.version),
                before: Some(serde_json::json!({ "version": live.version })),
                after: Some(serde_json::json!({ "version": published.version, "rules_of": to })),
            },
        )
        .await?;
    tx.commit().await?;
    Ok(published)
}

/// One publisher at a time: versions are numbered in order.
async fn lock_versions(tx: &mut PgConnection) -> sqlx::Result<()> {
    const PUBLISH_LOCK: i64 = 0x7275_6c65_7365_7473; // "rulesets"
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(PUBLISH_LOCK)
        .execute(tx)
        .await
        .map(drop)
}

async fn publish(
    tx: &mut PgConnection,
    version: i32,
    rules: &[RuleBody],
    author: &str,
    approver: &str,
    summary: &str,
) -> Result<RuleSetVersion, ApiError> {
    let specs: Vec<RuleSpec> = rules.iter().cloned().map(RuleSpec::from).collect();
    let row: VersionRow = sqlx::query_as(concat!(
        "INSERT INTO rule_set_versions (version, rules, author, approver, summary)
         VALUES ($1, $2, $3, $4, $5) RETURNING ",
        version_columns!()
    ))
    .bind(version)
    .bind(Jsonb(specs))
    .bind(author)
    .bind(approver)
    .bind(summary)
    .fetch_one(tx)
    .await?;
    Ok(version_of(row))
}

fn to_json(value: &impl Serialize) -> serde_json::Value {
    serde_json::to_value(value).expect("rules serialize")
}
