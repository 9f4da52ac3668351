//! A scored batch's effects, in two stages after the loop's reading and scoring: ONE Postgres
//! transaction (decisions, alerts, labels, offsets) and the replies to the intakes waiting on
//! its transactions, then Redis and `decisions.v1` side by side.
//! Each stage holds one batch at a time and runs on the async runtime, so while batch N+2 is
//! scored, N+1 commits and N goes to Redis and Kafka, each in order. The engines are then ahead
//! of the offsets in Postgres by the batch committing and the one being scored: a rebalance
//! and a shutdown first wait for everything handed over to be written, and a snapshot is saved
//! only once the batch it was taken after is committed.

use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use std::collections::HashMap;

use rdkafka::Message as _;
use rdkafka::message::OwnedMessage;
use rdkafka::producer::FutureProducer;
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use vigil_common::kafka;
use vigil_schema::{Action, DecisionRecord, Timestamp, topics};

use super::events::{ServiceEvent, Sink};
use super::metrics::ScoringMetrics;
use super::redis_sink::RedisSink;
use super::replies::{self, Published, Replier};
use super::rows::{LANES, Rows, lane};
use super::store::{Deciders, Store};
use super::{DeadLetter, Payment, produce_dead_letters};
use tokio_util::sync::CancellationToken;

/// A scored batch on its way out, owning all it writes.
pub struct Batch {
    /// The rows of each lane, committed in transactions side by side.
    lanes: [Rows<'static>; LANES],
    /// Transactions whose id their partition had scored before, with their messages.
    repeats: Vec<(Payment, OwnedMessage)>,
    /// The version of the model that decided, recorded with each decision.
    model_version: String,
    /// The shadow models in force, by their position in the rows' shadow scores.
    shadows: Vec<String>,
    /// The version of the rule set that decided.
    rule_set: i32,
    /// When scoring began, for the batch processing time.
    started: Instant,
    /// The batch's number, given when it is handed over.
    seq: u64,
}

impl Batch {
    pub fn new(
        lanes: [Rows<'static>; LANES],
        repeats: Vec<(Payment, OwnedMessage)>,
        model_version: String,
        shadows: Vec<String>,
        rule_set: i32,
        started: Instant,
    ) -> Self {
        Self {
            lanes,
            repeats,
            model_version,
            shadows,
            rule_set,
            started,
            seq: 0,
        }
    }
}

/// What writes a batch's effects: Postgres here, then Redis and `decisions.v1` in a stage of
/// their own, so that the next batch's transaction runs while this batch's Redis and Kafka
/// writes do.
struct Committer {
    store: Store,
    metrics: ScoringMetrics,
    sinks: Option<Stage<Sinks>>,
    /// The number of the last batch committed to Postgres.
    committed: watch::Sender<u64>,
    /// Set when the service is asked to stop: a write that keeps failing is then given up.
    stop: CancellationToken,
    /// For the dead letters of transactions whose id another payment has.
    producer: FutureProducer,
    /// A batch was given up: no later one may commit, or its offsets would pass over it.
    given_up: bool,
    /// Answers intakes waiting on the batch's transactions once it is committed.
    replier: Replier,
}

/// The writes after the commit.
struct Sinks {
    store: Store,
    metrics: ScoringMetrics,
    producer: FutureProducer,
    redis: RedisSink,
}

/// A stage of the pipeline: free, or busy with one batch and giving itself back when done.
enum Stage<T> {
    Idle(T),
    Busy(JoinHandle<T>),
}

impl<T> Stage<T> {
    /// Still working on its batch.
    fn is_busy(&self) -> bool {
        matches!(self, Stage::Busy(task) if !task.is_finished())
    }

