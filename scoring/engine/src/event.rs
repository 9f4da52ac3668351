//! The engine's view of events: ids reduced to 64-bit keys, everything `Copy`, so that scoring
//! one event allocates nothing.

use vigil_schema::{Channel, Country, Currency, Label, Mcc, Timestamp, Transaction};
use xxhash_rust::xxh3::xxh3_64;

/// The key of an id: a 64-bit XXH3 hash. Two different ids share a key with probability about
/// n^2 / 2^65 (3e-8 at a million cards); such a pair would share window state.
pub fn key(id: &str) -> u64 {
    xxh3_64(id.as_bytes())
}

/// A transaction as the engine scores it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Event {
    pub transaction: u64,
    pub occurred_at: Timestamp,
    pub card: u64,
    pub customer: Option<u64>,
    pub merchant: u64,
    pub device: Option<u64>,
    pub amount_minor: u64,
    pub currency: Currency,
    pub country: Option<Country>,
    pub mcc: Option<Mcc>,
    pub channel: Option<Channel>,
    /// Latitude and longitude in degrees.
    pub geo: Option<(f64, f64)>,
}

impl From<&Transaction<'_>> for Event {
    fn from(tx: &Transaction<'_>) -> Self {
        Self {
            transaction: key(tx.transaction_id.as_str()),
            occurred_at: tx.occurred_at,
            card: key(tx.card_id.as_str()),
            customer: tx.customer_id.as_ref().map(|c| key(c.as_str())),
            merchant: key(tx.merchant_id.as_str()),
            device: tx.device_id.as_ref().map(|d| key(d.as_str())),
            amount_minor: tx.amount_minor,
            currency: tx.currency,
            country: tx.country,
            mcc: tx.mcc,
            channel: tx.channel,
            geo: tx.geo().map(|g| (g.lat, g.lon)),
        }
    }
}

impl Event {
    pub(crate) fn seconds(&self) -> i64 {
        self.occurred_at.unix_seconds()
    }
}

/// A label as the engine learns from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabelEvent {
    pub transaction: u64,
    pub is_fraud: bool,
    pub labelled_at: Timestamp,
    /// Whether the label says so explicitly (as opposed to the engine assuming it).
    pub explicit_genuine: bool,
}

impl From<&Label<'_>> for LabelEvent {
    fn from(label: &Label<'_>) -> Self {
        Self {
            transaction: key(label.transaction_id.as_str()),
            is_fraud: label.is_fraud,
            labelled_at: label.labelled_at,
            explicit_genuine: !label.is_fraud,
        }
    }
}
