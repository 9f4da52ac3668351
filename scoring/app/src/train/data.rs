//! Training data: every scored transaction with the feature vector it was scored with and when
//! (if ever) it was labelled fraud or genuine; then split by time into training examples (with
//! the labels known at the end of the training period) and validation examples.
//!
//! Two sources: the decisions and labels in Postgres (what the live service logged), or the
//! files `vigil backtest` reads, run through the engine to get the same vectors.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};
use futures_util::TryStreamExt;
use indicatif::ProgressBar;
use sqlx::PgPool;
use vigil_engine::replay::{self, Observer};
use vigil_engine::{
    Decision, Engine, EngineConfig, Event, ImplicitGenuine, LabelEvent, LabelOutcome, Window, key,
};
use vigil_models::FEATURE_COUNT;
use vigil_models::FeatureVector;
use vigil_models::training::{self, Examples};
use vigil_schema::Timestamp;

use crate::feed::{self, BadLines, LabelStream, Partitioner};
use crate::progress;

/// "Never labelled so."
const NEVER: i64 = i64::MAX;

/// One scored transaction (its features are kept beside it).
#[derive(Debug, Clone, Copy)]
struct Scored {
    transaction: u64,
    card: u64,
    occurred_at: i64,
    /// When it was first labelled fraud, and genuine, in unix seconds.
    fraud_at: i64,
    genuine_at: i64,
}

/// When a label counts and how unlabelled transactions are taken.
#[derive(Debug, Clone, Copy)]
pub struct Truth {
    /// Labels known at this time (unix seconds) count.
    pub known_at: i64,
    /// A transaction this much older than `known_at` with no fraud label is genuine; `None`:
    /// only explicit labels count.
    pub maturity: Option<i64>,
}

impl Truth {
    fn of(self, s: &Scored) -> Option<bool> {
        if s.fraud_at <= self.known_at {
            return Some(true);
        }
        let matured = self
            .maturity
            .is_some_and(|m| s.occurred_at.saturating_add(m) <= self.known_at);
        (s.genuine_at <= self.known_at || matured).then_some(false)
    }
}

/// Scored transactions with their feature vectors, in the order read.
#[derive(Debug, Default)]
pub struct Collected {
    scored: Vec<Scored>,
    features: Vec<f32>,
    pub bad_lines: u64,
}

/// A time range of transactions to turn into examples, and the truth to label them with.
#[derive(Debug, Clone, Copy)]
pub struct Slice {
    pub from: i64,
    pub to: i64,
    pub truth: Truth,
}

impl Collected {
    fn push(&mut self, scored: Scored, features: &FeatureVector) {
        self.scored.push(scored);
        self.features.extend_from_slice(&features.0);
    }

    pub fn len(&self) -> usize {
        self.scored.len()
    }

    /// Notes when the transaction `l` labels (found through `index`) was labelled so.
    fn label(&mut self, index: &HashMap<u64, u32>, l: &LabelEvent) {
        let Some(&i) = index.get(&l.transaction) else {
            return;
        };
        let s = &mut self.scored[i as usize];
        let slot = if l.is_fraud {
            &mut s.fraud_at
        } else {
            &mut s.genuine_at
        };
        *slot = (*slot).min(l.labelled_at.unix_seconds());
    }

    /// The first and last transaction times, in unix seconds.
    pub fn span(&self) -> Option<(i64, i64)> {
        let first = self.scored.iter().map(|s| s.occurred_at).min()?;
        let last = self.scored.iter().map(|s| s.occurred_at).max()?;
        Some((first, last))
    }

