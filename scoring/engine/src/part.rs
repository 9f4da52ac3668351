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
