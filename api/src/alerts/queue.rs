//! `GET /v1/alerts`: filters, two orders and cursor pages.
//!
//! Pages are keyset pages: the cursor holds the sort key of the last alert sent, and the next
//! page starts strictly after it. Sort keys never change (score, event time, id), so paging
//! through a queue that grows meanwhile neither skips nor repeats an alert that was there when
//! paging began; alerts that arrive later show up on the pages they sort into.

// utoipa's expansion of `params(AlertQuery)` names the type by a full path.
#![allow(unused_qualifications)]

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{Postgres, QueryBuilder};
use utoipa::{IntoParams, ToSchema};

use super::{AlertDecision, AlertSummary, Status, summary_columns};
use crate::card_reads::{CardRead, read_card};
use crate::error::{ApiError, ErrorBody};
use crate::extract::{Json, Query};
use crate::{Api, Principal};

/// The queue's orders.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Sort {
    /// Newest transaction first.
    #[default]
    Newest,
    /// Highest score first, then newest.
    Score,
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AlertQuery {
    #[param(inline)]
    pub status: Option<Status>,
    #[param(inline)]
    pub decision: Option<AlertDecision>,
    /// Alerts scored at least this.
    pub min_score: Option<f32>,
    /// Alerts scored at most this.
    pub max_score: Option<f32>,
    /// Transactions at or after this time (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Transactions before this time (RFC 3339).
    pub to: Option<DateTime<Utc>>,
    /// A card's token; a card number is tokenized first.
    #[param(
        pattern = r"^[^\u0000-\u001F\u007F-\u009F\u00AD\u0600-\u0605\u061C\u06DD\u070F\u0890-\u0891\u08E2\u180E\u200B-\u200F\u202A-\u202E\u2060-\u2064\u2066-\u206F\uFEFF\uFFF9-\uFFFB]{1,128}$"
    )]
    pub card_id: Option<String>,
    #[param(
        pattern = r"^[^\u0000-\u001F\u007F-\u009F\u00AD\u0600-\u0605\u061C\u06DD\u070F\u0890-\u0891\u08E2\u180E\u200B-\u200F\u202A-\u202E\u2060-\u2064\u2066-\u206F\uFEFF\uFFF9-\uFFFB]{1,128}$"
    )]
    pub merchant_id: Option<String>,
    /// A reason code, such as `VELOCITY_BURST` or `BLOCKLIST_CARD`.
    #[param(
        pattern = r"^[^\u0000-\u001F\u007F-\u009F\u00AD\u0600-\u0605\u061C\u06DD\u070F\u0890-\u0891\u08E2\u180E\u200B-\u200F\u202A-\u202E\u2060-\u2064\u2066-\u206F\uFEFF\uFFF9-\uFFFB]{1,128}$"
    )]
    pub reason: Option<String>,
    #[param(
        pattern = r"^[^\u0000-\u001F\u007F-\u009F\u00AD\u0600-\u0605\u061C\u06DD\u070F\u0890-\u0891\u08E2\u180E\u200B-\u200F\u202A-\u202E\u2060-\u2064\u2066-\u206F\uFEFF\uFFF9-\uFFFB]{1,128}$"
    )]
    pub assignee: Option<String>,
    #[param(inline)]
    pub sort: Option<Sort>,
    /// Alerts per page (at most the configured cap, 200 by default).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page, with the same filters and order.
    #[param(pattern = "^[A-Za-z0-9_-]+$")]
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AlertPage {
    pub alerts: Vec<AlertSummary>,
    /// Where the next page starts; absent on the last page.
    pub next_cursor: Option<String>,
}

/// Lists alerts.
#[utoipa::path(get, path = "/v1/alerts", tag = "alerts",
    params(AlertQuery),

    responses(
        (status = 200, description = "One page of alerts", body = AlertPage),
        (status = 400, description = "A bad filter or cursor", body = ErrorBody),
    ),
    security(("api_key" = [])))]
pub async fn list(
    State(api): State<Api>,
    Extension(caller): Extension<Arc<Principal>>,
    Query(query): Query<AlertQuery>,
) -> Result<Json<AlertPage>, ApiError> {
    let limit = query.limit.unwrap_or(api.config.default_page_size);
    if limit == 0 || limit > api.config.max_page_size {
        return Err(ApiError::BadRequest(format!(
            "limit must be between 1 and {}",
            api.config.max_page_size
        )));
    }
    for (name, value) in [
        ("merchant_id", &query.merchant_id),
        ("reason", &query.reason),
        ("assignee", &query.assignee),
    ] {
        if let Some(value) = value {
            ApiError::check_id(name, value)?;
        }
    }
    let sort = query.sort.unwrap_or_default();
    let cursor = query
        .cursor
        .as_deref()
        .map(|c| Cursor::decode(c, sort))
        .transpose()?;
    let card = match query.card_id.as_deref() {
        Some(card) => Some(read_card(&api, &caller, CardRead::AlertsByCard, card).await?),
        None => None,
    };
    let mut sql = QueryBuilder::<Postgres>::new(concat!("SELECT ", summary_columns!()));
    // With a reason, the alerts come from `alert_reasons` in the queue's order (its sort keys
    // are copies of the alert's), so that a rare code is a short index scan; `k` names the
    // table the sort keys are read from.
    let k = match &query.reason {
        None => {
            sql.push(" FROM alerts a WHERE true");
            "a"
        }
        Some(reason) => {
            sql.push(
                " FROM alert_reasons r JOIN alerts a USING (transaction_id) WHERE r.reason = ",
            )
            .push_bind(reason.clone());
            "r"
        }
    };
    filter(&mut sql, &query, card.as_deref(), k);
    if let Some(cursor) = &cursor {
        cursor.push_after(&mut sql, k);
    }
    sql.push(match sort {
        Sort::Newest => format!(" ORDER BY {k}.occurred_at DESC, {k}.transaction_id DESC"),
        Sort::Score => {
            format!(" ORDER BY {k}.score DESC, {k}.occurred_at DESC, {k}.transaction_id DESC")
        }
    });
    sql.push(" LIMIT ").push_bind(i64::from(limit) + 1);
    let mut alerts: Vec<AlertSummary> = sql.build_query_as().fetch_all(&api.pool).await?;
    let next_cursor = if alerts.len() > limit as usize {
        alerts.truncate(limit as usize);
        alerts.last().map(|last| Cursor::after(last, sort).encode())
    } else {
        None
    };
    Ok(Json(AlertPage {
        alerts,
        next_cursor,
    }))
}

