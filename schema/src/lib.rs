//! Vigil's v1 event contract.
//!
//! The field names of [`Transaction`] and [`Label`] are a public contract shared with the payment
//! systems that post events; `schema/json/` holds the same contract as JSON Schema, and a test
//! keeps the two equal. Every value is validated while it is parsed, so a value of these types is
//! always valid, and a parse error names the field that is wrong.
//!
//! This crate does no I/O: it parses text it is given. `migrations/` holds the Postgres schema
//! of the decisions and alerts.

mod codes;
mod decision;
mod error;
mod ids;
mod label;
mod lists;
pub mod pan;
pub mod redis_keys;
mod time;
mod transaction;

pub use codes::{Channel, Country, Currency, Mcc};
pub use decision::{Action, DecisionRecord, Reply};
pub use error::{Error, Result};
pub use ids::{CardId, CustomerId, DeviceId, MerchantId, TransactionId, check_id};
pub use label::{Label, LabelSource};
pub use lists::{ListKind, ListName};
pub use time::Timestamp;
pub use transaction::{Geo, MAX_AMOUNT_MINOR, Transaction};

/// Kafka topic names of the v1 contract.
pub mod topics {
    /// Transactions, keyed by `card_id`.
    pub const TRANSACTIONS: &str = "transactions.v1";
    /// Labels (chargebacks, investigator verdicts), keyed by `card_id`.
    pub const LABELS: &str = "labels.v1";
    /// Decisions, for downstream systems.
    pub const DECISIONS: &str = "decisions.v1";
    /// Messages the scoring service could not read, with the reason in the `error` header.
    pub const DEAD_LETTERS: &str = "dead-letters.v1";
    /// The topics the scoring service consumes; they must have the same number of partitions,
    /// so that a card's transactions and labels reach the same partition's engine.
    pub const CONSUMED: [&str; 2] = [TRANSACTIONS, LABELS];
    /// What each partition's engine hands to the state all partitions share (the model,
    /// merchants, customers), keyed by consumer group, in the same-numbered partition; read in
    /// full by every scoring instance. Internal to the scoring service.
    pub const SHARES: &str = "shares.v1";
    /// The header naming who produced a record through Vigil: the API key that posted it to the
    /// intake, or the investigator's key whose alert work gave it (the audit trail's actor).
    /// Set by Vigil, never taken from a request's body; absent on records written to the
    /// topics directly (`vigil replay`, another producer).
    pub const SENT_BY_HEADER: &str = "vigil-sent-by";
    /// The header naming the intake instance waiting to answer a transaction's request with
    /// its decision (`POST /v1/transactions?wait=`): the scoring service publishes the decision,
    /// once committed, on that instance's Redis channel ([`crate::redis_keys::replies`]).
    pub const REPLY_TO_HEADER: &str = "vigil-reply-to";
    /// Every topic the deployment needs.
    pub const ALL: [&str; 5] = [TRANSACTIONS, LABELS, DECISIONS, DEAD_LETTERS, SHARES];
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
