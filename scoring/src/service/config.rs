//! The scoring service's configuration.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceConfig {
    /// Consumer group of the scoring instances; the offsets and snapshots in Postgres are kept
    /// per group.
    pub group: String,
    /// The rules file (Vigil's default rules when not set): the first rule set version of a
    /// database that has none; after that, rules are published (`/v1/rules`, `vigil rules`).
    pub rules: Option<std::path::PathBuf>,
    /// The most messages scored and committed in one Postgres transaction.
    pub max_batch: usize,
    /// How long a batch may wait to fill after its first message, in milliseconds, while the
    /// batch before it is still committing (when none is, it goes at once with what has
    /// arrived).
    pub linger_ms: u64,
    /// The longest a fetch waits at the broker for new data, in milliseconds (Kafka's
    /// `fetch.wait.max.ms`): an upper bound on the latency it adds when the stream is quiet.
    pub fetch_wait_ms: u32,
    /// The least time between two snapshots of a partition's engine state, in seconds; a
    /// restart replays only what came after the last snapshot.
    pub snapshot_interval_secs: u64,
    /// A partition is snapshotted about every this many messages it reads (once it reads past
    /// a multiple, offset by a share per partition so that partitions take turns; what a
    /// restart replays is bounded by it), or `snapshot_max_interval_secs` after it: a
    /// quiet stream is not written out every few seconds (a snapshot is megabytes, and its
    /// writes slow the commits beside it).
    pub snapshot_min_messages: u64,
    /// The most time between two snapshots of a partition that read anything, in seconds.
    pub snapshot_max_interval_secs: u64,
    /// How far an event's time may be after its message was produced (the Kafka timestamp), in
    /// seconds: one dated later is a dead letter. Taken, it would hold the shared state's
    /// boundary there, and every payment after it would be scored as late. The intake refuses
    /// such events already; this covers producers that write to the topics directly.
    pub max_ahead_secs: u32,
    /// How long a dead instance keeps its partitions before the group moves them, in
    /// milliseconds (Kafka's `session.timeout.ms`).
    pub session_timeout_ms: u32,
    /// Alerts kept in Redis: the newest this many overall, and per card.
    pub recent_alerts: usize,
    pub recent_alerts_per_card: usize,
    /// How long a card's risk stays in Redis after its last transaction, in seconds.
    pub card_risk_ttl_secs: u64,
    /// How often the allow and block lists are reloaded from Postgres, in seconds: a new
    /// entry is in force within this long.
    pub lists_refresh_secs: u64,
    /// How often a newer published rule set is looked for, in seconds: it decides within
    /// this long.
    pub rules_refresh_secs: u64,
    /// How often the registry is asked for the champion and shadows, in seconds: a promotion
    /// is in force within this long.
    pub models_refresh_secs: u64,
    /// How often the retraining job asks whether a retraining is due (`[engine.retrain]`), in
    /// seconds of wall time; the schedule itself runs in event time.
    pub retrain_check_secs: u64,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            group: "vigil-scoring".into(),
            rules: None,
            max_batch: 5000,
            linger_ms: 20,
            fetch_wait_ms: 10,
            snapshot_interval_secs: 10,
            snapshot_min_messages: 25_000,
            snapshot_max_interval_secs: 600,
            max_ahead_secs: 3_600,
            session_timeout_ms: 6000,
            recent_alerts: 10_000,
            recent_alerts_per_card: 20,
            card_risk_ttl_secs: 35 * 86_400,
            lists_refresh_secs: 2,
            rules_refresh_secs: 2,
            models_refresh_secs: 2,
            retrain_check_secs: 30,
        }
    }
}
