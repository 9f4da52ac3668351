//! What a backtest reports: throughput, and, with labels, how well the engine ranks frauds
//! against a plain amount threshold, at the review threshold, per rule and week by week.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use serde::Serialize;
use vigil_engine::{Decision, Event, Retrained, RuleHits};
use vigil_models::metrics::{CardDay, auc_roc, average_precision, card_precision_at_k};
use vigil_schema::Timestamp;

use super::Run;

/// What is kept of each scored transaction for the report (40 bytes).
#[derive(Debug, Clone, Copy)]
pub struct Record {
    transaction: u64,
    card: u64,
    day: i64,
    score: f32,
    model_logit: f32,
    amount: f32,
    rules: RuleHits,
    alert: bool,
}

impl Record {
    pub fn new(e: &Event, d: &Decision) -> Self {
        Self {
            transaction: e.transaction,
            card: e.card,
            day: e.occurred_at.utc_day(),
            score: d.score,
            model_logit: d.model.logit as f32,
            amount: e.amount_minor as f32,
            rules: d.rules,
            alert: d.action.is_alert(),
        }
    }
}

/// Top cards a day for card precision.
const CARDS_PER_DAY: usize = 100;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// One engine a partition, as the live service with this many partitions scores.
    pub partitions: usize,
    pub transactions: u64,
    pub bad_transaction_lines: u64,
    pub labels: u64,
    pub bad_label_lines: u64,
    pub labels_unmatched: u64,
    pub late: u64,
    pub duplicates: u64,
    pub model_updates: u64,
    pub vectors_dropped_early: u64,
    /// Transactions of new cards beyond `engine.new_card_vectors_per_hour`: no vector kept.
    pub vectors_not_kept: u64,
    /// Cards, customers and merchants forgotten at `engine.max_keys`.
    pub keys_evicted: u64,
    pub seconds: f64,
    pub transactions_per_second: f64,
    /// The engine's own champions, trained as the stream went (`[engine.retrain]`).
    pub retrainings: Vec<Retraining>,
    pub quality: Option<Quality>,
}

/// One retraining of the engine's own champion.
#[derive(Debug, Clone, Serialize)]
pub struct Retraining {
    /// Event time.
    pub at: String,
    /// `promoted`, `kept` (the champion in force did as well) or `too few frauds`.
    pub outcome: &'static str,
    pub version: Option<String>,
    /// Frauds among the training examples.
    pub frauds: u64,
    /// Average precision of the new model and of the champion in force on the held-out stretch.
    pub average_precision: Option<f64>,
    pub champion_average_precision: Option<f64>,
}

