//! The consumer's rebalance handling. On assignment, before any message of a partition is
//! read, the partition's state is restored (kept from before, or loaded from its snapshot) and
//! each topic is positioned where it stopped reading; messages from there up to the offsets
//! committed in Postgres only rebuild state. A partition's snapshot goes on from the shared
//! state pooled to the boundary it records: when that is older than the shared state in
//! memory (or none is loaded yet), the shared state is loaded from the newest shared snapshot
//! at or before it and pooled forward again from the shares. Kafka's own committed offsets are
//! never used: Postgres holds the truth, written in the same transaction as the decisions.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::TopicPartitionList;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset};
use tokio::runtime::Handle;

use super::commit::{InFlight, until_done};
use super::events::{ServiceEvent, Sink};
use super::metrics::ScoringMetrics;
use super::partition::{Instance, Partition};
use super::shares::Inbox;
use super::store::{Store, Stored, topic_index};
use crate::Engine;
use tokio_util::sync::CancellationToken;
use vigil_schema::topics;

/// What the consumer's callbacks share with the scoring loop.
#[derive(Debug)]
pub struct Shared {
    pub handle: Handle,
    pub store: Store,
    pub instance: Mutex<Instance>,
    /// Bumped at every assignment and revocation, so the loop can tell that messages it holds
    /// were read under an assignment that has ended.
    pub generation: AtomicU64,
    pub metrics: ScoringMetrics,
    pub stop: CancellationToken,
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
                        // A partition paused while its queue was full starts afresh.
                        if let Err(e) = consumer.assign(tpl).and_then(|()| consumer.resume(tpl)) {
                            tracing::error!(error = %e, "assignment failed");
                        }
                    }
                    Err(e) => {
                        tracing::error!("{e}; stopping");
                        shared.stop.cancel();
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
    /// Restores the state of the assigned partitions (and the shared state they go on from)
    /// and sets where each topic is read from. Refuses offsets stored beyond the end of a
    /// partition: the topic was recreated or this is another broker, and going on would take
    /// its messages for ones already decided.
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
                         engine_snapshots, engine_snapshot_chunks and shared_snapshots",
                        s.committed[t]
                    ));
                }
            }
        }
        let mut guard = self.instance.lock().expect("no panic while locked");
        let instance = &mut *guard;
        let gone: Vec<i32> = instance
            .partitions
            .keys()
            .copied()
            .filter(|p| !wanted.contains(p))
            .collect();
        for p in gone {
            instance.partitions.remove(&p);
            instance.engine.reset_part(p as usize);
        }
        // The oldest boundary a restored partition goes on from.
        let mut needs_shared_at = None::<i64>;
        for (p, stored) in stored {
            let snapshot_at = stored.snapshot.as_ref().map(|s| s.offsets);
            match instance.partitions.get_mut(&p) {
                Some(kept) if kept.can_resume(stored.committed, snapshot_at) => {
                    // Read under the assignment that ended: read again from the position.
                    kept.queue.clear();
                    kept.paused = false;
                    kept.committed = stored.committed;
                }
                _ => {
                    let (partition, pooled_to) =
                        restore(&mut instance.engine, p, stored, &self.metrics);
                    instance.partitions.insert(p, partition);
                    needs_shared_at = Some(needs_shared_at.map_or(pooled_to, |n| n.min(pooled_to)));
                }
            }
        }
        if let Some(at) = needs_shared_at
            && (!instance.shared_loaded || at < instance.engine.pooled_to())
        {
            self.load_shared(instance, at)?;
        }
        let assigned: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect();
        for (topic_name, p) in assigned {
            let (Some(partition), Some(topic)) =
                (instance.partitions.get(&p), topic_index(&topic_name))
            else {
                continue;
            };
            ServiceEvent::PartitionAssigned {
                topic: &topic_name,
                partition: p,
                from: partition.position[topic],
                committed: partition.committed[topic],
            }
            .emit(&self.metrics);
            tpl.set_partition_offset(&topic_name, p, Offset::Offset(partition.position[topic]))
                .map_err(|e| e.to_string())?;
        }
        self.metrics
            .partitions
            .set(instance.partitions.len() as i64);
        Ok(())
    }

    /// Loads the newest shared snapshot pooled to `at` or before (or starts the shared state
    /// afresh, from the first share), for the loop to read the shares on from there.
    fn load_shared(&self, instance: &mut Instance, at: i64) -> Result<(), String> {
        let read = until_done(&self.metrics, Sink::Postgres, &self.stop, || {
            self.store.shared_snapshot(at)
        });
        let stored = self
            .handle
            .block_on(read)
            .ok_or("stopped while loading the shared state")?;
        let partitions = instance.engine.partitions();
        let loaded = stored.and_then(|s| {
            let inbox = Inbox::from_bytes(&s.inbox);
            let restored = inbox.and_then(|inbox| {
                instance
                    .engine
                    .restore_shared(Some(&s.state))
                    .map(|()| inbox)
                    .map_err(|e| e.to_string())
            });
            match restored {
                Ok(inbox) if inbox.received_to.len() == partitions => Some((s.pooled_to, inbox)),
                Ok(_) => {
                    tracing::warn!("a shared snapshot of another partition count is passed over");
                    None
                }
                Err(e) => {
                    tracing::warn!(error = %e, "unusable shared snapshot");
                    None
                }
            }
        });
        instance.inbox = match loaded {
            Some((pooled_to, inbox)) => {
                tracing::info!(pooled_to, "shared state restored from its snapshot");
                inbox
            }
            None => {
                tracing::info!("shared state pooled from the first share");
                instance
                    .engine
                    .restore_shared(None)
                    .map_err(|e| e.to_string())?;
                Inbox::new(partitions)
            }
        };
        instance.shared_loaded = true;
        instance.seek_shares = true;
        Ok(())
    }

    /// The partitions' stored offsets and snapshots; waits for Postgres while it is down.
    /// `None` when asked to stop meanwhile.
    fn stored_waiting(&self, partitions: &[i32]) -> Option<BTreeMap<i32, Stored>> {
        let read = until_done(&self.metrics, Sink::Postgres, &self.stop, || {
            self.store.stored(partitions)
        });
        self.handle.block_on(read)
    }
}

