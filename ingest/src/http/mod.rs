//! The HTTP intake: `POST /v1/transactions` and `POST /v1/labels` take one JSON object, a JSON
//! array, or NDJSON (`Content-Type: application/x-ndjson`). A request is all or nothing: every
//! item is checked against the v1 contract first, and a request with a bad item gets a 400 that
//! lists each bad item and field, with nothing produced. Good items have a raw card number
//! replaced by its token and are produced keyed by `card_id`; the answer is 202 only once the
//! broker has acknowledged every one of them.
//!
//! `POST /v1/transactions?wait=150ms` answers with the decisions too: 200 once the scoring
//! service has committed a decision on every transaction of the request, or 202 when the wait
//! (counted from the request's arrival) runs out first, with the decisions it has and the ids
//! still pending (`GET /v1/decisions/{id}` has them later). See [`replies`].

mod body;
mod error;
mod metrics;
mod replies;
mod waiting;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Extension;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use rdkafka::producer::{FutureProducer, Producer};
use serde::{Deserialize, Serialize};
use vigil_schema::pan::PanTokenizer;
use vigil_schema::{Label, LabelSource, Timestamp, Transaction, topics};

pub use error::{BadItem, BadItems, IntakeError};
pub use metrics::IntakeMetrics;
pub use replies::Replies;

use body::Budget;
use replies::Expected;
use waiting::{Answers, Wait};

use vigil_common::http::{Limits, SentBy, shed_load};

use vigil_common::kafka::{self, ProducerConfig};
use vigil_common::prepare::{self, Prepared};

/// The HTTP intake.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IntakeConfig {
    /// Address to listen on.
    pub listen: String,
    /// The largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// How far ahead of the intake's clock an event's time may be, in seconds (clocks drift):
    /// one dated later would hold its partition's event time there, making every payment after
    /// it late.
    pub max_ahead_secs: u32,
    /// Requests handled at once, those waiting for their decisions included; one more is
    /// answered 503 with `Retry-After` at once rather than queued (a client that floods the
    /// intake gets told).
    pub max_concurrent_requests: usize,
    /// The bytes of the bodies being read and produced at once (a body is charged its length
    /// until its items are produced; one that would pass it is answered 503 with
    /// `Retry-After`): what bounds the intake's memory.
    pub max_bytes_in_flight: usize,
    /// How long a request may take, in seconds (reading the body, producing and waiting for the
    /// broker's acknowledgement); past it the answer is 503 with `Retry-After`, and a retry is
    /// safe (ids make it so).
    pub request_timeout_secs: u64,
    /// The longest `POST /v1/transactions?wait=` may ask to wait for decisions, in
    /// milliseconds.
    pub max_wait_ms: u64,
    pub producer: ProducerConfig,
}

impl Default for IntakeConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            max_body_bytes: 16 << 20,
            max_ahead_secs: 3_600,
            max_concurrent_requests: 1024,
            max_bytes_in_flight: 256 << 20,
            request_timeout_secs: 30,
            max_wait_ms: 5_000,
            producer: ProducerConfig::default(),
        }
    }
}

/// What the intake's handlers share.
#[derive(Clone)]
pub struct Intake {
    producer: FutureProducer,
    tokenizer: Arc<PanTokenizer>,
    max_ahead_secs: u32,
    limits: Limits,
    metrics: Arc<IntakeMetrics>,
    /// Where decisions are waited for; without it, `wait` is refused.
    replies: Option<Arc<Replies>>,
    max_wait: Duration,
    budget: Budget,
}

impl Intake {
    /// Connects the producer and registers the intake's metrics in `registry`; `replies`, when
    /// given, lets requests wait for their decisions.
    pub fn new(
        kafka: &kafka::Cluster,
        config: &IntakeConfig,
        tokenizer: PanTokenizer,
        replies: Option<Arc<Replies>>,
        registry: &prometheus::Registry,
    ) -> crate::Result<Self> {
        Ok(Self {
            producer: kafka::producer(kafka, &config.producer)?,
            tokenizer: Arc::new(tokenizer),
            replies,
            max_wait: Duration::from_millis(config.max_wait_ms),
            budget: Budget::new(config.max_bytes_in_flight, config.max_body_bytes),
            max_ahead_secs: config.max_ahead_secs,
            limits: Limits {
                concurrent: config.max_concurrent_requests,
                timeout: Duration::from_secs(config.request_timeout_secs),
            },
            metrics: Arc::new(IntakeMetrics::register(registry)?),
        })
    }
}

impl std::fmt::Debug for Intake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Intake").finish_non_exhaustive()
    }
}

/// The intake's routes, `POST /v1/transactions` and `POST /v1/labels`; the caller puts them
/// behind its access control, which sets [`SentBy`].
pub fn router(intake: Intake) -> Router {
    let limits = intake.limits;
    let routes = Router::new()
        .route("/v1/transactions", post(post_transactions))
        .route("/v1/labels", post(post_labels))
        .with_state(intake);
    shed_load(routes, limits)
}

