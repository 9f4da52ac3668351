//! What every partition's engine scores with and none decides alone: the one online model, the
//! merchants' windows and the customers'. A merchant's sales come through every partition (they
//! are keyed by card), a customer's when their cards are in several, and the labels the model
//! learns from through all. Each partition's engine records what it saw in its [`Outbox`];
//! every `share_every` of event time, the records of every partition from before then (its
//! [`Share`]) are pooled into the [`Shared`] state, in one order that does not depend on which
//! partition made them, and that state is scored with from `share_delay` later on.

use serde::{Deserialize, Serialize};
use vigil_models::{BoostedTrees, FeatureVector, OnlineModel};

use super::config::{EngineConfig, ImplicitGenuine};
use super::state::{CustomerState, MerchantState};
use super::store::KeyedStore;

/// Slots of each key store looked at for expiry per sale pooled.
const SWEEP_PER_SALE: usize = 2;

/// What a record counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Count {
    /// A sale at a merchant, at its time.
    Sale,
    /// A confirmed fraud at a merchant, at its label's time.
    Fraud,
    /// A sale at a merchant whose outcome became known (`maturity` after it).
    Matured,
    /// A customer's payment, at its time.
    Payment,
}

/// One thing a partition saw happen at a merchant or to a customer (`key`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub at: i64,
    pub count: Count,
    pub key: u64,
    pub amount_minor: f32,
    /// The key's slot in the shared state when the partition scored with it, or `NO_SLOT`: a
    /// hint that saves looking it up again, the same in every order.
    pub slot: u32,
    /// Seconds from the payment to `at`: a fraud's label delay (saturated), 0 for the others.
    pub since_payment: u32,
}

impl Record {
    /// Two records equal in this are the same count: their order cannot matter.
    fn order(&self) -> (i64, Count, u64, u32, u32) {
        let amount = self.amount_minor.to_bits();
        (self.at, self.count, self.key, amount, self.since_payment)
    }

    /// When the payment the record counts was made.
    fn paid_at(&self) -> i64 {
        self.at - i64::from(self.since_payment)
    }
}

/// Where an example comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Source {
    /// A label, of a transaction nothing was assumed of.
    Label,
    /// Maturity without a fraud label: an implicit genuine label.
    Maturity,
    /// A genuine label of a transaction taken as genuine at maturity (at this time) before.
    LabelAfterMaturity(i64),
}

/// A labelled feature vector for the online model: a label's, at its time, or an implicit
/// genuine one, at maturity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    pub at: i64,
    pub transaction: u64,
    pub is_fraud: bool,
    pub source: Source,
    pub features: FeatureVector,
}

/// What a partition has to hand to the shared state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Outbox {
    pub records: Vec<Record>,
    pub examples: Vec<Example>,
    /// The time of the earliest explicit genuine label read, if one was.
    pub explicit_genuine_at: Option<i64>,
}

impl Outbox {
    pub fn is_empty(&self) -> bool {
        self.records.is_empty() && self.examples.is_empty() && self.explicit_genuine_at.is_none()
    }

    /// Moves the records from before `boundary` (seconds) into `into`.
    pub fn hand_over(&mut self, boundary: i64, into: &mut Outbox) {
        self.records.retain(|r| {
            let due = r.at < boundary;
            if due {
                into.records.push(*r);
            }
            !due
        });
        into.examples
            .extend(self.examples.extract_if(.., |x| x.at < boundary));
        if let Some(at) = self.explicit_genuine_at.filter(|&at| at < boundary) {
            into.explicit_genuine_at = Some(into.explicit_genuine_at.map_or(at, |a| a.min(at)));
            self.explicit_genuine_at = None;
        }
    }
}

/// A partition's records from before `to`, handed over for every engine sharing its state to
/// pool. `from` is the boundary of its share before (`i64::MIN` for the first): records
/// from before it (a label read late, say) are pooled at the first boundary after it, so
/// where they land depends on the shares alone, not on when an engine read them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Share {
    pub partition: u32,
    pub from: i64,
    pub to: i64,
    pub records: Outbox,
    /// The champion the handing instance offered (its registry's); partition 0's decide
    /// which every engine pooling the shares scores with (see `Engine::pool`).
    pub champion: Option<String>,
}

/// The state every partition scores with.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Shared {
    pub model: OnlineModel,
    /// The version of the champion the online model has learned on top of.
    pub base_version: Option<String>,
    /// The `from` of partition 0's last share whose champion was taken (pooling shares).
    pub champion_from: Option<i64>,
    pub merchants: KeyedStore<MerchantState>,
    pub customers: KeyedStore<CustomerState>,
    /// The boundary last pooled (seconds): every record from before it that was handed over
    /// by then is in; `i64::MIN` before the first.
    pub pooled_to: i64,
    /// The first transaction time the next boundary is due at.
    next_due_at: i64,
    pub model_updates: u64,
    pub expired_keys: u64,
    /// The time of the earliest explicit genuine label pooled: with `implicit_genuine =
    /// "auto"`, transactions that mature from then on are not learned as genuine. A time, not
    /// the moment a partition read it, so that every engine pooling the same records agrees.
    pub explicit_genuine_from: Option<i64>,
}

