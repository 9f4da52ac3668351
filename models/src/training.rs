//! From labelled examples to an artifact: fit the boosted trees on a training period, evaluate
//! them on a later validation period, profile their training scores for drift.

use std::io::Write;
use std::time::Instant;

use vigil_schema::Timestamp;

use crate::Result;
use crate::artifact::{
    ARTIFACT_FORMAT, Artifact, FeatureSchema, ModelKind, Period, Training, Validation,
};
use crate::boosted::{self, BoostedConfig, BoostedTrees, Progress};
use crate::drift::ScoreProfile;
use crate::evaluate::Evaluation;
use crate::features::{self, FEATURE_COUNT, FeatureVector};
use crate::metrics::CardDay;
use crate::sigmoid;

/// Labelled feature vectors (row-major f32), with what evaluation needs of each.
#[derive(Debug, Default, Clone)]
pub struct Examples {
    rows: Vec<f32>,
    labels: Vec<bool>,
    weights: Vec<f32>,
    days: Vec<i32>,
    cards: Vec<u64>,
}

impl Examples {
    /// Examples from their columns: `rows` row-major, `FEATURE_COUNT` values each.
    pub fn from_columns(
        rows: Vec<f32>,
        labels: Vec<bool>,
        weights: Vec<f32>,
        days: Vec<i32>,
        cards: Vec<u64>,
    ) -> Self {
        assert_eq!(rows.len(), labels.len() * FEATURE_COUNT);
        assert!(weights.len() == labels.len() && days.len() == labels.len());
        assert_eq!(cards.len(), labels.len());
        Self {
            rows,
            labels,
            weights,
            days,
            cards,
        }
    }

    pub fn push(&mut self, x: &FeatureVector, is_fraud: bool, weight: f32, day: i64, card: u64) {
        self.rows.extend_from_slice(&x.0);
        self.labels.push(is_fraud);
        self.weights.push(weight);
        self.days.push(day as i32);
        self.cards.push(card);
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn frauds(&self) -> u64 {
        self.labels.iter().filter(|&&l| l).count() as u64
    }

    pub fn vector(&self, i: usize) -> FeatureVector {
        let mut x = FeatureVector::default();
        x.0.copy_from_slice(&self.rows[i * FEATURE_COUNT..(i + 1) * FEATURE_COUNT]);
        x
    }

    /// Each example as card precision sees it (scores left at 0).
    pub fn card_days(&self) -> Vec<CardDay> {
        (0..self.len())
            .map(|i| CardDay {
                day: i64::from(self.days[i]),
                card: self.cards[i],
                score: 0.0,
                is_fraud: self.labels[i],
            })
            .collect()
    }

    /// Evaluates fraud probabilities given per example.
    pub fn evaluate(&self, probabilities: &[f32]) -> Evaluation {
        Evaluation::of(probabilities, &self.card_days())
    }

    /// Writes the examples as CSV, for a learner or a notebook outside Vigil to work on exactly
    /// these: a column per feature by name (`NaN` where the feature was absent), `is_fraud` (0
    /// or 1), `weight` (of the sampling), `day` (since the epoch) and `card` (its key, a hash);
    /// then `score`, each example's entry of `scores`, when given.
    pub fn write_csv(&self, mut out: impl Write, scores: Option<&[f32]>) -> std::io::Result<()> {
        let mut header: Vec<&str> = (0..FEATURE_COUNT).map(features::name).collect();
        header.extend(["is_fraud", "weight", "day", "card"]);
        if scores.is_some() {
            header.push("score");
        }
        writeln!(out, "{}", header.join(","))?;
        for (i, row) in self.rows.chunks_exact(FEATURE_COUNT).enumerate() {
            for value in row {
                write!(out, "{value},")?;
            }
            let (label, weight) = (u8::from(self.labels[i]), self.weights[i]);
            write!(out, "{label},{weight},{},{}", self.days[i], self.cards[i])?;
            if let Some(scores) = scores {
                write!(out, ",{}", scores[i])?;
            }
            writeln!(out)?;
        }
        Ok(())
    }
}

/// Whether a genuine example is learned from: the top 53 bits of the transaction's hash (well
/// mixed), as a number in [0, 1), below the rate. The same ones on every run.
pub fn sampled(transaction: u64, rate: f64) -> bool {
    ((transaction >> 11) as f64 / (1u64 << 53) as f64) < rate
}

/// The probability of fraud `model` gives each example.
pub fn probabilities(model: &BoostedTrees, examples: &Examples) -> Vec<f32> {
    (0..examples.len())
        .map(|i| sigmoid(model.logit(&examples.vector(i))) as f32)
        .collect()
}

/// What a training run is, besides its examples.
#[derive(Debug, Clone)]
pub struct Job {
    pub version: String,
    pub code_version: String,
    pub created_at: Timestamp,
    pub config: BoostedConfig,
    pub training_period: Period,
    pub negative_sample_rate: f64,
    /// Labelled examples read for training, before genuine ones were sampled.
    pub examples_read: u64,
    pub validation_period: Option<Period>,
}

/// Fits, validates and profiles a model.
pub fn train(
    job: &Job,
    training: &Examples,
    validation: &Examples,
    progress: Progress<'_>,
) -> Result<Artifact> {
    let started = Instant::now();
    let (model, margins) = boosted::fit(
        &job.config,
        &training.rows,
        &training.labels,
        &training.weights,
        progress,
    )?;
    let validation = job.validation_period.map(|period| Validation {
        period,
        evaluation: validation.evaluate(&probabilities(&model, validation)),
    });
    Ok(Artifact {
        format: ARTIFACT_FORMAT,
        version: job.version.clone(),
        kind: ModelKind::BoostedTrees,
        features: FeatureSchema::current(),
        training: Training {
            period: job.training_period,
            labels_known_at: job.training_period.to,
            examples: job.examples_read,
            frauds: training.frauds(),
            negative_sample_rate: job.negative_sample_rate,
            seconds: started.elapsed().as_secs_f64(),
        },
        validation,
        code_version: job.code_version.clone(),
        created_at: job.created_at,
        config: job.config.clone(),
        reference: ScoreProfile::fit(&margins, &training.weights),
        model,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn examples_written_as_csv_read_back_the_same() {
        let mut examples = Examples::default();
        let mut x = FeatureVector::default();
        x.0[0] = 1.25e-7;
        x.0[1] = f32::NAN;
        x.0[FEATURE_COUNT - 1] = 3.0;
        examples.push(&x, true, 1.0, 20_400, 7);
        examples.push(&FeatureVector::default(), false, 5.0, 20_401, u64::MAX);
        let mut out = vec![];
        examples.write_csv(&mut out, Some(&[0.75, 0.001])).unwrap();

        let text = String::from_utf8(out).unwrap();
        let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split(',').collect()).collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0][0], features::name(0));
        assert_eq!(
            lines[0][FEATURE_COUNT..],
            ["is_fraud", "weight", "day", "card", "score"]
        );
        for (i, line) in lines[1..].iter().enumerate() {
            let read: Vec<f32> = line[..FEATURE_COUNT]
                .iter()
                .map(|v| v.parse().unwrap())
                .collect();
            let written = examples.vector(i).0;
            assert!(
                read.iter()
                    .zip(&written)
                    .all(|(r, w)| r.to_bits() == w.to_bits() || (r.is_nan() && w.is_nan()))
            );
        }
        assert_eq!(lines[1][FEATURE_COUNT..], ["1", "1", "20400", "7", "0.75"]);
        assert_eq!(
            lines[2][FEATURE_COUNT..],
            ["0", "5", "20401", "18446744073709551615", "0.001"]
        );
    }
}