impl Retraining {
    pub fn new(at: Timestamp, outcome: &Retrained) -> Self {
        let (name, candidate, frauds) = match outcome {
            Retrained::TooFewFrauds { frauds } => ("too few frauds", None, *frauds),
            Retrained::Promoted(c) => ("promoted", Some(c), c.artifact.training.frauds),
            Retrained::Kept(c) => ("kept", Some(c), c.artifact.training.frauds),
        };
        let utc = Timestamp::from_unix_millis(at.unix_millis(), 0).unwrap_or(at);
        Self {
            at: utc.to_string(),
            outcome: name,
            version: candidate.map(|c| c.artifact.version.clone()),
            frauds,
            average_precision: candidate.and_then(|c| c.average_precision),
            champion_average_precision: candidate.and_then(|c| c.champion_average_precision),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Quality {
    pub frauds: u64,
    pub days: i64,
    pub engine: Ranking,
    pub model_only: Ranking,
    pub amount_baseline: Ranking,
    /// Card precision@100 of a perfect ranking: the most the data allows.
    pub card_precision_at_100_ceiling: Option<f64>,
    pub review_threshold: f64,
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    pub alerts_per_day: f64,
    pub rules: Vec<RuleQuality>,
    pub weeks: Vec<Week>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Ranking {
    pub auc_roc: Option<f64>,
    pub average_precision: Option<f64>,
    pub card_precision_at_100: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RuleQuality {
    pub id: String,
    pub hits: u64,
    pub frauds: u64,
    pub precision: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Week {
    pub number: i64,
    pub transactions: u64,
    pub frauds: u64,
    pub engine: Ranking,
    pub model_only: Ranking,
}

impl Report {
    /// With `evaluate_from` (a UTC day), quality covers the transactions from that day on.
    pub fn build(
        run: &Run,
        with_labels: bool,
        evaluate_from: Option<i64>,
        elapsed: Duration,
    ) -> Self {
        let stats = run.stats();
        let seconds = elapsed.as_secs_f64();
        Self {
            partitions: run.engine.partitions(),
            transactions: stats.transactions,
            bad_transaction_lines: run.bad_transactions,
            labels: stats.labels,
            bad_label_lines: run.bad_labels,
            labels_unmatched: stats.labels_unmatched,
            late: stats.late,
            duplicates: stats.duplicates,
            model_updates: stats.model_updates,
            vectors_dropped_early: stats.vectors_dropped_early,
            vectors_not_kept: stats.vectors_not_kept,
            keys_evicted: stats.keys_evicted,
            seconds,
            transactions_per_second: stats.transactions as f64 / seconds.max(1e-9),
            retrainings: run.observed.retrainings.clone(),
            quality: with_labels.then(|| Quality::build(run, evaluate_from.unwrap_or(i64::MIN))),
        }
    }
}

fn ratio(a: u64, b: u64) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

fn ranking(records: &[&Record], is_fraud: &[bool], score: impl Fn(&Record) -> f32) -> Ranking {
    let scores: Vec<f32> = records.iter().map(|r| score(r)).collect();
    let card_days: Vec<CardDay> = records
        .iter()
        .zip(is_fraud)
        .map(|(r, &is_fraud)| CardDay {
            day: r.day,
            card: r.card,
            score: score(r),
            is_fraud,
        })
        .collect();
    Ranking {
        auc_roc: auc_roc(&scores, is_fraud),
        average_precision: average_precision(&scores, is_fraud),
        card_precision_at_100: card_precision_at_k(&card_days, CARDS_PER_DAY),
    }
}

impl Quality {
    fn build(run: &Run, from_day: i64) -> Self {
        // The last label of a transaction is the truth.
        let truth: HashMap<u64, bool> = run.observed.truth.iter().copied().collect();
        let records: Vec<&Record> = run
            .observed
            .records
            .iter()
            .filter(|r| r.day >= from_day)
            .collect();
        let is_fraud: Vec<bool> = records
            .iter()
            .map(|r| truth.get(&r.transaction).copied().unwrap_or(false))
            .collect();
        let frauds = is_fraud.iter().filter(|&&f| f).count() as u64;
        let first_day = records.iter().map(|r| r.day).min().unwrap_or(0);
        let days = records
            .iter()
            .map(|r| r.day)
            .max()
            .map_or(0, |last| last - first_day + 1);

        let alerts = records.iter().filter(|r| r.alert).count() as u64;
        let caught = records
            .iter()
            .zip(&is_fraud)
            .filter(|(r, f)| r.alert && **f)
            .count() as u64;
        let rules = run
            .engine
            .rules()
            .rules()
            .iter()
            .enumerate()
            .map(|(i, rule)| {
                let hit: Vec<bool> = records
                    .iter()
                    .zip(&is_fraud)
                    .filter(|(r, _)| r.rules.contains(i))
                    .map(|(_, f)| *f)
                    .collect();
                let frauds = hit.iter().filter(|&&f| f).count() as u64;
                RuleQuality {
                    id: rule.id.clone(),
                    hits: hit.len() as u64,
                    frauds,
                    precision: ratio(frauds, hit.len() as u64),
                }
            })
            .collect();

        let mut weeks: Vec<Week> = vec![];
        let week_of = |r: &Record| (r.day - first_day) / 7 + 1;
        for week in 1..=records.last().map_or(0, |_| (days + 6) / 7) {
            let (in_week, fraud): (Vec<&Record>, Vec<bool>) = records
                .iter()
                .zip(&is_fraud)
                .filter(|(r, _)| week_of(r) == week)
                .map(|(r, f)| (*r, *f))
                .unzip();
            weeks.push(Week {
                number: week,
                transactions: in_week.len() as u64,
                frauds: fraud.iter().filter(|&&f| f).count() as u64,
                engine: ranking(&in_week, &fraud, |r| r.score),
                model_only: ranking(&in_week, &fraud, |r| r.model_logit),
            });
        }

        Self {
            frauds,
            days,
            engine: ranking(&records, &is_fraud, |r| r.score),
            model_only: ranking(&records, &is_fraud, |r| r.model_logit),
            amount_baseline: ranking(&records, &is_fraud, |r| r.amount),
            card_precision_at_100_ceiling: card_precision_at_k(
                &records
                    .iter()
                    .zip(&is_fraud)
                    .map(|(r, &is_fraud)| CardDay {
                        day: r.day,
                        card: r.card,
                        score: f32::from(u8::from(is_fraud)),
                        is_fraud,
                    })
                    .collect::<Vec<_>>(),
                CARDS_PER_DAY,
            ),
            review_threshold: run.engine.config().review_threshold,
            precision: ratio(caught, alerts),
            recall: ratio(caught, frauds),
            alerts_per_day: alerts as f64 / days.max(1) as f64,
            rules,
            weeks,
        }
    }
}

struct Num(Option<f64>);

impl fmt::Display for Num {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(v) => write!(f, "{v:>8.4}"),
            None => write!(f, "{:>8}", "n/a"),
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Backtest: {} transactions ({} bad lines skipped), {} partitions",
            self.transactions, self.bad_transaction_lines, self.partitions
        )?;
        writeln!(
            f,
            "  labels: {} ({} bad lines skipped, {} for transactions no longer or never kept)",
            self.labels, self.bad_label_lines, self.labels_unmatched
        )?;
        writeln!(
            f,
            "  late: {}, repeated ids: {}, model updates: {}, vectors dropped before their label: {}",
            self.late, self.duplicates, self.model_updates, self.vectors_dropped_early
        )?;
        if self.vectors_not_kept + self.keys_evicted > 0 {
            writeln!(
                f,
                "  at the engine's bounds: {} new cards' vectors not kept, {} keys forgotten early",
                self.vectors_not_kept, self.keys_evicted
            )?;
        }
        writeln!(
            f,
            "  {:.2} s, {:.0} transactions/s (reading, scoring, writing, retraining)",
            self.seconds, self.transactions_per_second
        )?;
        for r in &self.retrainings {
            let ap = |v: Option<f64>| v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.4}"));
            writeln!(
                f,
                "  retrained at {}: {}{} ({} frauds; held-out AP {} against the champion's {})",
                r.at,
                r.outcome,
                r.version
                    .as_deref()
                    .map(|v| format!(" {v}"))
                    .unwrap_or_default(),
                r.frauds,
                ap(r.average_precision),
                ap(r.champion_average_precision),
            )?;
        }
        let Some(q) = &self.quality else {
            return Ok(());
        };
        writeln!(
            f,
            "\nQuality: {} frauds over {} days (truth: the labels)",
            q.frauds, q.days
        )?;
        writeln!(
            f,
            "  {:<22} {:>8} {:>8} {:>8}",
            "", "AUC-ROC", "AP", "CP@100"
        )?;
        for (name, r) in [
            ("vigil (rules + model)", q.engine),
            ("model alone", q.model_only),
            ("amount threshold", q.amount_baseline),
        ] {
            writeln!(
                f,
                "  {name:<22} {} {} {}",
                Num(r.auc_roc),
                Num(r.average_precision),
                Num(r.card_precision_at_100)
            )?;
        }
        writeln!(
            f,
            "  card precision@100 of a perfect ranking (the most this data allows): {}",
            Num(q.card_precision_at_100_ceiling).to_string().trim()
        )?;
        writeln!(
            f,
            "  at the review threshold ({}): precision {}, recall {}, {:.1} alerts a day",
            q.review_threshold,
            Num(q.precision),
            Num(q.recall),
            q.alerts_per_day
        )?;
        writeln!(
            f,
            "\nRules:\n  {:<36} {:>8} {:>8} {:>9}",
            "rule", "hits", "frauds", "precision"
        )?;
        for r in &q.rules {
            writeln!(
                f,
                "  {:<36} {:>8} {:>8} {}",
                r.id,
                r.hits,
                r.frauds,
                Num(r.precision)
            )?;
        }
        writeln!(
            f,
            "\nWeek by week (the model learns from labels as they arrive):"
        )?;
        writeln!(
            f,
            "  {:>4} {:>12} {:>7} {:>8} {:>8} {:>8} {:>10}",
            "week", "transactions", "frauds", "AUC-ROC", "AP", "CP@100", "model AP"
        )?;
        for w in &q.weeks {
            writeln!(
                f,
                "  {:>4} {:>12} {:>7} {} {} {} {:>10}",
                w.number,
                w.transactions,
                w.frauds,
                Num(w.engine.auc_roc),
                Num(w.engine.average_precision),
                Num(w.engine.card_precision_at_100),
                Num(w.model_only.average_precision).to_string().trim()
            )?;
        }
        Ok(())
    }
}
