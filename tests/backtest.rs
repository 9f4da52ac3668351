//! The backtest end to end: generated data in, scores and a quality report out.

mod common;

use common::{ok, path, vigil};
use serde_json::Value;

/// Generates a data set into `dir` with the given cards, days and seed.
fn generate(dir: &std::path::Path, cards: u32, days: u32, seed: u64, extra: &[&str]) {
    let (cards, days, seed) = (cards.to_string(), days.to_string(), seed.to_string());
    let mut args = vec![
        "generate",
        "--out",
        path(dir),
        "--cards",
        &cards,
        "--days",
        &days,
    ];
    args.extend(["--merchants", "300", "--seed", &seed]);
    args.extend(extra);
    ok(&args);
}

fn backtest(dir: &std::path::Path, ext: &str, extra: &[&str]) -> (Value, String) {
    let (tx, labels) = (
        dir.join(format!("transactions.{ext}")),
        dir.join(format!("labels.{ext}")),
    );
    let (scores, report) = (dir.join("scores.csv"), dir.join("report.json"));
    let mut args = vec![
        "backtest",
        "--transactions",
        path(&tx),
        "--labels",
        path(&labels),
    ];
    args.extend(["--out", path(&scores), "--report", path(&report)]);
    args.extend(extra);
    ok(&args);
    let report: Value = serde_json::from_str(&std::fs::read_to_string(report).unwrap()).unwrap();
    (report, std::fs::read_to_string(scores).unwrap())
}

#[test]
fn frauds_rank_far_above_genuine_transactions() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), 2_500, 35, 11, &[]);
    let (report, _) = backtest(dir.path(), "ndjson", &[]);
    let q = &report["quality"];
    let auc = q["engine"]["auc_roc"].as_f64().unwrap();
    let ap = q["engine"]["average_precision"].as_f64().unwrap();
    let baseline_ap = q["amount_baseline"]["average_precision"].as_f64().unwrap();
    // Five weeks of 2,500 cards: the first week, before any label, weighs on the whole.
    assert!(auc > 0.85, "AUC-ROC {auc}");
    // Leaked card numbers are spent at inflated amounts, which the amount threshold ranks too.
    assert!(
        ap > 2.0 * baseline_ap,
        "AP {ap} against the amount threshold's {baseline_ap}"
    );

    // The model learns from chargebacks as they arrive: it ranks far better in the last full
    // week than in the first, when it had seen no label yet.
    let weeks = q["weeks"].as_array().unwrap();
    let model_ap = |w: &Value| w["model_only"]["average_precision"].as_f64().unwrap_or(0.0);
    let (first, last) = (model_ap(&weeks[0]), model_ap(&weeks[weeks.len() - 2]));
    assert!(
        last > first + 0.3,
        "model AP week 1: {first}, last full week: {last}"
    );

    // By default the engine trains champions of its own as the stream goes, and serves one
    // that beats the champion in force (none at first); `every = "0d"` turns that off.
    let retrainings = report["retrainings"].as_array().unwrap();
    assert!(
        retrainings.iter().any(|r| r["outcome"] == "promoted"
            && r["version"].as_str().unwrap().starts_with("gbt-auto-")),
        "{retrainings:?}"
    );
    let config = dir.path().join("vigil.toml");
    std::fs::write(&config, "[engine.retrain]\nevery = \"0d\"\n").unwrap();
    let (report, _) = backtest(dir.path(), "ndjson", &["--config", path(&config)]);
    assert_eq!(report["retrainings"], serde_json::json!([]));
}

