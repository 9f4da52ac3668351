//! The engine's steady-state throughput on one core: a month of generated payments, the first
//! half to warm the state up, the second half measured (windows, features, rules, model score,
//! online updates from labels). `cargo bench -p vigil-scoring --bench engine`.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use vigil_ingest::generate::{GeneratorConfig, generate};
use vigil_ingest::read::{Format, Read, RecordReader};
use vigil_schema::{Label, Transaction};
use vigil_scoring::engine::replay::{Observer, Recorded};
use vigil_scoring::{Decision, Engine, EngineConfig, Event, LabelEvent, LabelOutcome, RuleSet};

/// Generated transactions and labels, each in its own time order.
fn stream(cards: u32, merchants: u32, days: u32) -> (Vec<Event>, Vec<(usize, LabelEvent)>) {
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
        labels.push((0, LabelEvent::from(&l)));
    }
    let mut transactions = vec![];
    let mut reader = RecordReader::open(&summary.transactions_path, &Transaction::FIELDS).unwrap();
    while let Read::Record(tx) = reader.next::<Transaction>().unwrap() {
        transactions.push(Event::from(&tx));
    }
    (transactions, labels)
}

/// Keeps the compiler from leaving out what is not looked at.
struct Discard;

impl Observer for Discard {
    type Error = std::convert::Infallible;

    fn learned(&mut self, _: &LabelEvent, outcome: LabelOutcome) {
        black_box(outcome);
    }

    fn scored(&mut self, _: &Event, _: &Engine, decision: Decision) {
        black_box(decision);
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("engine");
    group.sample_size(10);
    for (cards, merchants) in [(5_000, 500), (50_000, 5_000)] {
        let (transactions, labels) = stream(cards, merchants, 30);
        let recorded = Recorded {
            transactions: &transactions,
            labels: &labels,
        };
        let (warm_up, measured) = recorded.split_at(transactions.len() / 2);
        let mut warm = Engine::new(EngineConfig::default(), RuleSet::default_rules()).unwrap();
        let _ = warm_up.replay(&mut warm, &mut Discard);
        group.throughput(Throughput::Elements(measured.transactions.len() as u64));
        group.bench_function(format!("score_warm_{cards}_cards"), |b| {
            // The engine is handed back so that criterion drops it outside the measurement:
            // freeing a clone is no part of scoring.
            b.iter_batched(
                || warm.clone(),
                |mut engine| {
                    let _ = measured.replay(&mut engine, &mut Discard);
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
