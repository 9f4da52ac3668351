//! The scoring service: the engine in a Kafka consumer group, with exactly-once effects.
//!
//! Partition `p` of `transactions.v1` and of `labels.v1` (both keyed by card) feed partition `p`
//! of the engine, which the range assignor gives to one instance. What the partitions share
//! (the model, merchants, customers) every instance pools alike from the partitions' shares on
//! `shares.v1` ([`shares`]): a transaction waits, in its partition's queue, until the shared
//! state is pooled to its boundary. Each batch is scored and its dead letters produced and
//! acknowledged; then, while the next batch is read and scored, ONE Postgres transaction writes
//! the decisions, alerts, labels and the offsets reached, and Redis and `decisions.v1` are
//! written after it ([`commit`]). On assignment, reading starts where the partition stopped
//! (see [`consumer`]). About every `snapshot_min_messages` it reads (partitions in turn; at
//! most every `snapshot_interval_secs`, at least every `snapshot_max_interval_secs`), each
//! partition's state is saved with its offsets, one partition at a time, and the shared state
//! with the shares' offsets. The
//! champion and shadow models come from the registry (`serving.rs`): shadows are swapped in
//! between batches; a champion is offered through the shares and taken by every instance at
//! the same pooling step.
//!
//! A file per role: this one starts the service (`run`); `main_loop.rs` reads, scores and hands
//! batches to `commit.rs`; `dead_letters.rs`, `snapshots.rs`, `refresh.rs` (lists and models),
//! `shadow.rs` (shadow scoring), `consumer.rs` (rebalances), `store.rs` (Postgres),
//! `redis_sink.rs`, `replies.rs` (answers to intakes waiting on decisions), `shares.rs`,
//! `background.rs` (snapshot encoding at a lower priority), `events.rs` (what it did, typed)
//! and `metrics.rs`.

mod background;
mod commit;
mod config;
mod consumer;
mod dead_letters;
mod events;
mod lists;
mod main_loop;
mod metrics;
mod partition;
mod redis_sink;
mod refresh;
mod replies;
mod rows;
mod rule_sets;
mod serving;
mod shadow;
mod shares;
mod snapshots;
mod store;

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureProducer;
use tokio::runtime::Handle;
use vigil_common::kafka::{self, ProducerConfig};
use vigil_schema::pan::PanTokenizer;
use vigil_schema::{Transaction, topics};

pub use config::ServiceConfig;
pub use metrics::ScoringMetrics;
pub use store::Store;

use crate::{Engine, EngineConfig, RuleSet};
use commit::InFlight;
use consumer::{Context, Shared};
use dead_letters::{DeadLetter, produce_dead_letters};
use events::ServiceEvent;
use lists::Lists;
use partition::Instance;
use redis_sink::RedisSink;
use serving::Serving;
use tokio_util::sync::CancellationToken;

/// The model version recorded with each decision made without a champion.
pub const MODEL_VERSION: &str = concat!("online-", env!("CARGO_PKG_VERSION"));

/// Errors that stop the service.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error(transparent)]
    Engine(#[from] crate::engine::Error),
    #[error("{0}")]
    Topics(String),
    #[error("rules: {0}")]
    Rules(#[from] rule_sets::LoadError),
}

/// Everything the service runs with.
#[derive(Debug)]
pub struct ServiceParts {
    pub kafka: kafka::Cluster,
    pub config: ServiceConfig,
    pub engine: EngineConfig,
    pub rules: RuleSet,
    pub pool: sqlx::PgPool,
    pub redis_url: String,
    pub redis_prefix: String,
    pub tokenizer: PanTokenizer,
    /// Registered before the service starts: `/metrics` lists them as soon as it answers.
    pub metrics: ScoringMetrics,
}

/// What makes two transactions with one id the same payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    pub transaction_id: String,
    pub card_id: String,
    pub merchant_id: String,
    pub amount_minor: i64,
    pub occurred_at_ms: i64,
}

