//! `vigil-api`: the investigator and admin API (axum).
//!
//! Investigators work the alert queue the scoring service fills: they filter and page through
//! alerts, read why each was raised, claim them and close them with a disposition, which goes
//! to `labels.v1` as a label the model learns from. Admins manage API keys and the allow and
//! block lists the scoring service honours. Every change is written to a hash-chained audit
//! trail. The `OpenAPI` spec is generated from the handlers and served at `/openapi.json`, with a
//! browsable page at `/docs`.
//!
//! One file per role: [`auth`] (keys, roles, rate limits), [`alerts`] (the queue and its
//! work), [`cards`] (risk from Redis), [`live`] (server-sent events), [`lists`], [`keys`],
//! [`registry`] (the model registry), [`audit`], [`openapi`], [`metrics`]; [`error`] is the one error type.
//! [`console`] is the investigators' console in the browser, over the same handlers.

pub mod alerts;
pub mod audit;
pub mod auth;
pub mod card_reads;
pub mod cards;
pub mod console;
pub mod decisions;
pub mod error;
mod extract;
pub mod keys;
pub mod lists;
pub mod live;
pub mod metrics;
pub mod openapi;
pub mod registry;
pub mod rules;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa_axum::router::OpenApiRouter;
use vigil_common::http::{Limits, shed_load};
use vigil_schema::pan::PanTokenizer;

pub use auth::{Guard, Keys, Principal, Role};
pub use error::ApiError;

/// The API's settings (`[api]` in the config file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Address `vigil api` listens on.
    pub listen: String,
    /// The largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Requests per second a key may make unless it has a rate of its own (bursts of twice as
    /// many are let through).
    pub default_rate_per_sec: u32,
    /// Alerts per page when the client does not say, and the most it may ask for.
    pub default_page_size: u32,
    pub max_page_size: u32,
    /// The most alerts one bulk request may change.
    pub max_bulk: usize,
    /// Requests handled at once (a live feed counts until it has started); one more is
    /// answered 503 with `Retry-After` at once.
    pub max_concurrent_requests: usize,
    /// How long a request may take to be answered, in seconds (a live feed: to start), or 503
    /// with `Retry-After`.
    pub request_timeout_secs: u64,
    /// Live feeds one key may hold open at once; one more is answered 429.
    pub max_live_feeds_per_key: usize,
    /// Cards one key may name by their number (not their token) a minute; one more is answered
    /// 429. Every read of a card's data is logged either way (`card_reads`).
    pub card_number_lookups_per_minute: u32,
    /// How often an open live feed checks that its key is still live, in seconds; a revoked
    /// key's feeds end.
    pub live_recheck_secs: u64,
    /// How long a console session lasts after signing in, in hours.
    pub console_session_hours: u32,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8081".into(),
            max_body_bytes: 1 << 20,
            default_rate_per_sec: 50,
            default_page_size: 50,
            max_page_size: 200,
            max_bulk: 500,
            max_concurrent_requests: 64,
            request_timeout_secs: 30,
            max_live_feeds_per_key: 4,
            card_number_lookups_per_minute: 10,
            live_recheck_secs: 30,
            console_session_hours: 8,
        }
    }
}

