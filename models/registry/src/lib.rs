//! The model registry in Postgres (table `models`): register artifacts, list them, and move
//! them between statuses. Status changes take a connection so that callers can record them in
//! the audit trail in the same transaction.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};

use vigil_models::artifact::{Artifact, ArtifactError};

/// Where a model stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[sqlx(type_name = "text", rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub enum Status {
    /// Trained and registered; not served.
    Candidate,
    /// Scored alongside the champion on every transaction, never acted on.
    Shadow,
    /// Makes the decisions (with the online model learning on top).
    Champion,
    /// No longer served.
    Retired,
}

impl Status {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "candidate" => Some(Self::Candidate),
            "shadow" => Some(Self::Shadow),
            "champion" => Some(Self::Champion),
            "retired" => Some(Self::Retired),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Candidate => "candidate",
            Self::Shadow => "shadow",
            Self::Champion => "champion",
            Self::Retired => "retired",
        }
    }
}

/// A registered model, without its trees.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct ModelInfo {
    pub version: String,
    pub kind: String,
    pub status: Status,
    /// Fingerprint of the feature names the model reads.
    pub feature_schema: String,
    pub trained_from: DateTime<Utc>,
    pub trained_to: DateTime<Utc>,
    /// AUC-ROC, average precision, card precision@100 and calibration on the validation
    /// period, with the period.
    #[cfg_attr(feature = "utoipa", schema(value_type = Option<Object>))]
    pub validation: Option<sqlx::types::Json<serde_json::Value>>,
    pub code_version: String,
    pub created_at: DateTime<Utc>,
    pub status_changed_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("no model {0} in the registry")]
    NotFound(String),
    #[error("a model {0} is already registered")]
    Exists(String),
    #[error("model {version} is {status}; {action}")]
    Transition {
        version: String,
        status: &'static str,
        action: &'static str,
    },
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
    #[error("postgres: {0}")]
    Database(#[from] sqlx::Error),
}

/// The columns of [`ModelInfo`], as a literal so that queries stay static strings.
macro_rules! info_columns {
    () => {
        "version, kind, status, feature_schema, trained_from, trained_to, validation, \
         code_version, created_at, status_changed_at"
    };
}

/// Adds a model as a candidate; refuses one this engine cannot serve.
pub async fn register(pool: &PgPool, artifact: &Artifact) -> Result<ModelInfo, RegistryError> {
    artifact.check()?;
    let validation = artifact
        .validation
        .as_ref()
        .map(|v| sqlx::types::Json(serde_json::to_value(v).expect("a validation serializes")));
    let period = artifact.training.period;
    let inserted = sqlx::query_as::<_, ModelInfo>(concat!(
        "INSERT INTO models (version, kind, feature_schema, trained_from, trained_to,
                             validation, code_version, artifact)
         VALUES ($1, $2, $3, to_timestamp($4::float8 / 1000), to_timestamp($5::float8 / 1000),
                 $6, $7, $8)
         ON CONFLICT (version) DO NOTHING
         RETURNING ",
        info_columns!()
    ))
    .bind(&artifact.version)
    .bind(artifact.kind.as_str())
    .bind(&artifact.features.fingerprint)
    .bind(period.from.unix_millis())
    .bind(period.to.unix_millis())
    .bind(validation)
    .bind(&artifact.code_version)
    .bind(artifact.to_json())
    .fetch_optional(pool)
    .await?;
    inserted.ok_or_else(|| RegistryError::Exists(artifact.version.clone()))
}

/// Every model, newest first.
pub async fn list(pool: &PgPool) -> Result<Vec<ModelInfo>, RegistryError> {
    Ok(sqlx::query_as(concat!(
        "SELECT ",
        info_columns!(),
        " FROM models ORDER BY created_at DESC, version"
    ))
    .fetch_all(pool)
    .await?)
}

pub async fn info(pool: &PgPool, version: &str) -> Result<ModelInfo, RegistryError> {
    sqlx::query_as(concat!(
        "SELECT ",
        info_columns!(),
        " FROM models WHERE version = $1"
    ))
    .bind(version)
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| RegistryError::NotFound(version.to_owned()))
}

/// A model's artifact, checked against this engine's feature schema.
pub async fn artifact(pool: &PgPool, version: &str) -> Result<Artifact, RegistryError> {
    Ok(Artifact::from_json(&artifact_bytes(pool, version).await?)?)
}

/// The artifact bytes as stored, unchecked (for export).
pub async fn artifact_bytes(pool: &PgPool, version: &str) -> Result<Vec<u8>, RegistryError> {
    sqlx::query_scalar("SELECT artifact FROM models WHERE version = $1")
        .bind(version)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| RegistryError::NotFound(version.to_owned()))
}

/// The champion's version, if there is one.
pub async fn champion(pool: &PgPool) -> Result<Option<String>, RegistryError> {
    Ok(
        sqlx::query_scalar("SELECT version FROM models WHERE status = 'champion'")
            .fetch_optional(pool)
            .await?,
    )
}

/// The models to serve, (version, status): cheap enough to poll.
pub async fn serving(pool: &PgPool) -> Result<Vec<(String, Status)>, RegistryError> {
    Ok(
        sqlx::query_as("SELECT version, status FROM models WHERE status IN ('champion', 'shadow')")
            .fetch_all(pool)
            .await?,
    )
}

/// What a status change did: the model before and after, and the champion it replaced.
#[derive(Debug, Clone)]
pub struct StatusChange {
    pub before: ModelInfo,
    pub after: ModelInfo,
    pub replaced_champion: Option<String>,
}

/// Moves a model to `to`. Serving it (shadow or champion) needs an artifact this engine can
/// read; a new champion retires the one before it. Run it in a transaction.
pub async fn set_status(
    conn: &mut PgConnection,
    version: &str,
    to: Status,
) -> Result<StatusChange, RegistryError> {
    let before: ModelInfo = sqlx::query_as(concat!(
        "SELECT ",
        info_columns!(),
        " FROM models WHERE version = $1 FOR UPDATE"
    ))
    .bind(version)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| RegistryError::NotFound(version.to_owned()))?;
    if before.status == to {
        return Err(RegistryError::Transition {
            version: version.to_owned(),
            status: to.as_str(),
            action: "nothing to change",
        });
    }
    if matches!(to, Status::Shadow | Status::Champion) {
        let bytes: Vec<u8> = sqlx::query_scalar("SELECT artifact FROM models WHERE version = $1")
            .bind(version)
            .fetch_one(&mut *conn)
            .await?;
        Artifact::from_json(&bytes)?;
    }
    let replaced_champion = if to == Status::Champion {
        sqlx::query_scalar(
            "UPDATE models SET status = 'retired', status_changed_at = now()
             WHERE status = 'champion' RETURNING version",
        )
        .fetch_optional(&mut *conn)
        .await?
    } else {
        None
    };
    let after: ModelInfo = sqlx::query_as(concat!(
        "UPDATE models SET status = $2, status_changed_at = now() WHERE version = $1
         RETURNING ",
        info_columns!()
    ))
    .bind(version)
    .bind(to)
    .fetch_one(&mut *conn)
    .await?;
    Ok(StatusChange {
        before,
        after,
        replaced_champion,
    })
}
