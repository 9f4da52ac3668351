//! The loop: read a batch, score what it can of it (and of the messages waiting for the shared
//! state), hand over and read shares, and pass the batch to the commit stage.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::OwnedMessage;
use rdkafka::topic_partition_list::TopicPartitionList;
use vigil_common::prepare;
use vigil_schema::pan::redact;
use vigil_schema::{Label, Timestamp, Transaction, topics};

use super::commit::{Batch, until_done};
use super::consumer::Context;
use super::dead_letters::{DeadLetter, produce_dead_letters};
use super::events::Sink;
use super::lists::ListHit;
use super::partition::Instance;
use super::rows::{self, LANES, Rows, lane};
use super::shares::{self, Inbox};
use super::store;
use super::{Loop, MODEL_VERSION, Payment};
use crate::engine::{Decision, Disposition, EngineStats, Share};
use crate::{Engine, Event, LabelEvent};

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
    pub(super) fn step(&mut self, consumer: &BaseConsumer<Context>) {
        self.refresh_lists();
        self.refresh_rules();
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

    /// Up to `max_batch` messages: after the first, those already fetched, and more while the
    /// batch before is still committing (it could not commit sooner), at most `linger_ms`. So a
    /// quiet stream is decided as soon as it arrives, and a busy one in batches as large as
    /// its commits take. Only briefly for the first while messages wait for shares, which are
    /// read between batches.
    fn poll_batch(&self, consumer: &BaseConsumer<Context>) -> Vec<OwnedMessage> {
        let mut messages = Vec::with_capacity(self.config.max_batch);
        let linger = Duration::from_millis(self.config.linger_ms);
        let first_wait = Duration::from_millis(if self.waiting { 1 } else { 100 });
        let step = Duration::from_millis(1);
        let mut deadline: Option<Instant> = None;
        while messages.len() < self.config.max_batch {
            let timeout = match deadline {
                None => first_wait,
                Some(_) if self.shared.commits.is_idle() => Duration::ZERO,
                Some(d) => d.saturating_duration_since(Instant::now()).min(step),
            };
            match consumer.poll(timeout) {
                Some(Ok(m)) => {
                    deadline.get_or_insert_with(|| Instant::now() + linger);
                    messages.push(m.detach());
                }
                Some(Err(e)) => tracing::warn!(error = %e, "consumer error"),
                None if deadline.is_some_and(|d| d > Instant::now())
                    && !self.shared.commits.is_idle() => {}
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
        prepare::tokenize(&mut tx, &self.tokenizer);
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
        let geo = tx.geo();
        d.lat.push(geo.map(|g| g.lat));
        d.lon.push(geo.map(|g| g.lon));
        d.currency.push(tx.currency.as_str());
        d.country
            .push_option(tx.country.as_ref().map(vigil_schema::Country::as_str));
        match tx.mcc {
            Some(mcc) => d
                .mcc
                .push_with(|out| write!(out, "{mcc}").expect("a String takes it")),
            None => d.mcc.push_option(None),
        }
        d.channel
            .push_option(tx.channel.map(vigil_schema::Channel::as_str));
        d.score.push(decision.score);
        d.model_log_odds.push(decision.model.logit as f32);
        d.action.push(action);
        d.reasons.push_with(|out| {
            if let Some(hit) = listed {
                out.push_str(hit.reason());
            }
            decision.write_reasons(engine.rules(), out, listed.is_some());
        });
        d.shadow_rules.push_with(|out| {
            for (n, i) in decision.shadow_rules.iter().enumerate() {
                if n > 0 {
                    out.push(';');
                }
                out.push_str(&engine.rules().rules()[i].id);
            }
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
        let mut rows = scored.rows;
        for letter in dead {
            rows[lane(letter.message.partition())].owed.refuse(letter);
        }
        let batch = Batch::new(
            rows,
            scored.repeats,
            scored.model_version,
            self.serving
                .shadows
                .iter()
                .map(|s| s.artifact.version.clone())
                .collect(),
            self.rule_set,
            started,
        );
        shared.commits.start(&shared.handle, batch);
        self.metrics.dead_letters.inc_by(dead.len() as u64);
        true
    }
}

/// The model version an engine's decisions record: its champion's, or the online model's alone.
fn model_version(engine: &Engine) -> String {
    engine
        .champion()
        .map_or(MODEL_VERSION, |c| c.version.as_str())
        .to_owned()
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
pub(super) fn header(message: &OwnedMessage, name: &str) -> Option<String> {
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
