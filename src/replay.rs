//! `vigil replay`: produces event files to the topics.

use std::path::PathBuf;

use anyhow::Result;
use vigil_common::kafka::producer;

use vigil_app::config::Config;
use vigil_app::{progress, serve};

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// Transactions, NDJSON or CSV.
    #[arg(long)]
    pub transactions: PathBuf,
    /// Labels, merged with the transactions by event time (`labelled_at`).
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Records a second; 0 for as fast as the broker takes them.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Configuration file (default: ./vigil.toml when present); VIGIL__* variables override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

pub fn run(args: &ReplayArgs) -> Result<()> {
    serve::init_logs();
    let config = Config::load(args.config.as_deref())?;
    // The records go to the topics as the intake would produce them: tokenized as the
    // services do, with their key.
    config.check_secrets()?;
    let producer = producer(&config.kafka.cluster(), &config.ingest.producer)?;
    let tokenizer = serve::tokenizer(&config);
    let bar = progress::counter("replayed");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let done = runtime.block_on(vigil_ingest::replay::replay(
        &producer,
        &tokenizer,
        &args.transactions,
        args.labels.as_deref(),
        args.rate,
        |n| bar.set_position(n),
    ))?;
    bar.finish_and_clear();
    for (file, bad) in &done.bad {
        eprintln!("{file}:{}: skipped: {}", bad.line, bad.message);
    }
    println!(
        "replayed {} transactions and {} labels to {}; {} bad lines skipped",
        done.transactions,
        done.labels,
        config.kafka.brokers,
        done.bad.len()
    );
    Ok(())
}