impl Payment {
    fn of(tx: &Transaction<'_>) -> Self {
        Self {
            transaction_id: tx.transaction_id.as_str().to_owned(),
            card_id: tx.card_id.as_str().to_owned(),
            merchant_id: tx.merchant_id.as_str().to_owned(),
            amount_minor: tx.amount_minor as i64,
            occurred_at_ms: tx.occurred_at.unix_millis(),
        }
    }

    pub fn of_decision(d: &rows::Decisions, i: usize) -> Self {
        Self {
            transaction_id: d.transaction_id.get(i).to_owned(),
            card_id: d.card_id.get(i).to_owned(),
            merchant_id: d.merchant_id.get(i).to_owned(),
            amount_minor: d.amount_minor[i],
            occurred_at_ms: d.occurred_at[i].unix_millis(),
        }
    }
}

/// Runs the service on the calling thread until `stop` is set; async I/O runs on `handle`.
/// On stop it finishes the batch in hand, commits it and leaves the group; a commit that keeps
/// failing then is given up after a while (a restart scores the batch again).
pub fn run(
    parts: ServiceParts,
    stop: &CancellationToken,
    handle: &Handle,
) -> Result<(), ServiceError> {
    let metrics = parts.metrics.clone();
    let store = Store::new(parts.pool.clone(), parts.config.group.clone());
    // A batch's records (and a share) are produced together: lingering for more would only
    // delay them.
    let immediate = ProducerConfig {
        linger_ms: 0,
        ..ProducerConfig::default()
    };
    let producer = kafka::producer(&parts.kafka, &immediate)?;
    let commits = InFlight::new(
        store.clone(),
        metrics.clone(),
        producer.clone(),
        RedisSink::new(&parts.redis_url, &parts.redis_prefix, &parts.config)?,
        stop.clone(),
    );
    let partitions = stream_partitions(&parts.kafka)?;
    let origin = parts.config.rules.as_ref().map_or_else(
        || "the default rules".to_owned(),
        |path| path.display().to_string(),
    );
    let live = handle.block_on(rule_sets::live_or_seed(&parts.pool, &parts.rules, &origin))?;
    metrics.rule_set_version.set(i64::from(live.version));
    tracing::info!(version = live.version, "rule set in force");
    let engine = Engine::partitioned(parts.engine.clone(), live.rules, partitions)?;
    let shared = Arc::new(Shared {
        handle: handle.clone(),
        store,
        instance: Mutex::new(Instance::new(engine)),
        generation: AtomicU64::new(0),
        metrics: metrics.clone(),
        stop: stop.clone(),
        commits,
    });
    let consumer: BaseConsumer<Context> = parts
        .kafka
        .client()
        .set("group.id", &parts.config.group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "range")
        .set(
            "session.timeout.ms",
            parts.config.session_timeout_ms.to_string(),
        )
        .set(
            "heartbeat.interval.ms",
            (parts.config.session_timeout_ms / 3).to_string(),
        )
        .set("statistics.interval.ms", "5000")
        // A broker holds a fetch until data comes or this long; the embedded broker always
        // holds it this long, which would add up to it to every event's latency.
        .set("fetch.wait.max.ms", parts.config.fetch_wait_ms.to_string())
        .create_with_context(Context(shared.clone()))?;
    consumer.subscribe(&topics::CONSUMED)?;
    let mut service = Loop {
        shares: shares::consumer(
            &parts.kafka,
            &parts.config.group,
            parts.config.fetch_wait_ms,
        )?,
        shares_producer: kafka::producer(&parts.kafka, &immediate)?,
        outgoing: shares::Outgoing::default(),
        waiting: false,
        shared_write: None,
        shared_taken: None,
        partitions_saved_since_shared: false,
        shared,
        producer,
        tokenizer: parts.tokenizer,
        config: parts.config,
        metrics,
        snapshot_write: None,
        lists: Lists::default(),
        lists_loaded: None,
        serving: Serving::default(),
        models_loaded: None,
        rule_set: live.version,
        rules_loaded: Some(Instant::now()),
        rules_refused: None,
    };
    let relay = handle.spawn(relay_outbox(
        service.shared.store.clone(),
        service.producer.clone(),
        service.metrics.clone(),
        stop.clone(),
    ));
    tracing::info!(group = %service.config.group, "scoring service started");
    while !stop.is_cancelled() {
        service.step(&consumer);
    }
    service.shared.commits.finish(handle);
    ServiceEvent::Stopping.emit(&service.metrics);
    consumer.unsubscribe();
    relay.abort();
    Ok(())
}

