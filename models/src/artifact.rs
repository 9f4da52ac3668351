//! A trained model as the registry keeps it: the fitted trees with everything needed to trust
//! and serve them (the feature schema they expect, what they were trained and validated on,
//! their metrics, the code that made them and their training score profile for drift).

use std::fmt;

use serde::{Deserialize, Serialize};
use vigil_schema::Timestamp;

use crate::boosted::{BoostedConfig, BoostedTrees};
use crate::drift::ScoreProfile;
use crate::evaluate::Evaluation;
use crate::features::{FEATURE_COUNT, specs};

/// The artifact layout's version; an artifact of another is refused.
pub const ARTIFACT_FORMAT: u32 = 2;

/// The features a model reads, in order, with a short fingerprint to compare schemas by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureSchema {
    pub fingerprint: String,
    pub names: Vec<String>,
}

impl FeatureSchema {
    /// The schema of the feature vector this build's engine computes.
    pub fn current() -> Self {
        Self::of(specs().iter().map(|s| s.name.clone()).collect())
    }

    pub fn of(names: Vec<String>) -> Self {
        let joined = names.join(",");
        Self {
            fingerprint: format!("{:016x}", xxhash_rust::xxh3::xxh3_64(joined.as_bytes())),
            names,
        }
    }

    /// Whether a model with this schema can read the current engine's vectors.
    pub fn check(&self) -> Result<(), SchemaMismatch> {
        let current = Self::current();
        if *self == current {
            return Ok(());
        }
        let first_difference = self
            .names
            .iter()
            .zip(&current.names)
            .position(|(a, b)| a != b)
            .map(|i| (i, self.names[i].clone(), current.names[i].clone()));
        Err(SchemaMismatch {
            expected: self.fingerprint.clone(),
            expected_count: self.names.len(),
            current: current.fingerprint,
            first_difference,
        })
    }
}

/// A model's feature schema is not the one the engine computes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SchemaMismatch {
    pub expected: String,
    pub expected_count: usize,
    pub current: String,
    /// The first position where the names differ: (index, the model's name, the engine's).
    pub first_difference: Option<(usize, String, String)>,
}

impl fmt::Display for SchemaMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the model expects feature schema {} ({} features) but this engine computes {} \
             ({FEATURE_COUNT} features)",
            self.expected, self.expected_count, self.current
        )?;
        match &self.first_difference {
            Some((i, model, engine)) => write!(
                f,
                "; feature {i} is `{model}` for the model and `{engine}` for the engine"
            ),
            None => write!(f, "; one is a prefix of the other"),
        }
    }
}

/// A period of event time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Period {
    pub from: Timestamp,
    /// Exclusive.
    pub to: Timestamp,
}

/// What a model was trained on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Training {
    /// Transactions that occurred in this period...
    pub period: Period,
    /// ...with the labels known at this time (the period's end: nothing from later leaks in).
    pub labels_known_at: Timestamp,
    /// Labelled examples read, and how many of them were frauds.
    pub examples: u64,
    pub frauds: u64,
    /// The share of genuine examples kept (each weighing 1 / rate).
    pub negative_sample_rate: f64,
    pub seconds: f64,
}

/// How a model did on a later period than it was trained on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Validation {
    pub period: Period,
    pub evaluation: Evaluation,
}

/// A trained model with its provenance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Artifact {
    pub format: u32,
    /// Unique in the registry, e.g. `gbt-20261130T0524-1f3a`.
    pub version: String,
    pub kind: ModelKind,
    pub features: FeatureSchema,
    pub training: Training,
    pub validation: Option<Validation>,
    /// The Vigil version that trained it.
    pub code_version: String,
    pub created_at: Timestamp,
    pub config: BoostedConfig,
    /// The model's log-odds over its training examples, for drift.
    pub reference: ScoreProfile,
    pub model: BoostedTrees,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    BoostedTrees,
}

impl ModelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BoostedTrees => "boosted_trees",
        }
    }
}

/// Why an artifact cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("not a model artifact: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("artifact format {0} is not {ARTIFACT_FORMAT}, the one this Vigil reads")]
    Format(u32),
    #[error("model {version} is damaged: {reason}")]
    Damaged { version: String, reason: String },
    #[error("model {version}: {mismatch}")]
    Schema {
        version: String,
        mismatch: Box<SchemaMismatch>,
    },
}

impl Artifact {
    /// Reads an artifact from its JSON and checks that this engine can serve it.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ArtifactError> {
        /// The format alone, read first: another format's fields would not parse.
        #[derive(Deserialize)]
        struct Header {
            format: u32,
        }
        let header: Header = serde_json::from_slice(bytes)?;
        if header.format != ARTIFACT_FORMAT {
            return Err(ArtifactError::Format(header.format));
        }
        let artifact: Self = serde_json::from_slice(bytes)?;
        artifact.check()?;
        Ok(artifact)
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an artifact serializes")
    }

    /// The format is this build's, the trees can be walked and the feature schema is the
    /// engine's.
    pub fn check(&self) -> Result<(), ArtifactError> {
        if self.format != ARTIFACT_FORMAT {
            return Err(ArtifactError::Format(self.format));
        }
        self.model
            .check()
            .map_err(|reason| ArtifactError::Damaged {
                version: self.version.clone(),
                reason,
            })?;
        self.features
            .check()
            .map_err(|mismatch| ArtifactError::Schema {
                version: self.version.clone(),
                mismatch: Box::new(mismatch),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_current_schema_checks_and_another_is_refused_by_name() {
        assert!(FeatureSchema::current().check().is_ok());
        let mut names = FeatureSchema::current().names;
        names[3] = "is_contactless".into();
        let err = FeatureSchema::of(names).check().unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("feature 3 is `is_contactless` for the model and `is_card_not_present`"),
            "{text}"
        );
        let mut fewer = FeatureSchema::current().names;
        fewer.pop();
        let err = FeatureSchema::of(fewer).check().unwrap_err();
        assert_eq!(err.expected_count, FEATURE_COUNT - 1);
        assert!(err.to_string().contains("prefix"), "{err}");
    }
}
