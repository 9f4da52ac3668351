//! The scoring service's Prometheus metrics.

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    exponential_buckets,
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
    /// Examples the online model learned from.
    pub model_updates: IntCounter,
    pub partitions: IntGauge,
    /// Live allow and block list entries.
    pub list_entries: IntGauge,
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
            model_updates: IntCounter::new(
                "vigil_scoring_model_updates_total",
                "Examples the online model learned from",
            )?,
            partitions: IntGauge::new(
                "vigil_scoring_partitions",
                "Partitions assigned to this instance",
            )?,
            list_entries: IntGauge::new(
                "vigil_scoring_list_entries",
                "Live allow and block list entries in force",
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
        registry.register(Box::new(metrics.model_updates.clone()))?;
        registry.register(Box::new(metrics.partitions.clone()))?;
        registry.register(Box::new(metrics.list_entries.clone()))?;
        Ok(metrics)
    }
}