    /// The stage, once the batch it is busy with, if any, is done. A panic there is the
    /// service's panic, as it would be on the loop's own thread.
    async fn ready(self) -> T {
        match self {
            Stage::Idle(stage) => stage,
            Stage::Busy(task) => match task.await {
                Ok(stage) => stage,
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            },
        }
    }
}

/// The commit stage: idle, or writing one batch.
pub struct InFlight {
    stage: Mutex<Option<Stage<Committer>>>,
    /// The number of the last batch handed over (batches are numbered from 1).
    handed: AtomicU64,
    committed: watch::Receiver<u64>,
}

impl InFlight {
    pub fn new(
        store: Store,
        metrics: ScoringMetrics,
        producer: FutureProducer,
        redis: RedisSink,
        stop: CancellationToken,
    ) -> Self {
        let sinks_producer = producer.clone();
        let replier = redis.replier();
        let sinks = Sinks {
            store: store.clone(),
            metrics: metrics.clone(),
            producer,
            redis,
        };
        let (committed, watch) = watch::channel(0);
        Self {
            stage: Mutex::new(Some(Stage::Idle(Committer {
                store,
                metrics,
                sinks: Some(Stage::Idle(sinks)),
                committed,
                stop,
                given_up: false,
                producer: sinks_producer,
                replier,
            }))),
            handed: AtomicU64::new(0),
            committed: watch,
        }
    }

    /// The number of the last batch handed over: the engines' state is the state after it.
    pub fn last_handed(&self) -> u64 {
        self.handed.load(Ordering::SeqCst)
    }

    /// Whether every batch handed over is committed to Postgres: one handed over now would
    /// start committing at once.
    pub fn is_idle(&self) -> bool {
        *self.committed.borrow() >= self.last_handed()
    }

    /// Returns once batch `seq` is committed to Postgres (never, if the service stops first).
    pub fn committed(&self, seq: u64) -> impl Future<Output = ()> + use<> {
        let mut committed = self.committed.clone();
        async move {
            if committed.wait_for(|&c| c >= seq).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Waits for the batch in the commit stage, if any, to be committed, then starts
    /// committing `batch`.
    pub fn start(&self, handle: &Handle, mut batch: Batch) {
        batch.seq = self.handed.fetch_add(1, Ordering::SeqCst) + 1;
        let mut stage = self.stage.lock().expect("no panic while locked");
        let committer = handle.block_on(taken(&mut stage).ready());
        *stage = Some(Stage::Busy(handle.spawn(committer.write(batch))));
    }

    /// Waits until every batch handed over is written everywhere: the offsets in Postgres are
    /// then those of the last batch scored.
    pub fn finish(&self, handle: &Handle) {
        let mut stage = self.stage.lock().expect("no panic while locked");
        let committer = handle.block_on(async {
            let mut committer = taken(&mut stage).ready().await;
            committer.settle().await;
            committer
        });
        *stage = Some(Stage::Idle(committer));
    }

    /// On a quiet stream, rebuilds Redis if it missed writes (a busy pipeline does it as it
    /// writes).
    pub fn heal(&self, handle: &Handle) {
        let mut stage = self.stage.lock().expect("no panic while locked");
        if stage.as_ref().is_some_and(Stage::is_busy) {
            return;
        }
        let mut committer = handle.block_on(taken(&mut stage).ready());
        if !committer.sinks.as_ref().is_some_and(Stage::is_busy) {
            handle.block_on(async {
                committer.settle().await;
                if let Some(Stage::Idle(sinks)) = committer.sinks.as_mut() {
                    sinks.redis.heal(&sinks.store).await;
                }
            });
        }
        *stage = Some(Stage::Idle(committer));
    }
}

fn taken<T>(stage: &mut Option<Stage<T>>) -> Stage<T> {
    stage.take().expect("a stage is put back after every use")
}

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never waits for the lock: whoever holds it may be the one printing.
        let state = match self.stage.try_lock().as_deref() {
            Ok(Some(stage)) if stage.is_busy() => "busy",
            Ok(_) => "idle",
            Err(_) => "locked",
        };
        write!(f, "InFlight({state})")
    }
}

impl Committer {
    /// Commits the batch's rows with their offsets, a transaction per lane side by side, each
    /// retried until Postgres takes it (or, once the service is asked to stop, given up: see
    /// [`until_done`]); then hands them to the sinks (once they are done with the batch
    /// before).
    async fn write(mut self, mut batch: Batch) -> Self {
        if self.given_up {
            return self;
        }
        if self.sort_out_conflicts(&mut batch).await.is_none() {
            self.given_up = true;
            return self;
        }
        let committing = Instant::now();
        let Batch {
            lanes,
            model_version,
            shadows,
            rule_set,
            ..
        } = &mut batch;
        let models = Deciders {
            champion: model_version,
            shadows: shadows.iter().map(String::as_str).collect(),
            rule_set: *rule_set,
        };
        let commits = lanes
            .iter_mut()
            .filter(|rows| !rows.is_empty())
            .map(|rows| self.commit_lane(rows, &models));
        let done = futures_util::future::join_all(commits).await;
        if done.contains(&None) {
            // Its offsets are not all committed: a restart scores it again, as if read anew.
            self.given_up = true;
            return self;
        }
        let outbox: Vec<i64> = done.into_iter().flatten().flatten().collect();
        self.committed.send_replace(batch.seq);
        let committed = committing.elapsed();
        ServiceEvent::BatchCommitted {
            seq: batch.seq,
            decisions: batch.lanes.iter().map(|r| r.decisions.len()).sum(),
            labels: batch.lanes.iter().map(|r| r.labels.len()).sum(),
        }
        .emit(&self.metrics);
        for rows in &batch.lanes {
            observe_committed(&self.metrics, rows);
        }
        self.reply(&batch);
        let sinks = taken(&mut self.sinks).ready().await;
        let write = sinks.write(batch, outbox, committed);
        self.sinks = Some(Stage::Busy(tokio::spawn(write)));
        self
    }

