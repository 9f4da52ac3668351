//! `vigil backtest`: runs the engine over transaction and label files in event-time order, as
//! the live stream would have, writes a score per transaction and reports quality.

mod report;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};
use std::time::Instant;

use anyhow::{Context, Result};
use vigil_engine::replay::{self, Observer};
use vigil_engine::{
    Decision, Engine, EngineStats, Event, LabelEvent, LabelOutcome, Retrained, Retrainer, RuleSet,
};
use vigil_models::Artifact;
use vigil_registry as registry;
use vigil_schema::Timestamp;

use crate::config::Config;
use crate::feed::{self, BadLines, Batch, LabelStream, Partitioner};
use crate::{db, output, progress};
pub use report::{Record, Report, Retraining};

#[derive(Debug, clap::Args)]
pub struct BacktestArgs {
    /// Transactions, NDJSON (.ndjson/.jsonl) or CSV (.csv), in rough time order.
    #[arg(long)]
    pub transactions: PathBuf,
    /// Labels (chargebacks, verdicts) in `labelled_at` order; with them, quality is reported.
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Configuration file (default: ./vigil.toml when present); VIGIL__* variables override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Rules file (default: the rules Vigil ships with, scoring/rules/default.toml).
    #[arg(long)]
    pub rules: Option<PathBuf>,
    /// Where to write one row per transaction: `transaction_id,score,decision,reasons`.
    #[arg(long, default_value = "scores.csv")]
    pub out: PathBuf,
    /// Also write the report as JSON here.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// A batch model to score with as champion, the online model learning on top: a registry
    /// version (read from the configured Postgres) or an artifact file (`vigil models export`).
    /// It takes over when its training period ends, as when promoted then: before, the online
    /// model alone scores, and no transaction is scored by a model trained on it.
    #[arg(long)]
    pub model: Option<String>,
    /// Report quality only on transactions from this day on (RFC 3339), e.g. the period after a
    /// model's training; the engine still runs over everything before it.
    #[arg(long, value_parser = parse_day)]
    pub evaluate_from: Option<i64>,
    /// Score as the live service with this many partitions does (default: `[kafka]
    /// partitions`): each transaction and label in the partition the intake would produce it
    /// to, one engine a partition, the model and merchants shared as `[engine] share_every`
    /// and `share_delay` say.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub partitions: Option<u16>,
}

/// The UTC day of an RFC 3339 time.
fn parse_day(s: &str) -> Result<i64, String> {
    Timestamp::parse(s)
        .map(Timestamp::utc_day)
        .map_err(|e| format!("`{s}` {e}"))
}

/// A champion by registry version or artifact file.
fn load_model(config: &Config, model: &str) -> Result<Artifact> {
    let path = Path::new(model);
    if path.is_file() {
        let bytes = std::fs::read(path).with_context(|| format!("reading {model}"))?;
        return Artifact::from_json(&bytes).with_context(|| format!("{model} cannot be served"));
    }
    db::block_on(config, async |pool| {
        Ok(registry::artifact(&pool, model).await?)
    })
    .with_context(|| format!("`{model}` is no file; reading it from the registry"))
}

