//! The consumer's rebalance handling. On assignment, before any message of a partition is
//! read, the partition's engine is restored (kept from before, or loaded from its snapshot) and
//! each topic is positioned where that engine stopped reading; messages from there up to the
//! offsets committed in Postgres only rebuild state. Kafka's own committed offsets are never
//! used: Postgres holds the truth, written in the same transaction as the decisions.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::TopicPartitionList;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset};
use tokio::runtime::Handle;

use super::commit::InFlight;
use super::metrics::ScoringMetrics;
use super::partition::Partition;
use super::store::{Store, Stored, topic_index};
use crate::{Engine, EngineConfig, RuleSet};
use vigil_schema::topics;

/// What the consumer's callbacks share with the scoring loop.
#[derive(Debug)]
pub struct Shared {
    pub handle: Handle,
    pub store: Store,
    pub engine_config: EngineConfig,
    pub rules: RuleSet,
    pub partitions: Mutex<BTreeMap<i32, Partition>>,
    /// Bumped at every assignment and revocation, so the loop can tell that messages it holds
    /// were read under an assignment that has ended.
    pub generation: AtomicU64,
    pub metrics: ScoringMetrics,
    pub stop: Arc<AtomicBool>,
    /// The commit stages: the batches being written while the next is scored.
    pub commits: InFlight,
}

pub struct Context(pub Arc<Shared>);

impl ClientContext for Context {
    fn stats(&self, statistics: Statistics) {
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                // Offsets are committed to Postgres, not Kafka, so librdkafka's own
                // `consumer_lag` is unknown: the lag is from the position reached instead.
                if *partition >= 0 && p.app_offset >= 0 && p.hi_offset >= 0 {
                    self.0
                        .metrics
                        .lag
                        .with_label_values(&[topic.as_str(), &partition.to_string()])
                        .set(p.hi_offset - p.app_offset);
                }
            }
        }
    }
}

impl ConsumerContext for Context {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let shared = &self.0;
        shared.generation.fetch_add(1, Ordering::SeqCst);
        // Engines and the offsets in Postgres agree again before anyone decides from them.
        shared.commits.finish(&shared.handle);
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                match shared.assign(consumer, tpl) {
                    Ok(()) => {
                        if let Err(e) = consumer.assign(tpl) {
                            tracing::error!(error = %e, "assignment failed");
                        }
                    }
                    Err(e) => {
                        tracing::error!("{e}; stopping");
                        shared.stop.store(true, Ordering::SeqCst);
                    }
                }
            }
            other => {
                if other != RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS {
                    tracing::error!(error = ?other, "rebalance error; unassigning");
                }
                tracing::info!(partitions = tpl.count(), "partitions revoked");
                shared.metrics.partitions.set(0);
                if let Err(e) = consumer.unassign() {
                    tracing::error!(error = %e, "unassign failed");
                }
            }
        }
    }
}

impl Shared {
    pub fn new_engine(&self) -> Engine {
        Engine::new(self.engine_config.clone(), self.rules.clone())
            .expect("the engine config was validated at start")
    }

    /// Restores the engines of the assigned partitions and sets where each topic is read from.
    /// Refuses offsets stored beyond the end of a partition: the topic was recreated or this is
    /// another broker, and going on would take its messages for ones already decided.
    fn assign(
        &self,
        consumer: &BaseConsumer<Context>,
        tpl: &mut TopicPartitionList,
    ) -> Result<(), String> {
        let wanted: Vec<i32> = tpl
            .elements()
            .iter()
            .map(rdkafka::topic_partition_list::TopicPartitionListElem::partition)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let Some(stored) = self.stored_waiting(&wanted) else {
            return Ok(());
        };
        for (&p, s) in &stored {
            for (t, topic) in topics::CONSUMED.iter().enumerate() {
                let (_, end) = consumer
                    .fetch_watermarks(topic, p, Duration::from_secs(10))
                    .map_err(|e| format!("reading the end of {topic} [{p}]: {e}"))?;
                if s.committed[t] > end {
                    return Err(format!(
                        "postgres holds offset {} for {topic} [{p}], beyond its end ({end}): \
                         the topic was recreated or this is another broker; to start this \
                         consumer group over, delete its rows from consumer_offsets, \
                         engine_snapshots and engine_snapshot_chunks",
                        s.committed[t]
                    ));
                }
            }
        }
        let mut partitions = self.partitions.lock().expect("no panic while locked");
        partitions.retain(|p, _| wanted.contains(p));
        for (p, stored) in stored {
            let snapshot_at = stored.snapshot.as_ref().map(|s| s.offsets);
            match partitions.get_mut(&p) {
                Some(kept) if kept.can_resume(stored.committed, snapshot_at) => {
                    kept.committed = stored.committed;
                }
                _ => {
                    partitions.insert(p, self.restore(p, stored));
                }
            }
        }
        let assigned: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect();
        for (topic_name, p) in assigned {
            let (Some(partition), Some(topic)) = (partitions.get(&p), topic_index(&topic_name))
            else {
                continue;
            };
            tracing::info!(
                topic = topic_name,
                partition = p,
                from = partition.position[topic],
                committed = partition.committed[topic],
                "partition assigned"
            );
            tpl.set_partition_offset(&topic_name, p, Offset::Offset(partition.position[topic]))
                .map_err(|e| e.to_string())?;
        }
        self.metrics.partitions.set(partitions.len() as i64);
        Ok(())
    }

    /// The partitions' stored offsets and snapshots; waits for Postgres while it is down.
    /// `None` when asked to stop meanwhile.
    fn stored_waiting(&self, partitions: &[i32]) -> Option<BTreeMap<i32, Stored>> {
        loop {
            match self.handle.block_on(self.store.stored(partitions)) {
                Ok(stored) => return Some(stored),
                Err(e) => {
                    self.metrics
                        .sink_errors
                        .with_label_values(&["postgres"])
                        .inc();
                    tracing::warn!(error = %e, "cannot read offsets from postgres; retrying");
                    if self.stop.load(Ordering::SeqCst) {
                        return None;
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
    }

    fn restore(&self, partition: i32, stored: Stored) -> Partition {
        if let Some(snapshot) = stored.snapshot {
            let restored = Engine::restore(
                self.engine_config.clone(),
                self.rules.clone(),
                &snapshot.state,
                |first| snapshot.chunks.get(&first).map(Vec::as_slice),
            );
            match restored {
                Ok(engine) => {
                    tracing::info!(
                        partition,
                        "engine restored from its snapshot, saved chunks: {}",
                        snapshot.chunks.len()
                    );
                    return Partition {
                        chunks_saved_to: engine.full_chunks_to(),
                        engine,
                        position: snapshot.offsets,
                        committed: stored.committed,
                        snapshot_at: Some(snapshot.offsets),
                        snapshot_taken: None,
                    };
                }
                Err(e) => {
                    tracing::warn!(partition, error = %e, "unusable snapshot; replaying the partition");
                }
            }
        }
        Partition {
            engine: self.new_engine(),
            position: [0, 0],
            committed: stored.committed,
            snapshot_at: None,
            snapshot_taken: None,
            chunks_saved_to: 0,
        }
    }
}
