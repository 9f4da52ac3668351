//! What one batch of messages gives, column by column, ready for one Postgres transaction and
//! the writes after it. Text is kept in one buffer per column, so a batch allocates per column,
//! not per event.

use vigil_models::FeatureVector;
use vigil_schema::{Action, Label, Timestamp};

/// What a shadow model said of one decision.
#[derive(Debug, Clone, Copy)]
pub struct ShadowScore {
    /// The decision's position in its batch.
    pub decision: u32,
    /// The shadow's position among those in force.
    pub model: u16,
    pub score: f32,
    pub action: Action,
}

/// Strings of one column, back to back; a missing value is an empty string marked null.
#[derive(Debug, Default)]
pub struct TextColumn {
    text: String,
    ends: Vec<usize>,
    nulls: Vec<usize>,
}

impl TextColumn {
    pub fn push(&mut self, s: &str) {
        self.text.push_str(s);
        self.ends.push(self.text.len());
    }

    pub fn push_option(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.push(s),
            None => {
                self.nulls.push(self.ends.len());
                self.push("");
            }
        }
    }

    /// Appends through `write` into the buffer, as one value.
    pub fn push_with(&mut self, write: impl FnOnce(&mut String)) {
        write(&mut self.text);
        self.ends.push(self.text.len());
    }

    pub fn get(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.text[start..self.ends[i]]
    }

    pub fn values(&self) -> Vec<&str> {
        (0..self.ends.len()).map(|i| self.get(i)).collect()
    }

    /// The values, `None` where missing.
    pub fn options(&self) -> Vec<Option<&str>> {
        let mut values: Vec<Option<&str>> = self.values().into_iter().map(Some).collect();
        for &i in &self.nulls {
            values[i] = None;
        }
        values
    }
}

/// The decisions of a batch.
#[derive(Debug, Default)]
pub struct Decisions {
    pub transaction_id: TextColumn,
    pub card_id: TextColumn,
    pub customer_id: TextColumn,
    pub merchant_id: TextColumn,
    pub occurred_at: Vec<Timestamp>,
    pub amount_minor: Vec<i64>,
    pub currency: TextColumn,
    pub score: Vec<f32>,
    pub action: Vec<Action>,
    pub reasons: TextColumn,
    /// The feature vectors, each as `FEATURE_COUNT` little-endian f32s.
    pub features: Vec<u8>,
    /// When each transaction was produced (the Kafka timestamp), in unix milliseconds.
    pub produced_at_ms: Vec<Option<i64>>,
    /// For each alert, in order: the transaction as scored (JSON), its explanation (JSON) and
    /// the reason codes of the rules and list entries that decided it (`;`-separated).
    pub alert_transaction: TextColumn,
    pub alert_explanation: TextColumn,
    pub alert_codes: TextColumn,
    /// The shadow models' scores of these decisions.
    pub shadows: Vec<ShadowScore>,
}

impl Decisions {
    pub fn len(&self) -> usize {
        self.score.len()
    }

    pub fn is_empty(&self) -> bool {
        self.score.is_empty()
    }

    pub fn push_features(&mut self, features: &FeatureVector) {
        for v in features.0 {
            self.features.extend_from_slice(&v.to_le_bytes());
        }
    }

    /// The feature vector of decision `i`, as stored.
    pub fn features(&self, i: usize) -> &[u8] {
        let width = size_of::<FeatureVector>();
        &self.features[i * width..(i + 1) * width]
    }

    pub fn alerts(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.len()).filter(|&i| self.action[i].is_alert())
    }
}

/// Postgres transactions a batch is committed in, side by side: a transaction's inserts run in
/// one Postgres backend, on one core. Partition `p` goes to lane `p % LANES`, so each
/// partition's rows and offsets stay in one transaction.
pub const LANES: usize = 2;

/// The lane of a partition's rows.
pub fn lane(partition: i32) -> usize {
    partition.rem_euclid(LANES as i32) as usize
}

/// What a batch gives for the partitions of one lane: decisions, labels, and the offsets
/// reached.
#[derive(Debug, Default)]
pub struct Rows<'m> {
    pub decisions: Decisions,
    pub labels: Vec<Label<'m>>,
    /// The next offset of each (topic, partition) the batch read from.
    pub offsets: Vec<(&'static str, i32, i64)>,
}

impl Rows<'_> {
    /// Nothing to write: no partition of this lane was read.
    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    /// The same rows, owning their labels' text.
    pub fn into_owned(self) -> Rows<'static> {
        Rows {
            decisions: self.decisions,
            labels: self.labels.into_iter().map(Label::into_owned).collect(),
            offsets: self.offsets,
        }
    }
}
