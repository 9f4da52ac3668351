//! `GET /v1/decisions/{transaction_id}`: a transaction's decision once the scoring service has
//! committed it, for the payment system that posted it (an ingest key) and for investigators.

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::Api;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Json, Path};

pub fn routes() -> OpenApiRouter<Api> {
    OpenApiRouter::new().routes(routes!(get))
}

/// What the scoring service decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum Action {
    Approve,
    Review,
    Decline,
}

/// A transaction's decision, as committed.
#[derive(Debug, Serialize, ToSchema)]
pub struct Decision {
    pub transaction_id: String,
    pub decision: Action,
    /// Risk of fraud in [0, 1].
    pub score: f32,
    /// Reason codes of the rules and list entries that held, then the model's top features with
    /// their contributions in log-odds (`card_count_10m:+1.52`).
    pub reasons: Vec<String>,
    /// The model that scored it.
    pub model_version: String,
    /// The version of the rule set that decided it (absent for decisions older than rule sets).
    pub rule_set_version: Option<i32>,
    pub occurred_at: DateTime<Utc>,
    /// When the scoring service committed it.
    pub decided_at: DateTime<Utc>,
}

/// A decision as stored: its reasons in one string, `;`-separated.
#[derive(sqlx::FromRow)]
struct Stored {
    transaction_id: String,
    decision: Action,
    score: f32,
    reasons: String,
    model_version: String,
    rule_set_version: Option<i32>,
    occurred_at: DateTime<Utc>,
    decided_at: DateTime<Utc>,
}

impl From<Stored> for Decision {
    fn from(stored: Stored) -> Self {
        Self {
            transaction_id: stored.transaction_id,
            decision: stored.decision,
            score: stored.score,
            reasons: stored
                .reasons
                .split(';')
                .filter(|r| !r.is_empty())
                .map(str::to_owned)
                .collect(),
            model_version: stored.model_version,
            rule_set_version: stored.rule_set_version,
            occurred_at: stored.occurred_at,
            decided_at: stored.decided_at,
        }
    }
}

/// A transaction's decision.
#[utoipa::path(get, path = "/v1/decisions/{transaction_id}", tag = "decisions",
    params(("transaction_id" = String, Path, description = "The transaction's id",
        pattern = r"^[^\u0000-\u001F\u007F-\u009F\u00AD\u0600-\u0605\u061C\u06DD\u070F\u0890-\u0891\u08E2\u180E\u200B-\u200F\u202A-\u202E\u2060-\u2064\u2066-\u206F\uFEFF\uFFF9-\uFFFB]{1,128}$")),
    responses(
        (status = 200, description = "The decision", body = Decision),
        (status = 400, description = "Not a valid transaction id", body = ErrorBody),
        (status = 404, description = "No decision on this transaction (yet)", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn get(
    State(api): State<Api>,
    Path(transaction_id): Path<String>,
) -> Result<Json<Decision>, ApiError> {
    ApiError::check_id("transaction_id", &transaction_id)?;
    let stored: Option<Stored> = sqlx::query_as(
        "SELECT transaction_id, decision, score, reasons, model_version, rule_set_version,
             occurred_at, decided_at
         FROM decisions WHERE transaction_id = $1",
    )
    .bind(&transaction_id)
    .fetch_optional(&api.pool)
    .await?;
    let stored = stored.ok_or_else(|| {
        ApiError::NotFound(format!(
            "no decision on transaction {transaction_id} (yet: one posted moments ago may still \
             be scored)"
        ))
    })?;
    Ok(Json(stored.into()))
}
