//! What the HTTP services share: who sent a request ([`SentBy`]) and load shedding
//! ([`shed_load`]).

use std::sync::Arc;
use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::json;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::{BoxError, ServiceBuilder};

/// Who is posting, as the caller's access control names it (a request extension it sets):
/// every record produced for the request carries it in the
/// [`vigil_schema::topics::SENT_BY_HEADER`] header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentBy(pub String);

/// How much a service takes on at once, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub concurrent: usize,
    pub timeout: Duration,
}

/// `routes` with at most `limits.concurrent` requests in flight across all of them (one more is
/// refused at once: 503 `overloaded`) and each answered within `limits.timeout` (or 503
/// `timeout`), both with `Retry-After`.
pub fn shed_load<S>(routes: Router<S>, limits: Limits) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let semaphore = Arc::new(tokio::sync::Semaphore::new(limits.concurrent));
    routes.layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(|e: BoxError| async move {
                if e.is::<tower::timeout::error::Elapsed>() {
                    unavailable(
                        "timeout",
                        "the request took longer than the service allows; retry it (ids make retries safe)",
                    )
                } else {
                    unavailable(
                        "overloaded",
                        "the service is handling as many requests as it takes; retry after a moment",
                    )
                }
            }))
            .load_shed()
            .layer(GlobalConcurrencyLimitLayer::with_semaphore(semaphore))
            .timeout(limits.timeout),
    )
}

/// 503 with `Retry-After` and the services' error body.
fn unavailable(code: &str, message: &str) -> Response {
    let body = json!({"error": {"code": code, "message": message}});
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}
