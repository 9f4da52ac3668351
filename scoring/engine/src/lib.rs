//! Vigil's scoring engine: a pure, deterministic function of (state, event). It does no I/O and
//! never reads the clock, so a backtest and the live stream give the same scores; the scoring
//! service (`vigil-scoring`) runs it in a Kafka consumer group.
//!
//! For each transaction: find the card's, customer's and merchant's state; compute the feature
//! vector from it (the transaction's own amount is not yet in its windows); apply the rules and
//! the online model; decide; then add the transaction to the state and keep its feature vector
//! until its label arrives. For each label: learn from the kept vector and, for a fraud, count it
//! against the merchant. Time is the events' own: nothing here reads the clock.
//!
//! Cards are a partition's own; the model, the merchants and the customers are shared by every
//! partition ([`shared`]): what a partition learns of them is pooled every `share_every` of
//! event time and scored with from `share_delay` later, so that the decisions do not depend on
//! how the stream is partitioned.

mod config;
mod decision;
mod event;
mod features;
mod index;
mod part;
mod pending;
mod prefetch;
mod recent;
pub mod replay;
mod retrain;
mod rules;
mod shared;
mod state;
mod store;
mod window;

#[cfg(test)]
mod tests;

pub use config::{EngineConfig, ImplicitGenuine, Span};
pub use decision::{Action, Decision, Disposition, Explanation, RuleHits};
pub use event::{Event, LabelEvent, key};
pub use retrain::{Candidate, RetrainConfig, Retrained, Retrainer, Window, retrain};
pub use rules::{Effect, HardAction, MAX_RULES, Position, Rule, RuleError, RuleSet, RuleSpec};
pub use shared::{Outbox, Share};
pub use window::BUCKETS;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use vigil_models::training::{self, Examples};
use vigil_models::{Artifact, BoostedTrees, FeatureVector, OnlineModel, sigmoid};
use vigil_schema::Timestamp;

use features::Context;
use part::Part;
use pending::{Known, Pending};
use shared::{Count, Example, Record, Shared, Source};
use state::{At, CustomerState, MerchantState};
use store::NO_SLOT;

/// Errors of the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A rules file that cannot be used; the message names the file's line and the rule.
    #[error("{0}")]
    Rules(String),
    #[error("invalid engine configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Model(#[from] vigil_models::Error),
    /// A snapshot this version cannot read.
    #[error("engine snapshot: {0}")]
    Snapshot(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

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
    /// Transactions of cards new to their partition that kept no feature vector, beyond
    /// `new_card_vectors_per_hour`.
    pub vectors_not_kept: u64,
    pub expired_keys: u64,
    /// Cards, customers and merchants forgotten before their time-to-live, at `max_keys`.
    pub keys_evicted: u64,
}

impl EngineStats {
    fn add(&mut self, other: &Self) {
        self.transactions += other.transactions;
        self.late += other.late;
        self.duplicates += other.duplicates;
        self.labels += other.labels;
        self.labels_unmatched += other.labels_unmatched;
        self.labels_repeated += other.labels_repeated;
        self.model_updates += other.model_updates;
        self.vectors_dropped_early += other.vectors_dropped_early;
        self.vectors_not_kept += other.vectors_not_kept;
        self.expired_keys += other.expired_keys;
        self.keys_evicted += other.keys_evicted;
    }
}

/// What became of a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelOutcome {
    /// Its example goes to the model with the next pooling (which passes over a genuine label
    /// of a transaction already learned as genuine at maturity).
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

/// The engines of a stream's partitions, as the live service runs them: each partition's own
/// state ([`Part`]: cards, vectors waiting for labels) and the state they share
/// ([`Shared`]: the online model, the merchants, the customers), pooled every `share_every` of
/// event time.
/// [`Engine::new`] makes the engine of one partition.
#[derive(Debug, Clone)]
pub struct Engine {
    config: EngineConfig,
    rules: RuleSet,
    /// The batch model the online model corrects, if one is promoted.
    champion: Option<Arc<Artifact>>,
    /// The champion a live driver offers to the engines it shares with (see
    /// [`Engine::offer_champion`]).
    offered: Option<Arc<Artifact>>,
    shared: Shared,
    parts: Vec<Part>,
    /// The feature vector of the last transaction scored.
    features: FeatureVector,
    /// The records being pooled (kept for its memory).
    pooling: Outbox,
    /// A merchant, and a customer, not pooled yet.
    no_merchant: MerchantState,
    no_customer: CustomerState,
}

