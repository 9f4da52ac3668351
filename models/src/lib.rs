//! Vigil's models: the feature vector layout every model reads, the online logistic regression
//! the scoring engine trains as labels arrive, and the evaluation metrics.

pub mod features;
mod math;
pub mod metrics;
mod online;

pub use features::{FEATURE_COUNT, FeatureVector, Transform};
pub use math::{fast_ln1p, sigmoid, signed_ln1p};
pub use online::{Contribution, ModelScore, OnlineConfig, OnlineModel, TOP_CONTRIBUTIONS};

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid model configuration: {0}")]
    Config(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
