//! What one partition's engine keeps alone: its cards' windows, the vectors waiting for labels,
//! its counters, and the records it has yet to hand to the shared state.

use serde::{Deserialize, Serialize};
use vigil_models::training;

use super::EngineStats;
use super::config::{EngineConfig, ImplicitGenuine};
use super::pending::{Known, PendingStore};
use super::shared::{Count, Example, Outbox, Record, Source};
use super::state::CardState;
use super::store::{KeyedStore, NO_SLOT};

/// Card slots looked at for expiry per event.
const SWEEP_PER_EVENT: usize = 2;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Part {
    pub cards: KeyedStore<CardState>,
    pub pending: PendingStore,
    /// The newest transaction time seen, in seconds.
    pub watermark: i64,
    pub stats: EngineStats,
    pub outbox: Outbox,
    /// The boundary this partition last handed its records over to (`i64::MIN` before the
    /// first): the start of its next share.
    pub handed_to: i64,
    pub new_card_vectors: Budget,
}

/// What is left of an hourly budget, refilled evenly in event time, in 3,600ths of a unit so
/// that it adds up exactly (the same stream leaves the same budget).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Budget {
    left: i64,
    /// The event time it was last refilled to.
    at: i64,
}

impl Budget {
    const UNIT: i64 = 3_600;

    /// Takes one unit at event time `t` from a budget of `per_hour` an hour (0: no budget),
    /// if one is left.
    pub fn take(&mut self, t: i64, per_hour: u32) -> bool {
        if per_hour == 0 {
            return true;
        }
        let full = i64::from(per_hour) * Self::UNIT;
        let refill = t
            .saturating_sub(self.at)
            .max(0)
            .saturating_mul(i64::from(per_hour));
        self.left = self.left.saturating_add(refill).min(full);
        self.at = self.at.max(t);
        if self.left < Self::UNIT {
            return false;
        }
        self.left -= Self::UNIT;
        true
    }
}

impl Part {
    pub fn new() -> Self {
        Self {
            watermark: i64::MIN,
            handed_to: i64::MIN,
            ..Self::default()
        }
    }

    /// Work that keeps memory bounded, a little on every event: maturity up to the
    /// watermark, dropping vectors past the label horizon, forgetting idle cards.
    pub fn maintain(&mut self, config: &EngineConfig) {
        let now = self.watermark;
        self.mature(now, config);
        self.pending.expire(now - config.label_horizon.as_seconds());
        let idle_before = now - config.idle_key_ttl.as_seconds();
        self.stats.expired_keys += self.cards.sweep(SWEEP_PER_EVENT, idle_before) as u64;
    }

    /// Records what the transactions that matured by `now` tell: a sale whose outcome is
    /// known, for its merchant's fraud rates, and an implicit genuine label (which the pooling
    /// learns or not: see [`super::shared::Shared`]).
    fn mature(&mut self, now: i64, config: &EngineConfig) {
        let maturity = config.maturity.as_seconds();
        let learn_genuine =
            config.learn_online && config.implicit_genuine != ImplicitGenuine::Never;
        let rate = config.model.negative_sample_rate;
        let outbox = &mut self.outbox;
        self.pending.mature(now - maturity, |entry, features| {
            let at = entry.occurred_at + maturity;
            outbox.records.push(Record {
                at,
                count: Count::Matured,
                key: entry.merchant,
                amount_minor: entry.amount_minor,
                slot: NO_SLOT,
                since_payment: 0,
            });
            if learn_genuine && entry.known == Known::Nothing {
                entry.known = Known::AssumedGenuine;
                // Only the examples the model keeps are copied.
                if training::sampled(entry.transaction, rate) {
                    outbox.examples.push(Example {
                        at,
                        transaction: entry.transaction,
                        is_fraud: false,
                        source: Source::Maturity,
                        features: *features,
                    });
                }
            }
        });
    }

    /// Moves the records from before `boundary` into `into`, once what matured by then is
    /// recorded (this partition's own transactions may not have reached it).
    pub fn hand_over(&mut self, boundary: i64, config: &EngineConfig, into: &mut Outbox) {
        if self.watermark < boundary {
            self.mature(boundary, config);
        }
        self.outbox.hand_over(boundary, into);
        self.handed_to = self.handed_to.max(boundary);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_holds_an_hour_and_refills_evenly() {
        let mut budget = Budget::default();
        let taken = (0..10).filter(|_| budget.take(1_000_000, 6)).count();
        assert_eq!(taken, 6, "starts full: an hour's worth");
        assert!(
            !budget.take(1_000_000 + 599, 6),
            "a unit takes 600 s to come back"
        );
        assert!(budget.take(1_000_000 + 600, 6));
        assert!(
            !budget.take(1_000_000 - 5_000, 6),
            "an earlier time refills nothing"
        );
        let after_a_day = (0..10).filter(|_| budget.take(1_086_400, 6)).count();
        assert_eq!(after_a_day, 6, "never more than an hour's worth");
        assert!(Budget::default().take(0, 0), "0: no budget");
    }
}
