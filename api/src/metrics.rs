//! The API's Prometheus metrics (requests by route and status, their latency) and its
//! `/metrics`, `/health` and `/ready` routes.

use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, exponential_buckets};

use crate::Api;

#[derive(Debug, Clone)]
pub struct ApiMetrics {
    registry: Registry,
    requests: IntCounterVec,
    seconds: HistogramVec,
}

impl ApiMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let requests = IntCounterVec::new(
            Opts::new(
                "vigil_api_requests_total",
                "API requests, by route and status",
            ),
            &["method", "route", "status"],
        )?;
        let seconds = HistogramVec::new(
            HistogramOpts::new("vigil_api_request_seconds", "API request latency, by route")
                // 0.1 ms to about 2 s in steps of 50%.
                .buckets(exponential_buckets(0.0001, 1.5, 25)?),
            &["method", "route"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(seconds.clone()))?;
        Ok(Self {
            registry: registry.clone(),
            requests,
            seconds,
        })
    }
}

/// Middleware: counts and times each request by its route's pattern (not its path, which
/// would hold ids).
pub async fn track(State(metrics): State<ApiMetrics>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().clone();
    let started = Instant::now();
    let response = next.run(request).await;
    metrics
        .seconds
        .with_label_values(&[method.as_str(), &route])
        .observe(started.elapsed().as_secs_f64());
    metrics
        .requests
        .with_label_values(&[method.as_str(), &route, response.status().as_str()])
        .inc();
    response
}

pub fn routes() -> Router<Api> {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(|| async { "ok" }))
        .route("/ready", get(ready))
}

async fn metrics(State(api): State<Api>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        vigil_common::metrics::render(&api.metrics.registry),
    )
}

/// Ready when Postgres answers (Redis and the broker are needed by some routes only).
async fn ready(State(api): State<Api>) -> StatusCode {
    match sqlx::query("SELECT 1").execute(&api.pool).await {
        Ok(_) => StatusCode::OK,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}
