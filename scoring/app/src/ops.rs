//! The operations listener: `/metrics`, `/health` and `/ready` of the services in the process,
//! on an address of their own (`ops.listen`, loopback by default). Not on the public listener:
//! decision and alert counters, score histograms and list sizes are what someone tuning
//! attempts against the rules would want.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use vigil_ingest::http::Intake;

/// What the operations routes read.
#[derive(Clone)]
pub struct Ops {
    pub registry: prometheus::Registry,
    /// Postgres, when a service of the process needs it (the API, the scorer).
    pub postgres: Option<sqlx::PgPool>,
    /// The intake, whose broker must answer.
    pub intake: Option<Intake>,
}

impl std::fmt::Debug for Ops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ops")
            .field("postgres", &self.postgres.is_some())
            .field("intake", &self.intake.is_some())
            .finish_non_exhaustive()
    }
}

pub fn router(ops: Ops) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(|| async { "ok" }))
        .route("/ready", get(ready))
        .with_state(ops)
}

async fn metrics(State(ops): State<Ops>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        vigil_common::metrics::render(&ops.registry),
    )
}

/// Ready when what the services need answers: Postgres, the broker for the intake (Redis is
/// needed by some routes only, which answer 503 while it is away).
async fn ready(State(ops): State<Ops>) -> StatusCode {
    if let Some(pool) = &ops.postgres
        && sqlx::query("SELECT 1").execute(pool).await.is_err()
    {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    if let Some(intake) = &ops.intake
        && !intake.broker_reachable().await
    {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    StatusCode::OK
}
