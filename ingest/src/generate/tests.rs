use super::*;
use crate::read::{Read, RecordReader};

fn config(format: Format) -> GeneratorConfig {
    GeneratorConfig {
        days: 20,
        cards: 800,
        merchants: 120,
        seed: 7,
        start_ms: 1_767_225_600_000,
        genuine_labels: false,
        format,
    }
}

fn bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

#[test]
fn same_seed_same_files() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = generate(&config(Format::Ndjson), a.path(), |_| {}).unwrap();
    generate(&config(Format::Ndjson), b.path(), |_| {}).unwrap();
    for name in ["transactions.ndjson", "labels.ndjson", "truth.csv"] {
        assert_eq!(
            bytes(&a.path().join(name)),
            bytes(&b.path().join(name)),
            "{name} differs"
        );
    }
    let other = tempfile::tempdir().unwrap();
    generate(
        &GeneratorConfig {
            seed: 8,
            ..config(Format::Ndjson)
        },
        other.path(),
        |_| {},
    )
    .unwrap();
    assert_ne!(
        bytes(&a.path().join("transactions.ndjson")),
        bytes(&other.path().join("transactions.ndjson"))
    );
    assert!(
        first.transactions > 20 * 800,
        "about two a day per card: {}",
        first.transactions
    );
}

#[test]
fn files_are_valid_sorted_and_labels_follow_their_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let summary = generate(&config(Format::Ndjson), dir.path(), |_| {}).unwrap();
    let fraud_share = summary.frauds as f64 / summary.transactions as f64;
    assert!(
        (0.001..0.02).contains(&fraud_share),
        "fraud share {fraud_share}"
    );
    for scenario in [
        "card_testing",
        "account_takeover",
        "stolen_card_spree",
        "velocity_burst",
    ] {
        assert!(
            summary.by_scenario.get(scenario).is_some_and(|&n| n > 0),
            "{scenario}: {:?}",
            summary.by_scenario
        );
    }

    let mut reader = RecordReader::open(&summary.transactions_path, &Transaction::FIELDS).unwrap();
    let (mut last, mut seen) = (i64::MIN, std::collections::HashMap::new());
    while let Read::Record(tx) = reader.next::<Transaction>().unwrap() {
        let t = tx.occurred_at.unix_millis();
        assert!(t >= last, "transactions are sorted by time");
        last = t;
        seen.insert(tx.transaction_id.to_string(), t);
    }
    assert_eq!(seen.len() as u64, summary.transactions);

    let mut reader = RecordReader::open(&summary.labels_path, &Label::FIELDS).unwrap();
    let (mut last, mut labels) = (i64::MIN, 0);
    loop {
        match reader.next::<Label>().unwrap() {
            Read::Record(label) => {
                let t = label.labelled_at.unix_millis();
                assert!(t >= last, "labels are sorted by time");
                last = t;
                let occurred = seen[label.transaction_id.as_str()];
                assert!(
                    t > occurred + DAY_MS,
                    "a chargeback comes days after the payment"
                );
                assert!(label.is_fraud);
                labels += 1;
            }
            Read::Bad(bad) => panic!("bad label {bad:?}"),
            Read::End => break,
        }
    }
    assert_eq!(labels, summary.frauds, "every fraud is charged back");
}

#[test]
fn csv_holds_the_same_transactions_as_ndjson() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let small = |format| GeneratorConfig {
        days: 3,
        cards: 50,
        genuine_labels: true,
        ..config(format)
    };
    let json = generate(&small(Format::Ndjson), a.path(), |_| {}).unwrap();
    let csv = generate(&small(Format::Csv), b.path(), |_| {}).unwrap();
    let mut from_json = RecordReader::open(&json.transactions_path, &Transaction::FIELDS).unwrap();
    let mut from_csv = RecordReader::open(&csv.transactions_path, &Transaction::FIELDS).unwrap();
    loop {
        match (
            from_json.next::<Transaction>().unwrap(),
            from_csv.next::<Transaction>().unwrap(),
        ) {
            (Read::Record(x), Read::Record(y)) => assert_eq!(x, y),
            (Read::End, Read::End) => break,
            other => panic!("files differ: {other:?}"),
        }
    }
    assert!(
        json.labels > json.frauds,
        "genuine labels are written when asked for"
    );
}
