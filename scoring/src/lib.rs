//! Vigil's scoring service: the engine ([`vigil_engine`], re-exported as [`engine`]) in a Kafka
//! consumer group with exactly-once effects in Postgres and Redis ([`service`]).

pub use vigil_engine as engine;
pub mod service;

pub use engine::{
    Action, Decision, Engine, EngineConfig, EngineStats, Event, LabelEvent, LabelOutcome, RuleHits,
    RuleSet, Snapshot,
};
