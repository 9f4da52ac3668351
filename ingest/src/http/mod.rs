//! The HTTP intake: `POST /v1/transactions` and `POST /v1/labels` take one JSON object, a JSON
//! array, or NDJSON (`Content-Type: application/x-ndjson`). A request is all or nothing: every
//! item is checked against the v1 contract first, and a request with a bad item gets a 400 that
//! lists each bad item and field, with nothing produced. Good items have a raw card number
//! replaced by its token and are produced keyed by `card_id`; the answer is 202 only once the
//! broker has acknowledged every one of them.

mod body;
mod error;
mod metrics;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Extension;
use axum::extract::{DefaultBodyLimit, State};
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
    /// Requests handled at once; one more is answered 503 with `Retry-After` at once rather
    /// than queued (a client that floods the intake gets told, and memory stays bounded).
    pub max_concurrent_requests: usize,
    /// How long a request may take, in seconds (reading the body, producing and waiting for the
    /// broker's acknowledgement); past it the answer is 503 with `Retry-After`, and a retry is
    /// safe (ids make it so).
    pub request_timeout_secs: u64,
    pub producer: ProducerConfig,
}

impl Default for IntakeConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            max_body_bytes: 16 << 20,
            max_ahead_secs: 3_600,
            max_concurrent_requests: 64,
            request_timeout_secs: 30,
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
}

impl Intake {
    /// Connects the producer and registers the intake's metrics in `registry`.
    pub fn new(
        kafka: &kafka::Cluster,
        config: &IntakeConfig,
        tokenizer: PanTokenizer,
        registry: &prometheus::Registry,
    ) -> crate::Result<Self> {
        Ok(Self {
            producer: kafka::producer(kafka, &config.producer)?,
            tokenizer: Arc::new(tokenizer),
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
pub fn router(intake: Intake, max_body_bytes: usize) -> Router {
    let limits = intake.limits;
    let routes = Router::new()
        .route("/v1/transactions", post(post_transactions))
        .route("/v1/labels", post(post_labels))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(intake);
    shed_load(routes, limits)
}

/// `/metrics`, `/health` and `/ready` (the broker answers), open to all.
#[derive(Debug, Serialize)]
struct Accepted {
    accepted: usize,
}

async fn post_transactions(
    State(intake): State<Intake>,
    sent_by: Option<Extension<SentBy>>,
    headers: HeaderMap,
    body: String,
) -> Result<impl IntoResponse, IntakeError> {
    let request = Request {
        headers: &headers,
        body: &body,
        sent_by: sent_by.as_ref().map(|s| s.0.0.as_str()),
    };
    accept(&intake, request, topics::TRANSACTIONS, prepare_transaction).await
}

async fn post_labels(
    State(intake): State<Intake>,
    sent_by: Option<Extension<SentBy>>,
    headers: HeaderMap,
    body: String,
) -> Result<impl IntoResponse, IntakeError> {
    let request = Request {
        headers: &headers,
        body: &body,
        sent_by: sent_by.as_ref().map(|s| s.0.0.as_str()),
    };
    accept(&intake, request, topics::LABELS, prepare_label).await
}

/// What `accept` reads of a request.
struct Request<'a> {
    headers: &'a HeaderMap,
    body: &'a str,
    sent_by: Option<&'a str>,
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

fn prepare_transaction(raw: &str, checks: &Checks<'_>) -> vigil_schema::Result<Prepared> {
    let tx: Transaction<'_> = vigil_schema::from_json(raw)?;
    checks.not_ahead("occurred_at", tx.occurred_at)?;
    Ok(prepare::transaction(tx, checks.tokenizer))
}

/// An investigator's verdict comes from closing the alert, which audits it; posted here it
/// would overwrite one unaudited (and train the model).
fn prepare_label(raw: &str, checks: &Checks<'_>) -> vigil_schema::Result<Prepared> {
    let label: Label<'_> = vigil_schema::from_json(raw)?;
    checks.not_ahead("labelled_at", label.labelled_at)?;
    if label.source == LabelSource::Investigator {
        return Err(vigil_schema::Error::new(
            "source",
            "investigator verdicts are given by closing the alert (PATCH /v1/alerts/{id}); \
             post chargeback or import labels here",
        ));
    }
    Ok(prepare::label(label, checks.tokenizer))
}

async fn accept(
    intake: &Intake,
    Request {
        headers,
        body,
        sent_by,
    }: Request<'_>,
    topic: &'static str,
    prepare: fn(&str, &Checks<'_>) -> vigil_schema::Result<Prepared>,
) -> Result<(StatusCode, Json<Accepted>), IntakeError> {
    let ndjson = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("ndjson") || v.contains("jsonl"));
    let items = body::items(body, ndjson).map_err(IntakeError::BadBody)?;
    let mut prepared = Vec::with_capacity(items.len());
    let mut bad = BadItems::default();
    let checks = Checks {
        tokenizer: &intake.tokenizer,
        latest: latest_taken(intake.max_ahead_secs),
    };
    for (position, raw) in items {
        match prepare(raw, &checks) {
            // Once one is bad, nothing is produced: the good ones need not be kept.
            Ok(item) if bad.is_empty() => prepared.push(item),
            Ok(_) => {}
            Err(e) => bad.add(position, &e),
        }
    }
    if !bad.is_empty() {
        intake.metrics.rejected(topic, bad.total);
        return Err(IntakeError::BadItems(bad));
    }
    let started = Instant::now();
    let produced = kafka::produce_all_sent_by(&intake.producer, topic, &prepared, sent_by);
    if let Err(e) = produced.await {
        tracing::error!(topic, error = %e, "produce failed");
        intake.metrics.produce_errors.inc();
        return Err(IntakeError::Unavailable);
    }
    intake
        .metrics
        .accepted(topic, prepared.len(), started.elapsed());
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            accepted: prepared.len(),
        }),
    ))
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
