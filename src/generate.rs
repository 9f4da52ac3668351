//! `vigil generate`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use vigil_ingest::generate::{GeneratorConfig, Summary, generate};
use vigil_ingest::read::Format;
use vigil_schema::Timestamp;

use vigil_app::{output, progress};

#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// Directory to write transactions, labels and truth.csv into (created if needed).
    #[arg(long)]
    pub out: PathBuf,
    /// Days of payments to simulate.
    #[arg(long, default_value_t = 60)]
    pub days: u32,
    /// Cards (about one customer in six has two).
    #[arg(long, default_value_t = 10_000)]
    pub cards: u32,
    /// Merchants, spread over nine regions and ten categories.
    #[arg(long, default_value_t = 1_000)]
    pub merchants: u32,
    /// The same seed gives the same files, byte for byte.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// First day (UTC).
    #[arg(long, default_value = "2026-01-01")]
    pub start: String,
    /// Also label every genuine transaction (source `import`, a week after it); by default only
    /// frauds are labelled, by chargebacks.
    #[arg(long)]
    pub genuine_labels: bool,
    /// From this day on (0 is the first), a newer fraud scheme strikes as well: remote access,
    /// the cardholder's own device driven by malware at night. Models trained on the days
    /// before have never seen it (drift). By default it never appears.
    #[arg(long, value_name = "DAY")]
    pub emerging_from: Option<u32>,
    /// File format.
    #[arg(long, value_enum, default_value = "ndjson")]
    pub format: FileFormat,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum FileFormat {
    Ndjson,
    Csv,
}

/// Generates NDJSON for `days` from 2026-01-01 with seed 1 into `dir` (for the benches and the
/// demo), with a progress bar.
pub fn sample(dir: &Path, days: u32, cards: u32, merchants: u32) -> Result<Summary> {
    let config = GeneratorConfig {
        days,
        cards,
        merchants,
        seed: 1,
        start_ms: 1_767_225_600_000,
        genuine_labels: false,
        emerging_from_day: None,
        format: Format::Ndjson,
    };
    with_progress(&config, dir)
}

fn with_progress(config: &GeneratorConfig, dir: &Path) -> Result<Summary> {
    let bar = progress::bar("generating", u64::from(config.days), "days");
    let summary = generate(config, dir, |day| bar.set_position(u64::from(day)))?;
    bar.finish_and_clear();
    Ok(summary)
}

pub fn run(args: &GenerateArgs) -> Result<()> {
    let start = Timestamp::parse(&format!("{}T00:00:00Z", args.start))
        .map_err(|e| anyhow::anyhow!("--start {}: {e} (write it as 2026-01-01)", args.start))?;
    let config = GeneratorConfig {
        days: args.days,
        cards: args.cards,
        merchants: args.merchants,
        seed: args.seed,
        start_ms: start.unix_millis(),
        genuine_labels: args.genuine_labels,
        emerging_from_day: args.emerging_from,
        format: match args.format {
            FileFormat::Ndjson => Format::Ndjson,
            FileFormat::Csv => Format::Csv,
        },
    };
    let summary = with_progress(&config, &args.out)
        .with_context(|| format!("generating into {}", args.out.display()))?;
    let mut lines = vec![format!(
        "{} transactions ({} fraudulent, {:.2}%), {} labels",
        summary.transactions,
        summary.frauds,
        100.0 * summary.frauds as f64 / summary.transactions.max(1) as f64,
        summary.labels
    )];
    for (scenario, n) in &summary.by_scenario {
        lines.push(format!("  {scenario:<22} {n:>8} fraudulent transactions"));
    }
    for path in [
        &summary.transactions_path,
        &summary.labels_path,
        &summary.truth_path,
    ] {
        lines.push(format!("wrote {}", path.display()));
    }
    output::print(lines.join("\n") + "\n")?;
    Ok(())
}
