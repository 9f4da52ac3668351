//! `GET /v1/cards/{card_id}/risk`: a card's latest score and recent alerts, from Redis (what
//! the scoring service writes after each commit), so that it answers in a millisecond or two.

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use vigil_schema::{CardId, redis_keys};

use crate::card_reads::{CardRead, read_card};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Json, Path};
use crate::{Api, Principal};

pub fn routes() -> OpenApiRouter<Api> {
    OpenApiRouter::new().routes(routes!(risk))
}

/// The card id a client sent, as Vigil stores it: a card number becomes its token.
pub fn card_token(api: &Api, card_id: &str) -> Result<String, ApiError> {
    CardId::parse(card_id).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    Ok(api.tokenizer.tokenize(card_id).into_owned())
}

/// `411111******1111` from a token `411111-<hex>-1111`; `None` for other card ids.
pub fn masked(card_id: &str) -> Option<String> {
    let mut parts = card_id.split('-');
    let (bin, hash, last4) = (parts.next()?, parts.next()?, parts.next()?);
    let digits = |s: &str, n| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    (parts.next().is_none() && digits(bin, 6) && digits(last4, 4) && hash.len() == 16)
        .then(|| format!("{bin}******{last4}"))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CardRisk {
    /// The card's token.
    pub card_id: String,
    pub card_masked: Option<String>,
    /// The card's latest decision.
    pub latest: Latest,
    /// The card's newest alerts, newest first.
    pub recent_alerts: Vec<RecentAlert>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Latest {
    pub transaction_id: String,
    pub score: f32,
    pub decision: String,
    /// Event time of that transaction, in unix milliseconds.
    pub occurred_at_ms: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RecentAlert {
    pub transaction_id: String,
    pub occurred_at_ms: i64,
}

/// A card's current risk.
#[utoipa::path(get, path = "/v1/cards/{card_id}/risk", tag = "cards",
    params(("card_id" = String, Path, description = "The card's token, or its number (tokenized first)",
        pattern = r"^[^\u0000-\u001F\u007F-\u009F\u00AD\u0600-\u0605\u061C\u06DD\u070F\u0890-\u0891\u08E2\u180E\u200B-\u200F\u202A-\u202E\u2060-\u2064\u2066-\u206F\uFEFF\uFFF9-\uFFFB]{1,128}$")),
    responses(
        (status = 200, description = "The card's risk", body = CardRisk),
        (status = 400, description = "Not a valid card id", body = ErrorBody),
        (status = 404, description = "No decision on this card within the risk TTL", body = ErrorBody),
        (status = 429, description = "Too many cards named by their number", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn risk(
    State(api): State<Api>,
    Extension(caller): Extension<Arc<Principal>>,
    Path(card_id): Path<String>,
) -> Result<Json<CardRisk>, ApiError> {
    let card_id = read_card(&api, &caller, CardRead::Risk, &card_id).await?;
    let key = redis_keys::card(&api.redis_prefix, &card_id);
    let mut redis = api.redis.clone();
    let (fields, alerts): (Vec<Option<String>>, Vec<(String, f64)>) = redis::pipe()
        .hmget(
            &key,
            &["transaction_id", "score", "decision", "occurred_at"],
        )
        .zrevrange_withscores(redis_keys::card_alerts(&api.redis_prefix, &card_id), 0, -1)
        .query_async(&mut redis)
        .await?;
    let [
        Some(transaction_id),
        Some(score),
        Some(decision),
        Some(occurred_at),
    ] = <[Option<String>; 4]>::try_from(fields).unwrap_or_default()
    else {
        return Err(ApiError::NotFound("no recent decision on this card".into()));
    };
    let corrupt = || ApiError::unavailable("redis", &"a card risk hash with unreadable fields");
    Ok(Json(CardRisk {
        card_masked: masked(&card_id),
        card_id,
        latest: Latest {
            transaction_id,
            score: score.parse().map_err(|_| corrupt())?,
            decision,
            occurred_at_ms: occurred_at.parse().map_err(|_| corrupt())?,
        },
        recent_alerts: alerts
            .into_iter()
            .map(|(transaction_id, at)| RecentAlert {
                transaction_id,
                occurred_at_ms: at as i64,
            })
            .collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::masked;

    #[test]
    fn only_tokens_of_card_numbers_are_masked() {
        assert_eq!(
            masked("411111-0123456789abcdef-1111").as_deref(),
            Some("411111******1111")
        );
        assert_eq!(masked("card_42"), None);
        assert_eq!(masked("411111-0123-1111"), None);
    }
}
