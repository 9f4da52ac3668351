//! The intake's one error type and its JSON answer:
//! `{"error": {"code": "...", "message": "...", "items": [{"index": 3, "field": "...", "message": "..."}]}}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::body::Position;

/// One item of a request that breaks the contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BadItem {
    /// Index in a JSON array.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// Line of an NDJSON body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
}

impl BadItem {
    pub fn new(position: Position, error: &vigil_schema::Error) -> Self {
        let (index, line) = match position {
            Position::Index(i) => (Some(i), None),
            Position::Line(l) => (None, Some(l)),
        };
        Self {
            index,
            line,
            field: error.field().map(str::to_owned),
            // Parse errors may quote the value sent; a card number must not come back.
            message: vigil_schema::pan::redact(error.message()).into_owned(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("{} of the request's items break the v1 contract; nothing was accepted", .0.len())]
    BadItems(Vec<BadItem>),
    #[error("{0}")]
    BadBody(String),
    /// The broker did not acknowledge: the client should retry (ids make retries safe).
    #[error("the event stream is unavailable; retry the request")]
    Unavailable,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Detail<'a>,
}

#[derive(Serialize)]
struct Detail<'a> {
    code: &'static str,
    message: String,
    #[serde(skip_serializing_if = "<[BadItem]>::is_empty")]
    items: &'a [BadItem],
}

impl IntakeError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            IntakeError::BadItems(_) => (StatusCode::BAD_REQUEST, "invalid_items"),
            IntakeError::BadBody(_) => (StatusCode::BAD_REQUEST, "invalid_body"),
            IntakeError::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        }
    }
}

impl IntoResponse for IntakeError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let items = match &self {
            IntakeError::BadItems(items) => items.as_slice(),
            _ => &[],
        };
        let body = Body {
            error: Detail {
                code,
                message: vigil_schema::pan::redact(&self.to_string()).into_owned(),
                items,
            },
        };
        (status, Json(body)).into_response()
    }
}