/// The answer to a request taken: how many items and, when it waited, the decisions it heard
/// and the ids still pending.
#[derive(Debug, Serialize)]
struct Taken {
    accepted: usize,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    answers: Option<Answers>,
}

#[derive(Debug, Deserialize)]
struct TransactionsQuery {
    /// How long to wait for the decisions: `150ms`, `2s`, or milliseconds alone.
    wait: Option<String>,
}

async fn post_transactions(
    State(intake): State<Intake>,
    sent_by: Option<Extension<SentBy>>,
    Query(query): Query<TransactionsQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<impl IntoResponse, IntakeError> {
    let arrived = tokio::time::Instant::now();
    let wait = Wait::asked(
        query.wait.as_deref(),
        arrived,
        intake.max_wait,
        intake.replies.as_ref(),
    )?;
    let body = intake.budget.read(&headers, body).await?;
    let request = Request {
        headers: &headers,
        body: &body.text,
        sent_by: sent_by.as_ref().map(|s| s.0.0.as_str()),
        replies: wait.as_ref().map(|w| &w.replies),
    };
    let accepted = accept(&intake, request, topics::TRANSACTIONS, prepare_transaction).await?;
    // The body's bytes go back to the budget before the wait.
    drop(body);
    let (Some(wait), Some(expected)) = (wait, accepted.expected) else {
        return Ok(taken(StatusCode::ACCEPTED, accepted.count, None));
    };
    let answers = Answers::of(expected, &wait).await;
    intake.metrics.waited(
        wait.arrived.elapsed(),
        answers.decisions.len(),
        answers.pending.len(),
    );
    Ok(taken(answers.status(), accepted.count, Some(answers)))
}

async fn post_labels(
    State(intake): State<Intake>,
    sent_by: Option<Extension<SentBy>>,
    headers: HeaderMap,
    body: Body,
) -> Result<impl IntoResponse, IntakeError> {
    let body = intake.budget.read(&headers, body).await?;
    let request = Request {
        headers: &headers,
        body: &body.text,
        sent_by: sent_by.as_ref().map(|s| s.0.0.as_str()),
        replies: None,
    };
    let accepted = accept(&intake, request, topics::LABELS, prepare_label).await?;
    Ok(taken(StatusCode::ACCEPTED, accepted.count, None))
}

fn taken(
    status: StatusCode,
    accepted: usize,
    answers: Option<Answers>,
) -> (StatusCode, Json<Taken>) {
    (status, Json(Taken { accepted, answers }))
}

/// What `accept` reads of a request.
struct Request<'a> {
    headers: &'a HeaderMap,
    body: &'a str,
    sent_by: Option<&'a str>,
    /// Where the request waits for its decisions, if it does.
    replies: Option<&'a Arc<Replies>>,
}

/// A request's items, produced: how many, and the replies it expects if it waits.
struct Accepted {
    count: usize,
    expected: Option<Expected>,
}

/// The intake's clock plus `max_ahead_secs`; `None` if the clock is not a time the contract
/// takes (then nothing is checked against it).
fn latest_taken(max_ahead_secs: u32) -> Option<Timestamp> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as i64;
    Timestamp::from_unix_millis(now + i64::from(max_ahead_secs) * 1000, 0).ok()
}

/// What every item of a request is checked and prepared with.
struct Checks<'a> {
    tokenizer: &'a PanTokenizer,
    /// The latest event time taken: the intake's clock plus `max_ahead_secs`.
    latest: Option<Timestamp>,
}

impl Checks<'_> {
    fn not_ahead(&self, field: &str, at: Timestamp) -> vigil_schema::Result<()> {
        let Some(latest) = self.latest else {
            return Ok(());
        };
        if at.unix_millis() <= latest.unix_millis() {
            return Ok(());
        }
        Err(vigil_schema::Error::new(
            field,
            format!(
                "is ahead of the intake's clock by more than it allows (`max_ahead_secs`; the \
                 latest taken now is {latest}): events are posted as they happen"
            ),
        ))
    }
}

/// An item ready to produce, and its transaction's id.
type Item = (Prepared, String);

fn prepare_transaction(raw: &str, checks: &Checks<'_>) -> vigil_schema::Result<Item> {
    let tx: Transaction<'_> = vigil_schema::from_json(raw)?;
    checks.not_ahead("occurred_at", tx.occurred_at)?;
    let id = tx.transaction_id.as_str().to_owned();
    Ok((prepare::transaction(tx, checks.tokenizer), id))
}

