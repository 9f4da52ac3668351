//! Evaluation metrics for fraud scores: how well a score ranks frauds above genuine payments.
//!
//! Ties are handled exactly: transactions with the same score are one threshold, never ordered
//! by chance.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};

/// Indices sorted by score, highest first.
fn ranked(scores: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    order
}

/// Runs of equal scores in ranked order, with their (frauds, genuine) counts.
fn tied_groups<'a>(
    scores: &'a [f32],
    labels: &'a [bool],
    order: &'a [usize],
) -> impl Iterator<Item = (u64, u64)> + 'a {
    order
        .chunk_by(move |&a, &b| scores[a].total_cmp(&scores[b]) == Ordering::Equal)
        .map(move |group| {
            let frauds = group.iter().filter(|&&i| labels[i]).count() as u64;
            (frauds, group.len() as u64 - frauds)
        })
}

fn class_counts(labels: &[bool]) -> (u64, u64) {
    let frauds = labels.iter().filter(|&&l| l).count() as u64;
    (frauds, labels.len() as u64 - frauds)
}

/// Area under the ROC curve: the chance that a random fraud scores above a random genuine
/// transaction (ties count half). `None` without both classes.
pub fn auc_roc(scores: &[f32], labels: &[bool]) -> Option<f64> {
    assert_eq!(scores.len(), labels.len());
    let (frauds, genuine) = class_counts(labels);
    if frauds == 0 || genuine == 0 {
        return None;
    }
    let order = ranked(scores);
    // Walking down from the top: each genuine transaction is outranked by the frauds above it.
    let mut frauds_above = 0u64;
    let mut outranked = 0.0f64;
    for (f, g) in tied_groups(scores, labels, &order) {
        outranked += g as f64 * (frauds_above as f64 + f as f64 / 2.0);
        frauds_above += f;
    }
    Some(outranked / (frauds as f64 * genuine as f64))
}

/// Average precision: the mean of the precision at each fraud's rank, each tied group being one
/// threshold (as scikit-learn defines it). `None` without frauds.
pub fn average_precision(scores: &[f32], labels: &[bool]) -> Option<f64> {
    assert_eq!(scores.len(), labels.len());
    let (frauds, _) = class_counts(labels);
    if frauds == 0 {
        return None;
    }
    let order = ranked(scores);
    let (mut tp, mut fp, mut ap) = (0u64, 0u64, 0.0f64);
    for (f, g) in tied_groups(scores, labels, &order) {
        tp += f;
        fp += g;
        ap += (f as f64 / frauds as f64) * (tp as f64 / (tp + fp) as f64);
    }
    Some(ap)
}

/// One transaction as card precision sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CardDay {
    pub day: i64,
    pub card: u64,
    pub score: f32,
    pub is_fraud: bool,
}