impl Shared {
    pub fn new(model: OnlineModel) -> Self {
        Self {
            explicit_genuine_from: None,
            model,
            base_version: None,
            champion_from: None,
            merchants: KeyedStore::default(),
            customers: KeyedStore::default(),
            pooled_to: i64::MIN,
            next_due_at: i64::MIN,
            model_updates: 0,
            expired_keys: 0,
        }
    }

    /// The boundary to pool up to before scoring a transaction at `t` (seconds), if it is
    /// past the one pooled.
    pub fn due(&self, config: &EngineConfig, t: i64) -> Option<i64> {
        if t < self.next_due_at {
            return None;
        }
        let every = config.share_every.as_seconds();
        let due = (t - config.share_delay.as_seconds()).div_euclid(every) * every;
        (due > self.pooled_to).then_some(due)
    }

    /// Pools the records of every partition from before `boundary`, gathered in `records`:
    /// the counts, then the examples, each in the order of their times and transactions,
    /// whichever partition saw them.
    pub fn pool(
        &mut self,
        records: &mut Outbox,
        boundary: i64,
        config: &EngineConfig,
        base: Option<&BoostedTrees>,
    ) {
        records.records.sort_unstable_by_key(Record::order);
        let ttl = config.idle_key_ttl.as_seconds();
        for r in &records.records {
            self.count(r, r.at - ttl, config.max_keys);
        }
        if let Some(at) = records.explicit_genuine_at.take() {
            let from = self.explicit_genuine_from.map_or(at, |f| f.min(at));
            self.explicit_genuine_from = Some(from);
        }
        records
            .examples
            .sort_unstable_by_key(|x| (x.at, x.transaction, x.is_fraud, x.source));
        for x in &records.examples {
            if self.learns(x, config)
                && self
                    .model
                    .learn(&x.features, x.is_fraud, x.transaction, base)
            {
                self.model_updates += 1;
            }
        }
        records.records.clear();
        records.examples.clear();
        self.pooled_to = boundary;
        let every = config.share_every.as_seconds();
        self.next_due_at = boundary
            .saturating_add(every)
            .saturating_add(config.share_delay.as_seconds());
    }

    /// Whether the model learns `x`: implicit genuine labels only while they are on (with
    /// `auto`, for transactions maturing before the first explicit genuine label), and a
    /// genuine label of a transaction taken as genuine at maturity only if that was not learned.
    fn learns(&self, x: &Example, config: &EngineConfig) -> bool {
        let implicit_at = |matured_at: i64| match config.implicit_genuine {
            ImplicitGenuine::Always => true,
            ImplicitGenuine::Never => false,
            ImplicitGenuine::Auto => self.explicit_genuine_from.is_none_or(|f| matured_at < f),
        };
        match x.source {
            Source::Label => true,
            Source::Maturity => implicit_at(x.at),
            Source::LabelAfterMaturity(matured_at) => !implicit_at(matured_at),
        }
    }

    fn count(&mut self, r: &Record, idle_before: i64, max_keys: usize) {
        let (at, amount) = (r.at, r.amount_minor);
        match r.count {
            Count::Payment => {
                let slot = (self.customers)
                    .slot_hinted(r.key, r.slot, at, idle_before, max_keys)
                    .slot;
                self.customers.get_mut(slot).add_payment(at, amount);
                self.expired_keys += self.customers.sweep(SWEEP_PER_SALE, idle_before) as u64;
            }
            Count::Sale => {
                let slot = (self.merchants)
                    .slot_hinted(r.key, r.slot, at, idle_before, max_keys)
                    .slot;
                self.merchants.get_mut(slot).add_sale(at, amount);
                self.expired_keys += self.merchants.sweep(SWEEP_PER_SALE, idle_before) as u64;
            }
            Count::Fraud => {
                let slot = self.merchants.slot(r.key, at, idle_before, max_keys).slot;
                let merchant = self.merchants.get_mut(slot);
                merchant.confirm_fraud(at, r.paid_at(), amount);
            }
            // A merchant forgotten since has nothing left to count it against.
            Count::Matured => {
                if let Some(slot) = self.merchants.find(r.key, idle_before) {
                    self.merchants.get_mut(slot).mature_sale(at, amount);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/ARCHITECTURE.md quotes this: what a partition records per sale and payment.
    #[test]
    fn a_record_is_32_bytes() {
        assert_eq!(size_of::<Record>(), 32);
    }
}
