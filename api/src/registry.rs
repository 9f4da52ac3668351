//! The model registry (admin): `GET /v1/models`, `GET /v1/models/{version}`,
//! `POST /v1/models/{version}/promote` and `POST /v1/models/{version}/retire`, and the same
//! status changes for `vigil models` and `vigil train --promote-if-better`. Every change is
//! audited; the scoring service serves a new champion or shadow within seconds.

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use vigil_registry::{self as registry, ModelInfo, RegistryError, Status};

use crate::Api;
use crate::audit::{Change, Trail};
use crate::auth::Principal;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Json, Path};

pub fn routes() -> OpenApiRouter<Api> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(show))
        .routes(routes!(promote))
        .routes(routes!(retire))
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::NotFound(_) => ApiError::NotFound(e.to_string()),
            RegistryError::Exists(_) | RegistryError::Transition { .. } => {
                ApiError::InvalidChange(e.to_string())
            }
            // A model this engine cannot serve (another feature schema or format).
            RegistryError::Artifact(_) => ApiError::InvalidChange(e.to_string()),
            RegistryError::Database(e) => e.into(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelList {
    pub models: Vec<ModelInfo>,
}

/// A model with what it was trained on and its hyper-parameters.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelDetail {
    pub model: ModelInfo,
    /// The training period, the time its labels were known at, examples and frauds.
    #[schema(value_type = Object)]
    pub training: serde_json::Value,
    #[schema(value_type = Object)]
    pub config: serde_json::Value,
}

/// Where a promotion moves a model.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// Decides every transaction; the champion before it is retired.
    #[default]
    Champion,
    /// Scored beside the champion, never acted on.
    Shadow,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Promotion {
    #[serde(default)]
    pub to: Target,
}

/// Moves `version` to `to`, audited as done by `actor`, in one transaction; a champion it
/// replaces is audited as retired.
pub async fn set_status(
    pool: &PgPool,
    trail: &Trail,
    actor: &str,
    version: &str,
    to: Status,
) -> Result<ModelInfo, ApiError> {
    let mut tx = pool.begin().await?;
    let change = registry::set_status(&mut tx, version, to).await?;
    let json = |m: &ModelInfo| serde_json::to_value(m).expect("a model serializes");
    if let Some(replaced) = &change.replaced_champion {
        trail
            .append(
                &mut tx,
                Change {
                    actor,
                    action: "model.retire",
                    target: &format!("model {replaced}"),
                    before: Some(serde_json::json!({"status": "champion"})),
                    after: Some(serde_json::json!({"status": "retired", "replaced_by": version})),
                },
            )
            .await?;
    }
    let action = match to {
        Status::Retired => "model.retire",
        _ => "model.promote",
    };
    trail
        .append(
            &mut tx,
            Change {
                actor,
                action,
                target: &format!("model {version}"),
                before: Some(json(&change.before)),
                after: Some(json(&change.after)),
            },
        )
        .await?;
    tx.commit().await?;
    Ok(change.after)
}

/// The registered models, newest first.
#[utoipa::path(get, path = "/v1/models", tag = "models",
    responses((status = 200, description = "The models", body = ModelList)),
    security(("api_key" = [])))]
pub async fn list(State(api): State<Api>) -> Result<Json<ModelList>, ApiError> {
    Ok(Json(ModelList {
        models: registry::list(&api.pool).await?,
    }))
}

/// One model: status, training and validation metrics, hyper-parameters.
#[utoipa::path(get, path = "/v1/models/{version}", tag = "models",
    params(("version" = String, Path, description = "The model's version",
        pattern = r"^[^\u0000-\u001F\u007F-\u009F\u00AD\u0600-\u0605\u061C\u06DD\u070F\u0890-\u0891\u08E2\u180E\u200B-\u200F\u202A-\u202E\u2060-\u2064\u2066-\u206F\uFEFF\uFFF9-\uFFFB]{1,128}$")),
    responses(
        (status = 200, description = "The model", body = ModelDetail),
        (status = 404, description = "No such model", body = ErrorBody),
        (status = 409, description = "The stored artifact cannot be read by this Vigil", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn show(
    State(api): State<Api>,
    Path(version): Path<String>,
) -> Result<Json<ModelDetail>, ApiError> {
    ApiError::check_id("version", &version)?;
    let model = registry::info(&api.pool, &version).await?;
    let artifact = registry::artifact(&api.pool, &version).await?;
    Ok(Json(ModelDetail {
        model,
        training: serde_json::to_value(&artifact.training).expect("serializes"),
        config: serde_json::to_value(&artifact.config).expect("serializes"),
    }))
}

/// Makes a model the champion (the default) or a shadow; refused when its feature schema is
/// not the running engine's.
#[utoipa::path(post, path = "/v1/models/{version}/promote", tag = "models",
    params(("version" = String, Path, description = "The model's version",
        pattern = r"^[^\u0000-\u001F\u007F-\u009F\u00AD\u0600-\u0605\u061C\u06DD\u070F\u0890-\u0891\u08E2\u180E\u200B-\u200F\u202A-\u202E\u2060-\u2064\u2066-\u206F\uFEFF\uFFF9-\uFFFB]{1,128}$")),
    request_body = Promotion,
    responses(
        (status = 200, description = "The model, promoted", body = ModelInfo),
        (status = 404, description = "No such model", body = ErrorBody),
        (status = 409, description = "Already there, or a feature schema the engine does not compute", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn promote(
    State(api): State<Api>,
    Extension(caller): Extension<Arc<Principal>>,
    Path(version): Path<String>,
    Json(promotion): Json<Promotion>,
) -> Result<Json<ModelInfo>, ApiError> {
    ApiError::check_id("version", &version)?;
    let to = match promotion.to {
        Target::Champion => Status::Champion,
        Target::Shadow => Status::Shadow,
    };
    Ok(Json(
        set_status(&api.pool, &api.audit, &caller.actor(), &version, to).await?,
    ))
}

/// Stops serving a model.
#[utoipa::path(post, path = "/v1/models/{version}/retire", tag = "models",
    params(("version" = String, Path, description = "The model's version",
        pattern = r"^[^\u0000-\u001F\u007F-\u009F\u00AD\u0600-\u0605\u061C\u06DD\u070F\u0890-\u0891\u08E2\u180E\u200B-\u200F\u202A-\u202E\u2060-\u2064\u2066-\u206F\uFEFF\uFFF9-\uFFFB]{1,128}$")),
    responses(
        (status = 200, description = "The model, retired", body = ModelInfo),
        (status = 404, description = "No such model", body = ErrorBody),
        (status = 409, description = "Already retired", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn retire(
    State(api): State<Api>,
    Extension(caller): Extension<Arc<Principal>>,
    Path(version): Path<String>,
) -> Result<Json<ModelInfo>, ApiError> {
    ApiError::check_id("version", &version)?;
    Ok(Json(
        set_status(
            &api.pool,
            &api.audit,
            &caller.actor(),
            &version,
            Status::Retired,
        )
        .await?,
    ))
}
