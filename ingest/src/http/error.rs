//! The intake's one error type and its JSON answer:
//! `{"error": {"code": "...", "message": "...", "items": [{"index": 3, "field": "...", "message": "..."}]}}`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
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

/// Bad items listed in an answer; the others are only counted, so that a body of millions of
/// bad lines does not make an answer (and the memory behind it) larger still.
pub const LISTED_BAD_ITEMS: usize = 100;

/// A request's bad items: the first [`LISTED_BAD_ITEMS`], and how many there were.
#[derive(Debug, Default)]
pub struct BadItems {
    pub listed: Vec<BadItem>,
    pub total: usize,
}

impl BadItems {
    pub fn add(&mut self, position: Position, error: &vigil_schema::Error) {
        self.total += 1;
        if self.listed.len() < LISTED_BAD_ITEMS {
            self.listed.push(BadItem::new(position, error));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error(
        "{} of the request's items break the v1 contract (the first {} listed); nothing was accepted",
        .0.total,
        .0.listed.len()
    )]
    BadItems(BadItems),
    #[error("{0}")]
    BadBody(String),
    #[error("{0}")]
    BadQuery(String),
    #[error(
        "the body is larger than the intake takes ({0} bytes, `ingest.max_body_bytes`); split it"
    )]
    TooLarge(usize),
    /// The bodies in flight hold the intake's budget of bytes.
    #[error("the intake is reading as much as it takes at once; retry after a moment")]
    Overloaded,
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
            IntakeError::BadQuery(_) => (StatusCode::BAD_REQUEST, "invalid_query"),
            IntakeError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            IntakeError::Overloaded => (StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
            IntakeError::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        }
    }
}

impl IntoResponse for IntakeError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let items = match &self {
            IntakeError::BadItems(items) => items.listed.as_slice(),
            _ => &[],
        };
        let body = Body {
            error: Detail {
                code,
                message: vigil_schema::pan::redact(&self.to_string()).into_owned(),
                items,
            },
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_body_of_bad_lines_gets_an_answer_of_bounded_size() {
        let mut bad = BadItems::default();
        let error = vigil_schema::from_json::<vigil_schema::Transaction>("1").unwrap_err();
        for line in 1..=100_000 {
            bad.add(Position::Line(line), &error);
        }
        let response = IntakeError::BadItems(bad).into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        assert!(body.len() < 50_000, "{} bytes", body.len());
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let error = &json["error"];
        assert_eq!(
            error["items"].as_array().map(Vec::len),
            Some(LISTED_BAD_ITEMS)
        );
        assert_eq!(error["items"][99]["line"], 100);
        let message = error["message"].as_str().unwrap();
        assert!(
            message.starts_with("100000 of the request's items"),
            "{message}"
        );
    }
}
