//! Vigil's v1 event contract.
//!
//! The field names of [`Transaction`] and [`Label`] are a public contract shared with the payment
//! systems that post events; `schema/json/` holds the same contract as JSON Schema, and a test
//! keeps the two equal. Every value is validated while it is parsed, so a value of these types is
//! always valid, and a parse error names the field that is wrong.
//!
//! This crate does no I/O: it parses text it is given.

mod codes;
mod error;
mod ids;
mod label;
mod time;
mod transaction;

pub use codes::{Channel, Country, Currency, Mcc};
pub use error::{Error, Result};
pub use ids::{CardId, CustomerId, DeviceId, MerchantId, TransactionId};
pub use label::{Label, LabelSource};
pub use time::Timestamp;
pub use transaction::{Geo, Transaction};

/// Kafka topic names of the v1 contract.
pub mod topics {
    /// Transactions, keyed by `card_id`.
    pub const TRANSACTIONS: &str = "transactions.v1";
    /// Labels (chargebacks, investigator verdicts), keyed by `card_id`.
    pub const LABELS: &str = "labels.v1";
    /// Decisions, for downstream systems.
    pub const DECISIONS: &str = "decisions.v1";
}

/// Parses one JSON object and validates it, naming the offending field on error.
///
/// The fast path is plain `serde_json`; only a failing input is parsed a second time to find the
/// path of the field at fault, so valid input pays nothing for the better message.
pub fn from_json<'a, T>(text: &'a str) -> Result<T>
where
    T: serde::Deserialize<'a> + Validate,
{
    match serde_json::from_str::<T>(text) {
        Ok(value) => value.validate().map(|()| value),
        Err(_) => {
            let mut de = serde_json::Deserializer::from_str(text);
            match serde_path_to_error::deserialize::<_, T>(&mut de) {
                Err(err) => Err(Error::at_path(
                    &err.path().to_string(),
                    &err.inner().to_string(),
                )),
                // Unreachable in practice: the same input parsed twice gives the same answer.
                Ok(_) => Err(Error::whole("invalid JSON event")),
            }
        }
    }
}

/// Checks that go across fields, run after each field has been parsed and checked on its own.
pub trait Validate {
    fn validate(&self) -> Result<()>;
}
