//! The scoring service: the engine in a Kafka consumer group, with exactly-once effects.
//!
//! One engine per partition: partition `p` of `transactions.v1` and of `labels.v1` (both keyed by
//! card) feed engine `p`, which the range assignor gives to one instance. Each batch is scored
//! and its dead letters produced and acknowledged; then, while the next batch is read and
//! scored, ONE Postgres transaction writes the decisions, alerts, labels and the offsets
//! reached, and Redis and `decisions.v1` are written after it ([`commit`]). On assignment,
//! reading starts where the partition's engine stopped (see [`consumer`]). Every
//! `snapshot_interval_secs`, each engine's state is saved with its offsets, one partition at a
//! time. The champion and shadow models come from the registry (`models.rs`), swapped in
//! between batches.

mod commit;
mod config;
mod consumer;
mod lists;
mod metrics;
mod models;
mod partition;
mod redis;
mod rows;
mod store;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{BorrowedMessage, Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message};
use tokio::runtime::Handle;
use vigil_ingest::kafka::{self, ProducerConfig};
use vigil_ingest::prepare;
use vigil_schema::pan::{PanTokenizer, redact};
use vigil_schema::{Label, Transaction, topics};

pub use config::ServiceConfig;
pub use metrics::ScoringMetrics;
pub use store::Store;

use crate::engine::{Decision, Disposition};
use crate::{Engine, EngineConfig, Event, LabelEvent, RuleSet};
use commit::{Batch, InFlight, until_done};
use consumer::{Context, Shared};
use lists::{ListHit, Lists};
use models::Serving;
use partition::Partition;
use redis::RedisSink;
use rows::{LANES, Rows, lane};

/// The model version recorded with each decision made without a champion.
pub const MODEL_VERSION: &str = concat!("online-", env!("CARGO_PKG_VERSION"));

/// Errors that stop the service.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    #[error(transparent)]
    Ingest(#[from] vigil_ingest::Error),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("{0}")]
    Topics(String),
}

/// Everything the service runs with.
#[derive(Debug)]
pub struct ServiceParts {
    pub brokers: String,
    pub config: ServiceConfig,
    pub engine: EngineConfig,
    pub rules: RuleSet,
    pub pool: sqlx::PgPool,
    pub redis_url: String,
    pub redis_prefix: String,
    pub tokenizer: PanTokenizer,
    pub registry: prometheus::Registry,
}

/// A message the service could not read, and why.
struct DeadLetter<'m> {
    message: &'m BorrowedMessage<'m>,
    reason: String,
}

/// Runs the service on the calling thread until `stop` is set; async I/O runs on `handle`.
/// On stop it finishes the batch in hand, commits it and leaves the group.
pub fn run(
    parts: ServiceParts,
    stop: &Arc<AtomicBool>,
    handle: &Handle,
) -> Result<(), ServiceError> {
    let metrics = ScoringMetrics::register(&parts.registry)?;
    let store = Store::new(parts.pool.clone(), parts.config.group.clone());
    let producer = kafka::producer(&parts.brokers, &ProducerConfig::default())?;
    let commits = InFlight::new(
        store.clone(),
        metrics.clone(),
        producer.clone(),
        RedisSink::new(&parts.redis_url, &parts.redis_prefix, &parts.config)?,
    );
    let shared = Arc::new(Shared {
        handle: handle.clone(),
        store,
        engine_config: parts.engine.clone(),
        rules: parts.rules.clone(),
        partitions: Mutex::new(BTreeMap::new()),
        generation: AtomicU64::new(0),
        metrics: metrics.clone(),
        stop: stop.clone(),
        commits,
    });
    let consumer: BaseConsumer<Context> = ClientConfig::new()
        .set("bootstrap.servers", &parts.brokers)
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
    check_partitions(&consumer)?;
    consumer.subscribe(&topics::CONSUMED)?;
    let mut service = Loop {
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
    };
    tracing::info!(group = %service.config.group, "scoring service started");
    while !stop.load(Ordering::SeqCst) {
        service.step(&consumer);
    }
    service.shared.commits.finish(handle);
    tracing::info!("stopping: leaving the group");
    consumer.unsubscribe();
    Ok(())
}

