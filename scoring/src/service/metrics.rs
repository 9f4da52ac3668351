//! The scoring service's Prometheus metrics.

use super::events::{ServiceEvent, Sink};
use prometheus::{
    GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, exponential_buckets,
};

#[derive(Debug, Clone)]
pub struct ScoringMetrics {
    /// Messages consumed, by topic (its rate is consumed/s).
    pub consumed: IntCounterVec,
    /// Messages behind the end of each partition, by topic and partition.
    pub lag: IntGaugeVec,
    /// Time to score and commit one batch.
    pub batch_seconds: Histogram,
    /// Time from a transaction's production to the commit of its decision.
    pub event_to_commit_seconds: Histogram,
    /// Decisions and alerts, by decision.
    pub decisions: IntCounterVec,
    pub alerts: IntCounterVec,
    pub dead_letters: IntCounter,
    /// Failed writes, by sink (`postgres`, `redis`, `kafka`).
    pub sink_errors: IntCounterVec,
    /// The service's typed events (`events.rs`), by name.
    pub events: IntCounterVec,
    /// Chunks of pending vectors restored with partitions' snapshots.
    pub snapshot_chunks_restored: IntCounter,
    /// Examples the online model learned from.
    pub model_updates: IntCounter,
    /// What the engine let go early to stay within its bounds, by what (`keys` at
    /// `max_keys`, `new_card_vectors` beyond `new_card_vectors_per_hour`, `pending_vectors` at
    /// `max_pending_labels`).
    pub state_dropped: IntCounterVec,
    /// Transactions whose id another payment already had (dead-lettered), and transactions
    /// repeated (the same payment again, decided once).
    pub conflicts: IntCounter,
    pub repeats: IntCounter,
    pub resent: IntCounter,
    pub refused: IntCounter,
    pub skipped: IntCounterVec,
    /// Shares handed over to `shares.v1`, and shares read from it (of every partition).
    pub shares_produced: IntCounter,
    pub shares_read: IntCounter,
    pub partitions: IntGauge,
    /// Live allow and block list entries.
    pub list_entries: IntGauge,
    pub rule_set_version: IntGauge,
    pub model_score: HistogramVec,
    pub model_scored: IntCounterVec,
    pub model_alerts: IntCounterVec,
    pub model_psi: GaugeVec,
    pub models_refused: IntCounter,
}

