//! Vigil's services and offline runs as a library, for the `vigil` command line and for tests
//! in process: the typed configuration and its layering, the app builder that wires the intake,
//! the scoring service and the API (`serve`), the schema set-up (`migrate`), the event-file
//! feeds, the backtest and its report, and training (data assembly, fitting, promotion and the
//! live schedule).

pub mod backtest;
pub mod broker;
pub mod config;
pub mod db;
pub mod feed;
pub mod migrate;
pub mod ops;
pub mod output;
pub mod progress;
pub mod serve;
pub mod train;