/// The consumed topics must have the same number of partitions, or a card's labels would reach
/// another engine than its transactions.
fn check_partitions(consumer: &BaseConsumer<Context>) -> Result<(), ServiceError> {
    let metadata = consumer.fetch_metadata(None, Duration::from_secs(10))?;
    let counts: Vec<(String, usize)> = metadata
        .topics()
        .iter()
        .filter(|t| topics::CONSUMED.contains(&t.name()))
        .map(|t| (t.name().to_owned(), t.partitions().len()))
        .collect();
    if counts.len() < topics::CONSUMED.len() {
        return Err(ServiceError::Topics(format!(
            "the topics {:?} must exist (run `vigil migrate`); found {counts:?}",
            topics::CONSUMED
        )));
    }
    if counts.iter().any(|c| c.1 != counts[0].1) {
        return Err(ServiceError::Topics(format!(
            "the consumed topics must have the same number of partitions: {counts:?}"
        )));
    }
    Ok(())
}

struct Loop {
    shared: Arc<Shared>,
    /// For dead letters; decisions are produced by the commit stage.
    producer: FutureProducer,
    tokenizer: PanTokenizer,
    config: ServiceConfig,
    metrics: ScoringMetrics,
    /// The snapshot being written, if any.
    snapshot_write: Option<tokio::task::JoinHandle<()>>,
    lists: Lists,
    lists_loaded: Option<Instant>,
    serving: Serving,
    models_loaded: Option<Instant>,
}

impl Loop {
    /// Reads one batch, scores it and commits its effects.
    fn step(&mut self, consumer: &BaseConsumer<Context>) {
        self.refresh_lists();
        self.refresh_models();
        let generation = self.shared.generation.load(Ordering::SeqCst);
        let polling = Instant::now();
        let messages = self.poll_batch(consumer);
        let polled = polling.elapsed();
        if self.shared.generation.load(Ordering::SeqCst) != generation {
            // Read under an assignment that has ended: the new one re-reads from the engines'
            // positions.
            return;
        }
        if !messages.is_empty() {
            let started = Instant::now();
            let shared = self.shared.clone();
            let mut partitions = shared.partitions.lock().expect("no panic while locked");
            let mut rows: [Rows; LANES] = Default::default();
            let mut dead = vec![];
            self.score(&mut partitions, &messages, &mut rows, &mut dead);
            drop(partitions);
            let scored = started.elapsed();
            self.commit(rows, &dead, started);
            tracing::debug!(
                messages = messages.len(),
                poll_ms = polled.as_millis() as u64,
                score_ms = scored.as_millis() as u64,
                handed_over_ms = started.elapsed().saturating_sub(scored).as_millis() as u64,
                "batch"
            );
        }
        self.snapshot();
        self.shared.commits.heal(&self.shared.handle);
    }

