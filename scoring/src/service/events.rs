//! What the scoring service does that operators and tests watch for, as typed events (Vector's
//! internal events): each is logged in one place and counted in
//! `vigil_scoring_events_total{event}`, so that tests and dashboards read counts, never log
//! text.

use std::fmt::Display;

use super::metrics::ScoringMetrics;

/// Where the service writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sink {
    Postgres,
    Redis,
    Kafka,
}

impl Sink {
    pub const ALL: [Sink; 3] = [Sink::Postgres, Sink::Redis, Sink::Kafka];

    pub fn as_str(self) -> &'static str {
        match self {
            Sink::Postgres => "postgres",
            Sink::Redis => "redis",
            Sink::Kafka => "kafka",
        }
    }
}

/// Something the service did.
pub enum ServiceEvent<'a> {
    /// A partition was assigned to this instance and is read from `from`.
    PartitionAssigned {
        topic: &'a str,
        partition: i32,
        from: i64,
        committed: i64,
    },
    /// A partition's engine state was restored from its snapshot and `chunks` chunks of pending
    /// vectors saved apart.
    SnapshotRestored { partition: i32, chunks: usize },
    /// A partition's snapshot could not be used: the partition is replayed instead.
    SnapshotUnusable {
        partition: i32,
        error: &'a dyn Display,
    },
    /// A partition's snapshot was written.
    SnapshotSaved {
        partition: i32,
        bytes: usize,
        chunks: usize,
        taken_ms: u64,
        written_ms: u64,
    },
    /// The shared state's snapshot was written.
    SharedSnapshotSaved { pooled_to: i64, bytes: usize },
    /// A batch's rows and offsets are in Postgres.
    BatchCommitted {
        seq: u64,
        decisions: usize,
        labels: usize,
    },
    /// A write failed; what it belongs to waits and is retried.
    WriteFailed { sink: Sink, error: &'a dyn Display },
    /// Asked to stop while a write kept failing: the batch is given up, to be scored again by
    /// the next scorer.
    BatchGivenUp { sink: Sink },
    /// Asked to stop: the service leaves the consumer group.
    Stopping,
}

impl ServiceEvent<'_> {
    /// Every event's name, the label of its count.
    pub const NAMES: [&'static str; 9] = [
        "partition_assigned",
        "snapshot_restored",
        "snapshot_unusable",
        "snapshot_saved",
        "shared_snapshot_saved",
        "batch_committed",
        "write_failed",
        "batch_given_up",
        "stopping",
    ];

    pub fn name(&self) -> &'static str {
        let index = match self {
            ServiceEvent::PartitionAssigned { .. } => 0,
            ServiceEvent::SnapshotRestored { .. } => 1,
            ServiceEvent::SnapshotUnusable { .. } => 2,
            ServiceEvent::SnapshotSaved { .. } => 3,
            ServiceEvent::SharedSnapshotSaved { .. } => 4,
            ServiceEvent::BatchCommitted { .. } => 5,
            ServiceEvent::WriteFailed { .. } => 6,
            ServiceEvent::BatchGivenUp { .. } => 7,
            ServiceEvent::Stopping => 8,
        };
        Self::NAMES[index]
    }

    /// Logs the event and counts it (and what it carries that has a metric of its own).
    pub fn emit(self, metrics: &ScoringMetrics) {
        metrics.events.with_label_values(&[self.name()]).inc();
        match self {
            ServiceEvent::PartitionAssigned {
                topic,
                partition,
                from,
                committed,
            } => tracing::info!(topic, partition, from, committed, "partition assigned"),
            ServiceEvent::SnapshotRestored { partition, chunks } => {
                metrics.snapshot_chunks_restored.inc_by(chunks as u64);
                tracing::info!(partition, chunks, "engine restored from its snapshot");
            }
            ServiceEvent::SnapshotUnusable { partition, error } => {
                tracing::warn!(partition, error = %error, "unusable snapshot; replaying the partition");
            }
            ServiceEvent::SnapshotSaved {
                partition,
                bytes,
                chunks,
                taken_ms,
                written_ms,
            } => tracing::info!(
                partition,
                bytes,
                chunks,
                taken_ms,
                written_ms,
                "snapshot saved"
            ),
            ServiceEvent::SharedSnapshotSaved { pooled_to, bytes } => {
                tracing::info!(pooled_to, bytes, "shared snapshot saved");
            }
            // Every batch: for a reader of debug logs only.
            ServiceEvent::BatchCommitted {
                seq,
                decisions,
                labels,
            } => tracing::debug!(seq, decisions, labels, "batch committed"),
            ServiceEvent::WriteFailed { sink, error } => {
                metrics.sink_errors_of(sink).inc();
                tracing::warn!(sink = sink.as_str(), error = %error, "failed; the partition waits and retries");
            }
            ServiceEvent::BatchGivenUp { sink } => tracing::error!(
                sink = sink.as_str(),
                "giving the batch up: the service is stopping and the write keeps failing; \
                 a restart scores it again"
            ),
            ServiceEvent::Stopping => tracing::info!("stopping: leaving the group"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_is_counted_under_its_name() {
        let registry = prometheus::Registry::new();
        let metrics = ScoringMetrics::register(&registry).unwrap();
        let error = "refused";
        let events = [
            ServiceEvent::PartitionAssigned {
                topic: "transactions.v1",
                partition: 0,
                from: 0,
                committed: 0,
            },
            ServiceEvent::SnapshotRestored {
                partition: 0,
                chunks: 2,
            },
            ServiceEvent::SnapshotUnusable {
                partition: 0,
                error: &error,
            },
            ServiceEvent::SnapshotSaved {
                partition: 0,
                bytes: 1,
                chunks: 0,
                taken_ms: 0,
                written_ms: 0,
            },
            ServiceEvent::SharedSnapshotSaved {
                pooled_to: 0,
                bytes: 1,
            },
            ServiceEvent::BatchCommitted {
                seq: 1,
                decisions: 2,
                labels: 0,
            },
            ServiceEvent::WriteFailed {
                sink: Sink::Redis,
                error: &error,
            },
            ServiceEvent::BatchGivenUp {
                sink: Sink::Postgres,
            },
            ServiceEvent::Stopping,
        ];
        for event in events {
            event.emit(&metrics);
        }
        for name in ServiceEvent::NAMES {
            assert_eq!(metrics.events.with_label_values(&[name]).get(), 1, "{name}");
        }
        assert_eq!(metrics.snapshot_chunks_restored.get(), 2);
        assert_eq!(metrics.sink_errors.with_label_values(&["redis"]).get(), 1);
    }
}