/// Card precision at k, averaged over days: each day, cards are ranked by their highest score
/// that day, cards caught (a fraudulent card in the top k) on an earlier day are left out, and
/// the share of fraudulent cards among the top k is taken (the top `n` when fewer than k cards
/// were active). `None` without any day.
pub fn card_precision_at_k(records: &[CardDay], k: usize) -> Option<f64> {
    let mut days: Vec<i64> = records.iter().map(|r| r.day).collect();
    days.sort_unstable();
    days.dedup();
    let mut per_day: HashMap<i64, HashMap<u64, (f32, bool)>> = HashMap::new();
    for r in records {
        let entry = per_day
            .entry(r.day)
            .or_default()
            .entry(r.card)
            .or_insert((f32::NEG_INFINITY, false));
        entry.0 = entry.0.max(r.score);
        entry.1 |= r.is_fraud;
    }
    let mut caught: HashSet<u64> = HashSet::new();
    let mut total = 0.0;
    let mut counted = 0usize;
    for day in days {
        let mut cards: Vec<(u64, f32, bool)> = per_day[&day]
            .iter()
            .filter(|(card, _)| !caught.contains(card))
            .map(|(&card, &(score, fraud))| (card, score, fraud))
            .collect();
        if cards.is_empty() {
            continue;
        }
        cards.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        cards.truncate(k);
        let hits: Vec<u64> = cards.iter().filter(|c| c.2).map(|c| c.0).collect();
        total += hits.len() as f64 / cards.len() as f64;
        counted += 1;
        caught.extend(hits);
    }
    (counted > 0).then(|| total / counted as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every (fraud, genuine) pair, counted directly.
    fn naive_auc(scores: &[f32], labels: &[bool]) -> Option<f64> {
        let (mut pairs, mut wins) = (0.0, 0.0);
        for (i, &si) in scores.iter().enumerate() {
            for (j, &sj) in scores.iter().enumerate() {
                if labels[i] && !labels[j] {
                    pairs += 1.0;
                    wins += match si.total_cmp(&sj) {
                        Ordering::Greater => 1.0,
                        Ordering::Equal => 0.5,
                        Ordering::Less => 0.0,
                    };
                }
            }
        }
        (pairs > 0.0).then(|| wins / pairs)
    }

    /// Precision and recall at every distinct threshold, recomputed from scratch.
    fn naive_ap(scores: &[f32], labels: &[bool]) -> Option<f64> {
        let frauds = labels.iter().filter(|&&l| l).count();
        if frauds == 0 {
            return None;
        }
        let mut thresholds = scores.to_vec();
        thresholds.sort_by(|a, b| b.total_cmp(a));
        thresholds.dedup();
        let (mut ap, mut previous_recall) = (0.0, 0.0);
        for t in thresholds {
            let flagged: Vec<usize> = (0..scores.len()).filter(|&i| scores[i] >= t).collect();
            let tp = flagged.iter().filter(|&&i| labels[i]).count();
            let recall = tp as f64 / frauds as f64;
            ap += (recall - previous_recall) * tp as f64 / flagged.len() as f64;
            previous_recall = recall;
        }
        Some(ap)
    }

    fn naive_card_precision(records: &[CardDay], k: usize) -> Option<f64> {
        let mut days: Vec<i64> = records.iter().map(|r| r.day).collect();
        days.sort_unstable();
        days.dedup();
        let mut caught: Vec<u64> = vec![];
        let mut precisions = vec![];
        for day in days {
            let mut cards: Vec<u64> = records
                .iter()
                .filter(|r| r.day == day)
                .map(|r| r.card)
                .collect();
            cards.sort_unstable();
            cards.dedup();
            cards.retain(|c| !caught.contains(c));
            if cards.is_empty() {
                continue;
            }
            let best = |c: u64| {
                records
                    .iter()
                    .filter(|r| r.day == day && r.card == c)
                    .map(|r| r.score)
                    .fold(f32::NEG_INFINITY, f32::max)
            };
            let fraud = |c: u64| {
                records
                    .iter()
                    .any(|r| r.day == day && r.card == c && r.is_fraud)
            };
            cards.sort_by(|&a, &b| best(b).total_cmp(&best(a)).then(a.cmp(&b)));
            cards.truncate(k);
            let hits: Vec<u64> = cards.iter().copied().filter(|&c| fraud(c)).collect();
            precisions.push(hits.len() as f64 / cards.len() as f64);
            caught.extend(hits);
        }
        (!precisions.is_empty()).then(|| precisions.iter().sum::<f64>() / precisions.len() as f64)
    }

    /// Scores from a small set of values, so that ties are common.
    fn scored() -> impl Strategy<Value = (Vec<f32>, Vec<bool>)> {
        prop::collection::vec((0u8..12, any::<bool>()), 0..60)
            .prop_map(|v| v.into_iter().map(|(s, l)| (f32::from(s) / 4.0, l)).unzip())
    }

    fn close(a: Option<f64>, b: Option<f64>) -> bool {
        match (a, b) {
            (Some(a), Some(b)) => (a - b).abs() < 1e-9,
            (None, None) => true,
            _ => false,
        }
    }

    proptest! {
        #[test]
        fn auc_matches_pair_counting((scores, labels) in scored()) {
            prop_assert!(close(auc_roc(&scores, &labels), naive_auc(&scores, &labels)));
        }

        #[test]
        fn ap_matches_threshold_sweep((scores, labels) in scored()) {
            prop_assert!(close(average_precision(&scores, &labels), naive_ap(&scores, &labels)));
        }

        #[test]
        fn card_precision_matches_reference(
            rows in prop::collection::vec((0i64..4, 0u64..12, 0u8..8, prop::bool::weighted(0.2)), 0..80),
            k in 1usize..6,
        ) {
            let records: Vec<CardDay> = rows
                .into_iter()
                .map(|(day, card, s, is_fraud)| CardDay { day, card, score: f32::from(s), is_fraud })
                .collect();
            prop_assert!(close(card_precision_at_k(&records, k), naive_card_precision(&records, k)));
        }
    }

    #[test]
    fn known_values() {
        assert_eq!(auc_roc(&[0.9, 0.1], &[true, false]), Some(1.0));
        assert_eq!(auc_roc(&[0.5, 0.5], &[true, false]), Some(0.5));
        assert_eq!(auc_roc(&[0.5], &[true]), None);
        // Frauds at ranks 1 and 3: AP = (1/1 + 2/3) / 2.
        let ap = average_precision(&[0.9, 0.8, 0.7, 0.1], &[true, false, true, false]).unwrap();
        assert!((ap - f64::midpoint(1.0, 2.0 / 3.0)).abs() < 1e-12);
    }
}
