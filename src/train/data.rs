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
use sqlx::PgPool;
use vigil_models::FEATURE_COUNT;
use vigil_models::FeatureVector;
use vigil_models::training::Examples;
use vigil_schema::Timestamp;
use vigil_scoring::engine::key;
use vigil_scoring::{Engine, LabelEvent};

use crate::feed::{self, BadLines, LabelStream};
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

    /// The examples of `slice` that have a truth; genuine ones kept at `negative_rate` (chosen
    /// by transaction, the same on every run), each weighing 1 / rate. Returns them with how
    /// many labelled examples the slice held before sampling.
    pub fn examples(&self, slice: Slice, negative_rate: f64) -> (Examples, u64) {
        let mut examples = Examples::default();
        let mut labelled = 0;
        let mut x = FeatureVector::default();
        for (i, s) in self.scored.iter().enumerate() {
            if s.occurred_at < slice.from || s.occurred_at >= slice.to {
                continue;
            }
            let Some(is_fraud) = slice.truth.of(s) else {
                continue;
            };
            labelled += 1;
            if !is_fraud && !sampled(s.transaction, negative_rate) {
                continue;
            }
            let weight = if is_fraud { 1.0 } else { 1.0 / negative_rate };
            x.0.copy_from_slice(&self.features[i * FEATURE_COUNT..(i + 1) * FEATURE_COUNT]);
            examples.push(
                &x,
                is_fraud,
                weight as f32,
                s.occurred_at.div_euclid(86_400),
                s.card,
            );
        }
        (examples, labelled)
    }
}

/// Whether a genuine example is kept: the top bits of the transaction's hash, as a number in
/// [0, 1), below the rate.
fn sampled(transaction: u64, rate: f64) -> bool {
    ((transaction >> 11) as f64 / (1u64 << 53) as f64) < rate
}

/// Runs the transactions through `engine` in event-time order with the labels, as the live
/// service would have, keeping each feature vector and each transaction's label times.
pub fn from_files(mut engine: Engine, transactions: &Path, labels: &Path) -> Result<Collected> {
    let mut collected = Collected::default();
    let mut index: HashMap<u64, u32> = HashMap::new();
    let progress = progress::counter("reading");
    std::thread::scope(|scope| -> Result<()> {
        let feed = feed::transactions(scope, transactions)?;
        let mut label_stream = LabelStream::new(scope, Some(labels))?;
        let mut bad = BadLines::new(transactions);
        for batch in feed {
            let batch = batch?;
            batch.bad.iter().for_each(|b| bad.record(b));
            for event in &batch.events {
                while let Some(l) = label_stream.next_known_by(Some(event.occurred_at))? {
                    engine.learn(&l);
                    collected.label(&index, &l);
                }
                engine.score(event);
                index.insert(event.transaction, collected.len() as u32);
                collected.push(
                    Scored {
                        transaction: event.transaction,
                        card: event.card,
                        occurred_at: event.occurred_at.unix_seconds(),
                        fraud_at: NEVER,
                        genuine_at: NEVER,
                    },
                    engine.features(),
                );
            }
            progress.inc(batch.events.len() as u64);
        }
        while let Some(l) = label_stream.next_known_by(None)? {
            collected.label(&index, &l);
        }
        collected.bad_lines = bad.count + label_stream.bad.map_or(0, |b| b.count);
        Ok(())
    })?;
    progress.finish_and_clear();
    Ok(collected)
}

/// The decisions of `[from, to)` in Postgres with their feature vectors and label times,
/// streamed.
pub async fn from_postgres(pool: &PgPool, from: Timestamp, to: Timestamp) -> Result<Collected> {
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
            AND d.occurred_at < to_timestamp($2::float8 / 1000)",
    )
    .bind(from.unix_millis())
    .bind(to.unix_millis())
    .fetch(pool);
    let mut collected = Collected::default();
    let progress = progress::counter("reading decisions");
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
    progress.finish_and_clear();
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
                card: i % 100,
                occurred_at: i as i64,
                fraud_at: if i % 100 == 0 { 20_000 } else { NEVER },
                genuine_at: NEVER,
            };
            collected.push(s, &FeatureVector::default());
        }
        let slice = Slice {
            from: 1_000,
            to: 6_000,
            truth: Truth {
                known_at: 30_000,
                maturity: Some(0),
            },
        };
        let (examples, labelled) = collected.examples(slice, 0.25);
        assert_eq!(labelled, 5_000);
        assert_eq!(examples.frauds(), 50);
        let genuine = examples.len() as f64 - 50.0;
        assert!((genuine / 4_950.0 - 0.25).abs() < 0.03, "{genuine}");
    }
}
