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
//! (see [`consumer`]). Every `snapshot_interval_secs`, each partition's state is saved with its
//! offsets, one partition at a time, and the shared state with the shares' offsets. The
//! champion and shadow models come from the registry (`serving.rs`): shadows are swapped in
//! between batches; a champion is offered through the shares and taken by every instance at
//! the same pooling step.

mod commit;
mod config;
mod consumer;
mod events;
mod lists;
mod metrics;
mod partition;
mod redis_sink;
mod rows;
mod serving;
mod shares;
mod store;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::TopicPartitionList;
use rdkafka::{ClientConfig, Message};
use tokio::runtime::Handle;
use vigil_common::kafka::{self, ProducerConfig};
use vigil_common::prepare;
use vigil_schema::pan::{PanTokenizer, redact};
use vigil_schema::{Label, Timestamp, Transaction, topics};

pub use config::ServiceConfig;
pub use metrics::ScoringMetrics;
pub use store::Store;

use crate::engine::{Decision, Disposition, EngineStats, PartCopy, Share};
use crate::{Engine, EngineConfig, Event, LabelEvent, RuleSet};
use commit::{Batch, InFlight, until_done};
use consumer::{Context, Shared};
use events::{ServiceEvent, Sink};
use lists::{ListHit, Lists};
use partition::Instance;
use redis_sink::RedisSink;
use rows::{LANES, Rows, lane};
use serving::Serving;
use shares::Inbox;
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

