//! Command-line arguments and what each command runs.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::{admin, bench, demo, generate, models, replay, rules};
use vigil_app::config::Config;
use vigil_app::serve::Services;
use vigil_app::{backtest, broker, migrate, serve, train};

/// Vigil: real-time fraud detection for payments.
///
/// Start with `vigil generate --out data` to make two synthetic months of payments with fraud and
/// chargebacks, then `vigil backtest --transactions data/transactions.ndjson --labels
/// data/labels.ndjson` to score it as the live service would and see how well it ranks frauds.
#[derive(Debug, Parser)]
#[command(name = "vigil", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate synthetic transactions, chargeback labels and the ground truth (deterministic by seed)
    Generate(generate::GenerateArgs),
    /// Score transaction files in event-time order with the engine and report quality against labels
    Backtest(backtest::BacktestArgs),
    /// Rules: check a rules file; draft, test on history, approve and roll back the published
    /// rule sets the scoring service decides with
    #[command(subcommand)]
    Rules(rules::RulesCommand),
    /// Measure the engine's throughput and memory
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Run the whole pipeline here and stream generated payments through it, with a live line
    Demo(demo::DemoArgs),
    /// Create the database, tables and topics the services need (safe to run again)
    Migrate(ConfigArg),
    /// Run the HTTP intake, the scoring service and the investigator API in one process
    Serve(ConfigArg),
    /// Run the HTTP intake: POST /v1/transactions and /v1/labels to Kafka
    Ingest(ConfigArg),
    /// Run the scoring service: Kafka to decisions and alerts in Postgres, Redis and decisions.v1
    Score(ConfigArg),
    /// Run the investigator API: alert queue, verdicts, card risk, lists, keys (docs at /docs)
    Api(ConfigArg),
    /// Create, revoke and list API keys
    #[command(subcommand)]
    Keys(admin::KeysCommand),
    /// Check the audit trail
    #[command(subcommand)]
    Audit(admin::AuditCommand),
    /// Train a batch model (boosted trees) on labelled decisions or files, validate it on a
    /// later period and register it; a retraining job
    Train(train::TrainArgs),
    /// The model registry: list, show, promote, retire, export and import models
    #[command(subcommand)]
    Models(models::ModelsCommand),
    /// Produce transaction (and label) files to the topics in event-time order
    Replay(replay::ReplayArgs),
    /// Run an in-memory Kafka-protocol broker with the topics created (for tests and demos)
    DevBroker(broker::BrokerArgs),
}

#[derive(Debug, clap::Args)]
pub struct ConfigArg {
    /// Configuration file (default: ./vigil.toml when present); VIGIL__* variables override it,
    /// e.g. `VIGIL__KAFKA__BROKERS=host:9092` or `VIGIL__POSTGRES__URL=postgres://...`
    #[arg(long)]
    pub config: Option<PathBuf>,
}

impl ConfigArg {
    pub fn load(&self) -> Result<Config> {
        Config::load(self.config.as_deref())
    }
}

pub fn run() -> Result<()> {
    match Cli::parse().command {
        Command::Generate(args) => generate::run(&args),
        Command::Backtest(args) => backtest::run(&args).map(drop),
        Command::Rules(command) => rules::run(&command),
        Command::Bench(command) => bench::run(&command),
        Command::Demo(args) => demo::run(&args),
        Command::Migrate(args) => migrate::run(&args.load()?),
        Command::Serve(args) => serve::run(args.load()?, Services::All),
        Command::Ingest(args) => serve::run(args.load()?, Services::Ingest),
        Command::Score(args) => serve::run(args.load()?, Services::Score),
        Command::Api(args) => serve::run(args.load()?, Services::Api),
        Command::Keys(command) => admin::keys(&command),
        Command::Audit(command) => admin::audit(&command),
        Command::Train(args) => train::run(&args),
        Command::Models(command) => models::run(&command),
        Command::Replay(args) => replay::run(&args),
        Command::DevBroker(args) => broker::run(&args),
    }
}