/// What the handlers share.
#[derive(Clone)]
pub struct Api {
    pub pool: PgPool,
    pub card_reads: PgPool,
    pub redis: ConnectionManager,
    pub redis_prefix: Arc<str>,
    /// Wakes the relay that sends investigators' dispositions to `labels.v1` from their
    /// outbox ([`alerts::outbox`]).
    pub labels_queued: Arc<tokio::sync::Notify>,
    pub tokenizer: Arc<PanTokenizer>,
    pub keys: Arc<Keys>,
    pub audit: audit::Trail,
    pub number_lookups: Arc<card_reads::NumberLookups>,
    pub live: live::Feed,
    pub config: Arc<ApiConfig>,
    /// The engine's configuration: rules tested on history decide under its thresholds.
    pub engine: Arc<vigil_engine::EngineConfig>,
    pub metrics: metrics::ApiMetrics,
    /// The process's metrics of the last hour, for the console's system page.
    pub history: console::History,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What the API is built from.
#[derive(Debug)]
pub struct ApiParts<'a> {
    pub pool: PgPool,
    /// Where reads of card data are logged ([`card_reads`]).
    pub card_reads: PgPool,
    /// Shared with the intake when both are served by one process.
    pub keys: Arc<Keys>,
    pub redis_url: &'a str,
    pub redis_prefix: &'a str,
    pub kafka: &'a vigil_common::kafka::Cluster,
    pub producer: &'a vigil_common::kafka::ProducerConfig,
    pub tokenizer: PanTokenizer,
    pub audit: audit::Trail,
    pub config: ApiConfig,
    pub engine: vigil_engine::EngineConfig,
    pub registry: &'a prometheus::Registry,
}

/// Why the API could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error(transparent)]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

impl Api {
    /// Connects lazily (the API starts while Redis or the broker is down; the routes that need
    /// them answer 503 until they are back) and starts the live alert feed; within a Tokio
    /// runtime.
    pub fn new(parts: ApiParts<'_>) -> Result<Self, StartError> {
        let client = vigil_common::redis::client(parts.redis_url)?;
        let manager = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(std::time::Duration::from_secs(2)))
            .set_response_timeout(Some(std::time::Duration::from_secs(2)))
            .set_number_of_retries(1);
        let producer = vigil_common::kafka::producer(parts.kafka, parts.producer)?;
        Ok(Self {
            labels_queued: alerts::outbox::start(parts.pool.clone(), producer),
            pool: parts.pool,
            card_reads: parts.card_reads,
            redis: client.get_connection_manager_lazy(manager)?,
            redis_prefix: parts.redis_prefix.into(),
            tokenizer: Arc::new(parts.tokenizer),
            keys: parts.keys,
            audit: parts.audit,
            number_lookups: Arc::new(card_reads::number_lookups(
                parts.config.card_number_lookups_per_minute,
            )),
            live: live::Feed::start(client, parts.redis_prefix),
            config: Arc::new(parts.config),
            engine: Arc::new(parts.engine),
            metrics: metrics::ApiMetrics::register(parts.registry)?,
            history: console::History::start(parts.registry.clone()),
        })
    }
}

/// The API's routes, each group behind the roles it allows, with `/openapi.json` and `/docs`
/// open to all. Its metrics are on the operations listener, with the process's others.
pub fn router(api: Api) -> Router {
    let guard = |allowed| {
        middleware::from_fn_with_state(
            Guard {
                keys: api.keys.clone(),
                allowed,
            },
            auth::require,
        )
    };
    let (routes, spec) = OpenApiRouter::with_openapi(openapi::base())
        .merge(alerts::routes().route_layer(guard(auth::INVESTIGATE)))
        .merge(cards::routes().route_layer(guard(auth::INVESTIGATE)))
        .merge(decisions::routes().route_layer(guard(auth::ANY)))
        .merge(lists::routes().route_layer(guard(auth::ADMIN)))
        .merge(keys::routes().route_layer(guard(auth::ADMIN)))
        .merge(registry::routes().route_layer(guard(auth::ADMIN)))
        .merge(rules::routes().route_layer(guard(auth::ADMIN)))
        .split_for_parts();
    let max_body = api.config.max_body_bytes;
    let limits = Limits {
        concurrent: api.config.max_concurrent_requests,
        timeout: std::time::Duration::from_secs(api.config.request_timeout_secs),
    };
    let routes = routes.merge(openapi::routes(spec)).merge(console::routes());
    shed_load(routes, limits)
        .layer(middleware::from_fn_with_state(
            api.metrics.clone(),
            metrics::track,
        ))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(api)
}