/// The first byte of a snapshot: its layout's version.
const SNAPSHOT_FORMAT: u8 = 10;

/// A partition's state, in two parts. The vectors kept for labels are most of it, and those of a
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

/// A copy of the shared state ([`Engine::shared_copy`]).
#[derive(Debug, Clone)]
pub struct SharedCopy(Shared);

impl SharedCopy {
    /// The shared state as [`Engine::restore_shared`] reads it.
    pub fn snapshot(&self) -> Vec<u8> {
        encode(&self.0)
    }
}

/// A copy of one partition's state, with the boundary the shared state was pooled to.
#[derive(Debug, Clone)]
pub struct PartCopy {
    part: Part,
    pooled_to: i64,
}

impl PartCopy {
    /// The partition's state, with the full chunks of pending vectors from sequence number
    /// `chunks_saved_to` on (those before it were saved with earlier snapshots).
    pub fn snapshot(&self, chunks_saved_to: u64) -> Snapshot {
        Snapshot {
            state: encode(&(&self.part, self.pooled_to)),
            chunks_from: self.part.pending.chunks_from(),
            new_chunks: self.part.pending.full_chunks(chunks_saved_to).collect(),
        }
    }

    /// The sequence number after the last full chunk of pending vectors.
    pub fn full_chunks_to(&self) -> u64 {
        self.part.pending.full_chunks_to()
    }

    /// The boundary the shared state was pooled to when the copy was taken.
    pub fn pooled_to(&self) -> i64 {
        self.pooled_to
    }
}

fn encode(value: &impl Serialize) -> Vec<u8> {
    let mut bytes = vec![SNAPSHOT_FORMAT];
    postcard::to_io(value, &mut bytes).expect("writing to memory cannot fail");
    bytes
}

fn decode<T: serde::de::DeserializeOwned>(state: &[u8]) -> Result<T> {
    let Some((&SNAPSHOT_FORMAT, bytes)) = state.split_first() else {
        return Err(Error::Snapshot("unknown snapshot format".into()));
    };
    postcard::from_bytes(bytes).map_err(|e| Error::Snapshot(e.to_string()))
}

impl Engine {
    /// The engine of one partition.
    pub fn new(config: EngineConfig, rules: RuleSet) -> Result<Self> {
        Self::partitioned(config, rules, 1)
    }

    /// The engines of `partitions` partitions, sharing the model, merchants and customers.
    pub fn partitioned(config: EngineConfig, rules: RuleSet, partitions: usize) -> Result<Self> {
        config.validate()?;
        if partitions == 0 {
            return Err(Error::Config("an engine needs a partition at least".into()));
        }
        let model = OnlineModel::new(config.model.clone())?;
        Ok(Self {
            shared: Shared::new(model),
            config,
            rules,
            champion: None,
            offered: None,
            parts: (0..partitions).map(|_| Part::new()).collect(),
            features: FeatureVector::default(),
            pooling: Outbox::default(),
            no_merchant: MerchantState::default(),
            no_customer: CustomerState::default(),
        })
    }

    pub fn partitions(&self) -> usize {
        self.parts.len()
    }

    /// A copy of partition `partition`'s state, to take a [`Snapshot`] of off the scoring
    /// thread: its windows and pending entries are flat pages, and the vectors of full chunks
    /// are shared, not copied.
    pub fn part_copy(&self, partition: usize) -> PartCopy {
        PartCopy {
            part: self.parts[partition].clone(),
            pooled_to: self.shared.pooled_to,
        }
    }

    /// The sequence number after the last full chunk of partition `partition`'s pending
    /// vectors: a snapshot taken now and saved makes every chunk before it saved.
    pub fn full_chunks_to(&self, partition: usize) -> u64 {
        self.parts[partition].pending.full_chunks_to()
    }

