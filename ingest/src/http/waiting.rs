//! A request that waits for its decisions (`POST /v1/transactions?wait=150ms`): the wait it asks
//! for, and its answer once the decisions came or the wait ran out.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use serde::Serialize;
use tokio::time::Instant;
use vigil_schema::{Action, Reply};

use super::IntakeError;
use super::replies::{Expected, Replies};

/// Where a request waits for its decisions, and until when.
#[derive(Debug)]
pub struct Wait {
    pub replies: Arc<Replies>,
    pub arrived: Instant,
    pub deadline: Instant,
}

impl Wait {
    /// The wait `wait` asks for, counted from `arrived`; `None` for none (absent, or 0).
    pub fn asked(
        wait: Option<&str>,
        arrived: Instant,
        max: Duration,
        replies: Option<&Arc<Replies>>,
    ) -> Result<Option<Self>, IntakeError> {
        let Some(wait) = wait else {
            return Ok(None);
        };
        let wait = parse(wait, max).map_err(IntakeError::BadQuery)?;
        if wait.is_zero() {
            return Ok(None);
        }
        let replies = replies.cloned().ok_or_else(|| {
            IntakeError::BadQuery(
                "this intake does not wait for decisions (it has no Redis to hear them on); \
                 post without `wait` and read them with GET /v1/decisions/{id}"
                    .into(),
            )
        })?;
        Ok(Some(Self {
            replies,
            arrived,
            deadline: arrived + wait,
        }))
    }
}

/// `wait` as a duration: `150ms`, `2s`, or a number of milliseconds; at most `max`.
fn parse(wait: &str, max: Duration) -> Result<Duration, String> {
    let (number, unit_ms) = if let Some(ms) = wait.strip_suffix("ms") {
        (ms, 1)
    } else if let Some(s) = wait.strip_suffix('s') {
        (s, 1000)
    } else {
        (wait, 1)
    };
    let explain = || {
        format!(
            "`wait` must be a whole number of milliseconds or seconds, such as `150ms` or `2s`, \
             from 0 to {} ms (`ingest.max_wait_ms`); it was `{wait}`",
            max.as_millis()
        )
    };
    let value: u64 = number.parse().map_err(|_| explain())?;
    value
        .checked_mul(unit_ms)
        .map(Duration::from_millis)
        .filter(|d| *d <= max)
        .ok_or_else(explain)
}

/// What a waiting request answers: each transaction's decision (or refusal) heard by the
/// deadline, in the request's order, and the ids still pending.
#[derive(Debug, Serialize)]
pub struct Answers {
    pub decisions: Vec<Answered>,
    pub pending: Vec<String>,
}

impl Answers {
    /// Waits for `expected` until the wait's deadline.
    pub async fn of(expected: Expected, wait: &Wait) -> Self {
        let mut answers = Self {
            decisions: vec![],
            pending: vec![],
        };
        for answer in expected.until(wait.deadline).await {
            match answer {
                Ok(reply) => answers.decisions.push(reply.into()),
                Err(id) => answers.pending.push(id),
            }
        }
        answers
    }

    /// 200 when every transaction was answered, 202 when some are pending.
    pub fn status(&self) -> StatusCode {
        if self.pending.is_empty() {
            StatusCode::OK
        } else {
            StatusCode::ACCEPTED
        }
    }
}

/// What became of one transaction of a waiting request.
#[derive(Debug, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Answered {
    Decided {
        transaction_id: String,
        decision: Action,
        score: f32,
        /// As `GET /v1/decisions/{id}` gives them: rule and list codes, then the model's top
        /// features with their contributions.
        reasons: Vec<String>,
        model_version: String,
    },
    /// Dead-lettered by the scoring service, with the reason: never decided.
    Refused {
        transaction_id: String,
        reason: String,
    },
}

impl From<Reply<'_>> for Answered {
    fn from(reply: Reply<'_>) -> Self {
        match reply {
            Reply::Decided {
                transaction_id,
                decision,
                score,
                reasons,
                model_version,
            } => Answered::Decided {
                transaction_id: transaction_id.into_owned(),
                decision,
                score,
                reasons: reasons
                    .split(';')
                    .filter(|r| !r.is_empty())
                    .map(str::to_owned)
                    .collect(),
                model_version: model_version.into_owned(),
            },
            Reply::Refused {
                transaction_id,
                reason,
            } => Answered::Refused {
                transaction_id: transaction_id.into_owned(),
                reason: reason.into_owned(),
            },
        }
    }
}
