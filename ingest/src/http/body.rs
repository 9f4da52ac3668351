//! A request body: read within the intake's budget of bytes, then split into its items (one
//! JSON object, a JSON array of objects, or NDJSON, one object a line, by content type).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, header};
use serde_json::value::RawValue;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::IntakeError;

/// The bytes the bodies being read and prepared may hold at once. A body is charged its
/// declared length (the largest taken, when it declares none) before it is read, and gives it
/// back once its items are produced: a request that waits for its decisions holds no body
/// while it waits, and a flood of large bodies is refused (503 `overloaded`) rather than held
/// in memory.
#[derive(Debug, Clone)]
pub struct Budget {
    bytes: Arc<Semaphore>,
    max_body_bytes: usize,
}

/// A body read, holding its share of the budget until dropped.
#[derive(Debug)]
pub struct Read {
    pub text: String,
    _charged: OwnedSemaphorePermit,
}

impl Budget {
    /// A budget of `in_flight` bytes (at least one largest body) for bodies of at most
    /// `max_body_bytes`.
    pub fn new(in_flight: usize, max_body_bytes: usize) -> Self {
        let in_flight = in_flight.max(max_body_bytes).clamp(1, u32::MAX as usize);
        Self {
            bytes: Arc::new(Semaphore::new(in_flight)),
            max_body_bytes: max_body_bytes.min(in_flight),
        }
    }

    pub async fn read(&self, headers: &HeaderMap, body: Body) -> Result<Read, IntakeError> {
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let too_large = IntakeError::TooLarge(self.max_body_bytes);
        if declared.is_some_and(|n| n > self.max_body_bytes) {
            return Err(too_large);
        }
        let charge = declared.unwrap_or(self.max_body_bytes).max(1);
        let charged = Arc::clone(&self.bytes)
            .try_acquire_many_owned(charge as u32)
            .map_err(|_| IntakeError::Overloaded)?;
        let bytes = axum::body::to_bytes(body, self.max_body_bytes)
            .await
            .map_err(|e| {
                let limit = e
                    .into_inner()
                    .downcast::<http_body_util::LengthLimitError>()
                    .is_ok();
                if limit {
                    too_large
                } else {
                    IntakeError::BadBody("the body could not be read whole".into())
                }
            })?;
        let text = String::from_utf8(bytes.into())
            .map_err(|e| IntakeError::BadBody(format!("the body is not UTF-8: {e}")))?;
        Ok(Read {
            text,
            _charged: charged,
        })
    }
}

/// Where an item was in the body, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// Index in a JSON array (or 0 for a lone object).
    Index(usize),
    /// Line of an NDJSON body, from 1.
    Line(usize),
}

/// The body's items as unparsed text, or why the body as a whole cannot be read.
pub fn items(body: &str, ndjson: bool) -> Result<Vec<(Position, &str)>, String> {
    if ndjson {
        return Ok(body
            .lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
            .map(|(i, line)| (Position::Line(i + 1), line))
            .collect());
    }
    let trimmed = body.trim_start();
    if trimmed.starts_with('[') {
        let array: Vec<&RawValue> = serde_json::from_str(trimmed)
            .map_err(|e| format!("the body is not a JSON array of objects: {e}"))?;
        return Ok(array
            .into_iter()
            .enumerate()
            .map(|(i, raw)| (Position::Index(i), raw.get()))
            .collect());
    }
    if trimmed.is_empty() {
        return Err("the body is empty".into());
    }
    Ok(vec![(Position::Index(0), body)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_arrays_and_lines() {
        assert_eq!(items(" {\"a\":1} ", false).unwrap().len(), 1);
        let array = items("[{\"a\":1}, {\"b\":2}]", false).unwrap();
        assert_eq!(array[1], (Position::Index(1), "{\"b\":2}"));
        let lines = items("{\"a\":1}\n\n{\"b\":2}\n", true).unwrap();
        assert_eq!(lines[1], (Position::Line(3), "{\"b\":2}"));
        assert!(
            items("[{\"a\":1},", false)
                .unwrap_err()
                .contains("JSON array")
        );
        assert!(items("  ", false).is_err());
    }
}