/// Partition `p`'s state, from its snapshot (or afresh, read from the first offset), into
/// `engine`; with the boundary the shared state must be pooled to (or before) for it to go on.
fn restore(
    engine: &mut Engine,
    p: i32,
    stored: Stored,
    metrics: &ScoringMetrics,
) -> (Partition, i64) {
    let index = p as usize;
    if let Some(snapshot) = stored.snapshot {
        let restored = engine.restore_part(index, &snapshot.state, |first| {
            snapshot.chunks.get(&first).map(Vec::as_slice)
        });
        match restored {
            Ok(pooled_to) => {
                ServiceEvent::SnapshotRestored {
                    partition: p,
                    chunks: snapshot.chunks.len(),
                }
                .emit(metrics);
                let partition = Partition {
                    chunks_saved_to: engine.full_chunks_to(index),
                    position: snapshot.offsets,
                    committed: stored.committed,
                    snapshot_at: Some(snapshot.offsets),
                    ..Partition::default()
                };
                return (partition, pooled_to);
            }
            Err(e) => ServiceEvent::SnapshotUnusable {
                partition: p,
                error: &e,
            }
            .emit(metrics),
        }
    }
    engine.reset_part(index);
    let partition = Partition {
        committed: stored.committed,
        ..Partition::default()
    };
    (partition, i64::MIN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::store::StoredSnapshot;
    use crate::{EngineConfig, RuleSet};

    fn engine() -> Engine {
        Engine::partitioned(EngineConfig::default(), RuleSet::default_rules(), 2).unwrap()
    }

    fn metrics() -> ScoringMetrics {
        ScoringMetrics::register(&prometheus::Registry::new()).unwrap()
    }

    fn event(metrics: &ScoringMetrics, name: &str) -> u64 {
        metrics.events.with_label_values(&[name]).get()
    }

    /// A partition with a usable snapshot goes on from the snapshot's offsets; the offsets
    /// committed with the decisions say what is only replayed.
    #[test]
    fn a_partition_goes_on_from_its_snapshot() {
        let state = engine().part_copy(1).snapshot(0).state;
        let stored = Stored {
            committed: [7, 3],
            snapshot: Some(StoredSnapshot {
                offsets: [5, 2],
                state,
                chunks: BTreeMap::new(),
            }),
        };
        let metrics = metrics();
        let (partition, _) = restore(&mut engine(), 1, stored, &metrics);
        assert_eq!(partition.position, [5, 2]);
        assert_eq!(partition.committed, [7, 3]);
        assert_eq!(partition.snapshot_at, Some([5, 2]));
        assert!(partition.is_replay(0, 6) && !partition.is_replay(0, 7));
        assert_eq!(event(&metrics, "snapshot_restored"), 1);
    }

    /// A snapshot that cannot be read is counted, and the partition is read again from its
    /// first offset, from an empty state.
    #[test]
    fn an_unusable_snapshot_replays_the_partition_from_the_start() {
        let stored = Stored {
            committed: [7, 3],
            snapshot: Some(StoredSnapshot {
                offsets: [5, 2],
                state: b"not a snapshot".to_vec(),
                chunks: BTreeMap::new(),
            }),
        };
        let metrics = metrics();
        let (partition, pooled_to) = restore(&mut engine(), 1, stored, &metrics);
        assert_eq!((partition.position, partition.committed), ([0, 0], [7, 3]));
        assert_eq!((partition.snapshot_at, pooled_to), (None, i64::MIN));
        assert_eq!(event(&metrics, "snapshot_unusable"), 1);
        assert_eq!(event(&metrics, "snapshot_restored"), 0);
    }
}