    /// Commits one lane's rows, retrying while the failure may pass (see [`until_done`]). Rows
    /// Postgres refuses for what they hold (a data or constraint error, which no retry
    /// changes) are found, dead-lettered with Postgres's reason and left out, and the rest
    /// commits. `None` if given up while stopping.
    async fn commit_lane(
        &self,
        rows: &mut Rows<'static>,
        models: &Deciders<'_>,
    ) -> Option<Option<i64>> {
        loop {
            let committed = until_done(&self.metrics, Sink::Postgres, &self.stop, || async {
                permanent_apart(self.store.commit(rows, models).await)
            })
            .await?;
            let refusal = match committed {
                Ok(outbox) => return Some(outbox),
                Err(refusal) => refusal,
            };
            let (decisions, labels) = self.refused(rows, models).await?;
            let reason = format!(
                "Postgres refused it: {}",
                vigil_schema::pan::redact(&refusal.to_string())
            );
            tracing::error!(
                decisions = decisions.len(),
                labels = labels.len(),
                %reason,
                "rows Postgres refuses are dead-lettered; the rest of the batch commits"
            );
            let dead: Vec<DeadLetter> = rows
                .leave_out(&decisions, &labels)
                .into_iter()
                .map(|message| DeadLetter {
                    message,
                    reason: reason.clone(),
                })
                .collect();
            for letter in &dead {
                rows.owed.refuse(letter);
            }
            let producer = &self.producer;
            until_done(&self.metrics, Sink::Kafka, &self.stop, || {
                produce_dead_letters(producer, &dead)
            })
            .await?;
            self.metrics.refused.inc_by(dead.len() as u64);
            self.metrics.dead_letters.inc_by(dead.len() as u64);
        }
    }