/// An investigator's verdict comes from closing the alert, which audits it; posted here it
/// would overwrite one unaudited (and train the model).
fn prepare_label(raw: &str, checks: &Checks<'_>) -> vigil_schema::Result<Item> {
    let label: Label<'_> = vigil_schema::from_json(raw)?;
    checks.not_ahead("labelled_at", label.labelled_at)?;
    if label.source == LabelSource::Investigator {
        return Err(vigil_schema::Error::new(
            "source",
            "investigator verdicts are given by closing the alert (PATCH /v1/alerts/{id}); \
             post chargeback or import labels here",
        ));
    }
    let id = label.transaction_id.as_str().to_owned();
    Ok((prepare::label(label, checks.tokenizer), id))
}

/// Checks and prepares every item of the request, and produces them all, or none if one is
/// bad; a waiting request's replies are expected from before its records exist, so that none
/// can come first.
async fn accept(
    intake: &Intake,
    Request {
        headers,
        body,
        sent_by,
        replies,
    }: Request<'_>,
    topic: &'static str,
    prepare: fn(&str, &Checks<'_>) -> vigil_schema::Result<Item>,
) -> Result<Accepted, IntakeError> {
    let ndjson = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("ndjson") || v.contains("jsonl"));
    let items = body::items(body, ndjson).map_err(IntakeError::BadBody)?;
    let mut prepared = Vec::with_capacity(items.len());
    let mut ids = Vec::with_capacity(if replies.is_some() { items.len() } else { 0 });
    let mut bad = BadItems::default();
    let checks = Checks {
        tokenizer: &intake.tokenizer,
        latest: latest_taken(intake.max_ahead_secs),
    };
    for (position, raw) in items {
        match prepare(raw, &checks) {
            // Once one is bad, nothing is produced: the good ones need not be kept.
            Ok((item, id)) if bad.is_empty() => {
                prepared.push(item);
                if replies.is_some() {
                    ids.push(id);
                }
            }
            Ok(_) => {}
            Err(e) => bad.add(position, &e),
        }
    }
    if !bad.is_empty() {
        intake.metrics.rejected(topic, bad.total);
        return Err(IntakeError::BadItems(bad));
    }
    let expected = replies.map(|r| r.expect(ids.iter().map(String::as_str)));
    let mut record_headers = Vec::with_capacity(2);
    record_headers.extend(sent_by.map(|by| (topics::SENT_BY_HEADER, by)));
    record_headers.extend(replies.map(|r| r.header()));
    let started = Instant::now();
    let produced = kafka::produce_all_with(&intake.producer, topic, &prepared, &record_headers);
    if let Err(e) = produced.await {
        tracing::error!(topic, error = %e, "produce failed");
        intake.metrics.produce_errors.inc();
        return Err(IntakeError::Unavailable);
    }
    intake
        .metrics
        .accepted(topic, prepared.len(), started.elapsed());
    Ok(Accepted {
        count: prepared.len(),
        expected,
    })
}

impl Intake {
    /// Whether the broker answers (the intake's readiness).
    pub async fn broker_reachable(&self) -> bool {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(Some(topics::TRANSACTIONS), Duration::from_secs(2))
                .is_ok()
        })
        .await
        .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use axum::routing::get;
    use tower::ServiceExt as _;

    use super::*;

    /// A route that takes 300 ms.
    fn slow() -> Router {
        Router::new().route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                "done"
            }),
        )
    }

    fn request() -> Request<Body> {
        Request::get("/slow").body(Body::empty()).unwrap()
    }

    /// The status, `Retry-After` and error code of `app`'s answer to one request.
    async fn answer(app: Router) -> (u16, Option<String>, String) {
        let response = app.oneshot(request()).await.unwrap();
        let status = response.status().as_u16();
        let retry = response
            .headers()
            .get(header::RETRY_AFTER)
            .map(|v| v.to_str().unwrap().to_owned());
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let code = serde_json::from_slice::<serde_json::Value>(&body)
            .map(|v| v["error"]["code"].as_str().unwrap_or_default().to_owned())
            .unwrap_or_default();
        (status, retry, code)
    }

    #[tokio::test]
    async fn a_request_past_the_limit_is_refused_at_once_and_the_next_served() {
        let limits = Limits {
            concurrent: 1,
            timeout: Duration::from_secs(5),
        };
        let app = shed_load(slow(), limits);
        let first = tokio::spawn(answer(app.clone()));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let refused = answer(app.clone()).await;
        assert_eq!(refused, (503, Some("1".into()), "overloaded".into()));
        assert_eq!(first.await.unwrap().0, 200);
        assert_eq!(answer(app).await.0, 200, "served once the first is done");
    }

    #[tokio::test]
    async fn a_request_past_its_time_is_answered_503() {
        let limits = Limits {
            concurrent: 4,
            timeout: Duration::from_millis(50),
        };
        let cut = answer(shed_load(slow(), limits)).await;
        assert_eq!(cut, (503, Some("1".into()), "timeout".into()));
    }
}