/// Every few seconds until `stop`, sends what the outbox holds of decisions whose own send did
/// not complete (see [`commit::relay`]).
async fn relay_outbox(
    store: Store,
    producer: FutureProducer,
    metrics: ScoringMetrics,
    stop: CancellationToken,
) {
    while !stop.is_cancelled() {
        match commit::relay(&store, &producer).await {
            Ok(0) => tokio::time::sleep(RELAY_EVERY).await,
            Ok(sent) => {
                metrics.resent.inc_by(sent as u64);
                tracing::info!(sent, "decisions from the outbox sent to decisions.v1");
            }
            Err(e) => {
                tracing::warn!(error = %e, "the outbox relay failed; it tries again");
                tokio::time::sleep(RELAY_EVERY).await;
            }
        }
    }
}

/// How often the outbox relay looks for decisions not sent.
const RELAY_EVERY: Duration = Duration::from_secs(5);

/// The number of partitions of the stream. The consumed topics and `shares.v1` must have the
/// same number, or a card's labels would reach another partition than its transactions, and a
/// partition's shares another than its own.
fn stream_partitions(kafka: &kafka::Cluster) -> Result<usize, ServiceError> {
    let client: BaseConsumer = kafka.client().create()?;
    let metadata = client.fetch_metadata(None, Duration::from_secs(10))?;
    let needed = [topics::TRANSACTIONS, topics::LABELS, topics::SHARES];
    let counts: Vec<(String, usize)> = metadata
        .topics()
        .iter()
        .filter(|t| needed.contains(&t.name()) && !t.partitions().is_empty())
        .map(|t| (t.name().to_owned(), t.partitions().len()))
        .collect();
    if counts.len() < needed.len() {
        return Err(ServiceError::Topics(format!(
            "the topics {needed:?} must exist (run `vigil migrate`); found {counts:?}"
        )));
    }
    if counts.iter().any(|c| c.1 != counts[0].1) {
        return Err(ServiceError::Topics(format!(
            "the topics {needed:?} must have the same number of partitions: {counts:?}"
        )));
    }
    Ok(counts[0].1)
}

struct Loop {
    shared: Arc<Shared>,
    /// For dead letters and shares; decisions are produced by the commit stage.
    producer: FutureProducer,
    /// Reads all of `shares.v1`; shares are produced with a producer of their own, which sends
    /// each at once (a transaction waits for it), and acknowledged in `outgoing`.
    shares: BaseConsumer,
    shares_producer: FutureProducer,
    outgoing: shares::Outgoing,
    /// Whether a partition's queue holds messages that wait for the shared state.
    waiting: bool,
    tokenizer: PanTokenizer,
    config: ServiceConfig,
    metrics: ScoringMetrics,
    /// The snapshot being written, if any.
    snapshot_write: Option<tokio::task::JoinHandle<()>>,
    /// The shared state's snapshot being written, if any, and when the last was taken.
    shared_write: Option<tokio::task::JoinHandle<()>>,
    shared_taken: Option<(Instant, i64)>,
    /// Whether a partition's snapshot was taken since the shared state's last.
    partitions_saved_since_shared: bool,
    lists: Lists,
    lists_loaded: Option<Instant>,
    serving: Serving,
    models_loaded: Option<Instant>,
    /// The version of the rule set the engine holds, and when a newer one was looked for.
    rule_set: i32,
    rules_loaded: Option<Instant>,
    /// A newer version this service cannot use, once it has said so.
    rules_refused: Option<i32>,
}