impl ScoringMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        // 1 ms to 7.5 s in steps of 25%, fine enough to read percentiles from.
        let latency = || exponential_buckets(0.001, 1.25, 40);
        let metrics = Self {
            consumed: IntCounterVec::new(
                Opts::new(
                    "vigil_scoring_consumed_total",
                    "Messages consumed, by topic",
                ),
                &["topic"],
            )?,
            lag: IntGaugeVec::new(
                Opts::new(
                    "vigil_scoring_consumer_lag",
                    "Messages behind the end of the partition",
                ),
                &["topic", "partition"],
            )?,
            batch_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "vigil_scoring_batch_seconds",
                    "Time to score and commit a batch",
                )
                .buckets(latency()?),
            )?,
            event_to_commit_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "vigil_scoring_event_to_commit_seconds",
                    "Time from a transaction's production to its decision's commit",
                )
                .buckets(latency()?),
            )?,
            decisions: IntCounterVec::new(
                Opts::new("vigil_scoring_decisions_total", "Decisions, by decision"),
                &["decision"],
            )?,
            alerts: IntCounterVec::new(
                Opts::new("vigil_scoring_alerts_total", "Alerts, by decision"),
                &["decision"],
            )?,
            dead_letters: IntCounter::new(
                "vigil_scoring_dead_letters_total",
                "Messages sent to the dead-letter topic",
            )?,
            sink_errors: IntCounterVec::new(
                Opts::new("vigil_scoring_sink_errors_total", "Failed writes, by sink"),
                &["sink"],
            )?,
            events: IntCounterVec::new(
                Opts::new(
                    "vigil_scoring_events_total",
                    "What the service did (partition assigned, snapshot saved, ...), by event",
                ),
                &["event"],
            )?,
            snapshot_chunks_restored: IntCounter::new(
                "vigil_scoring_snapshot_chunks_restored_total",
                "Chunks of pending vectors restored with partitions' snapshots",
            )?,
            model_updates: IntCounter::new(
                "vigil_scoring_model_updates_total",
                "Examples the online model learned from",
            )?,
            state_dropped: IntCounterVec::new(
                Opts::new(
                    "vigil_scoring_state_dropped_total",
                    "What the engine let go early to stay within its bounds: keys (cards, \
                     customers, merchants at engine.max_keys), new_card_vectors (a flood of \
                     new cards beyond engine.new_card_vectors_per_hour), pending_vectors \
                     (at engine.max_pending_labels)",
                ),
                &["what"],
            )?,
            conflicts: IntCounter::new(
                "vigil_scoring_conflicts_total",
                "Transactions whose id another payment already had, dead-lettered",
            )?,
            repeats: IntCounter::new(
                "vigil_scoring_repeats_total",
                "Transactions repeated (the same payment again), decided once",
            )?,
            skipped: IntCounterVec::new(
                Opts::new(
                    "vigil_scoring_messages_skipped_total",
                    "Messages of the consumed topics the broker had deleted before they were \
                     read (retention): never scored",
                ),
                &["topic"],
            )?,
            refused: IntCounter::new(
                "vigil_scoring_refused_total",
                "Decisions and labels Postgres refused for what they hold (a data or constraint \
                 error), dead-lettered while the rest of their batch committed",
            )?,
            resent: IntCounter::new(
                "vigil_scoring_decisions_resent_total",
                "Decisions the outbox relay sent to decisions.v1 after their own send did not \
                 complete (a crash between commit and send, a broker failure)",
            )?,
            shares_produced: IntCounter::new(
                "vigil_scoring_shares_produced_total",
                "Shares this instance's partitions handed over to shares.v1",
            )?,
            shares_read: IntCounter::new(
                "vigil_scoring_shares_read_total",
                "Shares read from shares.v1 and pooled, of every partition",
            )?,
            partitions: IntGauge::new(
                "vigil_scoring_partitions",
                "Partitions assigned to this instance",
            )?,
            list_entries: IntGauge::new(
                "vigil_scoring_list_entries",
                "Live allow and block list entries in force",
            )?,
            rule_set_version: IntGauge::new(
                "vigil_scoring_rule_set_version",
                "The version of the published rule set the service decides with",
            )?,
            model_score: HistogramVec::new(
                HistogramOpts::new(
                    "vigil_model_score",
                    "Scores each served model gave (shadows: what they would have), by model and role",
                )
                .buckets(vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99]),
                &["model", "role"],
            )?,
            model_scored: IntCounterVec::new(
                Opts::new(
                    "vigil_model_scored_total",
                    "Transactions each served model scored, by model and role",
                ),
                &["model", "role"],
            )?,
            model_alerts: IntCounterVec::new(
                Opts::new(
                    "vigil_model_alerts_total",
                    "Alerts each served model raised or (shadows) would have raised; over \
                     vigil_model_scored_total, its alert rate",
                ),
                &["model", "role"],
            )?,
            model_psi: GaugeVec::new(
                Opts::new(
                    "vigil_model_psi",
                    "Population stability index of each served model's scores since it was \
                     loaded against its training scores (above 0.25: significant drift)",
                ),
                &["model"],
            )?,
            models_refused: IntCounter::new(
                "vigil_scoring_models_refused_total",
                "Registry models not served: unreadable, or another feature schema",
            )?,
        };
        registry.register(Box::new(metrics.consumed.clone()))?;
        registry.register(Box::new(metrics.lag.clone()))?;
        registry.register(Box::new(metrics.batch_seconds.clone()))?;
        registry.register(Box::new(metrics.event_to_commit_seconds.clone()))?;
        registry.register(Box::new(metrics.decisions.clone()))?;
        registry.register(Box::new(metrics.alerts.clone()))?;
        registry.register(Box::new(metrics.dead_letters.clone()))?;
        registry.register(Box::new(metrics.sink_errors.clone()))?;
        registry.register(Box::new(metrics.events.clone()))?;
        registry.register(Box::new(metrics.snapshot_chunks_restored.clone()))?;
        // Every series from the start, at 0, so that a count is there to read before it moves.
        for name in ServiceEvent::NAMES {
            metrics.events.with_label_values(&[name]);
        }
        for sink in Sink::ALL {
            metrics.sink_errors.with_label_values(&[sink.as_str()]);
        }
        registry.register(Box::new(metrics.model_updates.clone()))?;
        registry.register(Box::new(metrics.state_dropped.clone()))?;
        registry.register(Box::new(metrics.conflicts.clone()))?;
        registry.register(Box::new(metrics.repeats.clone()))?;
        registry.register(Box::new(metrics.resent.clone()))?;
        registry.register(Box::new(metrics.refused.clone()))?;
        registry.register(Box::new(metrics.skipped.clone()))?;
        registry.register(Box::new(metrics.shares_produced.clone()))?;
        registry.register(Box::new(metrics.shares_read.clone()))?;
        registry.register(Box::new(metrics.partitions.clone()))?;
        registry.register(Box::new(metrics.list_entries.clone()))?;
        registry.register(Box::new(metrics.rule_set_version.clone()))?;
        registry.register(Box::new(metrics.model_score.clone()))?;
        registry.register(Box::new(metrics.model_scored.clone()))?;
        registry.register(Box::new(metrics.model_alerts.clone()))?;
        registry.register(Box::new(metrics.model_psi.clone()))?;
        registry.register(Box::new(metrics.models_refused.clone()))?;
        Ok(metrics)
    }

    /// The failed writes to `sink`.
    pub fn sink_errors_of(&self, sink: Sink) -> IntCounter {
        self.sink_errors.with_label_values(&[sink.as_str()])
    }
}
