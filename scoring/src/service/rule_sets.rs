//! The rule set the scoring service decides with: the newest published version of
//! `rule_set_versions` (admins publish them through the API, the console or `vigil rules`),
//! looked for every `rules_refresh_secs`. A database with no version yet gets the service's
//! own rules (its rules file, or the default rules) as version 1.

use sqlx::PgPool;
use vigil_engine::{RuleError, RuleSet, RuleSpec};

/// A published rule set, compiled.
#[derive(Debug)]
pub struct Published {
    pub version: i32,
    pub rules: RuleSet,
}

/// Why a published version could not be had.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("postgres: {0}")]
    Postgres(#[from] sqlx::Error),
    /// Refused at publish time, so only a version written by a newer Vigil (a feature this one
    /// lacks) or by hand.
    #[error("rule set version {version} cannot be used: {error}")]
    Invalid { version: i32, error: String },
}

/// The newest version, if it is newer than `held`.
pub async fn newer_than(pool: &PgPool, held: i32) -> Result<Option<Published>, LoadError> {
    let row: Option<(i32, sqlx::types::Json<Vec<RuleSpec>>)> = sqlx::query_as(
        "SELECT version, rules FROM rule_set_versions WHERE version > $1
         ORDER BY version DESC LIMIT 1",
    )
    .bind(held)
    .fetch_optional(pool)
    .await?;
    let Some((version, specs)) = row else {
        return Ok(None);
    };
    let rules = RuleSet::from_specs(specs.0).map_err(|e: RuleError| LoadError::Invalid {
        version,
        error: e.to_string(),
    })?;
    Ok(Some(Published { version, rules }))
}

/// The newest version; when there is none, `seed` published as version 1 (by whichever
/// instance comes first), `origin` saying where it came from.
pub async fn live_or_seed(
    pool: &PgPool,
    seed: &RuleSet,
    origin: &str,
) -> Result<Published, LoadError> {
    if let Some(live) = newer_than(pool, 0).await? {
        return Ok(live);
    }
    sqlx::query(
        "INSERT INTO rule_set_versions (version, rules, author, approver, summary)
         VALUES (1, $1, 'scoring service', 'scoring service', $2)
         ON CONFLICT (version) DO NOTHING",
    )
    .bind(sqlx::types::Json(seed.specs()))
    .bind(format!("seeded from {origin}"))
    .execute(pool)
    .await?;
    newer_than(pool, 0)
        .await?
        .ok_or(LoadError::Postgres(sqlx::Error::RowNotFound))
}
