//! `vigil bench`: the engine's throughput and memory, measured the way BENCHMARKS.md reports them.

use std::path::Path;
use std::time::Instant;

use anyhow::{Result, bail};
use clap::Subcommand;
use vigil_engine::key;
use vigil_engine::replay::{Labels, Observer, Recorded};
use vigil_engine::{Decision, Engine, EngineConfig, Event, LabelEvent, RuleSet};
use vigil_schema::{Channel, Country, Currency, Timestamp};

use crate::alloc;
use vigil_app::config::Config;
use vigil_app::feed::Partitioner;
use vigil_app::{feed, progress};

mod api;
mod pipeline;
mod rules;
mod service;

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Engine throughput on one core (windows, features, rules, model score, online updates) over
    /// generated transactions and labels held in memory, in event-time order
    Engine {
        #[arg(long, default_value_t = 20_000)]
        cards: u32,
        #[arg(long, default_value_t = 2_000)]
        merchants: u32,
        #[arg(long, default_value_t = 30)]
        days: u32,
        /// Runs over the same events, each from an empty engine; the medians are reported, over
        /// the whole run and over its second half (the engine warm).
        #[arg(long, default_value_t = 5)]
        runs: u32,
    },
    /// Heap bytes of engine state per active card at a given number of cards (counting allocator:
    /// a build with `--features bench-memory`)
    Memory {
        #[arg(long, default_value_t = 1_000_000)]
        cards: u32,
        #[arg(long, default_value_t = 10_000)]
        merchants: u32,
    },
    /// The live pipeline on this machine: broker, scoring service and the Postgres/Redis
    /// commit; throughput against the raw consume rate, latency, recovery after kill -9, memory
    Pipeline(pipeline::PipelineArgs),
    /// The investigator API under concurrent clients: the alert queue (filtered, paginated) over
    /// a million alerts in Postgres, and card risk from Redis
    Api(api::ApiArgs),
    /// A rule tested on history (`POST /v1/rules/{id}/test`) over millions of stored decisions
    Rules(rules::RulesArgs),
}

pub fn run(command: &BenchCommand) -> Result<()> {
    match *command {
        BenchCommand::Engine {
            cards,
            merchants,
            days,
            runs,
        } => engine(cards, merchants, days, runs),
        BenchCommand::Memory { cards, merchants } => memory(cards, merchants),
        BenchCommand::Pipeline(ref args) => pipeline::run(args),
        BenchCommand::Api(ref args) => api::run(args),
        BenchCommand::Rules(ref args) => rules::run(args),
    }
}

fn engine(cards: u32, merchants: u32, days: u32, runs: u32) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let summary = crate::generate::sample(dir.path(), days, cards, merchants)?;
    let (transactions, labels) = load(&summary.transactions_path, &summary.labels_path)?;
    let stream = Recorded {
        transactions: &transactions,
        labels: &labels,
    };
    let transactions = transactions.len();
    println!(
        "engine: {transactions} transactions and {} labels, {cards} cards, {merchants} merchants, {days} days",
        labels.len()
    );

    // The second half is also timed on its own: the engine warm, as a service runs it, and
    // never cloned (criterion's warm bench clones it for every sample).
    let (first_half, second_half) = stream.split_at(transactions / 2);
    let mut from_empty = vec![];
    let mut warm = vec![];
    for run in 1..=runs {
        let mut engine = Engine::new(Config::load(None)?.engine, RuleSet::default_rules())?;
        let started = Instant::now();
        let mut alerts = Alerts(0);
        first_half.replay(&mut engine, &mut alerts)?;
        let halfway = Instant::now();
        second_half.replay(&mut engine, &mut alerts)?;
        let rate = transactions as f64 / started.elapsed().as_secs_f64();
        let warm_rate = second_half.transactions.len() as f64 / halfway.elapsed().as_secs_f64();
        println!(
            "  run {run}: {rate:>10.0} transactions/s from empty, {warm_rate:>10.0} over the \
             second half ({} alerts, {} model updates)",
            alerts.0,
            engine.stats().model_updates
        );
        from_empty.push(rate);
        warm.push(warm_rate);
    }
    let median = |rates: &mut Vec<f64>| {
        rates.sort_by(f64::total_cmp);
        rates[rates.len() / 2]
    };
    println!(
        "median {:.0} transactions/s from empty, {:.0} warm (one core)",
        median(&mut from_empty),
        median(&mut warm)
    );
    Ok(())
}

