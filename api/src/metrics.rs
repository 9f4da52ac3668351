//! The API's Prometheus metrics: requests by route and status, and their latency.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, exponential_buckets};

#[derive(Debug, Clone)]
pub struct ApiMetrics {
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
        Ok(Self { requests, seconds })
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
