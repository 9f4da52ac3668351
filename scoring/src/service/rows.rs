//! What one batch of messages gives, column by column, ready for one Postgres transaction and
//! the writes after it. Text is kept in one buffer per column, so a batch allocates per column,
//! not per event.

use rdkafka::message::OwnedMessage;
use vigil_models::FeatureVector;
use vigil_schema::{Action, Label, Timestamp};

use super::replies::Owed;

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
#[derive(Debug, Clone, Default)]
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

    fn is_null(&self, i: usize) -> bool {
        self.nulls.contains(&i)
    }

    /// The same column with only the values `keep` says.
    fn retained(&self, keep: &[bool]) -> Self {
        let mut kept = Self::default();
        for (i, _) in keep.iter().enumerate().filter(|(_, k)| **k) {
            if self.is_null(i) {
                kept.push_option(None);
            } else {
                kept.push(self.get(i));
            }
        }
        kept
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
#[derive(Debug, Clone, Default)]
pub struct Decisions {
    pub transaction_id: TextColumn,
    pub card_id: TextColumn,
    pub customer_id: TextColumn,
    pub merchant_id: TextColumn,
    pub occurred_at: Vec<Timestamp>,
    pub amount_minor: Vec<i64>,
    /// Where the payment happened, when the payment system said.
    pub lat: Vec<Option<f64>>,
    pub lon: Vec<Option<f64>>,
    pub currency: TextColumn,
    /// The other event fields a rule can name, for rules tested on history.
    pub country: TextColumn,
    pub mcc: TextColumn,
    pub channel: TextColumn,
    pub score: Vec<f32>,
    /// The model's log-odds, before the rules.
    pub model_log_odds: Vec<f32>,
    pub action: Vec<Action>,
    pub reasons: TextColumn,
    /// The ids of the shadow rules that held (`;`-separated, empty for none).
    pub shadow_rules: TextColumn,
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
    /// The message each decision was made from: its dead letter, should its id turn out to
    /// be another payment's already decided.
    pub sources: Vec<OwnedMessage>,
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

    /// Leaves out the decisions `keep` says no to, returning their source messages.
    pub fn retain(&mut self, keep: &[bool]) -> Vec<OwnedMessage> {
        let alert_kept: Vec<bool> = self.alerts().map(|i| keep[i]).collect();
        let mut new_index = vec![u32::MAX; keep.len()];
        let kept = keep.iter().enumerate().filter(|(_, k)| **k);
        for (next, (i, _)) in kept.enumerate() {
            new_index[i] = next as u32;
        }
        let width = size_of::<FeatureVector>();
        let features = self
            .features
            .chunks(width)
            .zip(keep)
            .filter(|(_, k)| **k)
            .flat_map(|(f, _)| f.iter().copied())
            .collect();
        let (kept_sources, dropped): (Vec<_>, Vec<_>) = std::mem::take(&mut self.sources)
            .into_iter()
            .zip(keep)
            .partition(|(_, k)| **k);
        let kept_sources = kept_sources.into_iter().map(|(m, _)| m).collect();
        let dropped = dropped.into_iter().map(|(m, _)| m).collect();
        *self = Self {
            transaction_id: self.transaction_id.retained(keep),
            card_id: self.card_id.retained(keep),
            customer_id: self.customer_id.retained(keep),
            merchant_id: self.merchant_id.retained(keep),
            occurred_at: picked(&self.occurred_at, keep),
            amount_minor: picked(&self.amount_minor, keep),
            lat: picked(&self.lat, keep),
            lon: picked(&self.lon, keep),
            currency: self.currency.retained(keep),
            country: self.country.retained(keep),
            mcc: self.mcc.retained(keep),
            channel: self.channel.retained(keep),
            score: picked(&self.score, keep),
            model_log_odds: picked(&self.model_log_odds, keep),
            action: picked(&self.action, keep),
            reasons: self.reasons.retained(keep),
            shadow_rules: self.shadow_rules.retained(keep),
            features,
            produced_at_ms: picked(&self.produced_at_ms, keep),
            alert_transaction: self.alert_transaction.retained(&alert_kept),
            alert_explanation: self.alert_explanation.retained(&alert_kept),
            alert_codes: self.alert_codes.retained(&alert_kept),
            shadows: self
                .shadows
                .iter()
                .filter(|s| keep[s.decision as usize])
                .map(|s| ShadowScore {
                    decision: new_index[s.decision as usize],
                    ..*s
                })
                .collect(),
            sources: kept_sources,
        };
        dropped
    }
}

/// The values `keep` says yes to.
fn picked<T: Copy>(values: &[T], keep: &[bool]) -> Vec<T> {
    values
        .iter()
        .zip(keep)
        .filter(|(_, k)| **k)
        .map(|(v, _)| *v)
        .collect()
}

/// Postgres transactions a batch is committed in, side by side: a transaction's inserts run in
/// one Postgres backend, on one core. Partition `p` goes to lane `p % LANES`, so each
/// partition's rows and offsets stay in one transaction.
pub const LANES: usize = 2;

/// The lane of a partition's rows.
pub fn lane(partition: i32) -> usize {
    partition.rem_euclid(LANES as i32) as usize
}

/// A label consumed, with who produced it (the [`topics::SENT_BY_HEADER`] header), if Vigil did.
///
/// [`topics::SENT_BY_HEADER`]: vigil_schema::topics::SENT_BY_HEADER
#[derive(Debug, Clone)]
pub struct LabelRow<'m> {
    pub label: Label<'m>,
    pub sent_by: Option<String>,
}

