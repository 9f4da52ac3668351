//! The alert queue: `GET /v1/alerts` (filters, two orders, cursor pages), `GET /v1/alerts/{id}`
//! (everything an investigator needs to decide), `PATCH /v1/alerts/{id}` and
//! `POST /v1/alerts/bulk` (claim, assign, move status, disposition; optimistic concurrency),
//! and `GET /v1/alerts/live` (new alerts as server-sent events).
//!
//! An alert's id is its transaction's id.

pub(crate) mod detail;
pub mod outbox;
pub(crate) mod queue;
pub(crate) mod work;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use work::{AlertChange, WorkState, apply};

use crate::Api;

pub fn routes() -> OpenApiRouter<Api> {
    OpenApiRouter::new()
        .routes(routes!(queue::list))
        .routes(routes!(detail::get, work::patch))
        .routes(routes!(work::bulk))
        .routes(routes!(crate::live::alerts))
}

/// Where an alert stands in the investigators' work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum Status {
    Open,
    InReview,
    Closed,
}

impl Status {
    /// As the API's JSON names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "open",
            Status::InReview => "in_review",
            Status::Closed => "closed",
        }
    }
}

/// The scoring service's decision that raised the alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum AlertDecision {
    Review,
    Decline,
}

impl AlertDecision {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertDecision::Review => "review",
            AlertDecision::Decline => "decline",
        }
    }
}

/// An investigator's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum Disposition {
    Fraud,
    Genuine,
}

impl Disposition {
    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::Fraud => "fraud",
            Disposition::Genuine => "genuine",
        }
    }
}

/// An alert as the queue lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct AlertSummary {
    /// The alert's id: its transaction's id.
    pub id: String,
    /// The card's token (never a card number).
    pub card_id: String,
    pub merchant_id: String,
    pub occurred_at: DateTime<Utc>,
    /// Risk of fraud in [0, 1].
    pub score: f32,
    pub decision: AlertDecision,
    /// Reason codes of the rules and list entries that held.
    pub reasons: Vec<String>,
    pub status: Status,
    pub assignee: Option<String>,
    pub disposition: Option<Disposition>,
    /// Send it back with a change: a change made against an older version gets 409.
    pub version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The columns of an [`AlertSummary`] from `alerts a`, for `SELECT`s and `RETURNING`s (a
/// macro, so that `concat!` makes each query a literal).
macro_rules! summary_columns {
    () => {
        "a.transaction_id AS id, a.card_id, a.merchant_id, a.occurred_at, a.score, a.decision, \
         a.rules AS reasons, a.status, a.assignee, a.disposition, a.version, a.created_at, \
         a.updated_at"
    };
}
use summary_columns;