#[test]
fn same_input_same_scores_and_csv_matches_ndjson() {
    let (json_dir, csv_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    generate(json_dir.path(), 400, 20, 5, &[]);
    generate(csv_dir.path(), 400, 20, 5, &["--format", "csv"]);
    let (first_report, first) = backtest(json_dir.path(), "ndjson", &[]);
    let (_, again) = backtest(json_dir.path(), "ndjson", &[]);
    assert_eq!(first, again, "a second run scores bit for bit the same");
    let (_, from_csv) = backtest(csv_dir.path(), "csv", &[]);
    assert_eq!(first, from_csv, "CSV input scores the same as NDJSON");
    let rows = first.lines().count() as u64 - 1;
    assert_eq!(rows, first_report["transactions"].as_u64().unwrap());
}

/// A merchant's confirmed frauds count only once their labels are known: no leakage.
#[test]
fn labels_are_used_only_from_their_label_time() {
    let dir = tempfile::tempdir().unwrap();
    let tx = |i: u32, minute: u32| {
        let (h, m) = (minute / 60, minute % 60);
        format!(
            r#"{{"transaction_id":"t{i}","occurred_at":"2026-02-0{}T{:02}:{m:02}:00Z","card_id":"c{i}","merchant_id":"shop","amount_minor":2500,"currency":"EUR"}}"#,
            1 + h / 24,
            h % 24
        )
    };
    let mut lines: Vec<String> = (0..10).map(|i| tx(i, i)).collect();
    lines.push(tx(10, 24 * 60 - 1)); // a minute before the labels are known
    lines.push(tx(11, 24 * 60 + 1)); // a minute after
    std::fs::write(dir.path().join("transactions.ndjson"), lines.join("\n")).unwrap();
    let labels: Vec<String> = (0..5)
        .map(|i| {
            format!(r#"{{"transaction_id":"t{i}","card_id":"c{i}","is_fraud":true,"labelled_at":"2026-02-02T00:00:00Z","source":"chargeback"}}"#)
        })
        .collect();
    std::fs::write(dir.path().join("labels.ndjson"), labels.join("\n")).unwrap();
    let (_, scores) = backtest(dir.path(), "ndjson", &[]);
    let flagged: Vec<&str> = scores
        .lines()
        .filter(|l| l.contains("MERCHANT_RECENT_FRAUDS"))
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(flagged, ["t11"]);
}

#[test]
fn bad_lines_are_reported_with_their_number_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let good = |id: &str| {
        format!(
            r#"{{"transaction_id":"{id}","occurred_at":"2026-02-01T10:00:00Z","card_id":"c","merchant_id":"m","amount_minor":100,"currency":"USD"}}"#
        )
    };
    let bad = r#"{"transaction_id":"b","occurred_at":"2026-02-01T10:00:00Z","card_id":"c","merchant_id":"m","amount_minor":"ten","currency":"USD"}"#;
    let file = dir.path().join("tx.ndjson");
    std::fs::write(
        &file,
        [good("a"), bad.to_owned(), "{".to_owned(), good("c")].join("\n"),
    )
    .unwrap();
    let scores = dir.path().join("scores.csv");
    let out = vigil(&[
        "backtest",
        "--transactions",
        path(&file),
        "--out",
        path(&scores),
    ]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("tx.ndjson:2: skipped: field `amount_minor`"),
        "{stderr}"
    );
    assert!(stderr.contains("tx.ndjson:3: skipped:"), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("2 transactions (2 bad lines skipped)"),
        "{stdout}"
    );
    let ids: Vec<String> = std::fs::read_to_string(scores)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["a", "c"]);
}

/// One transaction dated decades ahead (a wrong clock) among generated ones is refused, with
/// its line and reason, and every other transaction is scored exactly as without it.
#[test]
fn a_wrong_clock_affects_only_its_own_transaction() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), 300, 10, 7, &[]);
    let (_, clean) = backtest(dir.path(), "ndjson", &[]);
    let file = dir.path().join("transactions.ndjson");
    let mut lines: Vec<String> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let middle = lines.len() / 2;
    let mut wrong: Value = serde_json::from_str(&lines[middle]).unwrap();
    wrong["transaction_id"] = "tx_wrong_clock".into();
    wrong["occurred_at"] = "2099-01-01T00:00:00Z".into();
    lines.insert(middle, wrong.to_string());
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let out = vigil(&[
        "backtest",
        "--transactions",
        path(&file),
        "--labels",
        path(&dir.path().join("labels.ndjson")),
        "--out",
        path(&dir.path().join("scores.csv")),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            ":{}: skipped: occurred_at is more than 3600 s after",
            middle + 1
        )),
        "{stderr}"
    );
    let scored = std::fs::read_to_string(dir.path().join("scores.csv")).unwrap();
    assert!(!scored.contains("tx_wrong_clock"));
    assert_eq!(scored, clean);
}
