//! Vigil's models: the feature vector layout every model reads, the online logistic regression
//! the scoring engine trains as labels arrive, the boosted trees retraining jobs fit, their
//! artifacts and registry, drift and the evaluation metrics.

pub mod artifact;
pub mod boosted;
mod cpu;
pub mod drift;
pub mod evaluate;
pub mod features;
pub mod math;
pub mod metrics;
mod online;
pub mod training;

pub use artifact::{Artifact, ArtifactError, FeatureSchema, SchemaMismatch};
pub use boosted::{BoostedConfig, BoostedTrees};
pub use features::{FEATURE_COUNT, FeatureVector, Transform};
pub use math::{fast_ln1p, sigmoid, signed_ln1p};
pub use online::{Contribution, ModelScore, OnlineConfig, OnlineModel, TOP_CONTRIBUTIONS};

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid model configuration: {0}")]
    Config(String),
    #[error("cannot train: {0}")]
    Training(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