    /// The decisions and labels of `rows` Postgres refuses on their own, found by halving the
    /// rows (a few dozen round trips for one bad row in thousands). Should none fail alone
    /// (rows refused only together), all of them: a batch is never retried forever.
    async fn refused(
        &self,
        rows: &Rows<'static>,
        models: &Deciders<'_>,
    ) -> Option<(Vec<usize>, Vec<usize>)> {
        let decisions = (0..rows.decisions.len()).collect();
        let labels = (0..rows.labels.len()).collect();
        let refused_decisions = self
            .halving(decisions, |ids| rows.only(ids, &[]), models)
            .await?;
        let refused_labels = self
            .halving(labels, |ids| rows.only(&[], ids), models)
            .await?;
        if refused_decisions.is_empty() && refused_labels.is_empty() {
            return Some((
                (0..rows.decisions.len()).collect(),
                (0..rows.labels.len()).collect(),
            ));
        }
        Some((refused_decisions, refused_labels))
    }

    /// The items among `all` that Postgres refuses alone: a group it takes is cleared whole,
    /// a refused one halved until single items remain.
    async fn halving(
        &self,
        all: Vec<usize>,
        rows_of: impl Fn(&[usize]) -> Rows<'static>,
        models: &Deciders<'_>,
    ) -> Option<Vec<usize>> {
        let mut groups = vec![all];
        let mut refused = vec![];
        while let Some(group) = groups.pop() {
            if group.is_empty() {
                continue;
            }
            let rows = rows_of(&group);
            let probed = until_done(&self.metrics, Sink::Postgres, &self.stop, || async {
                permanent_apart(self.store.probe(&rows, models).await)
            })
            .await?;
            match probed {
                Ok(()) => {}
                Err(_) if group.len() == 1 => refused.push(group[0]),
                Err(_) => {
                    let (first, second) = group.split_at(group.len() / 2);
                    groups.push(first.to_vec());
                    groups.push(second.to_vec());
                }
            }
        }
        refused.sort_unstable();
        Some(refused)
    }

    /// Dead-letters each transaction of the batch whose id another payment has (decided
    /// before, in Postgres, or earlier in the batch): a conflict, which Postgres would pass
    /// over (`ON CONFLICT DO NOTHING`) while Redis and `decisions.v1` took it. The same payment
    /// again (a partition scored again after a crash, or a repeated message) is counted and
    /// decided no more. Runs after the batch before is committed, so it sees every decision
    /// before it. `None` if given up while stopping.
    async fn sort_out_conflicts(&mut self, batch: &mut Batch) -> Option<()> {
        let ids: Vec<String> = batch
            .lanes
            .iter()
            .flat_map(|rows| rows.decisions.transaction_id.values())
            .chain(batch.repeats.iter().map(|r| r.0.transaction_id.as_str()))
            .map(str::to_owned)
            .collect();
        if ids.is_empty() {
            return Some(());
        }
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        let store = &self.store;
        let stored = until_done(&self.metrics, Sink::Postgres, &self.stop, || {
            store.decided(&ids)
        });
        let mut first: HashMap<String, Payment> = stored
            .await?
            .into_iter()
            .map(|p| (p.transaction_id.clone(), p))
            .collect();
        let mut conflicts = |payment: Payment| match first.get(&payment.transaction_id) {
            Some(earlier) => earlier != &payment,
            None => {
                first.insert(payment.transaction_id.clone(), payment);
                false
            }
        };
        let mut dead = vec![];
        for rows in &mut batch.lanes {
            let d = &mut rows.decisions;
            let keep: Vec<bool> = (0..d.len())
                .map(|i| !conflicts(Payment::of_decision(d, i)))
                .collect();
            if keep.contains(&false) {
                dead.extend(d.retain(&keep).into_iter().map(conflict));
            }
        }
        let mut repeats = 0;
        for (payment, message) in batch.repeats.drain(..) {
            let id = payment.transaction_id.clone();
            if conflicts(payment) {
                dead.push(conflict(message));
                continue;
            }
            repeats += 1;
            if let Some(waiting) = replies::waiting(&message, || Some(id)) {
                batch.lanes[lane(message.partition())]
                    .owed
                    .repeats
                    .push(waiting);
            }
        }
        for letter in &dead {
            batch.lanes[lane(letter.message.partition())]
                .owed
                .refuse(letter);
        }
        self.metrics.repeats.inc_by(repeats);
        if dead.is_empty() {
            return Some(());
        }
        let producer = &self.producer;
        until_done(&self.metrics, Sink::Kafka, &self.stop, || {
            produce_dead_letters(producer, &dead)
        })
        .await?;
        self.metrics.conflicts.inc_by(dead.len() as u64);
        self.metrics.dead_letters.inc_by(dead.len() as u64);
        Some(())
    }

