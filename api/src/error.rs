//! The API's one error type, and its JSON answer, the same as the intake's:
//! `{"error": {"code": "not_found", "message": "no alert tx_123"}}`.
//!
//! Database, Redis and Kafka errors are logged here and answered with a generic 503: their text
//! never reaches a client. Every message goes through PAN redaction on its way out.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("a valid API key is required: send it as `Authorization: Bearer <key>`")]
    Unauthorized,
    #[error("this key's role ({0}) may not do this")]
    Forbidden(&'static str),
    /// The alert is someone else's: only its assignee or an admin changes it.
    #[error("{0}")]
    NotAssignee(String),
    #[error("too many requests for this key; retry in {0} s")]
    RateLimited(u64),
    /// Too many cards named by their number (`api.card_number_lookups_per_minute`).
    #[error(
        "this key named too many cards by their number; name them by their token, or retry in \
         {0} s"
    )]
    NumberLookupsLimited(u64),
    #[error("{0}")]
    BadRequest(String),
    /// A rule that cannot be used: the field, and in a condition the line and column.
    #[error("{0}")]
    InvalidRule(vigil_engine::RuleError),
    /// Maker-checker: a draft's author may not approve it.
    #[error("you made the last change to the draft of rule `{0}`: another admin approves it")]
    SelfApproval(String),
    #[error("{0}")]
    NotFound(String),
    /// An optimistic-concurrency conflict: the client worked from an older version.
    #[error("{0}")]
    Conflict(String),
    /// A change the resource's current state does not allow.
    #[error("{0}")]
    InvalidChange(String),
    #[error("the request body is too large")]
    TooLarge,
    /// A store or the broker failed; the cause is logged, not sent.
    #[error("a backing service is unavailable; retry the request")]
    Unavailable,
}

impl ApiError {
    /// Logs `error` and answers 503.
    pub fn unavailable(what: &str, error: &dyn std::fmt::Display) -> Self {
        tracing::error!(backend = what, error = %error, "request failed");
        ApiError::Unavailable
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotAssignee(_) => (StatusCode::FORBIDDEN, "not_assignee"),
            ApiError::RateLimited(_) | ApiError::NumberLookupsLimited(_) => {
                (StatusCode::TOO_MANY_REQUESTS, "rate_limited")
            }
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::InvalidRule(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_rule"),
            ApiError::SelfApproval(_) => (StatusCode::FORBIDDEN, "self_approval"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "version_conflict"),
            ApiError::InvalidChange(_) => (StatusCode::CONFLICT, "invalid_change"),
            ApiError::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            ApiError::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        }
    }

    pub fn status(&self) -> StatusCode {
        self.status_and_code().0
    }

    /// The JSON body of this error.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.status_and_code().1.to_owned(),
                message: vigil_schema::pan::redact(&self.to_string()).into_owned(),
            },
        }
    }
}

impl ApiError {
    /// `value` of parameter or field `name` breaks the rule of identifiers.
    pub fn check_id(name: &str, value: &str) -> Result<(), ApiError> {
        vigil_schema::check_id(value).map_err(|e| ApiError::BadRequest(format!("{name}: {e}")))
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        ApiError::unavailable("postgres", &e)
    }
}

impl From<redis::RedisError> for ApiError {
    fn from(e: redis::RedisError) -> Self {
        ApiError::unavailable("redis", &e)
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError::TooLarge;
        }
        ApiError::BadRequest(rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::BadRequest(rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::BadRequest(rejection.body_text())
    }
}

/// Every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, for programs: `unauthorized`, `forbidden`, `rate_limited`, `bad_request`,
    /// `not_found`, `version_conflict`, `invalid_change`, `too_large`, `unavailable`.
    pub code: String,
    /// For people.
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), Json(self.body())).into_response();
        if let ApiError::RateLimited(seconds) | ApiError::NumberLookupsLimited(seconds) = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let ApiError::Unauthorized = self {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
