//! The scoring engine: a pure, deterministic function of (state, event).
//!
//! For each transaction: find the card's, customer's and merchant's state; compute the feature
//! vector from it (the transaction's own amount is not yet in its windows); apply the rules and
//! the online model; decide; then add the transaction to the state and keep its feature vector
//! until its label arrives. For each label: learn from the kept vector and, for a fraud, count it
//! against the merchant. Time is the events' own: nothing here reads the clock.

mod config;
mod decision;
mod event;
mod features;
mod index;
mod pending;
mod prefetch;
mod recent;
mod retrain;
mod rules;
mod state;
mod store;
mod window;

#[cfg(test)]
mod tests;

pub use config::{EngineConfig, ImplicitGenuine, Span};
pub use decision::{Action, Decision, Disposition, Explanation, RuleHits};
pub use event::{Event, LabelEvent, key};
pub use retrain::{Candidate, RetrainConfig, Retrained, Retrainer};
pub use rules::{Effect, MAX_RULES, Rule, RuleSet};
pub use window::BUCKETS;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use vigil_models::training::Examples;
use vigil_models::{Artifact, BoostedTrees, FeatureVector, OnlineModel, sigmoid};

use crate::{Error, Result};
use features::Context;
use pending::{Known, Pending, PendingStore};
use state::{At, CardState, CustomerState, MerchantState};
use store::KeyedStore;

/// Slots of each key store looked at for expiry per event.
const SWEEP_PER_EVENT: usize = 2;

/// Counters of what the engine has seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineStats {
    pub transactions: u64,
    pub late: u64,
    pub duplicates: u64,
    pub labels: u64,
    /// Labels whose transaction's feature vector is no longer (or never was) kept.
    pub labels_unmatched: u64,
    /// Labels that repeat what was already known.
    pub labels_repeated: u64,
    /// Examples the model learned from (labels and implicit genuine ones).
    pub model_updates: u64,
    /// Feature vectors dropped before their label horizon because `max_pending_labels` was
    /// reached: labels for those transactions will find nothing to learn from.
    pub vectors_dropped_early: u64,
    pub expired_keys: u64,
}

/// What became of a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelOutcome {
    Learned,
    /// A genuine label the model's negative sampling passed over.
    SampledOut,
    Repeated,
    Unmatched,
}

/// Live keys and pending vectors, for sizing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineSize {
    pub cards: usize,
    pub customers: usize,
    pub merchants: usize,
    pub pending_labels: usize,
}

#[derive(Debug, Clone)]
pub struct Engine {
    config: EngineConfig,
    rules: RuleSet,
    model: OnlineModel,
    /// The batch model the online model corrects, if one is promoted.
    champion: Option<Arc<Artifact>>,
    /// The version of the champion the online model has learned on top of.
    base_version: Option<String>,
    cards: KeyedStore<CardState>,
    customers: KeyedStore<CustomerState>,
    merchants: KeyedStore<MerchantState>,
    pending: PendingStore,
    /// The newest transaction time seen, in seconds.
    watermark: i64,
    implicit_genuine: bool,
    /// The feature vector of the last transaction scored.
    features: FeatureVector,
    stats: EngineStats,
}

/// The first byte of a snapshot: its layout's version.
const SNAPSHOT_FORMAT: u8 = 5;

/// An engine's state, in two parts. The vectors kept for labels are most of it, and those of a
/// full chunk of them never change: a snapshot leaves them out of `state`, and a store saves
/// each full chunk once, for every later snapshot to refer to, instead of writing them all
/// again each time.
#[derive(Debug)]
pub struct Snapshot {
    /// Everything else.
    pub state: Vec<u8>,
    /// The first sequence number of the oldest chunk `state` needs; a store can drop those
    /// before it once this snapshot is saved.
    pub chunks_from: u64,
    /// The full chunks not saved before, each as its first sequence number and its bytes.
    pub new_chunks: Vec<(u64, Vec<u8>)>,
}

/// What a snapshot holds, as written from an engine...
#[derive(Serialize)]
struct StateRef<'a> {
    model: &'a OnlineModel,
    base_version: &'a Option<String>,
    cards: &'a KeyedStore<CardState>,
    customers: &'a KeyedStore<CustomerState>,
    merchants: &'a KeyedStore<MerchantState>,
    pending: &'a PendingStore,
    watermark: i64,
    implicit_genuine: bool,
    stats: &'a EngineStats,
}