    /// Training examples of `training` that have a truth, genuine ones kept at
    /// `negative_rate` (chosen by transaction, the same on every run, each weighing 1 / rate),
    /// built in place in the collected vectors' own memory (at 10M rows a copy would take
    /// another 3 GB); and every example of `validation` that has a truth. Returns them with how
    /// many labelled examples the training slice held before sampling.
    pub fn split(
        self,
        training: Slice,
        validation: Slice,
        negative_rate: f64,
    ) -> (Examples, Examples, u64) {
        let Self {
            scored,
            mut features,
            ..
        } = self;
        let mut validating = Examples::default();
        let (mut labels, mut weights, mut days, mut cards) = (vec![], vec![], vec![], vec![]);
        let mut labelled = 0;
        let mut x = FeatureVector::default();
        for (i, s) in scored.iter().enumerate() {
            let row = i * FEATURE_COUNT..(i + 1) * FEATURE_COUNT;
            let day = s.occurred_at.div_euclid(86_400);
            if let Some(is_fraud) = validation.truth_of(s) {
                x.0.copy_from_slice(&features[row]);
                validating.push(&x, is_fraud, 1.0, day, s.card);
                continue;
            }
            let Some(is_fraud) = training.truth_of(s) else {
                continue;
            };
            labelled += 1;
            if !is_fraud && !training::sampled(s.transaction, negative_rate) {
                continue;
            }
            // Kept rows move down over rows already read: nothing unread is overwritten.
            features.copy_within(row, labels.len() * FEATURE_COUNT);
            labels.push(is_fraud);
            weights.push(if is_fraud {
                1.0
            } else {
                (1.0 / negative_rate) as f32
            });
            days.push(day as i32);
            cards.push(s.card);
        }
        features.truncate(labels.len() * FEATURE_COUNT);
        features.shrink_to_fit();
        let training = Examples::from_columns(features, labels, weights, days, cards);
        (training, validating, labelled)
    }
}

/// The training and validation slices of a retraining's `window` (see
/// [`vigil_engine::Window`]): every label known at its `now` counts; a transaction never
/// labelled fraud is genuine once it has matured, when the engine learns so.
pub fn window_slices(window: Window, engine: &EngineConfig) -> (Slice, Slice) {
    let implicit = engine.implicit_genuine != ImplicitGenuine::Never;
    let truth = |maturity: i64| Truth {
        known_at: window.now,
        maturity: implicit.then_some(maturity),
    };
    (
        Slice {
            from: window.from,
            to: window.validation_from,
            truth: truth(engine.maturity.as_seconds()),
        },
        Slice {
            from: window.validation_from,
            to: window.mature_before,
            truth: truth(0),
        },
    )
}

impl Slice {
    /// The truth of `s` if it falls in this slice and has one.
    fn truth_of(self, s: &Scored) -> Option<bool> {
        if s.occurred_at < self.from || s.occurred_at >= self.to {
            return None;
        }
        self.truth.of(s)
    }
}

/// Runs the transactions through `engine` in event-time order with the labels, as the live
/// service would have, keeping each feature vector and each transaction's label times.
pub fn from_files(mut engine: Engine, transactions: &Path, labels: &Path) -> Result<Collected> {
    let mut kept = Kept::default();
    let progress = progress::counter("reading");
    std::thread::scope(|scope| -> Result<()> {
        let feed = feed::transactions(scope, transactions, Partitioner::one())?;
        let mut label_stream = LabelStream::new(scope, Some(labels), Partitioner::one())?;
        let mut bad = BadLines::new(transactions);
        for batch in feed {
            let batch = batch?;
            batch.bad.iter().for_each(|b| bad.record(b));
            let (events, partitions) = (&batch.events, &batch.partitions);
            replay::replay(
                &mut engine,
                &mut label_stream,
                events,
                partitions,
                &mut kept,
            )?;
            progress.inc(batch.events.len() as u64);
        }
        replay::finish(&mut engine, &mut label_stream, &mut kept)?;
        kept.collected.bad_lines = bad.count + label_stream.bad.map_or(0, |b| b.count);
        Ok(())
    })?;
    progress.finish_and_clear();
    Ok(kept.collected)
}

/// Each scored transaction's vector and label times, as a replay goes.
#[derive(Default)]
struct Kept {
    collected: Collected,
    /// Where each transaction is in `collected`.
    index: HashMap<u64, u32>,
}

impl Observer for Kept {
    type Error = anyhow::Error;

    fn learned(&mut self, label: &LabelEvent, _: LabelOutcome) {
        self.collected.label(&self.index, label);
    }

    fn scored(&mut self, event: &Event, engine: &Engine, _: Decision) {
        let collected = &mut self.collected;
        self.index.insert(event.transaction, collected.len() as u32);
        let scored = Scored {
            transaction: event.transaction,
            card: event.card,
            occurred_at: event.occurred_at.unix_seconds(),
            fraud_at: NEVER,
            genuine_at: NEVER,
        };
        collected.push(scored, engine.features());
    }
}

