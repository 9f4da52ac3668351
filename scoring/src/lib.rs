//! Vigil's scoring service. [`engine`] is the pure core: a deterministic function of (state,
//! event) that keeps sliding windows, computes features, applies rules and the online model,
//! and decides with an explanation. It does no I/O and never reads the clock, so a backtest and
//! the live stream give the same scores. [`service`] runs it in a Kafka consumer group with
//! exactly-once effects in Postgres and Redis.

pub mod engine;
pub mod service;

pub use engine::{
    Action, Decision, Engine, EngineConfig, EngineStats, Event, LabelEvent, LabelOutcome, RuleHits,
    RuleSet, Snapshot,
};

/// Errors of the scoring crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A rules file that cannot be used; the message names the file's line and the rule.
    #[error("{0}")]
    Rules(String),
    #[error("invalid engine configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Model(#[from] vigil_models::Error),
    /// A snapshot this version cannot read.
    #[error("engine snapshot: {0}")]
    Snapshot(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