/// Counts the alerts raised.
struct Alerts(u64);

impl Observer for Alerts {
    type Error = anyhow::Error;

    fn scored(&mut self, _: &Event, _: &Engine, decision: Decision) {
        self.0 += u64::from(decision.action.is_alert());
    }
}

/// Transactions, and labels with their partitions, each in file order.
type Loaded = (Vec<Event>, Vec<(usize, LabelEvent)>);

/// Reads both files fully.
fn load(transactions: &Path, labels: &Path) -> Result<Loaded> {
    std::thread::scope(|scope| {
        let mut events = vec![];
        for batch in feed::transactions(scope, transactions, Partitioner::one())? {
            let batch = batch?;
            if let Some(bad) = batch.bad.first() {
                bail!("{}:{}: {}", transactions.display(), bad.line, bad.message);
            }
            events.extend(batch.events);
        }
        let mut stream = feed::LabelStream::new(scope, Some(labels), Partitioner::one())?;
        let mut labels = vec![];
        while let Some(label) = stream.next_known_by(None)? {
            labels.push(label);
        }
        Ok((events, labels))
    })
}

const TRANSACTIONS_PER_CARD: u32 = 3;

fn memory(cards: u32, merchants: u32) -> Result<()> {
    if !cfg!(feature = "bench-memory") {
        bail!(
            "heap bytes are counted by an allocator only a benchmark build has: \
             cargo build --release --features bench-memory"
        );
    }
    println!(
        "memory: {cards} cards, {merchants} merchants, {TRANSACTIONS_PER_CARD} transactions per card over 3 days"
    );
    let with_customers = state_bytes(cards, merchants, true, 1)?;
    let cards_only = state_bytes(cards, merchants, false, 1)?;
    let per_card = |bytes: usize| bytes as f64 / f64::from(cards);
    println!(
        "  card + its own customer (worst case): {:>8.0} bytes per card",
        per_card(with_customers)
    );
    println!(
        "  card only (no customer_id):           {:>8.0} bytes per card",
        per_card(cards_only)
    );
    let kept = cards * TRANSACTIONS_PER_CARD;
    let with_pending = state_bytes(cards, merchants, true, kept as usize)?;
    println!(
        "  feature vectors kept for labels:      {:>8.0} bytes per transaction kept",
        (with_pending - with_customers) as f64 / f64::from(kept)
    );
    Ok(())
}

/// Live heap bytes of an engine after `cards` cards each made a few transactions.
fn state_bytes(
    cards: u32,
    merchants: u32,
    customers: bool,
    max_pending_labels: usize,
) -> Result<usize> {
    let before = alloc::live_bytes();
    let config = EngineConfig {
        max_pending_labels,
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(config, RuleSet::default_rules())?;
    let bar = progress::bar("feeding", u64::from(TRANSACTIONS_PER_CARD), "days");
    let countries = ["US", "GB", "DE", "FR", "BR"].map(|c| Country::parse(c).expect("valid"));
    let usd = Currency::parse("USD").expect("valid");
    for day in 0..TRANSACTIONS_PER_CARD {
        for card in 0..cards {
            let seconds = 1_767_225_600
                + i64::from(day) * 86_400
                + i64::from(card) * 86_400 / i64::from(cards);
            let event = Event {
                transaction: key(&format!("{day}-{card}")),
                occurred_at: Timestamp::from_unix_millis(seconds * 1000, 0).expect("valid"),
                card: key(&format!("card-{card}")),
                customer: customers.then(|| key(&format!("customer-{card}"))),
                merchant: u64::from((card.wrapping_mul(2_654_435_761) ^ day) % merchants),
                device: Some(key(&format!("device-{card}"))),
                amount_minor: 1_000 + u64::from(card % 97) * 100,
                currency: usd,
                country: Some(countries[(card % 5) as usize]),
                mcc: None,
                channel: Some(Channel::Ecom),
                geo: Some((40.0 + f64::from(card % 10), -74.0)),
            };
            engine.score(&event);
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let live = engine.size().cards;
    if live != cards as usize {
        bail!("{live} cards are live, not {cards}: the measurement would not be per card");
    }
    Ok(alloc::live_bytes() - before)
}
