//! The engine's steady-state throughput on one core: a month of generated payments, the first
//! half to warm the state up, the second half measured (windows, features, rules, model score,
//! online updates from labels). `cargo bench -p vigil-scoring --bench engine`.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use vigil_ingest::generate::{GeneratorConfig, generate};
use vigil_ingest::read::{Format, Read, RecordReader};
use vigil_schema::{Label, Transaction};
use vigil_scoring::{Engine, EngineConfig, Event, LabelEvent, RuleSet};

enum Input {
    Transaction(Event),
    Label(LabelEvent),
}

impl Input {
    fn transaction(&self) -> Option<&Event> {
        match self {
            Input::Transaction(e) => Some(e),
            Input::Label(_) => None,
        }
    }
}

/// Generated transactions and labels merged in event-time order, as the backtest merges them.
fn inputs(cards: u32, merchants: u32, days: u32) -> Vec<Input> {
    let dir = tempfile::tempdir().unwrap();
    let config = GeneratorConfig {
        days,
        cards,
        merchants,
        seed: 3,
        start_ms: 1_767_225_600_000,
        genuine_labels: false,
        emerging_from_day: None,
        format: Format::Ndjson,
    };
    let summary = generate(&config, dir.path(), |_| {}).unwrap();
    let mut labels = vec![];
    let mut reader = RecordReader::open(&summary.labels_path, &Label::FIELDS).unwrap();
    while let Read::Record(l) = reader.next::<Label>().unwrap() {
        labels.push(LabelEvent::from(&l));
    }
    let mut labels = labels.into_iter().peekable();
    let mut out = vec![];
    let mut reader = RecordReader::open(&summary.transactions_path, &Transaction::FIELDS).unwrap();
    while let Read::Record(tx) = reader.next::<Transaction>().unwrap() {
        let e = Event::from(&tx);
        while let Some(l) =
            labels.next_if(|l| l.labelled_at.unix_millis() <= e.occurred_at.unix_millis())
        {
            out.push(Input::Label(l));
        }
        out.push(Input::Transaction(e));
    }
    out
}

fn run(engine: &mut Engine, inputs: &[Input]) {
    for (i, input) in inputs.iter().enumerate() {
        match input {
            Input::Transaction(e) => {
                let mut upcoming = inputs[i + 1..]
                    .iter()
                    .filter_map(Input::transaction)
                    .map(|e| (0, e));
                engine.prefetch(upcoming.next(), upcoming.next());
                black_box(engine.score(e));
            }
            Input::Label(l) => {
                black_box(engine.learn(l));
            }
        }
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("engine");
    group.sample_size(10);
    for (cards, merchants) in [(5_000, 500), (50_000, 5_000)] {
        let inputs = inputs(cards, merchants, 30);
        let (warm_up, measured) = inputs.split_at(inputs.len() / 2);
        let mut warm = Engine::new(EngineConfig::default(), RuleSet::default_rules()).unwrap();
        run(&mut warm, warm_up);
        let transactions = measured
            .iter()
            .filter(|i| matches!(i, Input::Transaction(_)))
            .count();
        group.throughput(Throughput::Elements(transactions as u64));
        group.bench_function(format!("score_warm_{cards}_cards"), |b| {
            // The engine is handed back so that criterion drops it outside the measurement:
            // freeing a clone is no part of scoring.
            b.iter_batched(
                || warm.clone(),
                |mut engine| {
                    run(&mut engine, measured);
                    engine
                },
                BatchSize::PerIteration,
            );
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
