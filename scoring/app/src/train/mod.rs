//! `vigil train`: a retraining job. Reads labelled decisions (from Postgres, or from the files
//! `vigil backtest` reads), fits boosted trees on a training period with the labels known at its
//! end, validates them on the period after it, registers the artifact as a candidate and, with
//! `--promote-if-better`, makes it the champion when it beats the current one on that same
//! validation period.

mod data;
pub mod schedule;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sqlx::PgPool;
use vigil_engine::{Engine, EngineConfig, ImplicitGenuine, Span};
use vigil_models::artifact::Period;
use vigil_models::evaluate::Evaluation;
use vigil_models::training::{self, Examples, Job};
use vigil_models::{Artifact, BoostedConfig};
use vigil_registry::{self as registry, RegistryError, Status};
use vigil_schema::Timestamp;

use crate::config::Config;
use crate::{backtest, db, output, progress};
use data::{Collected, Slice, Truth};

#[derive(Debug, clap::Args)]
#[allow(clippy::struct_excessive_bools)]
pub struct TrainArgs {
    /// Train from this transactions file (NDJSON or CSV, as `vigil backtest` reads) instead of
    /// the decisions in Postgres: a model before any live traffic.
    #[arg(long, requires = "labels")]
    pub transactions: Option<PathBuf>,
    /// The labels for `--transactions`.
    #[arg(long, requires = "transactions")]
    pub labels: Option<PathBuf>,
    /// Start of the training period, RFC 3339 [default: the first transaction (files), or
    /// `--days` before the validation period (Postgres)]
    #[arg(long, value_parser = parse_time)]
    pub from: Option<Timestamp>,
    /// End of the validation period (exclusive), RFC 3339 [default: just after the last
    /// transaction (files), or now (Postgres)]
    #[arg(long, value_parser = parse_time)]
    pub until: Option<Timestamp>,
    /// Length of the validation period, which ends at `--until`; training ends where it starts.
    /// `0d` trains on everything and validates nothing.
    #[arg(long, default_value = "7d", value_parser = Span::parse)]
    pub validation: Span,
    /// Length of the training period when `--from` is not given (Postgres).
    #[arg(long, default_value = "60d", value_parser = Span::parse)]
    pub days: Span,
    /// Share of genuine examples trained on (each weighing 1 / rate): frauds are rare, and most
    /// genuine payments teach little.
    #[arg(long, default_value_t = 0.2)]
    pub negative_sample_rate: f64,
    /// Trees in the ensemble.
    #[arg(long, default_value_t = BoostedConfig::default().trees)]
    pub trees: usize,
    /// Depth of each tree (interactions of up to this many features).
    #[arg(long, default_value_t = BoostedConfig::default().max_depth)]
    pub max_depth: usize,
    /// Shrinkage of each tree's output: smaller learns slower and overfits less.
    #[arg(long, default_value_t = BoostedConfig::default().learning_rate)]
    pub learning_rate: f64,
    /// Promote the new model to champion if its average precision on the validation period
    /// beats the current champion's on the same examples (or there is no champion).
    #[arg(long)]
    pub promote_if_better: bool,
    /// Do not register the model (with `--out`: train offline, without Postgres).
    #[arg(long, conflicts_with = "promote_if_better")]
    pub no_register: bool,
    /// Also write the artifact (JSON) here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also write the examples to this directory, as `training.csv` and `validation.csv`: the
    /// feature vectors by name, the label, the sampling weight, the day and the card's key, and
    /// for validation the new model's probability (`score`). To try another learner on exactly
    /// these examples.
    #[arg(long)]
    pub export_examples: Option<PathBuf>,
    /// Configuration file (default: ./vigil.toml when present); VIGIL__* variables override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

fn parse_time(s: &str) -> Result<Timestamp, String> {
    Timestamp::parse(s).map_err(|e| format!("`{s}` {e}"))
}

/// The periods a run trains and validates on, in unix seconds.
#[derive(Debug, Clone, Copy)]
struct Periods {
    from: i64,
    training_end: i64,
    until: i64,
}

impl Periods {
    fn period(from: i64, to: i64) -> Result<Period> {
        let at = |s: i64| Timestamp::from_unix_millis(s * 1000, 0).map_err(anyhow::Error::msg);
        Ok(Period {
            from: at(from)?,
            to: at(to)?,
        })
    }
}

pub fn run(args: &TrainArgs) -> Result<()> {
    if !(args.negative_sample_rate > 0.0 && args.negative_sample_rate <= 1.0) {
        bail!("--negative-sample-rate must be in (0, 1]");
    }
    if args.promote_if_better && args.validation.as_seconds() == 0 {
        bail!(
            "--promote-if-better compares models on the validation period: it needs --validation > 0"
        );
    }
    let config = Config::load(args.config.as_deref())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let pool = if args.no_register && args.transactions.is_some() {
        None
    } else {
        Some(runtime.block_on(db::connect(&config)).context(
            "the registry is in postgres; to train offline from files, use --no-register --out FILE",
        )?)
    };
    let (collected, periods) = match (&args.transactions, &args.labels, &pool) {
        (Some(transactions), Some(labels), _) => {
            let mut engine_config = config.engine.clone();
            // The vectors do not depend on the online model: no need to train it here.
            engine_config.learn_online = false;
            let engine = Engine::new(engine_config, backtest::load_rules(None)?)?;
            let collected = data::from_files(engine, transactions, labels)?;
            let (first, last) = collected.span().context("no transactions in the file")?;
            let until = args.until.map_or(last + 1, Timestamp::unix_seconds);
            let periods = periods(
                args,
                args.from.map_or(first, Timestamp::unix_seconds),
                until,
            );
            (collected, periods)
        }
        (_, _, Some(pool)) => {
            let until = args.until.map_or_else(now_seconds, Timestamp::unix_seconds);
            let default_from = until - args.validation.as_seconds() - args.days.as_seconds();
            let periods = periods(
                args,
                args.from.map_or(default_from, Timestamp::unix_seconds),
                until,
            );
            let window = Periods::period(periods.from, periods.until)?;
            let progress = progress::counter("reading decisions");
            let read = data::from_postgres(pool, (window.from, window.to), i64::MAX, &progress);
            let collected = runtime.block_on(read)?;
            progress.finish_and_clear();
            (collected, periods)
        }
        _ => bail!("--no-register needs --transactions and --labels"),
    };
    let (scored, bad_lines) = (collected.len(), collected.bad_lines);
    let (training_examples, validation_examples, read) =
        split(args, &config.engine, collected, periods);
    let artifact = fit(
        args,
        periods,
        &training_examples,
        &validation_examples,
        read,
    )?;
    let mut summary = describe(&artifact, &training_examples, &validation_examples);
    summary.insert(
        1,
        format!("read {scored} scored transactions ({bad_lines} bad lines skipped)"),
    );
    if let Some(path) = &args.out {
        std::fs::write(path, artifact.to_json())
            .with_context(|| format!("writing {}", path.display()))?;
        summary.push(format!("artifact written to {}", path.display()));
    }
    if let Some(dir) = &args.export_examples {
        export(dir, &artifact, &training_examples, &validation_examples)?;
        summary.push(format!("examples written to {}", dir.display()));
    }
    if let Some(pool) = &pool {
        runtime.block_on(registry::register(pool, &artifact))?;
        summary.push(format!("registered {} as a candidate", artifact.version));
        if args.promote_if_better {
            let verdict = runtime.block_on(promote_if_better(
                pool,
                &config,
                &artifact,
                &validation_examples,
            ))?;
            summary.push(verdict);
        }
    }
    output::print(summary.join("\n") + "\n")
}

/// Writes the examples, and the model's probabilities on validation, to `dir` as CSV.
fn export(
    dir: &Path,
    artifact: &Artifact,
    training: &Examples,
    validation: &Examples,
) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let write = |name: &str, examples: &Examples, scores: Option<&[f32]>| -> Result<()> {
        let path = dir.join(name);
        let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let mut out = BufWriter::new(file);
        examples
            .write_csv(&mut out, scores)
            .and_then(|()| out.flush())
            .with_context(|| format!("writing {}", path.display()))
    };
    write("training.csv", training, None)?;
    let scores = training::probabilities(&artifact.model, validation);
    write("validation.csv", validation, Some(&scores))
}

