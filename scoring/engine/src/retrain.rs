//! A champion without a person in the loop: every `retrain.every` of event time, boosted trees
//! are trained on the feature vectors the engine kept, labelled with what is known by then, and
//! promoted when they beat the champion in force on the newest stretch of matured transactions,
//! held out from training. The online model then learns the new champion's residual.
//!
//! Pure: the backtest asks [`Retrainer::due`] before each transaction and hands the engine to
//! [`Retrainer::retrain`], which takes seconds; training at an event time, not a wall-clock
//! one, gives the same champion on every replay. The live service's retraining job reads the
//! same [`Window`] of decisions from Postgres and goes through the same [`retrain`].

use serde::{Deserialize, Serialize};
use vigil_models::artifact::Period;
use vigil_models::training::{self, Examples, Job};
use vigil_models::{Artifact, BoostedConfig, FeatureVector};
use vigil_schema::Timestamp;

use super::{Engine, EngineConfig, Span};
use crate::{Error, Result};

/// When and how the engine trains a champion of its own (the `[engine.retrain]` table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrainConfig {
    /// How often, in event time; `0d` never (a champion then comes from `vigil train` only).
    pub every: Span,
    /// No champion is trained before this many frauds are known among the kept vectors.
    pub min_frauds: u64,
    /// The newest stretch of matured transactions, held out from training, on which a new
    /// model must beat the champion in force (by average precision) to replace it.
    pub validation: Span,
    /// Share of genuine examples trained on, each weighing 1 / rate.
    pub negative_sample_rate: f64,
}

impl Default for RetrainConfig {
    fn default() -> Self {
        Self {
            every: Span::days(7),
            min_frauds: 200,
            validation: Span::days(7),
            negative_sample_rate: 0.1,
        }
    }
}

impl RetrainConfig {
    pub fn validate(&self) -> Result<()> {
        if self.every.as_seconds() < 0 || self.validation.as_seconds() <= 0 {
            return Err(Error::Config(
                "retrain.every must be >= 0 and retrain.validation > 0".into(),
            ));
        }
        if !(self.negative_sample_rate > 0.0 && self.negative_sample_rate <= 1.0) {
            return Err(Error::Config(
                "retrain.negative_sample_rate must be in (0, 1]".into(),
            ));
        }
        Ok(())
    }
}

/// What a retraining came to.
#[derive(Debug)]
pub enum Retrained {
    /// Fewer frauds known than `min_frauds`: nothing trained.
    TooFewFrauds { frauds: u64 },
    /// The new model beat the champion in force (or there was none): serve it.
    Promoted(Box<Candidate>),
    /// The champion in force did at least as well on the held-out stretch.
    Kept(Box<Candidate>),
}

/// A model trained by a retraining, with its and the champion's average precision on the
/// held-out stretch.
#[derive(Debug)]
pub struct Candidate {
    pub artifact: Artifact,
    pub average_precision: Option<f64>,
    pub champion_average_precision: Option<f64>,
}

/// The periods a retraining at `now` reads, in unix seconds: it trains on the transactions of
/// `[from, validation_from)` and validates on those of `[validation_from, mature_before)`, all
/// labelled with what is known at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub now: i64,
    pub from: i64,
    pub validation_from: i64,
    pub mature_before: i64,
}

impl Window {
    /// The window of a retraining at `now` under `config`: back to the label horizon, the
    /// validation stretch just before the newest transactions that have not matured yet.
    pub fn at(config: &EngineConfig, now: i64) -> Self {
        let mature_before = now - config.maturity.as_seconds();
        Self {
            now,
            from: now - config.label_horizon.as_seconds(),
            validation_from: mature_before - config.retrain.validation.as_seconds(),
            mature_before,
        }
    }
}

/// Keeps the schedule of retrainings.
#[derive(Debug, Clone)]
pub struct Retrainer {
    config: RetrainConfig,
    next_at: Option<i64>,
}

impl Retrainer {
    /// A retrainer for `engine`'s configuration; `None` when retraining is off.
    pub fn new(engine: &Engine) -> Option<Self> {
        let config = engine.config().retrain.clone();
        (config.every.as_seconds() > 0).then_some(Self {
            config,
            next_at: None,
        })
    }