    /// Up to `max_batch` messages, waiting at most `linger_ms` after the first.
    fn poll_batch<'c>(&self, consumer: &'c BaseConsumer<Context>) -> Vec<BorrowedMessage<'c>> {
        let mut messages = Vec::with_capacity(self.config.max_batch);
        let linger = Duration::from_millis(self.config.linger_ms);
        let mut deadline: Option<Instant> = None;
        while messages.len() < self.config.max_batch {
            let timeout = match deadline {
                None => Duration::from_millis(100),
                Some(d) => d.saturating_duration_since(Instant::now()),
            };
            match consumer.poll(timeout) {
                Some(Ok(m)) => {
                    deadline.get_or_insert_with(|| Instant::now() + linger);
                    messages.push(m);
                }
                Some(Err(e)) => tracing::warn!(error = %e, "consumer error"),
                None => break,
            }
        }
        messages
    }

    fn score<'m>(
        &mut self,
        partitions: &mut BTreeMap<i32, Partition>,
        messages: &'m [BorrowedMessage<'m>],
        rows: &mut [Rows<'m>; LANES],
        dead: &mut Vec<DeadLetter<'m>>,
    ) {
        let champion = self.serving.champion_artifact();
        for partition in partitions.values_mut() {
            let current = partition.engine.champion().map(|c| c.version.as_str());
            if current != champion.as_ref().map(|c| c.version.as_str()) {
                partition.engine.set_champion(champion.clone());
            }
        }
        let updates_before = model_updates(partitions);
        let mut offsets: BTreeMap<(usize, i32), i64> = BTreeMap::new();
        let mut consumed = [0_u64; topics::CONSUMED.len()];
        for message in messages {
            let Some(topic) = store::topic_index(message.topic()) else {
                continue;
            };
            let Some(partition) = partitions.get_mut(&message.partition()) else {
                continue;
            };
            let offset = message.offset();
            if offset < partition.position[topic] {
                continue;
            }
            partition.position[topic] = offset + 1;
            offsets.insert((topic, message.partition()), offset + 1);
            consumed[topic] += 1;
            let replay = partition.is_replay(topic, offset);
            let rows = &mut rows[lane(message.partition())];
            let read = if topic == 0 {
                self.score_transaction(&mut partition.engine, message, replay, rows)
            } else {
                self.learn_label(&mut partition.engine, message, replay, rows)
            };
            if let (Err(reason), false) = (read, replay) {
                dead.push(DeadLetter { message, reason });
            }
        }
        for (topic, n) in topics::CONSUMED.iter().zip(consumed) {
            self.metrics.consumed.with_label_values(&[topic]).inc_by(n);
        }
        for ((t, p), o) in offsets {
            rows[lane(p)].offsets.push((topics::CONSUMED[t], p, o));
        }
        self.metrics
            .model_updates
            .inc_by(model_updates(partitions) - updates_before);
    }

    fn score_transaction<'m>(
        &mut self,
        engine: &mut Engine,
        message: &'m BorrowedMessage<'m>,
        replay: bool,
        rows: &mut Rows<'m>,
    ) -> Result<(), String> {
        let mut tx: Transaction<'m> = parse(message)?;
        if let Some(token) = prepare::token(&self.tokenizer, &tx.card_id) {
            tx.card_id = token;
        }
        let decision = engine.score(&Event::from(&tx));
        if replay || decision.disposition == Disposition::Duplicate {
            return Ok(());
        }
        self.score_alongside(engine, &decision, &mut rows.decisions);
        let listed = self.lists.check(&tx, decision.action);
        let action = listed.map_or(decision.action, ListHit::action);
        let d = &mut rows.decisions;
        d.transaction_id.push(tx.transaction_id.as_str());
        d.card_id.push(tx.card_id.as_str());
        d.customer_id.push_option(
            tx.customer_id
                .as_ref()
                .map(vigil_schema::CustomerId::as_str),
        );
        d.merchant_id.push(tx.merchant_id.as_str());
        d.occurred_at.push(tx.occurred_at);
        d.amount_minor.push(tx.amount_minor as i64);
        d.currency.push(tx.currency.as_str());
        d.score.push(decision.score);
        d.action.push(action);
        d.reasons.push_with(|out| {
            if let Some(hit) = listed {
                out.push_str(hit.reason());
            }
            decision.write_reasons(engine.rules(), out, listed.is_some());
        });
        d.push_features(engine.features());
        d.produced_at_ms.push(message.timestamp().to_millis());
        if action.is_alert() {
            let explanation = Alerted {
                list: listed,
                decision: engine.explain(&decision),
            };
            // Alerts are a small share of decisions: allocating for their JSON is fine.
            d.alert_transaction
                .push(&serde_json::to_string(&tx).expect("a transaction serializes"));
            d.alert_explanation
                .push(&serde_json::to_string(&explanation).expect("an explanation serializes"));
            d.alert_codes.push_with(|out| {
                let rules = explanation.decision.rule_hits().map(|r| r.reason.as_str());
                let codes = listed.map(ListHit::reason).into_iter().chain(rules);
                for (i, code) in codes.enumerate() {
                    if i > 0 {
                        out.push(';');
                    }
                    out.push_str(code);
                }
            });
        }
        Ok(())
    }

    /// Records the champion's score, and scores the shadows on the same features and rules:
    /// their scores go to `shadow_scores`, their decisions nowhere.
    fn score_alongside(&mut self, engine: &Engine, decision: &Decision, d: &mut rows::Decisions) {
        if let Some(champion) = &mut self.serving.champion {
            champion.record(
                decision.model.base_logit,
                decision.score,
                decision.action.is_alert(),
            );
        }
        for (model, shadow) in self.serving.shadows.iter_mut().enumerate() {
            let logit = shadow.artifact.model.logit(engine.features());
            let (score, action) =
                engine.decide(logit, decision.rule_log_odds, decision.rule_action);
            shadow.record(logit, score, action.is_alert());
            d.shadows.push(rows::ShadowScore {
                decision: d.score.len() as u32,
                model: model as u16,
                score,
                action,
            });
        }
    }

    fn learn_label<'m>(
        &self,
        engine: &mut Engine,
        message: &'m BorrowedMessage<'m>,
        replay: bool,
        rows: &mut Rows<'m>,
    ) -> Result<(), String> {
        let mut label: Label<'m> = parse(message)?;
        if let Some(token) = label
            .card_id
            .as_ref()
            .and_then(|c| prepare::token(&self.tokenizer, c))
        {
            label.card_id = Some(token);
        }
        engine.learn(&LabelEvent::from(&label));
        if !replay {
            rows.labels.push(label);
        }
        Ok(())
    }

    /// Produces the dead letters, then hands the rows to the commit stage (once the batch
    /// before is committed). Dead letters go first: once their offsets are stored they are past.
    fn commit(&mut self, rows: [Rows<'_>; LANES], dead: &[DeadLetter<'_>], started: Instant) {
        let shared = &self.shared;
        shared
            .handle
            .block_on(until_done(&self.metrics, "kafka", || {
                self.produce_dead_letters(dead)
            }));
        let batch = Batch::new(
            rows.map(Rows::into_owned),
            self.serving.version().to_owned(),
            self.serving
                .shadows
                .iter()
                .map(|s| s.artifact.version.clone())
                .collect(),
            started,
        );
        shared.commits.start(&shared.handle, batch);
        self.metrics.dead_letters.inc_by(dead.len() as u64);
    }

    async fn produce_dead_letters(
        &self,
        dead: &[DeadLetter<'_>],
    ) -> Result<(), vigil_ingest::Error> {
        let mut deliveries = Vec::with_capacity(dead.len());
        for letter in dead {
            let m = letter.message;
            tracing::warn!(topic = m.topic(), partition = m.partition(), offset = m.offset(),
                reason = %letter.reason, "dead letter");
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "error",
                    value: Some(letter.reason.as_str()),
                })
                .insert(Header {
                    key: "source_topic",
                    value: Some(m.topic()),
                })
                .insert(Header {
                    key: "source_partition",
                    value: Some(&m.partition().to_string()),
                })
                .insert(Header {
                    key: "source_offset",
                    value: Some(&m.offset().to_string()),
                });
            let mut record = FutureRecord::<[u8], [u8]>::to(topics::DEAD_LETTERS).headers(headers);
            if let Some(key) = m.key() {
                record = record.key(key);
            }
            if let Some(payload) = m.payload() {
                record = record.payload(payload);
            }
            deliveries.push(self.producer.send(record, Duration::from_secs(30)));
        }
        for delivery in deliveries {
            delivery
                .await
                .map_err(|(e, _)| vigil_ingest::Error::Kafka(e))?;
        }
        Ok(())
    }

    /// Reloads the allow and block lists every `lists_refresh_secs`; while Postgres cannot be
    /// read, the lists last loaded stay in force.
    fn refresh_lists(&mut self) {
        let interval = Duration::from_secs(self.config.lists_refresh_secs);
        if self.lists_loaded.is_some_and(|t| t.elapsed() < interval) {
            return;
        }
        self.lists_loaded = Some(Instant::now());
        match self
            .shared
            .handle
            .block_on(Lists::load(self.shared.store.pool()))
        {
            Ok(lists) => {
                if lists.len() != self.lists.len() {
                    tracing::info!(entries = lists.len(), "allow and block lists loaded");
                }
                self.metrics.list_entries.set(lists.len() as i64);
                self.lists = lists;
            }
            Err(e) => {
                self.metrics
                    .sink_errors
                    .with_label_values(&["postgres"])
                    .inc();
                tracing::warn!(error = %e, "lists not reloaded; the previous ones stay in force");
            }
        }
    }

    /// Asks the registry for the champion and shadows every `models_refresh_secs` and swaps
    /// in a change (between batches: a batch is scored by one set of models). While Postgres
    /// cannot be read, the models in force stay.
    fn refresh_models(&mut self) {
        let interval = Duration::from_secs(self.config.models_refresh_secs);
        if self.models_loaded.is_some_and(|t| t.elapsed() < interval) {
            return;
        }
        self.models_loaded = Some(Instant::now());
        self.serving.publish_drift(&self.metrics);
        let reload = self.serving.reload(self.shared.store.pool(), &self.metrics);
        match self.shared.handle.block_on(reload) {
            Ok(Some(serving)) => self.serving = serving,
            Ok(None) => {}
            Err(e) => {
                self.metrics
                    .sink_errors
                    .with_label_values(&["postgres"])
                    .inc();
                tracing::warn!(error = %e, "models not reloaded; those in force stay");
            }
        }
    }

    /// Saves the engine state of the partition whose snapshot is the most overdue, with the
    /// offsets it has read up to. Taken between batches, when each engine's state is exactly
    /// what its committed offsets say; one partition at a time. The stream pauses only to clone
    /// the engine (flat pages of windows and pending entries; the vectors of full chunks are
    /// shared, not copied); serializing, compressing and writing the clone happen off the
    /// scoring thread, which used to pause for the serialization (29-47 ms a partition at 100k
    /// cards, against 3-14 ms to clone).
    fn snapshot(&mut self) {
        if self
            .snapshot_write
            .as_ref()
            .is_some_and(|w| !w.is_finished())
        {
            return;
        }
        let interval = Duration::from_secs(self.config.snapshot_interval_secs);
        let shared = self.shared.clone();
        let mut partitions = shared.partitions.lock().expect("no panic while locked");
        let Some((&p, partition)) = partitions
            .iter_mut()
            .filter(|(_, part)| part.snapshot_at != Some(part.position))
            .filter(|(_, part)| part.snapshot_taken.is_none_or(|t| t.elapsed() >= interval))
            .min_by_key(|(_, part)| part.snapshot_taken)
        else {
            return;
        };
        let started = Instant::now();
        let engine = partition.engine.clone();
        // The state is the state after the last batch handed over; it is saved once that batch
        // is committed, since a snapshot ahead of the offsets in Postgres would skip it.
        let committed = shared.commits.committed(shared.commits.last_handed());
        let position = partition.position;
        let chunks_saved_to = partition.chunks_saved_to;
        partition.snapshot_at = Some(position);
        partition.snapshot_taken = Some(started);
        partition.chunks_saved_to = engine.full_chunks_to();
        drop(partitions);
        let taken_ms = started.elapsed().as_millis() as u64;
        let errors = self.metrics.sink_errors.with_label_values(&["postgres"]);
        self.snapshot_write = Some(shared.handle.clone().spawn(async move {
            let saved = save_snapshot(&shared, p, position, engine, chunks_saved_to, committed);
            match saved.await {
                Ok(Some((bytes, chunks))) => tracing::info!(
                    partition = p,
                    bytes,
                    chunks,
                    taken_ms,
                    written_ms = started.elapsed().as_millis() as u64,
                    "snapshot saved"
                ),
                Ok(None) => tracing::info!(
                    partition = p,
                    "snapshot not saved: a newer one is stored, saved by another instance"
                ),
                Err(e) => {
                    errors.inc();
                    tracing::warn!(partition = p, error = %e, "snapshot not saved");
                }
            }
        }));
    }
}