/// What became of a message read.
enum Read {
    /// A transaction decided (its row written).
    Decided,
    /// A transaction whose id its partition had scored before.
    Repeated(Payment),
    /// A label (its row written).
    Labelled,
    /// A message only rebuilding state.
    Passed,
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

/// A message the service could not read, and why.
#[derive(Debug)]
pub struct DeadLetter {
    pub message: OwnedMessage,
    pub reason: String,
}

/// Runs the service on the calling thread until `stop` is set; async I/O runs on `handle`.
/// On stop it finishes the batch in hand, commits it and leaves the group; a commit that keeps
/// failing then is given up after a while (a restart scores the batch again).
pub fn run(
    parts: ServiceParts,
    stop: &CancellationToken,
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
        stop.clone(),
    );
    let partitions = stream_partitions(&parts.brokers)?;
    let engine = Engine::partitioned(parts.engine.clone(), parts.rules.clone(), partitions)?;
    let shared = Arc::new(Shared {
        handle: handle.clone(),
        store,
        instance: Mutex::new(Instance::new(engine)),
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
    consumer.subscribe(&topics::CONSUMED)?;
    let mut service = Loop {
        shares: shares::consumer(
            &parts.brokers,
            &parts.config.group,
            parts.config.fetch_wait_ms,
        )?,
        shares_producer: kafka::producer(
            &parts.brokers,
            &ProducerConfig {
                linger_ms: 0,
                ..ProducerConfig::default()
            },
        )?,
        outgoing: shares::Outgoing::default(),
        waiting: false,
        shared_write: None,
        shared_taken: None,
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
fn stream_partitions(brokers: &str) -> Result<usize, ServiceError> {
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
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
    lists: Lists,
    lists_loaded: Option<Instant>,
    serving: Serving,
    models_loaded: Option<Instant>,
}

/// What a batch gives: the rows of each lane, the dead letters, the offsets reached and the
/// count of messages read per consumed topic, all decided by the champion `model_version`.
#[derive(Default)]
struct Scored {
    model_version: String,
    /// Transactions whose id their partition had scored before: a repeat, or a conflict.
    repeats: Vec<(Payment, OwnedMessage)>,
    rows: [Rows<'static>; LANES],
    dead: Vec<DeadLetter>,
    offsets: BTreeMap<(usize, i32), i64>,
    consumed: [u64; topics::CONSUMED.len()],
}

impl Loop {
    /// Reads one batch, scores what it can of it (and of the messages waiting before it) and
    /// commits its effects.
    fn step(&mut self, consumer: &BaseConsumer<Context>) {
        self.refresh_lists();
        self.refresh_models();
        let generation = self.shared.generation.load(Ordering::SeqCst);
        let polling = Instant::now();
        let messages = self.poll_batch(consumer);
        let polled = polling.elapsed();
        if self.shared.generation.load(Ordering::SeqCst) != generation {
            // Read under an assignment that has ended: the new one re-reads from the
            // partitions' positions.
            return;
        }
        let started = Instant::now();
        let shared = self.shared.clone();
        let mut guard = shared.instance.lock().expect("no panic while locked");
        let instance = &mut *guard;
        self.read_shares(instance);
        let read = messages.len();
        for message in messages {
            if let Some(partition) = instance.partitions.get_mut(&message.partition()) {
                partition.queue.push_back(message);
            }
        }
        let scored = self.score(instance, consumer);
        self.waiting = instance.partitions.values().any(|p| !p.queue.is_empty());
        drop(guard);
        if !scored.offsets.is_empty() {
            let scored_in = started.elapsed();
            let count: u64 = scored.consumed.iter().sum();
            if !self.commit(scored, started) {
                // Given up while stopping: no snapshot may be taken of what it scored.
                return;
            }
            tracing::debug!(
                read,
                scored = count,
                poll_ms = polled.as_millis() as u64,
                score_ms = scored_in.as_millis() as u64,
                handed_over_ms = started.elapsed().saturating_sub(scored_in).as_millis() as u64,
                "batch"
            );
        }
        self.snapshot();
        self.snapshot_shared();
        self.shared.commits.heal(&self.shared.handle);
    }

    /// Up to `max_batch` messages, waiting at most `linger_ms` after the first; only briefly
    /// for the first while messages wait for shares, which are read between batches.
    fn poll_batch(&self, consumer: &BaseConsumer<Context>) -> Vec<OwnedMessage> {
        let mut messages = Vec::with_capacity(self.config.max_batch);
        let linger = Duration::from_millis(self.config.linger_ms);
        let first_wait = Duration::from_millis(if self.waiting { 1 } else { 100 });
        let mut deadline: Option<Instant> = None;
        while messages.len() < self.config.max_batch {
            let timeout = match deadline {
                None => first_wait,
                Some(d) => d.saturating_duration_since(Instant::now()),
            };
            match consumer.poll(timeout) {
                Some(Ok(m)) => {
                    deadline.get_or_insert_with(|| Instant::now() + linger);
                    messages.push(m.detach());
                }
                Some(Err(e)) => tracing::warn!(error = %e, "consumer error"),
                None => break,
            }
        }
        messages
    }

    /// Takes the shares arrived into the inbox; first, after the shared state was (re)loaded,
    /// reads `shares.v1` again from the inbox's positions.
    fn read_shares(&mut self, instance: &mut Instance) {
        if std::mem::take(&mut instance.seek_shares)
            && let Err(e) = shares::seek(&self.shares, &instance.inbox)
        {
            tracing::error!(error = %e, "cannot read shares.v1; stopping");
            self.shared.stop.cancel();
        }
        let wait = Duration::from_millis(if self.waiting { 5 } else { 0 });
        let mut taken = shares::read(&self.shares, &self.config.group, &mut instance.inbox, wait);
        taken += self.take_acknowledged(&mut instance.inbox, false);
        self.metrics.shares_read.inc_by(taken as u64);
    }

    /// Scores the queued messages of every partition, each in order, until its queue is empty
    /// or its next transaction waits for a share; hands over the shares of the partitions that
    /// have read all there is when another partition has handed over a boundary.
    fn score(&mut self, instance: &mut Instance, consumer: &BaseConsumer<Context>) -> Scored {
        let mut scored = Scored::default();
        if !self.hold_champion(&mut instance.engine) {
            return scored;
        }
        scored.model_version = model_version(&instance.engine);
        let before = instance.engine.stats();
        let owned: Vec<i32> = instance.partitions.keys().copied().collect();
        loop {
            while owned
                .iter()
                .fold(false, |any, &p| self.drain(instance, p, &mut scored) | any)
            {}
            self.hand_over_idle(instance, consumer);
            // Shares just produced may be all a waiting transaction needs (with one instance,
            // they are): their acknowledgement is a few milliseconds away.
            let waiting = instance.partitions.values().any(|p| !p.queue.is_empty());
            if !waiting || self.outgoing.is_empty() {
                break;
            }
            if self.take_acknowledged(&mut instance.inbox, true) == 0 {
                break;
            }
        }
        self.pause_full(instance, consumer);
        for (topic, n) in topics::CONSUMED.iter().zip(scored.consumed) {
            self.metrics.consumed.with_label_values(&[topic]).inc_by(n);
        }
        for (&(t, p), &o) in &scored.offsets {
            scored.rows[lane(p)]
                .offsets
                .push((topics::CONSUMED[t], p, o));
        }
        self.count_engine_stats(&before, &instance.engine.stats());
        scored
    }

    fn count_engine_stats(&self, before: &EngineStats, after: &EngineStats) {
        let grew = |f: fn(&EngineStats) -> u64| f(after).saturating_sub(f(before));
        self.metrics.model_updates.inc_by(grew(|s| s.model_updates));
        let dropped = &self.metrics.state_dropped;
        dropped
            .with_label_values(&["keys"])
            .inc_by(grew(|s| s.keys_evicted));
        dropped
            .with_label_values(&["new_card_vectors"])
            .inc_by(grew(|s| s.vectors_not_kept));
        dropped
            .with_label_values(&["pending_vectors"])
            .inc_by(grew(|s| s.vectors_dropped_early));
    }

    /// Scores partition `p`'s queued messages until its queue is empty or its next
    /// transaction waits for a share; returns whether it read any.
    fn drain(&mut self, instance: &mut Instance, p: i32, scored: &mut Scored) -> bool {
        let Instance {
            engine,
            partitions,
            inbox,
            ..
        } = instance;
        let Some(partition) = partitions.get_mut(&p) else {
            return false;
        };
        let mut any = false;
        while let Some(message) = partition.queue.front() {
            let Some(topic) = store::topic_index(message.topic()) else {
                partition.queue.pop_front();
                continue;
            };
            let offset = message.offset();
            if offset < partition.position[topic] {
                partition.queue.pop_front();
                continue;
            }
            if offset > partition.position[topic] {
                self.skipped(p, topic, partition.position[topic], offset);
            }
            let replay = partition.is_replay(topic, offset);
            let rows = &mut scored.rows[lane(p)];
            let read = if topic == 0 {
                let version = &scored.model_version;
                let Some(read) =
                    self.score_transaction(engine, inbox, message, replay, version, rows)
                else {
                    break;
                };
                read
            } else {
                self.learn_label(engine, message, replay, rows)
                    .map(|()| Read::Labelled)
            };
            let message = partition.queue.pop_front().expect("the message scored");
            partition.position[topic] = offset + 1;
            scored.offsets.insert((topic, p), offset + 1);
            scored.consumed[topic] += 1;
            match read {
                _ if replay => {}
                Ok(Read::Passed) => {}
                Ok(Read::Decided) => rows.decisions.sources.push(message),
                Ok(Read::Labelled) => rows.label_sources.push(message),
                Ok(Read::Repeated(key)) => scored.repeats.push((key, message)),
                Err(reason) => scored.dead.push(DeadLetter { message, reason }),
            }
            any = true;
        }
        any
    }

    /// Scores a transaction, once the shared state is pooled to its boundary (handing this
    /// partition's share over first); `None` while it waits for the other partitions' shares.
    fn score_transaction(
        &mut self,
        engine: &mut Engine,
        inbox: &mut Inbox,
        message: &OwnedMessage,
        replay: bool,
        model_version: &str,
        rows: &mut Rows<'static>,
    ) -> Option<Result<Read, String>> {
        let checked = parse(message).and_then(|tx: Transaction<'_>| {
            self.not_ahead(message, "occurred_at", tx.occurred_at)?;
            Ok(tx)
        });
        let mut tx = match checked {
            Ok(tx) => tx,
            Err(reason) => return Some(Err(reason)),
        };
        if let Some(token) = prepare::token(&self.tokenizer, &tx.card_id) {
            tx.card_id = token;
        }
        let p = message.partition() as usize;
        if let Some(boundary) = engine.due(tx.occurred_at) {
            if let Some(share) = engine.hand_over(p, boundary) {
                self.produce_share(share);
            }
            if !inbox.pool(engine, boundary) {
                return None;
            }
            if self::model_version(engine) != model_version {
                // The pooling switched champions: the next batch is decided by the new one.
                return None;
            }
        }
        let decision = engine.score_pooled(p, &Event::from(&tx));
        if replay {
            return Some(Ok(Read::Passed));
        }
        if decision.disposition == Disposition::Duplicate {
            return Some(Ok(Read::Repeated(Payment::of(&tx))));
        }
        self.record_decision(engine, &tx, &decision, message, rows);
        Some(Ok(Read::Decided))
    }

    fn record_decision(
        &mut self,
        engine: &Engine,
        tx: &Transaction<'_>,
        decision: &Decision,
        message: &OwnedMessage,
        rows: &mut Rows<'static>,
    ) {
        self.score_alongside(engine, decision, &mut rows.decisions);
        let listed = self.lists.check(tx, decision.action);
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
                decision: engine.explain(decision),
            };
            // Alerts are a small share of decisions: allocating for their JSON is fine.
            d.alert_transaction
                .push(&serde_json::to_string(tx).expect("a transaction serializes"));
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
    }

    /// Records the champion's score, and scores the shadows on the same features and rules:
    /// their scores go to `shadow_scores`, their decisions nowhere.
    fn score_alongside(&mut self, engine: &Engine, decision: &Decision, d: &mut rows::Decisions) {
        let scoring = engine.champion().map(|c| c.version.as_str());
        if let Some(champion) = &mut self.serving.champion
            && scoring == Some(champion.artifact.version.as_str())
        {
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

    fn learn_label(
        &self,
        engine: &mut Engine,
        message: &OwnedMessage,
        replay: bool,
        rows: &mut Rows<'static>,
    ) -> Result<(), String> {
        let mut label: Label<'_> = parse(message)?;
        self.not_ahead(message, "labelled_at", label.labelled_at)?;
        if let Some(token) = label
            .card_id
            .as_ref()
            .and_then(|c| prepare::token(&self.tokenizer, c))
        {
            label.card_id = Some(token);
        }
        engine.learn_in(message.partition() as usize, &LabelEvent::from(&label));
        if !replay {
            rows.labels.push(rows::LabelRow {
                label: label.into_owned(),
                sent_by: header(message, topics::SENT_BY_HEADER),
            });
        }
        Ok(())
    }

    /// Says, loudly, that the broker no longer had messages `from..to` of partition `p` of
    /// consumed topic `topic` when they were to be read (its retention deleted them while the
    /// scorer lagged, or before this group first read the topic): they were never scored.
    fn skipped(&self, p: i32, topic: usize, from: i64, to: i64) {
        let name = topics::CONSUMED[topic];
        self.metrics
            .skipped
            .with_label_values(&[name])
            .inc_by((to - from) as u64);
        tracing::error!(
            topic = name,
            partition = p,
            from,
            to,
            "messages deleted by the broker before they were read: never scored (raise the \
             topic's retention, or scale the scorers so they keep up)"
        );
    }

    /// Refuses an event time more than `max_ahead_secs` after its message was produced (when
    /// the message has a timestamp), naming the field.
    fn not_ahead(&self, message: &OwnedMessage, field: &str, at: Timestamp) -> Result<(), String> {
        let Some(produced_ms) = message.timestamp().to_millis() else {
            return Ok(());
        };
        let ahead_ms = at.unix_millis().saturating_sub(produced_ms);
        if ahead_ms <= i64::from(self.config.max_ahead_secs) * 1000 {
            return Ok(());
        }
        Err(format!(
            "{field} is {} s after the message was produced, more than `max_ahead_secs` ({}) \
             allows: events are produced as they happen",
            ahead_ms / 1000,
            self.config.max_ahead_secs
        ))
    }

    /// Hands over the share of each owned partition that has read all there is (its queue is
    /// empty and the broker has nothing after its position) up to the newest boundary another
    /// partition has handed over: the point at which a backtest would have it hand over. The
    /// broker is asked at most every few milliseconds a partition.
    fn hand_over_idle(&mut self, instance: &mut Instance, consumer: &BaseConsumer<Context>) {
        let target = instance.inbox.seen_to();
        let recheck = Duration::from_millis(20);
        for (&p, partition) in &mut instance.partitions {
            if !partition.queue.is_empty()
                || instance.engine.handed_to(p as usize) >= target
                || partition.checked_end.is_some_and(|t| t.elapsed() < recheck)
            {
                continue;
            }
            if !at_end(consumer, p, partition.position) {
                partition.checked_end = Some(Instant::now());
                continue;
            }
            if let Some(share) = instance.engine.hand_over(p as usize, target) {
                self.produce_share(share);
            }
        }
    }

    /// Pauses a partition whose queue holds a batch (it waits for shares), and resumes it once
    /// half of that is scored: memory stays bounded while it waits.
    fn pause_full(&self, instance: &mut Instance, consumer: &BaseConsumer<Context>) {
        let full = self.config.max_batch;
        for (&p, partition) in &mut instance.partitions {
            let pause = partition.queue.len() >= full;
            let resume = partition.paused && partition.queue.len() < full / 2;
            if pause == partition.paused || (!pause && !resume) {
                continue;
            }
            let mut both = TopicPartitionList::new();
            for topic in topics::CONSUMED {
                both.add_partition(topic, p);
            }
            let switched = if pause {
                consumer.pause(&both)
            } else {
                consumer.resume(&both)
            };
            match switched {
                Ok(()) => partition.paused = pause,
                Err(e) => tracing::warn!(partition = p, error = %e, "pause or resume failed"),
            }
        }
    }

    /// Produces a share. One that cannot be produced would hold every partition's scoring:
    /// the service stops (a restart hands it over again).
    fn produce_share(&mut self, share: Share) {
        self.metrics.shares_produced.inc();
        let produced = self
            .outgoing
            .produce(&self.shares_producer, &self.config.group, share);
        if let Err(e) = produced {
            self.stop_for_shares(&e);
        }
    }

    fn stop_for_shares(&self, error: &str) {
        tracing::error!(
            error,
            "stopping: the other partitions would wait for this share"
        );
        self.shared.stop.cancel();
    }

    /// Takes the shares acknowledged by the broker into the inbox (see
    /// [`shares::Outgoing::acknowledged`]); returns how many.
    fn take_acknowledged(&mut self, inbox: &mut Inbox, wait: bool) -> usize {
        match self.outgoing.acknowledged(&self.shared.handle, inbox, wait) {
            Ok(taken) => taken,
            Err(e) => {
                self.stop_for_shares(&e);
                0
            }
        }
    }

    /// Produces the dead letters, then hands the rows to the commit stage (once the batch
    /// before is committed). Dead letters go first: once their offsets are stored they are past.
    /// Returns false if the dead letters were given up (the service is stopping).
    fn commit(&mut self, scored: Scored, started: Instant) -> bool {
        let shared = &self.shared;
        let dead = &scored.dead;
        let producer = &self.producer;
        let produced =
            shared
                .handle
                .block_on(until_done(&self.metrics, Sink::Kafka, &shared.stop, || {
                    produce_dead_letters(producer, dead)
                }));
        if produced.is_none() {
            return false;
        }
        let batch = Batch::new(
            scored.rows,
            scored.repeats,
            scored.model_version,
            self.serving
                .shadows
                .iter()
                .map(|s| s.artifact.version.clone())
                .collect(),
            started,
        );
        shared.commits.start(&shared.handle, batch);
        self.metrics.dead_letters.inc_by(dead.len() as u64);
        true
    }

    /// Makes sure the engine holds the champion the pooled shares switched to (another
    /// instance's registry may have offered it first), fetching it from the registry by
    /// version; false while it cannot be had (nothing is scored meanwhile).
    fn hold_champion(&mut self, engine: &mut Engine) -> bool {
        let Some(version) = engine.champion_missing().map(str::to_owned) else {
            return true;
        };
        let fetch = vigil_registry::artifact(self.shared.store.pool(), &version);
        match self.shared.handle.block_on(fetch) {
            Ok(artifact) => {
                engine.provide_champion(Arc::new(artifact));
                engine.champion_missing().is_none()
            }
            Err(e) => {
                tracing::warn!(model = version, error = %e, "the shares' champion not loaded; scoring waits");
                false
            }
        }
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
                self.metrics.sink_errors_of(Sink::Postgres).inc();
                tracing::warn!(error = %e, "lists not reloaded; the previous ones stay in force");
            }
        }
    }

    /// Asks the registry for the champion and shadows every `models_refresh_secs`: shadows
    /// are swapped in between batches, a champion offered to the shares (see
    /// [`Engine::offer_champion`]). While Postgres cannot be read, the models in force stay.
    fn refresh_models(&mut self) {
        let interval = Duration::from_secs(self.config.models_refresh_secs);
        if self.models_loaded.is_some_and(|t| t.elapsed() < interval) {
            return;
        }
        self.models_loaded = Some(Instant::now());
        self.serving.publish_drift(&self.metrics);
        let reload = self.serving.reload(self.shared.store.pool(), &self.metrics);
        match self.shared.handle.block_on(reload) {
            Ok(Some(serving)) => {
                self.serving = serving;
                // Offered to every instance through the shares: all take it at one point.
                let mut instance = self.shared.instance.lock().expect("no panic while locked");
                instance
                    .engine
                    .offer_champion(self.serving.champion_artifact());
            }
            Ok(None) => {}
            Err(e) => {
                self.metrics.sink_errors_of(Sink::Postgres).inc();
                tracing::warn!(error = %e, "models not reloaded; those in force stay");
            }
        }
    }

    /// Saves the state of the partition whose snapshot is the most overdue, with the offsets
    /// it has read up to. Taken between batches, when each partition's state is exactly what
    /// its committed offsets say; one partition at a time. The stream pauses only to copy the
    /// partition (flat pages of windows and pending entries; the vectors of full chunks are
    /// shared, not copied); serializing, compressing and writing the copy happen off the
    /// scoring thread.
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
        let mut guard = shared.instance.lock().expect("no panic while locked");
        let instance = &mut *guard;
        let Some((&p, partition)) = instance
            .partitions
            .iter_mut()
            .filter(|(_, part)| part.snapshot_at != Some(part.position))
            .filter(|(_, part)| part.snapshot_taken.is_none_or(|t| t.elapsed() >= interval))
            .min_by_key(|(_, part)| part.snapshot_taken)
        else {
            return;
        };
        let started = Instant::now();
        let copy = instance.engine.part_copy(p as usize);
        // The state is the state after the last batch handed over; it is saved once that batch
        // is committed, since a snapshot ahead of the offsets in Postgres would skip it.
        let committed = shared.commits.committed(shared.commits.last_handed());
        let position = partition.position;
        let chunks_saved_to = partition.chunks_saved_to;
        partition.snapshot_at = Some(position);
        partition.snapshot_taken = Some(started);
        partition.chunks_saved_to = copy.full_chunks_to();
        drop(guard);
        let taken_ms = started.elapsed().as_millis() as u64;
        let metrics = self.metrics.clone();
        self.snapshot_write = Some(shared.handle.clone().spawn(async move {
            let saved = save_snapshot(&shared, p, position, copy, chunks_saved_to, committed);
            match saved.await {
                Ok(Some((bytes, chunks))) => ServiceEvent::SnapshotSaved {
                    partition: p,
                    bytes,
                    chunks,
                    taken_ms,
                    written_ms: started.elapsed().as_millis() as u64,
                }
                .emit(&metrics),
                Ok(None) => tracing::info!(
                    partition = p,
                    "snapshot not saved: a newer one is stored, saved by another instance"
                ),
                Err(e) => {
                    metrics.sink_errors_of(Sink::Postgres).inc();
                    tracing::warn!(partition = p, error = %e, "snapshot not saved");
                }
            }
        }));
    }

    /// Saves the shared state, with the inbox of shares it goes on from, every
    /// `snapshot_interval_secs` when it has been pooled further. It is a function of the shares
    /// alone, so it is saved at once (not after a commit), and every instance saves the same.
    fn snapshot_shared(&mut self) {
        let interval = Duration::from_secs(self.config.snapshot_interval_secs);
        if self.shared_write.as_ref().is_some_and(|w| !w.is_finished())
            || self
                .shared_taken
                .is_some_and(|(t, _)| t.elapsed() < interval)
        {
            return;
        }
        let shared = self.shared.clone();
        let instance = shared.instance.lock().expect("no panic while locked");
        let pooled_to = instance.engine.pooled_to();
        if !instance.shared_loaded
            || pooled_to == i64::MIN
            || self.shared_taken.is_some_and(|(_, at)| at >= pooled_to)
        {
            return;
        }
        let state = instance.engine.shared_snapshot();
        let inbox = instance.inbox.to_bytes();
        let partitions = instance.engine.partitions();
        drop(instance);
        self.shared_taken = Some((Instant::now(), pooled_to));
        let metrics = self.metrics.clone();
        self.shared_write = Some(shared.handle.clone().spawn(async move {
            let bytes = state.len();
            match shared
                .store
                .save_shared(pooled_to, state, inbox, partitions)
                .await
            {
                Ok(()) => ServiceEvent::SharedSnapshotSaved { pooled_to, bytes }.emit(&metrics),
                Err(e) => {
                    metrics.sink_errors_of(Sink::Postgres).inc();
                    tracing::warn!(error = %e, "shared snapshot not saved");
                }
            }
        }));
    }
}

/// The model version an engine's decisions record: its champion's, or the online model's alone.
fn model_version(engine: &Engine) -> String {
    engine
        .champion()
        .map_or(MODEL_VERSION, |c| c.version.as_str())
        .to_owned()
}

/// Serializes `copy` (of partition `p`'s state, at `position`), with the full chunks of
/// pending vectors from `chunks_saved_to` on, and saves it once `committed`; returns the state's
/// bytes and the count of chunks saved with it, or `None` when a newer snapshot is stored.
/// Unless saved, the chunks are marked unsaved again, for the next snapshot to save.
async fn save_snapshot(
    shared: &Shared,
    p: i32,
    position: [i64; 2],
    copy: PartCopy,
    chunks_saved_to: u64,
    committed: impl Future<Output = ()>,
) -> Result<Option<(usize, usize)>, String> {
    let saved = async {
        let pooled_to = copy.pooled_to();
        let snapshot = tokio::task::spawn_blocking(move || copy.snapshot(chunks_saved_to))
            .await
            .map_err(|e| format!("not taken: {e}"))?;
        let sizes = (snapshot.state.len(), snapshot.new_chunks.len());
        committed.await;
        let saved = shared
            .store
            .save_snapshot(p, position, pooled_to, snapshot)
            .await;
        Ok(saved.map_err(|e| e.to_string())?.then_some(sizes))
    };
    let saved = saved.await;
    if !matches!(saved, Ok(Some(_))) {
        let mut instance = shared.instance.lock().expect("no panic while locked");
        if let Some(partition) = instance.partitions.get_mut(&p) {
            partition.chunks_saved_to = partition.chunks_saved_to.min(chunks_saved_to);
        }
    }
    saved
}

/// Whether partition `p` of both consumed topics has nothing after `position`, as the broker
/// says now.
fn at_end(consumer: &BaseConsumer<Context>, p: i32, position: [i64; 2]) -> bool {
    topics::CONSUMED.iter().zip(position).all(|(topic, at)| {
        match consumer.fetch_watermarks(topic, p, Duration::from_secs(5)) {
            Ok((_, end)) => at >= end,
            Err(e) => {
                tracing::debug!(topic, partition = p, error = %e, "end of partition not read");
                false
            }
        }
    })
}

/// Produces `dead` to the dead-letter topic, the reason in a header, and waits for the broker.
pub async fn produce_dead_letters(
    producer: &FutureProducer,
    dead: &[DeadLetter],
) -> Result<(), rdkafka::error::KafkaError> {
    let mut deliveries = Vec::with_capacity(dead.len());
    for letter in dead {
        let m = &letter.message;
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
        deliveries.push(producer.send(record, Duration::from_secs(30)));
    }
    for delivery in deliveries {
        delivery.await.map_err(|(e, _)| e)?;
    }
    Ok(())
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

/// A message's event, or why it breaks the contract (for its dead letter; no PAN in it).
fn parse<'m, T>(message: &'m OwnedMessage) -> Result<T, String>
where
    T: serde::Deserialize<'m> + vigil_schema::Validate,
{
    let payload = message.payload().ok_or("the message has no payload")?;
    let text =
        std::str::from_utf8(payload).map_err(|e| format!("the payload is not UTF-8: {e}"))?;
    vigil_schema::from_json(text).map_err(|e| redact(&e.to_string()).into_owned())
}

/// The text of `message`'s header `name`, if it has one (the last, if several), at most
/// [`MAX_HEADER_CHARS`] long.
fn header(message: &OwnedMessage, name: &str) -> Option<String> {
    use rdkafka::message::Headers as _;
    let value = message
        .headers()?
        .iter()
        .filter(|h| h.key == name)
        .filter_map(|h| h.value)
        .last()?;
    let text = String::from_utf8_lossy(value);
    Some(text.chars().take(MAX_HEADER_CHARS).collect())
}

/// Header text kept in a row: enough for any key's name (a producer writing to the topics
/// directly could set anything).
const MAX_HEADER_CHARS: usize = 200;
