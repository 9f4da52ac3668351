//! What several of Vigil's services share beyond the contract (`vigil-schema`): producing
//! records to Kafka ([`kafka`]: the idempotent producer and acknowledged sends), what a record
//! looks like on a topic ([`prepare`]: card numbers tokenized, the key, canonical JSON),
//! metrics rendering and reading ([`metrics`], [`scrape`]), Redis clients ([`redis`]) and, with the `http` feature, the
//! HTTP services' load shedding (`http`).

#[cfg(feature = "http")]
pub mod http;
pub mod kafka;
pub mod metrics;
pub mod prepare;
pub mod redis;
pub mod scrape;
