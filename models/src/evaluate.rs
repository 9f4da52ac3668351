//! How well a model does on a set of labelled examples: ranking (AUC-ROC, average precision,
//! card precision@100) and calibration (do predicted probabilities match observed fraud rates).

use serde::{Deserialize, Serialize};

use crate::metrics::{CardDay, auc_roc, average_precision, card_precision_at_k};

/// Top cards a day for card precision.
pub const CARDS_PER_DAY: usize = 100;
/// Upper edges of the calibration bins, as probabilities: fine where fraud scores mostly fall.
const CALIBRATION_EDGES: [f64; 8] = [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0];

/// Predicted against observed in one range of predicted probability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationBin {
    /// The range's upper edge.
    pub up_to: f64,
    pub examples: u64,
    pub mean_predicted: f64,
    pub observed_fraud_rate: f64,
}

/// A model's quality on one set of examples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub examples: u64,
    pub frauds: u64,
    pub auc_roc: Option<f64>,
    pub average_precision: Option<f64>,
    pub card_precision_at_100: Option<f64>,
    /// Mean squared error of the probabilities.
    pub brier: f64,
    /// Mean |predicted - observed| over the calibration bins, weighted by their examples.
    pub expected_calibration_error: f64,
    pub calibration: Vec<CalibrationBin>,
}

impl Evaluation {
    /// `probabilities[i]` of example `i`, which is (day, card, is fraud) in `examples`.
    pub fn of(probabilities: &[f32], examples: &[CardDay]) -> Self {
        assert_eq!(probabilities.len(), examples.len());
        let labels: Vec<bool> = examples.iter().map(|e| e.is_fraud).collect();
        let scored: Vec<CardDay> = examples
            .iter()
            .zip(probabilities)
            .map(|(e, &p)| CardDay { score: p, ..*e })
            .collect();
        let mut bins = vec![(0u64, 0.0f64, 0u64); CALIBRATION_EDGES.len()];
        let mut squared_error = 0.0;
        for (&p, &fraud) in probabilities.iter().zip(&labels) {
            let p = f64::from(p);
            let truth = f64::from(u8::from(fraud));
            squared_error += (p - truth).powi(2);
            let b = CALIBRATION_EDGES
                .partition_point(|&edge| edge < p)
                .min(CALIBRATION_EDGES.len() - 1);
            bins[b].0 += 1;
            bins[b].1 += p;
            bins[b].2 += u64::from(fraud);
        }
        let n = probabilities.len() as u64;
        let calibration: Vec<CalibrationBin> = bins
            .into_iter()
            .zip(CALIBRATION_EDGES)
            .filter(|((count, _, _), _)| *count > 0)
            .map(|((count, sum, frauds), up_to)| CalibrationBin {
                up_to,
                examples: count,
                mean_predicted: sum / count as f64,
                observed_fraud_rate: frauds as f64 / count as f64,
            })
            .collect();
        let expected_calibration_error = calibration
            .iter()
            .map(|b| b.examples as f64 * (b.mean_predicted - b.observed_fraud_rate).abs())
            .sum::<f64>()
            / n.max(1) as f64;
        Self {
            examples: n,
            frauds: labels.iter().filter(|&&l| l).count() as u64,
            auc_roc: auc_roc(probabilities, &labels),
            average_precision: average_precision(probabilities, &labels),
            card_precision_at_100: card_precision_at_k(&scored, CARDS_PER_DAY),
            brier: squared_error / n.max(1) as f64,
            expected_calibration_error,
            calibration,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(day: i64, card: u64, is_fraud: bool) -> CardDay {
        CardDay {
            day,
            card,
            score: 0.0,
            is_fraud,
        }
    }

    #[test]
    fn a_calibrated_model_has_no_calibration_error() {
        // 100 examples at 0.2 with 20 frauds, 100 at 0.002 with none... and then 0.2 exactly.
        let mut p = vec![];
        let mut examples = vec![];
        for i in 0..100 {
            p.push(0.2);
            examples.push(example(0, i, i < 20));
            p.push(0.0);
            examples.push(example(0, 1000 + i, false));
        }
        let e = Evaluation::of(&p, &examples);
        assert_eq!((e.examples, e.frauds), (200, 20));
        assert!(e.expected_calibration_error < 1e-6, "{e:?}");
        let top = e.calibration.last().unwrap();
        assert_eq!((top.up_to, top.examples), (0.25, 100));
        assert!((top.observed_fraud_rate - 0.2).abs() < 1e-12);
        // Brier: 20 x 0.8^2 + 80 x 0.2^2 over 200.
        assert!((e.brier - (20.0 * 0.64 + 80.0 * 0.04) / 200.0).abs() < 1e-6);
    }

    #[test]
    fn an_overconfident_model_shows_it() {
        let p = vec![0.9f32; 10];
        let examples: Vec<CardDay> = (0..10).map(|i| example(0, i, i == 0)).collect();
        let e = Evaluation::of(&p, &examples);
        assert!((e.expected_calibration_error - 0.8).abs() < 1e-6, "{e:?}");
    }
}