    /// Partition `partition` as a [`PartCopy::snapshot`] left it; `chunk` finds a full chunk
    /// saved with it (or an earlier one) by its first sequence number. Returns the boundary
    /// the shared state was pooled to when the snapshot was taken: the partition goes on
    /// exactly from there with a shared state pooled to it or before.
    pub fn restore_part<'a>(
        &mut self,
        partition: usize,
        state: &[u8],
        chunk: impl Fn(u64) -> Option<&'a [u8]>,
    ) -> Result<i64> {
        let (mut part, pooled_to): (Part, i64) = decode(state)?;
        part.pending.restore(chunk).map_err(Error::Snapshot)?;
        part.cards.reindex();
        self.parts[partition] = part;
        Ok(pooled_to)
    }

    /// Forgets partition `partition` (its engine moved to another instance).
    pub fn reset_part(&mut self, partition: usize) {
        self.parts[partition] = Part::new();
    }

    /// The shared state (model, merchants, customers, the boundary pooled to), for
    /// [`Engine::restore_shared`].
    pub fn shared_snapshot(&self) -> Vec<u8> {
        self.shared_copy().snapshot()
    }

    /// A copy of the shared state, to snapshot away from the thread that scores: copying is
    /// a fraction of the cost of serializing (megabytes of merchants and customers).
    pub fn shared_copy(&self) -> SharedCopy {
        SharedCopy(self.shared.clone())
    }

    /// The shared state of a [`Engine::shared_snapshot`], or a new one for `None`.
    pub fn restore_shared(&mut self, state: Option<&[u8]>) -> Result<()> {
        let mut shared = match state {
            Some(state) => decode::<Shared>(state)?,
            None => Shared::new(OnlineModel::new(self.config.model.clone())?),
        };
        shared.customers.reindex();
        shared.merchants.reindex();
        self.shared = shared;
        let held = self.champion.as_ref().map(|c| c.version.as_str());
        if held != self.shared.base_version.as_deref() {
            self.champion = None;
            self.take_offered();
        }
        Ok(())
    }

    /// Scores with `champion` from the next transaction on, the online model correcting it.
    /// A champion other than the one the online model learned on top of starts it afresh:
    /// its corrections were for another model's errors.
    pub fn set_champion(&mut self, champion: Option<Arc<Artifact>>) {
        let version = champion.as_ref().map(|c| c.version.as_str());
        if version != self.shared.base_version.as_deref() {
            self.shared.model.rebase();
            self.shared.base_version = version.map(str::to_owned);
        }
        self.champion = champion;
    }

    pub fn champion(&self) -> Option<&Arc<Artifact>> {
        self.champion.as_ref()
    }

    /// For a driver pooling shares ([`Engine::pool`]): offers `champion` (its registry's) to
    /// every engine sharing with this one. The shares this engine hands over carry its
    /// version, and every engine takes the champion partition 0's shares carry, at the same
    /// point of the pooling, so that all hold one online model.
    pub fn offer_champion(&mut self, champion: Option<Arc<Artifact>>) {
        self.offered = champion;
        self.take_offered();
    }

    /// The version of the champion the pooled shares switched to, when this engine does not
    /// hold it (the driver gives it with [`Engine::offer_champion`]); transactions scored
    /// meanwhile would be scored without it.
    pub fn champion_missing(&self) -> Option<&str> {
        let wanted = self.shared.base_version.as_deref()?;
        let held = self.champion.as_ref().map(|c| c.version.as_str());
        (held != Some(wanted)).then_some(wanted)
    }

    /// Gives the engine the champion [`Engine::champion_missing`] names (fetched by version).
    pub fn provide_champion(&mut self, champion: Arc<Artifact>) {
        if Some(champion.version.as_str()) == self.shared.base_version.as_deref() {
            self.champion = Some(champion);
        }
    }

    fn take_offered(&mut self) {
        let wanted = self.shared.base_version.as_deref();
        if let Some(offered) = &self.offered
            && Some(offered.version.as_str()) == wanted
        {
            self.champion = Some(offered.clone());
        }
    }

    /// Switches to champion `version` (the online model starts afresh on top of it).
    fn switch_champion(&mut self, version: Option<String>) {
        if version == self.shared.base_version {
            return;
        }
        self.shared.model.rebase();
        self.shared.base_version = version;
        self.champion = None;
        self.take_offered();
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// Scores with `rules` from the next transaction on. The rules are not state: a replay
    /// decides with the rules in force when it runs.
    pub fn set_rules(&mut self, rules: RuleSet) {
        self.rules = rules;
    }

    pub fn stats(&self) -> EngineStats {
        let mut stats = EngineStats::default();
        for part in &self.parts {
            stats.add(&EngineStats {
                vectors_dropped_early: part.pending.evicted_early,
                keys_evicted: part.cards.evicted,
                ..part.stats
            });
        }
        stats.model_updates = self.shared.model_updates;
        stats.expired_keys += self.shared.expired_keys;
        stats.keys_evicted += self.shared.customers.evicted + self.shared.merchants.evicted;
        stats
    }

    pub fn size(&self) -> EngineSize {
        let sum = |f: fn(&Part) -> usize| self.parts.iter().map(f).sum();
        EngineSize {
            cards: sum(|p| p.cards.len()),
            customers: self.shared.customers.len(),
            merchants: self.shared.merchants.len(),
            pending_labels: sum(|p| p.pending.len()),
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
    /// were before sampling. Taken in time order, whichever partition kept them, and only
    /// those one partition would keep: within the label horizon at `mature_before` +
    /// `maturity` (each partition drops older ones at its own pace), the newest
    /// `max_pending_labels`.
    pub fn known_examples(
        &self,
        validation_from: i64,
        mature_before: i64,
        negative_sample_rate: f64,
    ) -> (Examples, Examples, u64) {
        let assume_genuine = self.config.implicit_genuine != ImplicitGenuine::Never;
        let kept_from = mature_before + self.config.maturity.as_seconds()
            - self.config.label_horizon.as_seconds();
        let mut kept: Vec<_> = self
            .parts
            .iter()
            .flat_map(|p| p.pending.iter())
            .filter(|(entry, _)| entry.occurred_at >= kept_from)
            .collect();
        kept.sort_unstable_by_key(|(entry, _)| (entry.occurred_at, entry.transaction));
        let beyond_capacity = kept.len().saturating_sub(self.config.max_pending_labels);
        let known = kept.drain(beyond_capacity..).filter_map(|(entry, x)| {
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

    /// Starts loading what scoring the next two transactions (each with its partition) will
    /// read, without waiting for it: the index lines of `after_next`'s card, customer,
    /// merchant and transaction, and the state of `next`'s (found through the index lines
    /// asked for one transaction before). A driver calls this before scoring each
    /// transaction, so that the memory latency of the next two overlaps the current one's
    /// work: out of the caches (20,000 cards and more) each miss costs about as long as the
    /// rest of the work (BENCHMARKS.md, "What sets the figures"). Changes no result.
    pub fn prefetch(&self, next: Option<(usize, &Event)>, after_next: Option<(usize, &Event)>) {
        if let Some((p, e)) = after_next {
            let part = &self.parts[p];
            part.pending.prefetch_index(e.transaction);
            part.cards.prefetch_index(e.card);
            if let Some(customer) = e.customer {
                self.shared.customers.prefetch_index(customer);
            }
            self.shared.merchants.prefetch_index(e.merchant);
        }
        if let Some((p, e)) = next {
            let part = &self.parts[p];
            part.cards.prefetch_state(e.card);
            if let Some(customer) = e.customer {
                self.shared.customers.prefetch_state(customer);
            }
            self.shared.merchants.prefetch_state(e.merchant);
            part.pending.prefetch_leaving(
                self.config.max_pending_labels,
                part.watermark
                    .saturating_sub(self.config.label_horizon.as_seconds()),
            );
        }
    }

    /// Scores one transaction of the first partition and adds it to the state.
    pub fn score(&mut self, e: &Event) -> Decision {
        self.score_in(0, e)
    }

    /// Scores one transaction of `partition` and adds it to the state, pooling the shared
    /// state first when a boundary is due, from every partition of this engine.
    pub fn score_in(&mut self, partition: usize, e: &Event) -> Decision {
        self.pool_due(e.seconds());
        self.score_at(partition, e)
    }

    fn score_at(&mut self, partition: usize, e: &Event) -> Decision {
        let t = e.seconds();
        let part = &mut self.parts[partition];
        part.stats.transactions += 1;
        let disposition = if !part.pending.claim(e.transaction) {
            part.stats.duplicates += 1;
            Disposition::Duplicate
        } else if part.watermark != i64::MIN
            && t < part.watermark - self.config.allowed_lateness.as_seconds()
        {
            part.stats.late += 1;
            Disposition::Late
        } else {
            Disposition::Applied
        };

        let idle_before = t - self.config.idle_key_ttl.as_seconds();
        let card = part
            .cards
            .slot(e.card, t, idle_before, self.config.max_keys);
        let customer = e
            .customer
            .and_then(|c| self.shared.customers.find(c, idle_before));
        let merchant_slot = self.shared.merchants.find(e.merchant, idle_before);
        let merchant =
            merchant_slot.map_or(&self.no_merchant, |slot| self.shared.merchants.get(slot));
        let ctx = Context {
            card: part.cards.get(card.slot),
            customer: e.customer.map(|_| {
                customer.map_or(&self.no_customer, |slot| self.shared.customers.get(slot))
            }),
            merchant,
        };
        // Every line of the three windows' buckets requested at once, before the features read
        // them one horizon after another: the state of 20,000 cards is out of the core's
        // caches, and waiting for its misses side by side instead of in turn is faster (measured:
        // BENCHMARKS.md's history).
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
            .shared
            .model
            .score(&self.features, base_of(self.champion.as_ref()));
        let (score, action) = decide(&self.config, model.logit, rules.score, rules.action);
        let decision = Decision {
            score,
            action,
            model,
            rules: rules.hits,
            shadow_rules: rules.shadow_hits,
            rule_log_odds: rules.score,
            rule_action: rules.action,
            disposition,
        };

        if disposition == Disposition::Duplicate {
            return decision;
        }
        // A late transaction's vector is kept too: its label still teaches the model.
        let per_hour = self.config.new_card_vectors_per_hour;
        if card.new && !part.new_card_vectors.take(t, per_hour) {
            part.pending.unclaim(e.transaction);
            part.stats.vectors_not_kept += 1;
        } else {
            let kept = Pending {
                transaction: e.transaction,
                merchant: e.merchant,
                amount_minor: e.amount_minor as f32,
                occurred_at: t,
                known: Known::Nothing,
            };
            part.pending
                .push(kept, &self.features, self.config.max_pending_labels);
        }
        if disposition == Disposition::Applied {
            part.cards.get_mut(card.slot).apply(e, &at);
            let record = |count, key, slot: Option<u32>| Record {
                at: t,
                count,
                key,
                amount_minor: e.amount_minor as f32,
                slot: slot.unwrap_or(NO_SLOT),
                since_payment: 0,
            };
            let sale = record(Count::Sale, e.merchant, merchant_slot);
            part.outbox.records.push(sale);
            if let Some(c) = e.customer {
                let payment = record(Count::Payment, c, customer);
                part.outbox.records.push(payment);
            }
            part.watermark = part.watermark.max(t);
            part.maintain(&self.config);
        }
        decision
    }

    /// Pools every partition's records from before the boundary a transaction at `t` is
    /// scored after, if it is past the one pooled: the shared state moves in steps of
    /// `share_every`, each used from `share_delay` after its end, whatever the partitions.
    fn pool_due(&mut self, t: i64) {
        let Some(boundary) = self.shared.due(&self.config, t) else {
            return;
        };
        for part in &mut self.parts {
            part.hand_over(boundary, &self.config, &mut self.pooling);
        }
        self.pool_handed_over(boundary);
    }

    fn pool_handed_over(&mut self, boundary: i64) {
        let base = base_of(self.champion.as_ref());
        self.shared
            .pool(&mut self.pooling, boundary, &self.config, base);
    }

    /// The boundary the shared state must be pooled to before a transaction at `at` is
    /// scored, if it is not yet: for a driver whose partitions' records are pooled apart
    /// ([`Engine::hand_over`], [`Engine::pool`]).
    pub fn due(&self, at: Timestamp) -> Option<i64> {
        self.shared.due(&self.config, at.unix_seconds())
    }

    /// Partition `partition`'s records from before `to` (seconds), for every engine that
    /// shares its state with this one to pool: its *share*. A partition hands over when its
    /// own transactions reach a boundary due, or when it has none left to read and another
    /// needs it; at most once a boundary (`None` if it has handed over to `to` already).
    pub fn hand_over(&mut self, partition: usize, to: i64) -> Option<Share> {
        let part = &mut self.parts[partition];
        let from = part.handed_to;
        if to <= from {
            return None;
        }
        let mut records = Outbox::default();
        part.hand_over(to, &self.config, &mut records);
        Some(Share {
            partition: partition as u32,
            from,
            to,
            records,
            champion: self.offered.as_ref().map(|c| c.version.clone()),
        })
    }

    /// The boundary partition `partition` last handed over to (`i64::MIN` before the first).
    pub fn handed_to(&self, partition: usize) -> i64 {
        self.parts[partition].handed_to
    }

    /// The boundary the shared state is pooled to (`i64::MIN` before the first pooling).
    pub fn pooled_to(&self) -> i64 {
        self.shared.pooled_to
    }

    /// Pools the shared state to `boundary` from `shares`, which must hold every partition's
    /// records from before it (each partition's shares up to one at `boundary` or later); what
    /// is after stays in them for the next pooling. A share's records are pooled at the
    /// boundaries after its `from`: the pooling steps through the `from`s it passes, so the
    /// result is the same whichever boundaries an engine pooled on the way (one that pooled
    /// `from` had only the shares before it then). Before each step, the champion of partition
    /// 0's newest share eligible then is taken: at the same point of every engine's pooling.
    pub fn pool(&mut self, boundary: i64, shares: &mut [Share]) {
        let mut steps: Vec<i64> = shares
            .iter()
            .map(|s| s.from)
            .filter(|&from| from > self.shared.pooled_to && from < boundary)
            .collect();
        steps.push(boundary);
        steps.sort_unstable();
        steps.dedup();
        for step in steps {
            let offered = shares
                .iter()
                .filter(|s| s.partition == 0 && s.from < step)
                .filter(|s| self.shared.champion_from.is_none_or(|f| s.from > f))
                .max_by_key(|s| s.from);
            if let Some(share) = offered {
                self.shared.champion_from = Some(share.from);
                let version = share.champion.clone();
                self.switch_champion(version);
            }
            for share in shares.iter_mut().filter(|s| s.from < step) {
                share.records.hand_over(step, &mut self.pooling);
            }
            self.pool_handed_over(step);
        }
    }

    /// Scores one transaction of `partition` with the shared state pooled by the driver
    /// ([`Engine::due`] says when it must be); [`Engine::score_in`] pools on its own.
    pub fn score_pooled(&mut self, partition: usize, e: &Event) -> Decision {
        debug_assert!(self.due(e.occurred_at).is_none(), "pooled before scoring");
        self.score_at(partition, e)
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
        decide(&self.config, model_logit, rule_log_odds, rule_action)
    }

    /// Learns from a label of the first partition: see [`Engine::learn_in`].
    pub fn learn(&mut self, label: &LabelEvent) -> LabelOutcome {
        self.learn_in(0, label)
    }

    /// Learns from a label of `partition`: the model from the feature vector the
    /// transaction was scored with, the merchant's fraud count from a fraud, both from the
    /// label's time on, with the next pooling past it.
    pub fn learn_in(&mut self, partition: usize, label: &LabelEvent) -> LabelOutcome {
        let part = &mut self.parts[partition];
        part.stats.labels += 1;
        let at = label.labelled_at.unix_seconds();
        if label.explicit_genuine {
            let first = part.outbox.explicit_genuine_at.map_or(at, |a| a.min(at));
            part.outbox.explicit_genuine_at = Some(first);
        }
        let Some((entry, features)) = part.pending.get_mut(label.transaction) else {
            part.stats.labels_unmatched += 1;
            return LabelOutcome::Unmatched;
        };
        let known = if label.is_fraud {
            Known::Fraud
        } else {
            Known::Genuine
        };
        if entry.known == known {
            part.stats.labels_repeated += 1;
            return LabelOutcome::Repeated;
        }
        // A genuine label after an implicit one is learned only if that was not.
        let source = match entry.known {
            Known::AssumedGenuine if !label.is_fraud => {
                Source::LabelAfterMaturity(entry.occurred_at + self.config.maturity.as_seconds())
            }
            _ => Source::Label,
        };
        entry.known = known;
        if label.is_fraud {
            part.outbox.records.push(Record {
                at,
                count: Count::Fraud,
                key: entry.merchant,
                amount_minor: entry.amount_minor,
                slot: NO_SLOT,
                since_payment: u32::try_from((at - entry.occurred_at).max(0)).unwrap_or(u32::MAX),
            });
        }
        let kept = label.is_fraud
            || training::sampled(entry.transaction, self.config.model.negative_sample_rate);
        if !(self.config.learn_online && kept) {
            return LabelOutcome::SampledOut;
        }
        part.outbox.examples.push(Example {
            at,
            transaction: entry.transaction,
            is_fraud: label.is_fraud,
            source,
            features: *features,
        });
        LabelOutcome::Learned
    }
}

/// See [`Engine::decide`]: how a decision is made of a model's log-odds and the rules' outcome
/// under `config`'s thresholds, for those who decide again without an engine (a rule tested
/// on history).
pub fn decide(
    config: &EngineConfig,
    model_logit: f64,
    rule_log_odds: f32,
    rule_action: Action,
) -> (f32, Action) {
    let score = sigmoid(model_logit + f64::from(rule_log_odds)) as f32;
    let by_score = if f64::from(score) >= config.decline_threshold {
        Action::Decline
    } else if f64::from(score) >= config.review_threshold {
        Action::Review
    } else {
        Action::Approve
    };
    (score, by_score.max(rule_action))
}

/// The trees of a champion, the base the online model corrects.
fn base_of(champion: Option<&Arc<Artifact>>) -> Option<&BoostedTrees> {
    champion.map(|c| &c.model)
}