/// Serializes `engine` (a clone of partition `p`'s, at `position`), with the full chunks of
/// pending vectors from `chunks_saved_to` on, and saves it once `committed`; returns the state's
/// bytes and the count of chunks saved with it, or `None` when a newer snapshot is stored.
/// Unless saved, the chunks are marked unsaved again, for the next snapshot to save.
async fn save_snapshot(
    shared: &Shared,
    p: i32,
    position: [i64; 2],
    engine: Engine,
    chunks_saved_to: u64,
    committed: impl Future<Output = ()>,
) -> Result<Option<(usize, usize)>, String> {
    let saved = async {
        let snapshot = tokio::task::spawn_blocking(move || engine.snapshot(chunks_saved_to))
            .await
            .map_err(|e| format!("not taken: {e}"))?;
        let sizes = (snapshot.state.len(), snapshot.new_chunks.len());
        committed.await;
        let saved = shared.store.save_snapshot(p, position, snapshot).await;
        Ok(saved.map_err(|e| e.to_string())?.then_some(sizes))
    };
    let saved = saved.await;
    if !matches!(saved, Ok(Some(_))) {
        let mut partitions = shared.partitions.lock().expect("no panic while locked");
        if let Some(partition) = partitions.get_mut(&p) {
            partition.chunks_saved_to = partition.chunks_saved_to.min(chunks_saved_to);
        }
    }
    saved
}

/// An alert's explanation: the engine's (whose `decision` is the engine's own), with the list
/// entry that changed it, if any.
#[derive(serde::Serialize)]
struct Alerted<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    list: Option<ListHit>,
    #[serde(flatten)]
    decision: crate::engine::Explanation<'a>,
}

fn model_updates(partitions: &BTreeMap<i32, Partition>) -> u64 {
    partitions
        .values()
        .map(|p| p.engine.stats().model_updates)
        .sum()
}

/// A message's event, or why it breaks the contract (for its dead letter; no PAN in it).
fn parse<'m, T>(message: &'m BorrowedMessage<'m>) -> Result<T, String>
where
    T: serde::Deserialize<'m> + vigil_schema::Validate,
{
    let payload = message.payload().ok_or("the message has no payload")?;
    let text =
        std::str::from_utf8(payload).map_err(|e| format!("the payload is not UTF-8: {e}"))?;
    vigil_schema::from_json(text).map_err(|e| redact(&e.to_string()).into_owned())
}
