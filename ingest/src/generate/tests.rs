use super::*;
use std::collections::{HashMap, HashSet};

use crate::read::{Read, RecordReader};

fn config(format: Format) -> GeneratorConfig {
    GeneratorConfig {
        days: 20,
        cards: 800,
        merchants: 120,
        seed: 7,
        start_ms: 1_767_225_600_000,
        genuine_labels: false,
        emerging_from_day: None,
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
    let busier = GeneratorConfig {
        cards: 2_000,
        ..config(Format::Ndjson)
    };
    let summary = generate(&busier, dir.path(), |_| {}).unwrap();
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
        "leaked_card_number",
    ] {
        assert!(
            summary.by_scenario.get(scenario).is_some_and(|&n| n > 0),
            "{scenario}: {:?}",
            summary.by_scenario
        );
    }

    let mut reader = RecordReader::open(&summary.transactions_path, &Transaction::FIELDS).unwrap();
    let (mut last, mut seen) = (i64::MIN, HashMap::new());
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

/// Each transaction in the file as its JSON text, with its time.
fn transactions(path: &Path) -> Vec<(i64, String)> {
    let mut reader = RecordReader::open(path, &Transaction::FIELDS).unwrap();
    let mut all = vec![];
    while let Read::Record(tx) = reader.next::<Transaction>().unwrap() {
        all.push((
            tx.occurred_at.unix_millis(),
            serde_json::to_string(&tx).unwrap(),
        ));
    }
    all
}

#[test]
fn the_emerging_scheme_starts_on_its_day_from_the_cardholders_own_device_at_night() {
    let from_day = 7;
    let stationary = GeneratorConfig {
        days: 14,
        cards: 3_000,
        ..config(Format::Ndjson)
    };
    let drifting = GeneratorConfig {
        emerging_from_day: Some(from_day),
        ..stationary.clone()
    };
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let before = generate(&stationary, a.path(), |_| {}).unwrap();
    let after = generate(&drifting, b.path(), |_| {}).unwrap();
    assert_eq!(before.by_scenario.get("remote_access"), None);
    let emerged = after.by_scenario.get("remote_access").copied().unwrap_or(0);
    assert!(emerged > 5, "{:?}", after.by_scenario);

    // Nothing changes before the scheme's day (whose first hours, east of UTC, start the day
    // before in UTC).
    let start = stationary.start_ms + i64::from(from_day - 1) * DAY_MS;
    let until_start = |all: Vec<(i64, String)>| -> Vec<String> {
        all.into_iter()
            .take_while(|(t, _)| *t < start)
            .map(|(_, json)| json)
            .collect()
    };
    let same = until_start(transactions(&before.transactions_path));
    assert!(same.len() > 10_000);
    assert_eq!(same, until_start(transactions(&after.transactions_path)));

    let truth = std::fs::read_to_string(&after.truth_path).unwrap();
    let schemed: HashSet<&str> = truth
        .lines()
        .filter(|line| line.ends_with(",remote_access"))
        .map(|line| line.split(',').next().unwrap())
        .collect();
    assert_eq!(schemed.len() as u64, emerged);
    let mut reader = RecordReader::open(&after.transactions_path, &Transaction::FIELDS).unwrap();
    while let Read::Record(tx) = reader.next::<Transaction>().unwrap() {
        if !schemed.contains(tx.transaction_id.as_str()) {
            continue;
        }
        assert!(tx.occurred_at.unix_millis() >= start);
        assert!(tx.occurred_at.local_hour() < 10, "{tx:?}");
        assert_eq!(tx.channel, Some(Channel::Ecom));
        let own = tx.card_id.as_str().replace("card_", "dev_");
        assert_eq!(tx.device_id.map(|d| d.to_string()), Some(own));
    }
}

/// Compromised merchants are defrauded for weeks, and a leaked card number is used online for
/// about two weeks, at inflated amounts, shipped far from home.
#[test]
fn compromised_merchants_and_leaked_numbers_last_weeks() {
    let long = GeneratorConfig {
        days: 60,
        cards: 3_000,
        merchants: 1_000,
        ..config(Format::Ndjson)
    };
    let dir = tempfile::tempdir().unwrap();
    let summary = generate(&long, dir.path(), |_| {}).unwrap();
    let truth = std::fs::read_to_string(&summary.truth_path).unwrap();
    let mut spans: HashMap<(&str, &str), (i64, i64)> = HashMap::default();
    let mut leaked = HashSet::new();
    for line in truth.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let (id, card, merchant, at, scenario) = (f[0], f[1], f[2], f[3], f[4]);
        let key = match scenario {
            "compromised_merchant" => (scenario, merchant),
            "leaked_card_number" => {
                leaked.insert(id.to_owned());
                (scenario, card)
            }
            _ => continue,
        };
        let t = Timestamp::parse(at).unwrap().unix_millis() / DAY_MS;
        let span = spans.entry(key).or_insert((t, t));
        *span = (span.0.min(t), span.1.max(t));
    }
    let days_spanned = |scenario: &str| -> Vec<i64> {
        let mut spans: Vec<i64> = spans
            .iter()
            .filter(|((s, _), _)| *s == scenario)
            .map(|(_, (first, last))| last - first)
            .collect();
        spans.sort_unstable();
        spans
    };
    let merchants = days_spanned("compromised_merchant");
    assert!(merchants.last().is_some_and(|&d| d >= 14), "{merchants:?}");
    // A card struck twice spans more; a leak whose fraudster bought on one day only, less.
    let cards = days_spanned("leaked_card_number");
    assert!((7..=19).contains(&cards[cards.len() / 2]), "{cards:?}");

    assert!(leaked.len() > 20, "{}", leaked.len());
    let end = long.start_ms + i64::from(long.days) * DAY_MS;
    let mut reader = RecordReader::open(&summary.transactions_path, &Transaction::FIELDS).unwrap();
    while let Read::Record(tx) = reader.next::<Transaction>().unwrap() {
        assert!(
            tx.occurred_at.unix_millis() < end,
            "nothing past the period: {tx:?}"
        );
        if leaked.contains(tx.transaction_id.as_str()) {
            assert_eq!(tx.channel, Some(Channel::Ecom));
            assert_eq!(tx.device_id, None);
        }
    }
}