/// The filters but the reason; `k` names the table of the sort keys (score and time).
fn filter(sql: &mut QueryBuilder<Postgres>, q: &AlertQuery, card: Option<&str>, k: &str) {
    if let Some(status) = q.status {
        sql.push(" AND a.status = ").push_bind(status);
    }
    if let Some(decision) = q.decision {
        sql.push(" AND a.decision = ").push_bind(decision);
    }
    if let Some(min) = q.min_score {
        sql.push(format!(" AND {k}.score >= ")).push_bind(min);
    }
    if let Some(max) = q.max_score {
        sql.push(format!(" AND {k}.score <= ")).push_bind(max);
    }
    if let Some(from) = q.from {
        sql.push(format!(" AND {k}.occurred_at >= "))
            .push_bind(from);
    }
    if let Some(to) = q.to {
        sql.push(format!(" AND {k}.occurred_at < ")).push_bind(to);
    }
    if let Some(card) = card {
        sql.push(" AND a.card_id = ").push_bind(card.to_owned());
    }
    if let Some(merchant) = &q.merchant_id {
        sql.push(" AND a.merchant_id = ")
            .push_bind(merchant.clone());
    }
    if let Some(assignee) = &q.assignee {
        sql.push(" AND a.assignee = ").push_bind(assignee.clone());
    }
}

/// The sort key of the last alert of a page.
#[derive(Debug, Clone, PartialEq)]
struct Cursor {
    /// Set in the score order.
    score: Option<f32>,
    occurred_at: DateTime<Utc>,
    id: String,
}

impl Cursor {
    fn after(alert: &AlertSummary, sort: Sort) -> Self {
        Self {
            score: (sort == Sort::Score).then_some(alert.score),
            occurred_at: alert.occurred_at,
            id: alert.id.clone(),
        }
    }

    /// `n.<micros>.<id>` or `s.<score bits>.<micros>.<id>`, in URL-safe base64.
    fn encode(&self) -> String {
        let micros = self.occurred_at.timestamp_micros();
        let text = match self.score {
            None => format!("n.{micros}.{}", self.id),
            Some(score) => format!("s.{}.{micros}.{}", score.to_bits(), self.id),
        };
        URL_SAFE_NO_PAD.encode(text)
    }

    fn decode(cursor: &str, sort: Sort) -> Result<Self, ApiError> {
        let bad = || ApiError::BadRequest("cursor is not one this API gave for this order".into());
        let text = URL_SAFE_NO_PAD
            .decode(cursor)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(bad)?;
        let (score, rest) = match (sort, text.split_once('.')) {
            (Sort::Newest, Some(("n", rest))) => (None, rest),
            (Sort::Score, Some(("s", rest))) => {
                let (bits, rest) = rest.split_once('.').ok_or_else(bad)?;
                (Some(f32::from_bits(bits.parse().map_err(|_| bad())?)), rest)
            }
            _ => return Err(bad()),
        };
        let (micros, id) = rest.split_once('.').ok_or_else(bad)?;
        let occurred_at =
            DateTime::from_timestamp_micros(micros.parse().map_err(|_| bad())?).ok_or_else(bad)?;
        Ok(Self {
            score,
            occurred_at,
            id: id.to_owned(),
        })
    }

    fn push_after(&self, sql: &mut QueryBuilder<Postgres>, k: &str) {
        match self.score {
            None => sql.push(format!(" AND ({k}.occurred_at, {k}.transaction_id) < (")),
            Some(score) => sql
                .push(format!(
                    " AND ({k}.score, {k}.occurred_at, {k}.transaction_id) < ("
                ))
                .push_bind(score)
                .push("::real, "),
        };
        sql.push_bind(self.occurred_at)
            .push(", ")
            .push_bind(self.id.clone())
            .push(")");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_another_order() {
        let at = DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap();
        let newest = Cursor {
            score: None,
            occurred_at: at,
            id: "tx.with.dots".into(),
        };
        assert_eq!(
            Cursor::decode(&newest.encode(), Sort::Newest).unwrap(),
            newest
        );
        assert!(Cursor::decode(&newest.encode(), Sort::Score).is_err());
        let by_score = Cursor {
            score: Some(0.123_456_7),
            ..newest
        };
        assert_eq!(
            Cursor::decode(&by_score.encode(), Sort::Score).unwrap(),
            by_score
        );
        assert!(Cursor::decode("not a cursor", Sort::Newest).is_err());
    }
}