/// ...and as read back.
#[derive(Deserialize)]
struct State {
    model: OnlineModel,
    base_version: Option<String>,
    cards: KeyedStore<CardState>,
    customers: KeyedStore<CustomerState>,
    merchants: KeyedStore<MerchantState>,
    pending: PendingStore,
    watermark: i64,
    implicit_genuine: bool,
    stats: EngineStats,
}

impl Engine {
    pub fn new(config: EngineConfig, rules: RuleSet) -> Result<Self> {
        config.validate()?;
        let model = OnlineModel::new(config.model.clone())?;
        Ok(Self {
            implicit_genuine: config.implicit_genuine != ImplicitGenuine::Never,
            config,
            rules,
            model,
            champion: None,
            base_version: None,
            cards: KeyedStore::default(),
            customers: KeyedStore::default(),
            merchants: KeyedStore::default(),
            pending: PendingStore::default(),
            watermark: i64::MIN,
            features: FeatureVector::default(),
            stats: EngineStats::default(),
        })
    }

    /// The engine's state (windows, pending vectors, model, counters; not its configuration
    /// or rules), for [`Engine::restore`]; with the full chunks of pending vectors from
    /// sequence number `chunks_saved_to` on (those before it were saved with earlier snapshots).
    pub fn snapshot(&self, chunks_saved_to: u64) -> Snapshot {
        let state = StateRef {
            model: &self.model,
            base_version: &self.base_version,
            cards: &self.cards,
            customers: &self.customers,
            merchants: &self.merchants,
            pending: &self.pending,
            watermark: self.watermark,
            implicit_genuine: self.implicit_genuine,
            stats: &self.stats,
        };
        let mut bytes = vec![SNAPSHOT_FORMAT];
        postcard::to_io(&state, &mut bytes).expect("writing to memory cannot fail");
        Snapshot {
            state: bytes,
            chunks_from: self.pending.chunks_from(),
            new_chunks: self.pending.full_chunks(chunks_saved_to).collect(),
        }
    }

    /// The sequence number after the last full chunk of pending vectors: a snapshot taken now
    /// and saved makes every chunk before it saved.
    pub fn full_chunks_to(&self) -> u64 {
        self.pending.full_chunks_to()
    }

