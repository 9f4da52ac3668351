//! Everything that brings transactions and labels into Vigil: the HTTP intake ([`http`]), file
//! replay ([`replay`]), streaming readers of NDJSON and CSV event files ([`read`]), and the
//! synthetic data generator ([`generate`]). The producer they send with is `vigil-common`'s.

pub mod generate;
pub mod http;
pub mod read;
pub mod replay;

use std::path::PathBuf;

/// Errors of the ingest crate. A bad record is not an error: readers report it and go on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: unknown file type; use .ndjson, .jsonl or .csv")]
    UnknownFormat { path: PathBuf },
    #[error("{path}: unknown column `{column}` (the columns are: {expected})")]
    UnknownColumn {
        path: PathBuf,
        column: String,
        expected: String,
    },
    #[error("{path}: {message}")]
    Csv { path: PathBuf, message: String },
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
