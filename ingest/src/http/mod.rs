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

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use rdkafka::producer::{FutureProducer, Producer};
use serde::{Deserialize, Serialize};
use vigil_schema::pan::PanTokenizer;
use vigil_schema::{Label, LabelSource, topics};

pub use error::{BadItem, BadItems, IntakeError};
pub use metrics::{IntakeMetrics, render as render_metrics};

use crate::kafka::{self, ProducerConfig};
use crate::prepare::{self, Prepared};

/// The HTTP intake.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IntakeConfig {
    /// Address to listen on.
    pub listen: String,
    /// The largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    pub producer: ProducerConfig,
}

impl Default for IntakeConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            max_body_bytes: 16 << 20,
            producer: ProducerConfig::default(),
        }
    }
}

/// What the intake's handlers share.
#[derive(Clone)]
pub struct Intake {
    producer: FutureProducer,
    tokenizer: Arc<PanTokenizer>,
    metrics: Arc<IntakeMetrics>,
    registry: prometheus::Registry,
}

impl Intake {
    /// Connects the producer and registers the intake's metrics in `registry`.
    pub fn new(
        brokers: &str,
        config: &IntakeConfig,
        tokenizer: PanTokenizer,
        registry: prometheus::Registry,
    ) -> crate::Result<Self> {
        Ok(Self {
            producer: kafka::producer(brokers, &config.producer)?,
            tokenizer: Arc::new(tokenizer),
            metrics: Arc::new(IntakeMetrics::register(&registry)?),
            registry,
        })
    }
}

impl std::fmt::Debug for Intake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Intake").finish_non_exhaustive()
    }
}

/// The intake's routes, `POST /v1/transactions` and `POST /v1/labels`; the caller puts them
/// behind its access control.
pub fn router(intake: Intake, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/v1/transactions", post(post_transactions))
        .route("/v1/labels", post(post_labels))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(intake)
}

/// `/metrics`, `/health` and `/ready` (the broker answers), open to all.
pub fn ops_router(intake: Intake) -> Router {
    Router::new()
        .route("/metrics", get(metrics_page))
        .route("/health", get(|| async { "ok" }))
        .route("/ready", get(ready))
        .with_state(intake)
}

#[derive(Debug, Serialize)]
struct Accepted {
    accepted: usize,
}

async fn post_transactions(
    State(intake): State<Intake>,
    headers: HeaderMap,
    body: String,
) -> Result<impl IntoResponse, IntakeError> {
    accept(
        &intake,
        &headers,
        &body,
        topics::TRANSACTIONS,
        prepare_transaction,
    )
    .await
}

async fn post_labels(
    State(intake): State<Intake>,
    headers: HeaderMap,
    body: String,
) -> Result<impl IntoResponse, IntakeError> {
    accept(&intake, &headers, &body, topics::LABELS, prepare_label).await
}

fn prepare_transaction(raw: &str, tokenizer: &PanTokenizer) -> vigil_schema::Result<Prepared> {
    vigil_schema::from_json(raw).map(|tx| prepare::transaction(tx, tokenizer))
}

/// An investigator's verdict comes from closing the alert, which audits it; posted here it
/// would overwrite one unaudited (and train the model).
fn prepare_label(raw: &str, tokenizer: &PanTokenizer) -> vigil_schema::Result<Prepared> {
    let label: Label<'_> = vigil_schema::from_json(raw)?;
    if label.source == LabelSource::Investigator {
        return Err(vigil_schema::Error::new(
            "source",
            "investigator verdicts are given by closing the alert (PATCH /v1/alerts/{id}); \
             post chargeback or import labels here",
        ));
    }
    Ok(prepare::label(label, tokenizer))
}

async fn accept(
    intake: &Intake,
    headers: &HeaderMap,
    body: &str,
    topic: &'static str,
    prepare: fn(&str, &PanTokenizer) -> vigil_schema::Result<Prepared>,
) -> Result<(StatusCode, Json<Accepted>), IntakeError> {
    let ndjson = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("ndjson") || v.contains("jsonl"));
    let items = body::items(body, ndjson).map_err(IntakeError::BadBody)?;
    let mut prepared = Vec::with_capacity(items.len());
    let mut bad = BadItems::default();
    for (position, raw) in items {
        match prepare(raw, &intake.tokenizer) {
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
    if let Err(e) = kafka::produce_all(&intake.producer, topic, &prepared).await {
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

async fn metrics_page(State(intake): State<Intake>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        render_metrics(&intake.registry),
    )
}

/// Ready when the broker answers.
async fn ready(State(intake): State<Intake>) -> StatusCode {
    let producer = intake.producer.clone();
    let reachable = tokio::task::spawn_blocking(move || {
        producer
            .client()
            .fetch_metadata(Some(topics::TRANSACTIONS), Duration::from_secs(2))
            .is_ok()
    })
    .await
    .unwrap_or(false);
    if reachable {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}