    /// Whether a retraining is due at event time `now` (seconds); the first is due `every`
    /// after the first time asked.
    pub fn due(&mut self, now: i64) -> bool {
        now >= *self
            .next_at
            .get_or_insert(now + self.config.every.as_seconds())
    }

    /// Trains on what `engine` knows at `now` and says whether the result should replace its
    /// champion. The next retraining is due `every` later, whatever the outcome.
    pub fn retrain(&mut self, engine: &Engine, now: i64) -> Result<Retrained> {
        self.next_at = Some(now + self.config.every.as_seconds());
        let window = Window::at(engine.config(), now);
        let (training, validation, read) = engine.known_examples(
            window.validation_from,
            window.mature_before,
            self.config.negative_sample_rate,
        );
        retrain(
            (&training, &validation, read),
            engine.config(),
            window,
            engine.champion().map(|c| &**c),
        )
    }
}

/// The one promotion policy, whatever the examples come from (the engine's kept vectors in a
/// backtest, the decisions in Postgres live): nothing below `min_frauds` known frauds; boosted
/// trees trained on the training examples (sampled from `read` labelled transactions);
/// promoted when their average precision on the validation examples beats `champion`'s on
/// the same examples, or there is no champion.
pub fn retrain(
    (training, validation, read): (&Examples, &Examples, u64),
    config: &EngineConfig,
    window: Window,
    champion: Option<&Artifact>,
) -> Result<Retrained> {
    if training.frauds() < config.retrain.min_frauds {
        return Ok(Retrained::TooFewFrauds {
            frauds: training.frauds(),
        });
    }
    let job = job(config, window, read)?;
    let artifact = training::train(&job, training, validation, &|_| {})?;
    let average_precision = artifact
        .validation
        .as_ref()
        .and_then(|v| v.evaluation.average_precision);
    let champion_average_precision = champion.and_then(|c| {
        validation
            .evaluate(&training::probabilities(&c.model, validation))
            .average_precision
    });
    let better = match (average_precision, champion_average_precision) {
        (_, None) => true,
        (Some(new), Some(old)) => new > old,
        (None, Some(_)) => false,
    };
    let candidate = Box::new(Candidate {
        artifact,
        average_precision,
        champion_average_precision,
    });
    Ok(if better {
        Retrained::Promoted(candidate)
    } else {
        Retrained::Kept(candidate)
    })
}

fn job(config: &EngineConfig, window: Window, read: u64) -> Result<Job> {
    let at = |seconds: i64| {
        Timestamp::from_unix_millis(seconds.saturating_mul(1000), 0)
            .map_err(|e| Error::Config(format!("retraining at {seconds}: {e}")))
    };
    Ok(Job {
        version: format!(
            "gbt-auto-{}",
            at(window.now)?.to_string().replace([':', '-'], "")
        ),
        code_version: concat!("vigil ", env!("CARGO_PKG_VERSION")).into(),
        created_at: at(window.now)?,
        config: BoostedConfig::default(),
        training_period: Period {
            from: at(window.from)?,
            to: at(window.validation_from)?,
        },
        negative_sample_rate: config.retrain.negative_sample_rate,
        examples_read: read,
        validation_period: Some(Period {
            from: at(window.validation_from)?,
            to: at(window.mature_before)?,
        }),
    })
}

/// The examples of kept vectors, split at `validation_from`: see [`Engine::known_examples`].
pub(super) fn split_known<'a>(
    kept: impl Iterator<Item = (i64, u64, bool, &'a FeatureVector)>,
    validation_from: i64,
    mature_before: i64,
    negative_sample_rate: f64,
) -> (Examples, Examples, u64) {
    let (mut training, mut validation, mut read) = (Examples::default(), Examples::default(), 0);
    let weight = (1.0 / negative_sample_rate) as f32;
    for (occurred_at, transaction, is_fraud, x) in kept {
        if occurred_at >= mature_before {
            continue;
        }
        // Each transaction stands for its own card: the kept vectors do not name cards.
        let day = occurred_at.div_euclid(86_400);
        if occurred_at >= validation_from {
            validation.push(x, is_fraud, 1.0, day, transaction);
            continue;
        }
        read += 1;
        if is_fraud {
            training.push(x, true, 1.0, day, transaction);
        } else if training::sampled(transaction, negative_sample_rate) {
            training.push(x, false, weight, day, transaction);
        }
    }
    (training, validation, read)
}
