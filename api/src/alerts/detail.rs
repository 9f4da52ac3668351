//! `GET /v1/alerts/{id}`: the alert with everything an investigator needs to decide it.

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::{AlertSummary, summary_columns};
use crate::card_reads::{self, CardRead};
use crate::cards::masked;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Json, Path};
use crate::{Api, Principal};

/// How many of the card's recent transactions, and of the related open alerts, are shown.
const RECENT: i64 = 20;

#[derive(Debug, Serialize, ToSchema)]
pub struct AlertDetail {
    #[serde(flatten)]
    pub alert: AlertSummary,
    /// The investigator's latest note.
    pub note: Option<String>,
    /// The card as people read it: BIN and last 4 (`411111******1111`), when the card id is a
    /// token of a card number.
    pub card_masked: Option<String>,
    pub amount_minor: i64,
    pub currency: String,
    pub model_version: String,
    /// The rule set version that decided it (absent for decisions older than rule sets).
    pub rule_set_version: Option<i32>,
    /// The transaction as it was scored (v1 contract, card tokenized).
    #[schema(value_type = Object)]
    pub transaction: Option<serde_json::Value>,
    /// Why: `rules` (each with the values it read), `model` (top feature contributions),
    /// `comparisons` (plain sentences), and `list` when an allow or block entry decided it.
    #[schema(value_type = Object)]
    pub explanation: Option<serde_json::Value>,
    /// The card's latest transactions, newest first, with their scores.
    pub recent_transactions: Vec<CardTransaction>,
    /// Other open or in-review alerts on the same card or merchant, newest first.
    pub related_alerts: Vec<AlertSummary>,
}

#[derive(Debug, Serialize, ToSchema, sqlx::FromRow)]
pub struct CardTransaction {
    pub transaction_id: String,
    pub occurred_at: DateTime<Utc>,
    pub merchant_id: String,
    pub amount_minor: i64,
    pub currency: String,
    pub score: f32,
    pub decision: String,
    /// Where it happened, when the payment system said.
    pub lat: Option<f64>,
    pub lon: Option<f64>,
}

#[derive(sqlx::FromRow)]
struct Extra {
    note: Option<String>,
    amount_minor: i64,
    currency: String,
    model_version: String,
    rule_set_version: Option<i32>,
    transaction: Option<serde_json::Value>,
    explanation: Option<serde_json::Value>,
}

/// One alert, explained.
#[utoipa::path(get, path = "/v1/alerts/{id}", tag = "alerts",
    params(("id" = String, Path, description = "The alert's id (its transaction's id)",
        pattern = r"^[^\u0000-\u001F\u007F-\u009F\u00AD\u0600-\u0605\u061C\u06DD\u070F\u0890-\u0891\u08E2\u180E\u200B-\u200F\u202A-\u202E\u2060-\u2064\u2066-\u206F\uFEFF\uFFF9-\uFFFB]{1,128}$")),
    responses(
        (status = 200, description = "The alert", body = AlertDetail),
        (status = 404, description = "No such alert", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn get(
    State(api): State<Api>,
    Extension(caller): Extension<Arc<Principal>>,
    Path(id): Path<String>,
) -> Result<Json<AlertDetail>, ApiError> {
    let alert: AlertSummary = sqlx::query_as(concat!(
        "SELECT ",
        summary_columns!(),
        " FROM alerts a WHERE a.transaction_id = $1"
    ))
    .bind(&id)
    .fetch_optional(&api.pool)
    .await?
    .ok_or_else(|| ApiError::NotFound(format!("no alert {id}")))?;
    card_reads::log(&api, &caller, CardRead::AlertDetail, &alert.card_id, false).await?;
    let extra: Extra = sqlx::query_as(
        "SELECT a.note, d.amount_minor, d.currency, d.model_version, d.rule_set_version,
             a.transaction, a.explanation
         FROM alerts a JOIN decisions d USING (transaction_id) WHERE a.transaction_id = $1",
    )
    .bind(&id)
    .fetch_one(&api.pool)
    .await?;
    let recent_transactions = sqlx::query_as(
        "SELECT transaction_id, occurred_at, merchant_id, amount_minor, currency, score, decision,
             lat, lon
         FROM decisions WHERE card_id = $1 ORDER BY occurred_at DESC LIMIT $2",
    )
    .bind(&alert.card_id)
    .bind(RECENT)
    .fetch_all(&api.pool)
    .await?;
    let related_alerts = sqlx::query_as(concat!(
        "SELECT ",
        summary_columns!(),
        " FROM (
             (SELECT * FROM alerts WHERE card_id = $1 AND status <> 'closed'
                  AND transaction_id <> $3 ORDER BY occurred_at DESC LIMIT $4)
             UNION
             (SELECT * FROM alerts WHERE merchant_id = $2 AND status <> 'closed'
                  AND transaction_id <> $3 ORDER BY occurred_at DESC LIMIT $4)
         ) a
         ORDER BY occurred_at DESC LIMIT $4"
    ))
    .bind(&alert.card_id)
    .bind(&alert.merchant_id)
    .bind(&id)
    .bind(RECENT)
    .fetch_all(&api.pool)
    .await?;
    Ok(Json(AlertDetail {
        card_masked: masked(&alert.card_id),
        alert,
        note: extra.note,
        amount_minor: extra.amount_minor,
        currency: extra.currency,
        model_version: extra.model_version,
        rule_set_version: extra.rule_set_version,
        transaction: extra.transaction,
        explanation: extra.explanation,
        recent_transactions,
        related_alerts,
    }))
}
