//! One card: its current risk from Redis (`GET /v1/cards/{id}/risk`), its recent decisions
//! and alerts from Postgres. The read is logged in `card_reads`, as the API's is.

use axum::Extension;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use maud::html;

use super::page::{self, ConsoleError, badge, card_shown, encode};
use super::session::Signed;
use super::story;
use crate::alerts::detail::CardTransaction;
use crate::auth::INVESTIGATE;
use crate::cards::risk;
use crate::extract::{Json, Path};
use crate::{Api, ApiError};

/// Decisions and alerts shown.
const RECENT: i64 = 50;

#[derive(sqlx::FromRow)]
struct CardAlert {
    transaction_id: String,
    occurred_at: DateTime<Utc>,
    score: f32,
    status: String,
    disposition: Option<String>,
}

pub async fn page(
    State(api): State<Api>,
    signed: Signed,
    axum::extract::Path(card_id): axum::extract::Path<String>,
) -> Result<Response, ConsoleError> {
    signed.require(INVESTIGATE)?;
    // Reads (and logs) the card first: a card number becomes its token there.
    let risk = match risk(
        State(api.clone()),
        Extension(signed.principal.clone()),
        Path(card_id.clone()),
    )
    .await
    {
        Ok(Json(risk)) => Some(risk),
        Err(ApiError::NotFound(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let token = api.tokenizer.tokenize(&card_id).into_owned();
    let decisions: Vec<CardTransaction> = sqlx::query_as(
        "SELECT transaction_id, occurred_at, merchant_id, amount_minor, currency, score, decision,
             lat, lon
         FROM decisions WHERE card_id = $1 ORDER BY occurred_at DESC LIMIT $2",
    )
    .bind(&token)
    .bind(RECENT)
    .fetch_all(&api.pool)
    .await
    .map_err(ApiError::from)?;
    let alerts: Vec<CardAlert> = sqlx::query_as(
        "SELECT transaction_id, occurred_at, score, status, disposition FROM alerts
         WHERE card_id = $1 ORDER BY occurred_at DESC LIMIT $2",
    )
    .bind(&token)
    .bind(RECENT)
    .fetch_all(&api.pool)
    .await
    .map_err(ApiError::from)?;
    let body = html! {
        h1 { "Card " (card_shown(&token)) }
        section.summary {
            h2 { "Risk now" }
            @match &risk {
                Some(risk) => dl {
                    dt { "Latest score" } dd.score #risk-score { (page::score(risk.latest.score)) }
                    dt { "Latest decision" } dd { (badge(&risk.latest.decision)) " on " (risk.latest.transaction_id) }
                    dt { "Alerts kept in Redis" } dd { (risk.recent_alerts.len()) }
                },
                None => p.empty { "No decision on this card within the risk's time to live." },
            }
        }
        section {
            h2 { "Alerts" }
            @if alerts.is_empty() { p.empty { "None." } }
            ul.related {
                @for a in &alerts {
                    li {
                        a href={"/console/alerts/" (encode(&a.transaction_id))} { (a.transaction_id) }
                        " · " (page::time(a.occurred_at)) " · score " (page::score(a.score)) " · "
                        (badge(&a.status)) " " (a.disposition.as_deref().unwrap_or(""))
                    }
                }
            }
        }
        (story::recent(&decisions, None))
    };
    Ok(page::shell("Card", Some(&signed), &body).into_response())
}