fn now_seconds() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Training ends where the validation period, `args.validation` long, ends at `until`.
fn periods(args: &TrainArgs, from: i64, until: i64) -> Periods {
    Periods {
        from,
        training_end: (until - args.validation.as_seconds()).max(from),
        until,
    }
}

/// Training examples labelled as known at the end of training (implicit genuine after the
/// engine's maturity, when the engine learns so); validation examples labelled with all that
/// is known now, a transaction never reported counting as genuine.
fn split(
    args: &TrainArgs,
    engine: &EngineConfig,
    collected: Collected,
    p: Periods,
) -> (Examples, Examples, u64) {
    let maturity =
        (engine.implicit_genuine != ImplicitGenuine::Never).then(|| engine.maturity.as_seconds());
    let training = Slice {
        from: p.from,
        to: p.training_end,
        truth: Truth {
            known_at: p.training_end,
            maturity,
        },
    };
    let validation = Slice {
        from: p.training_end,
        to: p.until,
        truth: Truth {
            known_at: i64::MAX - 1,
            maturity: Some(0),
        },
    };
    collected.split(training, validation, args.negative_sample_rate)
}

fn fit(
    args: &TrainArgs,
    p: Periods,
    training: &Examples,
    validation: &Examples,
    read: u64,
) -> Result<Artifact> {
    if training.frauds() == 0 {
        bail!(
            "no fraud is labelled among the {} training examples: nothing to learn",
            training.len()
        );
    }
    let config = BoostedConfig {
        trees: args.trees,
        max_depth: args.max_depth,
        learning_rate: args.learning_rate,
        ..BoostedConfig::default()
    };
    let now = chrono::Utc::now();
    let job = Job {
        version: format!(
            "gbt-{}-{:04x}",
            now.format("%Y%m%dT%H%M%S"),
            now.timestamp_subsec_nanos() & 0xffff
        ),
        code_version: concat!("vigil ", env!("CARGO_PKG_VERSION")).into(),
        created_at: Timestamp::from_unix_millis(now.timestamp_millis(), 0)
            .map_err(anyhow::Error::msg)?,
        training_period: Periods::period(p.from, p.training_end)?,
        negative_sample_rate: args.negative_sample_rate,
        examples_read: read,
        validation_period: (p.until > p.training_end)
            .then(|| Periods::period(p.training_end, p.until))
            .transpose()?,
        config,
    };
    let bar = progress::bar("training", args.trees as u64, "trees");
    let artifact = training::train(&job, training, validation, &|done| {
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    Ok(artifact)
}

fn describe(artifact: &Artifact, training: &Examples, validation: &Examples) -> Vec<String> {
    let t = &artifact.training;
    let mut lines = vec![
        format!("model {}", artifact.version),
        format!(
            "training {} to {}: {} labelled examples, {} frauds; trained on {} ({:.0}% of genuine) in {:.1} s",
            t.period.from,
            t.period.to,
            t.examples,
            t.frauds,
            training.len(),
            t.negative_sample_rate * 100.0,
            t.seconds
        ),
    ];
    match &artifact.validation {
        Some(v) => {
            lines.push(format!(
                "validation {} to {}: {} examples, {} frauds",
                v.period.from,
                v.period.to,
                validation.len(),
                validation.frauds()
            ));
            lines.push(metrics_line("  model", &v.evaluation));
            lines.push("  calibration (predicted -> observed fraud rate, examples):".into());
            for bin in &v.evaluation.calibration {
                lines.push(format!(
                    "    <= {:<6} {:>8.4} -> {:>8.4}  {:>9}",
                    bin.up_to, bin.mean_predicted, bin.observed_fraud_rate, bin.examples
                ));
            }
        }
        None => lines.push("no validation period (--validation 0d)".into()),
    }
    lines
}

fn metrics_line(what: &str, e: &Evaluation) -> String {
    let show = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.4}"));
    format!(
        "{what}: AUC-ROC {}, average precision {}, card precision@100 {}, Brier {:.5}, calibration error {:.5}",
        show(e.auc_roc),
        show(e.average_precision),
        show(e.card_precision_at_100),
        e.brier,
        e.expected_calibration_error
    )
}

/// Promotes `artifact` if it beats the champion's average precision on the same validation
/// examples; says what it did.
async fn promote_if_better(
    pool: &PgPool,
    config: &Config,
    artifact: &Artifact,
    validation: &Examples,
) -> Result<String> {
    let Some(new) = &artifact.validation else {
        bail!("--promote-if-better needs a validation period");
    };
    let new_ap = new.evaluation.average_precision.unwrap_or(0.0);
    let beaten = match registry::champion(pool).await? {
        None => "there was none".to_owned(),
        Some(version) => match registry::artifact(pool, &version).await {
            // A champion of another feature schema (an older Vigil's) cannot serve anyway.
            Err(RegistryError::Artifact(e)) => format!("champion {version} cannot be served: {e}"),
            Err(e) => return Err(e.into()),
            Ok(champion) => {
                let probabilities = training::probabilities(&champion.model, validation);
                let ap = validation
                    .evaluate(&probabilities)
                    .average_precision
                    .unwrap_or(0.0);
                if new_ap <= ap {
                    return Ok(format!(
                        "not promoted: average precision {new_ap:.4} does not beat champion \
                         {version}'s {ap:.4} on the same validation period"
                    ));
                }
                format!(
                    "average precision {new_ap:.4} beats {version}'s {ap:.4} on the same \
                     validation period"
                )
            }
        },
    };
    db::set_status(pool, config, &artifact.version, Status::Champion).await?;
    Ok(format!("promoted to champion: {beaten}"))
}