/// The decisions of `[from, to)` in Postgres with their feature vectors and label times,
/// streamed; at most the newest `limit`, counted on `progress`.
pub async fn from_postgres(
    pool: &PgPool,
    (from, to): (Timestamp, Timestamp),
    limit: i64,
    progress: &ProgressBar,
) -> Result<Collected> {
    let mut rows = sqlx::query_as::<_, (String, String, i64, Vec<u8>, Option<i64>, Option<i64>)>(
        "SELECT d.transaction_id, d.card_id,
                extract(epoch FROM d.occurred_at)::bigint,
                d.features,
                (SELECT extract(epoch FROM min(l.labelled_at))::bigint FROM labels l
                  WHERE l.transaction_id = d.transaction_id AND l.is_fraud),
                (SELECT extract(epoch FROM min(l.labelled_at))::bigint FROM labels l
                  WHERE l.transaction_id = d.transaction_id AND NOT l.is_fraud)
           FROM decisions d
          WHERE d.occurred_at >= to_timestamp($1::float8 / 1000)
            AND d.occurred_at < to_timestamp($2::float8 / 1000)
          ORDER BY d.occurred_at DESC
          LIMIT $3",
    )
    .bind(from.unix_millis())
    .bind(to.unix_millis())
    .bind(limit)
    .fetch(pool);
    let mut collected = Collected::default();
    let mut x = FeatureVector::default();
    while let Some((transaction, card, occurred_at, features, fraud_at, genuine_at)) = rows
        .try_next()
        .await
        .context("reading decisions and labels")?
    {
        if features.len() != size_of::<FeatureVector>() {
            // Logged by another feature layout: not something this model can learn from.
            collected.bad_lines += 1;
            continue;
        }
        for (v, bytes) in x.0.iter_mut().zip(features.chunks_exact(4)) {
            *v = f32::from_le_bytes(bytes.try_into().expect("chunks of 4"));
        }
        collected.push(
            Scored {
                transaction: key(&transaction),
                card: key(&card),
                occurred_at,
                fraud_at: fraud_at.unwrap_or(NEVER),
                genuine_at: genuine_at.unwrap_or(NEVER),
            },
            &x,
        );
        progress.inc(1);
    }
    Ok(collected)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scored(occurred_at: i64, fraud_at: i64, genuine_at: i64) -> Scored {
        Scored {
            transaction: 1,
            card: 1,
            occurred_at,
            fraud_at,
            genuine_at,
        }
    }

    #[test]
    fn only_labels_known_by_the_cutoff_count() {
        let truth = Truth {
            known_at: 100,
            maturity: Some(30),
        };
        assert_eq!(truth.of(&scored(10, 90, NEVER)), Some(true));
        // Labelled fraud after the cutoff: at the cutoff it had matured as genuine.
        assert_eq!(truth.of(&scored(10, 150, NEVER)), Some(false));
        // Too young to be taken as genuine, and not labelled yet.
        assert_eq!(truth.of(&scored(80, 150, NEVER)), None);
        assert_eq!(truth.of(&scored(80, NEVER, 95)), Some(false));
        let explicit_only = Truth {
            known_at: 100,
            maturity: None,
        };
        assert_eq!(explicit_only.of(&scored(10, NEVER, NEVER)), None);
    }

    #[test]
    fn slices_keep_their_period_and_sample_genuine_examples() {
        let mut collected = Collected::default();
        for i in 0..10_000u64 {
            let s = Scored {
                transaction: key(&i.to_string()),
                card: i,
                occurred_at: i as i64,
                fraud_at: if i % 100 == 0 { 20_000 } else { NEVER },
                genuine_at: NEVER,
            };
            // Each vector says which transaction it belongs to, to check rows move with them.
            let mut x = FeatureVector::default();
            x.0[0] = i as f32;
            collected.push(s, &x);
        }
        let truth = Truth {
            known_at: 30_000,
            maturity: Some(0),
        };
        let training = Slice {
            from: 1_000,
            to: 6_000,
            truth,
        };
        let validation = Slice {
            from: 6_000,
            to: 8_000,
            truth,
        };
        let (examples, validating, labelled) = collected.split(training, validation, 0.25);
        assert_eq!(validating.len(), 2_000);
        assert_eq!(validating.frauds(), 20);
        for (i, example) in examples.card_days().iter().enumerate() {
            assert_eq!(examples.vector(i).0[0], example.card as f32);
        }
        assert_eq!(labelled, 5_000);
        assert_eq!(examples.frauds(), 50);
        let genuine = examples.len() as f64 - 50.0;
        assert!((genuine / 4_950.0 - 0.25).abs() < 0.03, "{genuine}");
    }
}