    /// An engine with `config` and `rules` and the state of a [`Snapshot`]; `chunk` finds a
    /// full chunk saved with it (or an earlier one) by its first sequence number.
    pub fn restore<'a>(
        config: EngineConfig,
        rules: RuleSet,
        state: &[u8],
        chunk: impl Fn(u64) -> Option<&'a [u8]>,
    ) -> Result<Self> {
        let mut engine = Self::new(config, rules)?;
        let Some((&SNAPSHOT_FORMAT, bytes)) = state.split_first() else {
            return Err(Error::Snapshot("unknown snapshot format".into()));
        };
        let mut state: State =
            postcard::from_bytes(bytes).map_err(|e| Error::Snapshot(e.to_string()))?;
        state.pending.restore(chunk).map_err(Error::Snapshot)?;
        state.cards.reindex();
        state.customers.reindex();
        state.merchants.reindex();
        engine.model = state.model;
        engine.base_version = state.base_version;
        engine.cards = state.cards;
        engine.customers = state.customers;
        engine.merchants = state.merchants;
        engine.pending = state.pending;
        engine.watermark = state.watermark;
        engine.implicit_genuine = state.implicit_genuine;
        engine.stats = state.stats;
        Ok(engine)
    }

    /// Scores with `champion` from the next transaction on, the online model correcting it.
    /// A champion other than the one the online model learned on top of starts it afresh:
    /// its corrections were for another model's errors.
    pub fn set_champion(&mut self, champion: Option<Arc<Artifact>>) {
        let version = champion.as_ref().map(|c| c.version.as_str());
        if version != self.base_version.as_deref() {
            self.model.rebase();
            self.base_version = version.map(str::to_owned);
        }
        self.champion = champion;
    }

    pub fn champion(&self) -> Option<&Arc<Artifact>> {
        self.champion.as_ref()
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    pub fn stats(&self) -> EngineStats {
        EngineStats {
            vectors_dropped_early: self.pending.evicted_early,
            ..self.stats
        }
    }

    pub fn size(&self) -> EngineSize {
        EngineSize {
            cards: self.cards.len(),
            customers: self.customers.len(),
            merchants: self.merchants.len(),
            pending_labels: self.pending.len(),
        }
    }

    /// The feature vector of the last transaction scored.
    pub fn features(&self) -> &FeatureVector {
        &self.features
    }

    /// The kept vectors whose outcome is known, as examples to train a champion on: fraud
    /// with a fraud label; genuine with a genuine label, or when it matured (occurred before
    /// `mature_before`) without a fraud label, unless implicit genuine labels are off. Those
    /// that occurred from `validation_from` to `mature_before` make the second set, all of
    /// them; before, genuine ones are kept at `negative_sample_rate` (by a hash of the
    /// transaction id, each weighing 1 / rate). Also returns how many training examples there
    /// were before sampling.
    pub fn known_examples(
        &self,
        validation_from: i64,
        mature_before: i64,
        negative_sample_rate: f64,
    ) -> (Examples, Examples, u64) {
        let assume_genuine = self.config.implicit_genuine != ImplicitGenuine::Never;
        let known = self.pending.iter().filter_map(|(entry, x)| {
            let is_fraud = match entry.known {
                Known::Fraud => true,
                Known::Genuine | Known::AssumedGenuine => false,
                Known::Nothing if assume_genuine => false,
                Known::Nothing => return None,
            };
            Some((entry.occurred_at, entry.transaction, is_fraud, x))
        });
        retrain::split_known(known, validation_from, mature_before, negative_sample_rate)
    }

    /// Why `decision` (the last one made) was made.
    pub fn explain<'a>(&'a self, decision: &'a Decision) -> Explanation<'a> {
        Explanation {
            decision,
            features: &self.features,
            rules: &self.rules,
        }
    }

    /// Starts loading what scoring the next two transactions will read, without waiting for
    /// it: the index lines of `after_next`'s card, customer, merchant and transaction, and the
    /// state of `next`'s (found through the index lines asked for one transaction before). A
    /// driver calls this before scoring each transaction, so that the memory latency of the
    /// next two overlaps the current one's work: out of the caches (20,000 cards and more) each
    /// miss costs about as long as the rest of the work (BENCHMARKS.md). Changes no result.
    pub fn prefetch(&self, next: Option<&Event>, after_next: Option<&Event>) {
        if let Some(e) = after_next {
            self.pending.prefetch_index(e.transaction);
            self.cards.prefetch_index(e.card);
            if let Some(customer) = e.customer {
                self.customers.prefetch_index(customer);
            }
            self.merchants.prefetch_index(e.merchant);
        }
        if let Some(e) = next {
            self.cards.prefetch_state(e.card);
            if let Some(customer) = e.customer {
                self.customers.prefetch_state(customer);
            }
            self.merchants.prefetch_state(e.merchant);
        }
        self.pending.prefetch_leaving(
            self.config.max_pending_labels,
            self.watermark
                .saturating_sub(self.config.label_horizon.as_seconds()),
        );
    }

    /// Scores one transaction and adds it to the state.
    pub fn score(&mut self, e: &Event) -> Decision {
        let t = e.seconds();
        self.stats.transactions += 1;
        let disposition = if !self.pending.claim(e.transaction) {
            self.stats.duplicates += 1;
            Disposition::Duplicate
        } else if self.watermark != i64::MIN
            && t < self.watermark - self.config.allowed_lateness.as_seconds()
        {
            self.stats.late += 1;
            Disposition::Late
        } else {
            Disposition::Applied
        };

        let card = self.cards.slot(e.card, t);
        let customer = e.customer.map(|c| self.customers.slot(c, t));
        let merchant = self.merchants.slot(e.merchant, t);
        let ctx = Context {
            card: self.cards.get(card),
            customer: customer.map(|c| self.customers.get(c)),
            merchant: self.merchants.get(merchant),
        };
        // Every line of the three windows' buckets requested at once, before the features read
        // them one horizon after another: the state of 20,000 cards is out of the core's
        // caches, and waiting for its misses side by side scored 14-26 % more (BENCHMARKS.md).
        // After `prefetch` the lines are loaded already; the service does not call it.
        std::hint::black_box(
            ctx.card.windows.touch_lines()
                ^ ctx.merchant.windows.touch_lines()
                ^ ctx.customer.map_or(0, |c| c.windows.touch_lines()),
        );
        let at = At::new(t);
        features::compute(e, ctx, &at, &mut self.features);

        let rules = self.rules.evaluate(&self.features, e);
        let model = self
            .model
            .score(&self.features, base_of(self.champion.as_ref()));
        let (score, action) = self.decide(model.logit, rules.score, rules.action);
        let decision = Decision {
            score,
            action,
            model,
            rules: rules.hits,
            rule_log_odds: rules.score,
            rule_action: rules.action,
            disposition,
        };

        if disposition == Disposition::Duplicate {
            return decision;
        }
        // A late transaction's vector is kept too: its label still teaches the model.
        let kept = Pending {
            transaction: e.transaction,
            merchant: e.merchant,
            amount_minor: e.amount_minor as f32,
            occurred_at: t,
            known: Known::Nothing,
        };
        self.pending
            .push(kept, &self.features, self.config.max_pending_labels);
        if disposition == Disposition::Applied {
            self.cards.get_mut(card).apply(e, &at);
            if let Some(c) = customer {
                self.customers.get_mut(c).apply(e, &at);
            }
            self.merchants.get_mut(merchant).apply(e, &at);
            self.watermark = self.watermark.max(t);
            self.maintain();
        }
        decision
    }

    /// The score and action of a model's log-odds with the rules' score and action: the rule
    /// scores add to the log-odds, thresholds give an action, a rule's hard action overrides
    /// a milder one. Also how a shadow model would have decided.
    pub fn decide(
        &self,
        model_logit: f64,
        rule_log_odds: f32,
        rule_action: Action,
    ) -> (f32, Action) {
        let score = sigmoid(model_logit + f64::from(rule_log_odds)) as f32;
        let by_score = if f64::from(score) >= self.config.decline_threshold {
            Action::Decline
        } else if f64::from(score) >= self.config.review_threshold {
            Action::Review
        } else {
            Action::Approve
        };
        (score, by_score.max(rule_action))
    }

    /// Learns from a label: the model from the feature vector the transaction was scored with,
    /// the merchant's fraud count from a fraud.
    pub fn learn(&mut self, label: &LabelEvent) -> LabelOutcome {
        self.stats.labels += 1;
        if label.explicit_genuine && self.config.implicit_genuine == ImplicitGenuine::Auto {
            self.implicit_genuine = false;
        }
        let Some((entry, features)) = self.pending.get_mut(label.transaction) else {
            self.stats.labels_unmatched += 1;
            return LabelOutcome::Unmatched;
        };
        let known = if label.is_fraud {
            Known::Fraud
        } else {
            Known::Genuine
        };
        let repeated = entry.known == known
            || (known == Known::Genuine && entry.known == Known::AssumedGenuine);
        if repeated {
            self.stats.labels_repeated += 1;
            return LabelOutcome::Repeated;
        }
        entry.known = known;
        if label.is_fraud {
            let labelled_at = label.labelled_at.unix_seconds();
            let merchant = self.merchants.slot(entry.merchant, labelled_at);
            self.merchants
                .get_mut(merchant)
                .confirm_fraud(labelled_at, entry.amount_minor);
        }
        let base = base_of(self.champion.as_ref());
        if self.config.learn_online
            && self
                .model
                .learn(features, label.is_fraud, entry.transaction, base)
        {
            self.stats.model_updates += 1;
            LabelOutcome::Learned
        } else {
            LabelOutcome::SampledOut
        }
    }

    /// Work that keeps memory bounded, a little on every event: at maturity, a sale counted
    /// for its merchant's fraud rates and an implicit genuine label; dropping vectors past the
    /// label horizon, and forgetting idle keys.
    fn maintain(&mut self) {
        let now = self.watermark;
        let maturity = self.config.maturity.as_seconds();
        let learn_genuine = self.implicit_genuine && self.config.learn_online;
        let (model, merchants, stats) = (&mut self.model, &mut self.merchants, &mut self.stats);
        let base = base_of(self.champion.as_ref());
        self.pending.mature(now - maturity, |entry, features| {
            if let Some(slot) = merchants.find(entry.merchant) {
                merchants
                    .get_mut(slot)
                    .mature_sale(entry.occurred_at + maturity, entry.amount_minor);
            }
            if learn_genuine && entry.known == Known::Nothing {
                entry.known = Known::AssumedGenuine;
                if model.learn(features, false, entry.transaction, base) {
                    stats.model_updates += 1;
                }
            }
        });
        self.pending
            .expire(now - self.config.label_horizon.as_seconds());
        let idle_before = now - self.config.idle_key_ttl.as_seconds();
        self.stats.expired_keys += (self.cards.sweep(SWEEP_PER_EVENT, idle_before)
            + self.customers.sweep(SWEEP_PER_EVENT, idle_before)
            + self.merchants.sweep(SWEEP_PER_EVENT, idle_before))
            as u64;
    }
}

/// The trees of a champion, the base the online model corrects.
fn base_of(champion: Option<&Arc<Artifact>>) -> Option<&BoostedTrees> {
    champion.map(|c| &c.model)
}