    /// Answers the intakes waiting on the committed batch's transactions, on a task of its
    /// own: the next commit never waits for it (nor for a Redis that is down), nor for the
    /// sinks to be done with the batch before. A reply Redis does not take is lost (its request
    /// answers "pending"), not retried.
    fn reply(&self, batch: &Batch) {
        let (mut published, repeats) = replies_of(batch);
        if published.is_empty() && repeats.is_empty() {
            return;
        }
        let (store, mut replier, metrics) = (
            self.store.clone(),
            self.replier.clone(),
            self.metrics.clone(),
        );
        tokio::spawn(async move {
            published.extend(repeated(&store, &repeats).await);
            if let Err(e) = replier.publish(&published).await {
                metrics.sink_errors_of(Sink::Redis).inc();
                tracing::warn!(error = %e, replies = published.len(), "replies to waiting intakes not published");
            }
        });
    }

    /// Waits for the sinks to be done with the last batch.
    async fn settle(&mut self) {
        let sinks = taken(&mut self.sinks).ready().await;
        self.sinks = Some(Stage::Idle(sinks));
    }
}

impl Sinks {
    /// Writes Redis and produces the decisions of a committed batch, then deletes their
    /// `outbox` rows; what is not acknowledged stays there for the relay ([`relay`]).
    async fn write(mut self, batch: Batch, outbox: Vec<i64>, committed: Duration) -> Self {
        let writing = Instant::now();
        let records: Vec<_> = batch
            .lanes
            .iter()
            .flat_map(|rows| decision_records(rows, &batch.model_version))
            .collect();
        let redis = async {
            let decisions: Vec<_> = batch.lanes.iter().map(|rows| &rows.decisions).collect();
            self.redis.write(&decisions, &self.store).await
        };
        let (redis_current, produced) = tokio::join!(
            redis,
            kafka::produce_all(&self.producer, topics::DECISIONS, &records)
        );
        if !redis_current {
            self.metrics.sink_errors_of(Sink::Redis).inc();
        }
        match produced {
            Ok(()) => {
                if let Err(e) = self.store.sent(&outbox).await {
                    self.metrics.sink_errors_of(Sink::Postgres).inc();
                    tracing::warn!(error = %e, "outbox rows not deleted; the relay sends them again");
                }
            }
            Err(e) => {
                self.metrics.sink_errors_of(Sink::Kafka).inc();
                tracing::warn!(error = %e, "decisions not produced to decisions.v1; the relay sends them again");
            }
        }
        self.metrics
            .batch_seconds
            .observe(batch.started.elapsed().as_secs_f64());
        tracing::debug!(
            decisions = records.len(),
            commit_ms = committed.as_millis() as u64,
            after_commit_ms = writing.elapsed().as_millis() as u64,
            "committed"
        );
        self
    }
}

/// What `batch` answers intake instances waiting on its transactions, and the repeats among
/// them, whose answer is the decision committed first (to read back).
fn replies_of(batch: &Batch) -> (Vec<Published>, Vec<replies::Waiting>) {
    let model_version = batch.model_version.as_str();
    let published = batch
        .lanes
        .iter()
        .flat_map(|rows| {
            replies::decided(&rows.decisions, model_version).chain(replies::refused(&rows.owed))
        })
        .collect();
    let repeats = batch
        .lanes
        .iter()
        .flat_map(|rows| rows.owed.repeats.iter().cloned())
        .collect();
    (published, repeats)
}

/// The replies to `repeats`: each the decision committed first, read back (should that read
/// fail, their requests answer "pending").
async fn repeated(store: &Store, repeats: &[replies::Waiting]) -> Vec<Published> {
    if repeats.is_empty() {
        return vec![];
    }
    let ids: Vec<&str> = repeats.iter().map(|w| w.transaction_id.as_str()).collect();
    let stored = match store.replies(&ids).await {
        Ok(stored) => stored,
        Err(e) => {
            tracing::warn!(error = %e, "repeats' decisions not read back; their requests answer pending");
            return vec![];
        }
    };
    repeats
        .iter()
        .filter_map(|w| Some((w.instance.clone(), stored.get(&w.transaction_id)?.clone())))
        .collect()
}

fn observe_committed(metrics: &ScoringMetrics, rows: &Rows<'_>) {
    let d = &rows.decisions;
    let committed_ms = unix_millis(SystemTime::now());
    for i in 0..d.len() {
        let action = d.action[i].as_str();
        metrics.decisions.with_label_values(&[action]).inc();
        if d.action[i].is_alert() {
            metrics.alerts.with_label_values(&[action]).inc();
        }
        if let Some(produced) = d.produced_at_ms[i] {
            metrics
                .event_to_commit_seconds
                .observe((committed_ms - produced).max(0) as f64 / 1000.0);
        }
    }
}

/// Each decision as a `decisions.v1` record, keyed by card.
fn decision_records<'r>(rows: &'r Rows<'_>, model_version: &str) -> Vec<(&'r str, Vec<u8>)> {
    let d = &rows.decisions;
    (0..d.len())
        .map(|i| {
            let record = DecisionRecord {
                transaction_id: d.transaction_id.get(i).into(),
                card_id: d.card_id.get(i).into(),
                merchant_id: d.merchant_id.get(i).into(),
                occurred_at: d.occurred_at[i],
                amount_minor: d.amount_minor[i] as u64,
                score: d.score[i],
                decision: d.action[i],
                model_version: model_version.into(),
                reasons: d.reasons.get(i).into(),
            };
            let json = serde_json::to_vec(&record).expect("a decision serializes");
            (d.card_id.get(i), json)
        })
        .collect()
}

/// The models a batch was scored with, as its rows record them.
/// A failure no retry changes (Postgres's data exceptions, class 22, and integrity constraint
/// violations, class 23: the rows themselves are at fault) as `Ok(Err(refusal))`, apart from
/// those worth retrying (connections, timeouts, serialization, resources), left as `Err`.
fn permanent_apart<T>(result: sqlx::Result<T>) -> sqlx::Result<Result<T, sqlx::Error>> {
    match result {
        Ok(value) => Ok(Ok(value)),
        Err(sqlx::Error::Database(e))
            if e.code()
                .is_some_and(|c| c.starts_with("22") || c.starts_with("23")) =>
        {
            Ok(Err(sqlx::Error::Database(e)))
        }
        Err(e) => Err(e),
    }
}

/// An outbox row this old was not sent by the batch's own writes (which take milliseconds):
/// the relay sends it.
const UNSENT_AFTER_SECS: i64 = 10;

/// Sends `decisions.v1` the decisions of outbox rows older than [`UNSENT_AFTER_SECS`] (a crash
/// between a commit and its send, a broker that failed), from `decisions`, and deletes the rows;
/// returns how many decisions it sent. Rows are locked while they are sent, so two instances
/// never send one twice; a crash after the broker's ack and before the delete sends it again
/// (consumers dedupe on `transaction_id`).
pub async fn relay(store: &Store, producer: &FutureProducer) -> Result<usize, RelayError> {
    let mut tx = store.pool().begin().await?;
    let rows: Vec<(i64, Vec<String>)> = sqlx::query_as(
        "SELECT id, transaction_ids FROM decisions_outbox
          WHERE created_at < now() - make_interval(secs => $1)
          ORDER BY id LIMIT 100 FOR UPDATE SKIP LOCKED",
    )
    .bind(UNSENT_AFTER_SECS as f64)
    .fetch_all(&mut *tx)
    .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let (ids, transactions): (Vec<i64>, Vec<Vec<String>>) = rows.into_iter().unzip();
    let transactions: Vec<String> = transactions.into_iter().flatten().collect();
    let decided: Vec<Sent> = sqlx::query_as(
        "SELECT transaction_id, card_id, merchant_id,
                round(extract(epoch FROM occurred_at) * 1000)::bigint AS occurred_at_ms,
                amount_minor, score, decision, model_version, reasons
           FROM decisions WHERE transaction_id = ANY($1)",
    )
    .bind(&transactions)
    .fetch_all(&mut *tx)
    .await?;
    let records = decided
        .into_iter()
        .map(Sent::into_record)
        .collect::<Result<Vec<_>, _>>()?;
    kafka::produce_all(producer, topics::DECISIONS, &records).await?;
    sqlx::query("DELETE FROM decisions_outbox WHERE id = ANY($1)")
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(records.len())
}

/// A decision as the relay reads it back.
#[derive(sqlx::FromRow)]
struct Sent {
    transaction_id: String,
    card_id: String,
    merchant_id: String,
    occurred_at_ms: i64,
    amount_minor: i64,
    score: f32,
    decision: String,
    model_version: String,
    reasons: String,
}

impl Sent {
    /// Its `decisions.v1` record, keyed by card.
    fn into_record(self) -> Result<(String, Vec<u8>), RelayError> {
        let record = DecisionRecord {
            transaction_id: self.transaction_id.into(),
            card_id: self.card_id.as_str().into(),
            merchant_id: self.merchant_id.into(),
            occurred_at: Timestamp::from_unix_millis(self.occurred_at_ms, 0)
                .map_err(|e| RelayError::Row(format!("occurred_at: {e}")))?,
            amount_minor: self.amount_minor as u64,
            score: self.score,
            decision: Action::parse(&self.decision)
                .ok_or_else(|| RelayError::Row(format!("decision `{}`", self.decision)))?,
            model_version: self.model_version.into(),
            reasons: self.reasons.into(),
        };
        let json = serde_json::to_vec(&record).expect("a decision serializes");
        Ok((self.card_id, json))
    }
}

/// Why the relay could not send.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("postgres: {0}")]
    Postgres(#[from] sqlx::Error),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("a stored decision cannot be read: {0}")]
    Row(String),
}

/// How long a failing write is still retried once the service is asked to stop.
const RETRIED_WHEN_STOPPING: Duration = Duration::from_secs(10);

/// Retries `attempt` (a write, or a read the partitions need) every second until it succeeds,
/// counting each failure against `sink`: a sink that is down holds the partitions until it is
/// back. Once `stop` is set, retries for
/// `RETRIED_WHEN_STOPPING` more and then gives up (`None`), so that a stop is never held
/// forever; nothing after what is given up may be committed.
pub async fn until_done<F, Fut, T, E>(
    metrics: &ScoringMetrics,
    sink: Sink,
    stop: &CancellationToken,
    attempt: F,
) -> Option<T>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    let mut stopping_since = None;
    loop {
        match attempt().await {
            Ok(value) => return Some(value),
            Err(e) => ServiceEvent::WriteFailed { sink, error: &e }.emit(metrics),
        }
        if stop.is_cancelled() {
            let since = *stopping_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= RETRIED_WHEN_STOPPING {
                ServiceEvent::BatchGivenUp { sink }.emit(metrics);
                return None;
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The dead letter of a transaction whose id another payment has.
fn conflict(message: OwnedMessage) -> DeadLetter {
    DeadLetter {
        message,
        reason: "transaction_id was decided for another payment (card, merchant, amount or \
                 time differ): an id names one payment"
            .into(),
    }
}

fn unix_millis(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as i64
}