/// What a batch gives for the partitions of one lane: decisions, labels, and the offsets
/// reached.
#[derive(Debug, Default)]
pub struct Rows<'m> {
    pub decisions: Decisions,
    pub labels: Vec<LabelRow<'m>>,
    /// The message each label came in: its dead letter, should Postgres refuse it.
    pub label_sources: Vec<OwnedMessage>,
    /// The next offset of each (topic, partition) the batch read from.
    pub offsets: Vec<(&'static str, i32, i64)>,
    /// What intake instances waiting on its transactions are owed besides its decisions.
    pub owed: Owed,
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
            labels: self
                .labels
                .into_iter()
                .map(|row| LabelRow {
                    label: row.label.into_owned(),
                    sent_by: row.sent_by,
                })
                .collect(),
            label_sources: self.label_sources,
            offsets: self.offsets,
            owed: self.owed,
        }
    }
}

impl Rows<'static> {
    /// A copy of decisions `decisions` and labels `labels` alone, without offsets: to ask
    /// Postgres whether it takes them.
    pub fn only(&self, decisions: &[usize], labels: &[usize]) -> Self {
        let keep = mask(self.decisions.len(), decisions);
        let mut copy = self.decisions.clone();
        copy.retain(&keep);
        Rows {
            decisions: copy,
            labels: labels.iter().map(|&i| self.labels[i].clone()).collect(),
            label_sources: labels
                .iter()
                .map(|&i| self.label_sources[i].clone())
                .collect(),
            offsets: vec![],
            owed: Owed::default(),
        }
    }

    /// Leaves out decisions `decisions` and labels `labels`; returns their messages.
    pub fn leave_out(&mut self, decisions: &[usize], labels: &[usize]) -> Vec<OwnedMessage> {
        let keep: Vec<bool> = mask(self.decisions.len(), decisions)
            .into_iter()
            .map(|listed| !listed)
            .collect();
        let mut dropped = self.decisions.retain(&keep);
        let keep = mask(self.labels.len(), labels);
        let rows = std::mem::take(&mut self.labels).into_iter();
        let sources = std::mem::take(&mut self.label_sources).into_iter();
        for ((row, source), listed) in rows.zip(sources).zip(keep) {
            if listed {
                dropped.push(source);
            } else {
                self.labels.push(row);
                self.label_sources.push(source);
            }
        }
        dropped
    }
}

/// `len` flags, set at `indices`.
fn mask(len: usize, indices: &[usize]) -> Vec<bool> {
    let mut flags = vec![false; len];
    for &i in indices {
        flags[i] = true;
    }
    flags
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Leaving a decision out keeps every column in step: the alerts' columns (which hold only
    /// alerts), the shadows' positions, the feature vectors and the source messages.
    #[test]
    fn retain_keeps_the_columns_in_step() {
        let mut d = Decisions::default();
        for (i, action) in [Action::Review, Action::Decline, Action::Approve]
            .iter()
            .enumerate()
        {
            d.shadows.push(ShadowScore {
                decision: i as u32,
                model: 0,
                score: i as f32,
                action: *action,
            });
            d.transaction_id.push(&format!("tx{i}"));
            d.card_id.push("card");
            d.customer_id.push_option((i == 1).then_some("customer"));
            d.merchant_id.push("m");
            d.occurred_at
                .push(Timestamp::from_unix_millis(1_700_000_000_000 + i as i64, 0).unwrap());
            d.amount_minor.push(i as i64);
            d.lat.push(None);
            d.lon.push(Some(i as f64));
            d.currency.push("EUR");
            d.country.push_option((i == 2).then_some("FR"));
            d.mcc.push("5411");
            d.channel.push_option(None);
            d.score.push(i as f32);
            d.model_log_odds.push(-(i as f32));
            d.action.push(*action);
            d.reasons.push("");
            d.shadow_rules.push(if i == 2 { "watched" } else { "" });
            let mut x = FeatureVector::default();
            x.0[0] = i as f32;
            d.push_features(&x);
            d.produced_at_ms.push(None);
            if action.is_alert() {
                d.alert_transaction.push(&format!("alert{i}"));
                d.alert_explanation.push("{}");
                d.alert_codes.push("");
            }
            let timestamp = rdkafka::Timestamp::NotAvailable;
            let message = OwnedMessage::new(None, None, "t".into(), timestamp, 0, i as i64, None);
            d.sources.push(message);
        }
        let dropped = d.retain(&[true, false, true]);
        assert_eq!(dropped.len(), 1);
        assert_eq!(rdkafka::Message::offset(&dropped[0]), 1);
        assert_eq!(d.transaction_id.values(), ["tx0", "tx2"]);
        assert_eq!(d.customer_id.options(), [None, None]);
        assert_eq!(d.amount_minor, [0, 2]);
        assert_eq!(d.lon, [Some(0.0), Some(2.0)]);
        assert_eq!(d.country.options(), [None, Some("FR")]);
        assert_eq!(d.model_log_odds, [0.0, -2.0]);
        assert_eq!(d.shadow_rules.values(), ["", "watched"]);
        assert_eq!(d.alert_transaction.values(), ["alert0"]);
        assert_eq!(d.alerts().collect::<Vec<_>>(), [0]);
        let shadows: Vec<(u32, f32)> = d.shadows.iter().map(|s| (s.decision, s.score)).collect();
        assert_eq!(shadows, [(0, 0.0), (1, 2.0)]);
        assert_eq!(d.features(1)[..4], 2.0_f32.to_le_bytes());
        assert_eq!(d.sources.len(), 2);
    }
}