pub fn load_rules(path: Option<&Path>) -> Result<RuleSet> {
    let Some(path) = path else {
        return Ok(RuleSet::default_rules());
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(RuleSet::parse(&text, &path.display().to_string())?)
}

pub fn run(args: &BacktestArgs) -> Result<Report> {
    let config = Config::load(args.config.as_deref())?;
    let champion = args
        .model
        .as_deref()
        .map(|m| load_model(&config, m))
        .transpose()?;
    let partitions = args
        .partitions
        .map_or(config.kafka.partitions.max(1) as u32, u32::from);
    let by = Partitioner {
        tokenizer: crate::serve::tokenizer(&config),
        partitions,
        max_ahead_secs: config.scoring.max_ahead_secs,
    };
    let rules = load_rules(args.rules.as_deref())?;
    let engine = Engine::partitioned(config.engine, rules, partitions as usize)?;
    let started = Instant::now();
    let mut run = Run::new(engine, champion.map(Arc::new));
    std::thread::scope(|scope| run.stream(scope, args, &by))?;
    let report = Report::build(
        &run,
        args.labels.is_some(),
        args.evaluate_from,
        started.elapsed(),
    );
    output::print(&report)?;
    if let Some(path) = &args.report {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(report)
}

/// The state of one backtest run.
#[derive(Debug)]
pub struct Run {
    pub engine: Engine,
    pub observed: Observed,
    pub bad_transactions: u64,
    pub bad_labels: u64,
}

/// What the backtest does around the engine's work, and what it keeps of it.
#[derive(Debug)]
pub struct Observed {
    /// The champion, until it takes over.
    champion: Option<Arc<Artifact>>,
    /// The schedule of the engine's own champions (`[engine.retrain]`), unless off.
    retrainer: Option<Retrainer>,
    pub retrainings: Vec<Retraining>,
    pub records: Vec<Record>,
    /// The truth as the labels file finally tells it: (transaction key, is fraud).
    pub truth: Vec<(u64, bool)>,
    /// The decisions of the batch being scored.
    decisions: Vec<Decision>,
}

/// Scored transactions on their way to the writer thread.
type Scored = (Batch<Event>, Vec<Decision>);

impl Run {
    fn new(engine: Engine, champion: Option<Arc<Artifact>>) -> Self {
        Self {
            observed: Observed {
                retrainer: Retrainer::new(&engine),
                champion,
                retrainings: vec![],
                records: vec![],
                truth: vec![],
                decisions: vec![],
            },
            engine,
            bad_transactions: 0,
            bad_labels: 0,
        }
    }

    pub fn stats(&self) -> EngineStats {
        self.engine.stats()
    }

    /// Reads (one thread per file), scores (this thread) and writes (one more thread) at once.
    fn stream<'s>(
        &mut self,
        scope: &'s std::thread::Scope<'s, '_>,
        args: &BacktestArgs,
        by: &Partitioner,
    ) -> Result<()> {
        let feed = feed::transactions(scope, &args.transactions, by.clone())?;
        let mut labels = LabelStream::new(scope, args.labels.as_deref(), by.clone())?;
        let (to_writer, from_scoring) = sync_channel::<Scored>(8);
        let rules = self.engine.rules().clone();
        let out = args.out.clone();
        let writer = scope.spawn(move || write_scores(&out, &rules, &from_scoring));

        let mut bad = BadLines::new(&args.transactions);
        let progress = progress::counter("scoring");
        for batch in feed {
            let batch = batch?;
            batch.bad.iter().for_each(|b| bad.record(b));
            self.observed.decisions = Vec::with_capacity(batch.events.len());
            let (events, partitions) = (&batch.events, &batch.partitions);
            replay::replay(
                &mut self.engine,
                &mut labels,
                events,
                partitions,
                &mut self.observed,
            )?;
            progress.inc(batch.events.len() as u64);
            let decisions = std::mem::take(&mut self.observed.decisions);
            if to_writer.send((batch, decisions)).is_err() {
                break; // The writer failed; its error is reported below.
            }
        }
        drop(to_writer);
        replay::finish(&mut self.engine, &mut labels, &mut self.observed)?;
        progress.finish_and_clear();
        self.bad_transactions = bad.count;
        self.bad_labels = labels.bad.map_or(0, |b| b.count);
        writer
            .join()
            .map_err(|_| anyhow::anyhow!("the score writer panicked"))?
    }
}

impl Observer for Observed {
    type Error = anyhow::Error;

    /// Hands over to the champion once its training period has ended; trains one when due.
    fn before(&mut self, engine: &mut Engine, at: Timestamp) -> Result<()> {
        if self
            .champion
            .as_ref()
            .is_some_and(|c| c.training.period.to <= at)
        {
            engine.set_champion(self.champion.take());
        }
        self.retrain_at(engine, at)
    }

    fn learned(&mut self, label: &LabelEvent, _: LabelOutcome) {
        self.truth.push((label.transaction, label.is_fraud));
    }

    fn scored(&mut self, event: &Event, _: &Engine, decision: Decision) {
        self.records.push(Record::new(event, &decision));
        self.decisions.push(decision);
    }
}

impl Observed {
    /// Trains a champion from what the engine knows, when one is due, and serves it from the
    /// next transaction on if it beats the one in force.
    fn retrain_at(&mut self, engine: &mut Engine, now: Timestamp) -> Result<()> {
        let Some(retrainer) = &mut self.retrainer else {
            return Ok(());
        };
        if !retrainer.due(now.unix_seconds()) {
            return Ok(());
        }
        let outcome = retrainer.retrain(engine, now.unix_seconds())?;
        self.retrainings.push(Retraining::new(now, &outcome));
        if let Retrained::Promoted(candidate) = outcome {
            engine.set_champion(Some(Arc::new(candidate.artifact)));
        }
        Ok(())
    }
}

/// Writes `transaction_id,score,decision,reasons` rows as scored batches arrive.
fn write_scores(path: &Path, rules: &RuleSet, scored: &Receiver<Scored>) -> Result<()> {
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut reasons = String::new();
    let mut write = || -> std::io::Result<()> {
        writeln!(out, "transaction_id,score,decision,reasons")?;
        for (batch, decisions) in scored {
            for (i, decision) in decisions.iter().enumerate() {
                reasons.clear();
                decision.write_reasons(rules, &mut reasons, false);
                writeln!(
                    out,
                    "{},{:.6},{},{reasons}",
                    batch.id(i),
                    decision.score,
                    decision.action.as_str()
                )?;
            }
        }
        out.flush()
    };
    write().with_context(|| format!("writing {}", path.display()))
}
