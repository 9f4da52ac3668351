//! The intake's Prometheus metrics.

use std::time::Duration;

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry};

#[derive(Debug)]
pub struct IntakeMetrics {
    /// Items by topic and outcome (`accepted`, `rejected`).
    items: IntCounterVec,
    /// Time from the first send to the last acknowledgement of a request.
    produce_seconds: Histogram,
    pub produce_errors: IntCounter,
    /// Time from a waiting request's arrival to its answer.
    wait_seconds: Histogram,
    /// Transactions of waiting requests, by outcome (`answered`, `pending`).
    waited: IntCounterVec,
}

impl IntakeMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let items = IntCounterVec::new(
            Opts::new(
                "vigil_ingest_items_total",
                "Items posted, by topic and outcome",
            ),
            &["topic", "outcome"],
        )?;
        let produce_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "vigil_ingest_produce_seconds",
                "Time until the broker acknowledged a request's items",
            )
            .buckets(prometheus::exponential_buckets(0.0005, 2.0, 14)?),
        )?;
        let produce_errors = IntCounter::new(
            "vigil_ingest_produce_errors_total",
            "Requests the broker did not acknowledge",
        )?;
        let wait_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "vigil_ingest_decision_wait_seconds",
                "Time from the arrival of a request waiting for its decisions to its answer",
            )
            .buckets(prometheus::exponential_buckets(0.001, 2.0, 14)?),
        )?;
        let waited = IntCounterVec::new(
            Opts::new(
                "vigil_ingest_waited_transactions_total",
                "Transactions of requests waiting for their decisions, by outcome (answered, \
                 pending when the wait ran out)",
            ),
            &["outcome"],
        )?;
        registry.register(Box::new(items.clone()))?;
        registry.register(Box::new(produce_seconds.clone()))?;
        registry.register(Box::new(produce_errors.clone()))?;
        registry.register(Box::new(wait_seconds.clone()))?;
        registry.register(Box::new(waited.clone()))?;
        Ok(Self {
            items,
            produce_seconds,
            produce_errors,
            wait_seconds,
            waited,
        })
    }

    pub fn accepted(&self, topic: &str, n: usize, took: Duration) {
        self.items
            .with_label_values(&[topic, "accepted"])
            .inc_by(n as u64);
        self.produce_seconds.observe(took.as_secs_f64());
    }

    pub fn rejected(&self, topic: &str, n: usize) {
        self.items
            .with_label_values(&[topic, "rejected"])
            .inc_by(n as u64);
    }

    pub fn waited(&self, took: Duration, answered: usize, pending: usize) {
        self.wait_seconds.observe(took.as_secs_f64());
        let outcomes = [("answered", answered), ("pending", pending)];
        for (outcome, n) in outcomes {
            self.waited.with_label_values(&[outcome]).inc_by(n as u64);
        }
    }
}
