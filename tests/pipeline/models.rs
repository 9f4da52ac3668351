//! Retraining and the model registry against the live pipeline: `vigil train` registers a
//! model with its metrics; a shadow is scored and recorded but never decides; a promotion is
//! served within seconds with no decision lost; a model of another feature schema is refused;
//! the backtest runs a registry model.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::stack::{self, Broker, Stack, backtest, generate};

/// Runs `vigil ARGS`, which must fail; returns its standard error.
fn vigil_fails(stack: &Stack, args: &[&str]) -> String {
    let out = stack.command(args).output().unwrap();
    assert!(!out.status.success(), "vigil {args:?} succeeded");
    String::from_utf8(out.stderr).unwrap()
}

/// `vigil train` on the generated files in `history`, validated on their last 7 days.
fn train_on(stack: &Stack, history: &Path, extra: &[&str]) -> String {
    let transactions = history.join("transactions.ndjson");
    let labels = history.join("labels.ndjson");
    let mut args = vec![
        "train",
        "--transactions",
        transactions.to_str().unwrap(),
        "--labels",
        labels.to_str().unwrap(),
        "--validation",
        "7d",
    ];
    args.extend_from_slice(extra);
    stack.run(&args)
}

/// The CSV files hold as many rows as the summary counts examples, and validation's its scores.
fn assert_examples_exported(dir: &Path, summary: &str) {
    let count_after = |line: &str, marker: &str| -> usize {
        let line = summary.lines().find(|l| l.starts_with(line)).expect(line);
        let rest = &line[line.find(marker).expect(marker) + marker.len()..];
        rest[..rest.find(' ').unwrap()].parse().unwrap()
    };
    let rows = |name: &str| -> Vec<String> {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        text.lines().map(str::to_owned).collect()
    };
    let (training, validation) = (rows("training.csv"), rows("validation.csv"));
    let trained = count_after("training ", "trained on ");
    assert_eq!(training.len() - 1, trained, "{summary}");
    assert_eq!(
        validation.len() - 1,
        count_after("validation ", ": "),
        "{summary}"
    );
    assert!(training[0].starts_with("amount,") && training[0].ends_with(",card"));
    assert!(validation[0].ends_with(",card,score"));
    let score: f32 = validation[1].rsplit(',').next().unwrap().parse().unwrap();
    assert!((0.0..=1.0).contains(&score), "{}", validation[1]);
}

/// transaction id -> (decision, model version) of every decision made.
fn decided(stack: &Stack) -> BTreeMap<String, (String, String)> {
    stack
        .pairs_of("SELECT transaction_id, decision || ' ' || model_version FROM decisions")
        .into_iter()
        .map(|(id, d)| {
            let (decision, version) = d.split_once(' ').unwrap();
            (id, (decision.to_owned(), version.to_owned()))
        })
        .collect()
}

fn score_column(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .map(|l| l.split(',').take(3).collect::<Vec<_>>().join(","))
        .collect()
}

#[test]
fn trained_models_are_registered_shadowed_promoted_and_served() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), 1);
    let stack = Stack::new(&broker.address);
    let (lines, transactions) = generate(dir.path(), 24, 500);
    // A longer history with enough frauds to learn from, as a new deployment would import.
    let history = dir.path().join("history");
    stack.run(&[
        "generate",
        "--out",
        history.to_str().unwrap(),
        "--days",
        "30",
        "--cards",
        "3000",
        "--merchants",
        "200",
        "--seed",
        "5",
    ]);

    // Train from files (before any live traffic) into the registry, the examples exported.
    let examples = dir.path().join("examples");
    let summary = train_on(
        &stack,
        &history,
        &[
            "--trees",
            "25",
            "--export-examples",
            examples.to_str().unwrap(),
        ],
    );
    assert!(summary.contains("registered gbt-"), "{summary}");
    assert_examples_exported(&examples, &summary);
    let version = stack
        .pairs_of("SELECT version, status FROM models")
        .into_iter()
        .map(|(v, status)| {
            assert_eq!(status, "candidate");
            v
        })
        .next()
        .expect("a registered model");
    let auc = stack.query_i64(
        "SELECT (1000 * (validation->'evaluation'->>'auc_roc')::float8)::bigint FROM models",
    );
    let frauds =
        stack.query_i64("SELECT (validation->'evaluation'->>'frauds')::bigint FROM models");
    assert!(frauds > 0, "the validation period must hold frauds");
    assert!(auc > 900, "validation AUC-ROC {auc} per mille");

    // The backtest runs the registry model, the same as its exported file.
    let exported = dir.path().join("model.json");
    stack.run(&[
        "models",
        "export",
        &version,
        "--out",
        exported.to_str().unwrap(),
    ]);
    let by_version = dir.path().join("by_version.csv");
    let by_file = dir.path().join("by_file.csv");
    for (model, out) in [
        (version.as_str(), &by_version),
        (exported.to_str().unwrap(), &by_file),
    ] {
        stack.run(&[
            "backtest",
            "--transactions",
            transactions.to_str().unwrap(),
            "--model",
            model,
            "--out",
            out.to_str().unwrap(),
        ]);
    }
    assert_eq!(score_column(&by_version), score_column(&by_file));
    let without_model = backtest(dir.path(), &transactions, 1);
    let csv = std::fs::read_to_string(&by_version).unwrap();
    let changed = csv
        .lines()
        .skip(1)
        .filter(|l| {
            let mut f = l.split(',');
            let id = f.next().unwrap();
            f.nth(1).unwrap() != without_model[id]
        })
        .count();
    assert!(
        changed > 0,
        "the champion must change some decisions of the backtest"
    );

    // A model of another feature schema is refused, on import and on promotion.
    let mut artifact: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&exported).unwrap()).unwrap();
    artifact["version"] = "gbt-other-schema".into();
    artifact["features"]["names"][0] = "amount_in_usd".into();
    artifact["features"]["fingerprint"] = "0000000000000000".into();
    let other = dir.path().join("other.json");
    std::fs::write(&other, artifact.to_string()).unwrap();
    let refused = vigil_fails(&stack, &["models", "import", other.to_str().unwrap()]);
    assert!(
        refused.contains("feature 0 is `amount_in_usd` for the model and `amount` for the engine"),
        "{refused}"
    );
    stack.execute(&format!(
        "INSERT INTO models (version, kind, feature_schema, trained_from, trained_to,
                             code_version, artifact)
         SELECT 'gbt-other-schema', kind, '0000000000000000', trained_from, trained_to,
                code_version, convert_to('{}', 'UTF8')
         FROM models WHERE version = '{version}'",
        artifact.to_string().replace('\'', "''")
    ));
    let refused = vigil_fails(&stack, &["models", "promote", "gbt-other-schema"]);
    assert!(refused.contains("feature schema"), "{refused}");

    // As a shadow: scored and recorded beside every decision, deciding nothing.
    stack.run(&["models", "promote", &version, "--shadow"]);
    let refresh = [("VIGIL__SCORING__MODELS_REFRESH_SECS", "1")];
    let (_serve, address, ops) = stack.service(&["serve"], &refresh);
    let half = lines.len() / 2;
    stack.post_ndjson(&address, "/v1/transactions", &lines[..half], 2000);
    stack.wait_for_decisions(half as i64);
    let first = decided(&stack);
    for (id, (decision, model)) in &first {
        assert_eq!(model, "online-0.1.0", "{id}");
        assert_eq!(
            decision, &without_model[id],
            "a shadow changed the decision of {id}"
        );
    }
    let shadowed = stack.query_i64(&format!(
        "SELECT count(*) FROM shadow_scores WHERE model_version = '{version}'"
    ));
    assert_eq!(shadowed, half as i64);
    let disagreements = stack.query_i64(
        "SELECT count(*) FROM shadow_scores s JOIN decisions d USING (transaction_id)
         WHERE s.decision <> d.decision",
    );
    assert!(
        disagreements > 0,
        "the shadow must disagree somewhere for this test to mean anything"
    );
    let scored = format!("vigil_model_scored_total{{model=\"{version}\",role=\"shadow\"}}");
    assert_eq!(stack::metric(&ops, &scored), half as f64);

    // Promoted: the rest is decided by the champion, nothing lost or decided twice.
    stack.run(&["models", "promote", &version]);
    std::thread::sleep(Duration::from_secs(3));
    stack.post_ndjson(&address, "/v1/transactions", &lines[half..], 2000);
    stack.wait_for_decisions(lines.len() as i64);
    let all = decided(&stack);
    assert_eq!(all.len(), lines.len());
    for (id, (_, model)) in &all {
        let expected = if first.contains_key(id) {
            "online-0.1.0"
        } else {
            version.as_str()
        };
        assert_eq!(model, expected, "{id}");
    }
    let champion = format!("vigil_model_scored_total{{model=\"{version}\",role=\"champion\"}}");
    assert_eq!(stack::metric(&ops, &champion), (lines.len() - half) as f64);
    let psi = stack::metric(&ops, &format!("vigil_model_psi{{model=\"{version}\"}}"));
    assert!(psi.is_finite() && psi >= 0.0, "{psi}");
    let audited = stack.query_i64("SELECT count(*) FROM audit_log WHERE action = 'model.promote'");
    assert_eq!(audited, 2);

    // A model of another schema made a shadow behind the registry's back: refused by the
    // scorer, once, not fetched again and again.
    stack.execute("UPDATE models SET status = 'shadow' WHERE version = 'gbt-other-schema'");
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        stack::metric(&ops, "vigil_scoring_models_refused_total"),
        1.0
    );
    stack.execute("UPDATE models SET status = 'candidate' WHERE version = 'gbt-other-schema'");

    // A worse model is not promoted over the champion.
    let worse = train_on(
        &stack,
        &history,
        &["--trees", "1", "--max-depth", "1", "--promote-if-better"],
    );
    assert!(worse.contains("not promoted"), "{worse}");
    let champions = stack.pairs_of("SELECT version, status FROM models WHERE status = 'champion'");
    assert_eq!(champions.keys().collect::<Vec<_>>(), [&version]);

    // Retraining from what the service logged: the decisions' vectors joined with the labels
    // it consumed.
    let label_lines: Vec<String> =
        std::fs::read_to_string(transactions.with_file_name("labels.ndjson"))
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
    stack.post_ndjson(&address, "/v1/labels", &label_lines, 2000);
    stack::wait_until("every label consumed", || {
        stack.query_i64("SELECT count(*) FROM labels") == label_lines.len() as i64
    });
    let retrained = stack.run(&[
        "train",
        "--from",
        "2025-12-01T00:00:00Z",
        "--until",
        "2026-06-01T00:00:00Z",
        "--validation",
        "0d",
        "--trees",
        "5",
    ]);
    let frauds = label_lines
        .iter()
        .filter(|l| l.contains("\"is_fraud\":true"))
        .count();
    assert!(
        retrained.contains(&format!("read {} scored transactions", lines.len()))
            && retrained.contains(&format!(" {frauds} frauds;")),
        "{retrained}"
    );
    assert_eq!(
        stack.query_i64("SELECT count(*) FROM models WHERE status = 'candidate'"),
        3
    );

    // The same registry under /v1/models, for admins.
    let admin = stack.create_key("admin", "registry admin");
    let client = reqwest::blocking::Client::new();
    let call = |method: reqwest::Method, path: &str, body: Option<serde_json::Value>| {
        let mut request = client
            .request(method, format!("{address}{path}"))
            .bearer_auth(&admin);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().unwrap();
        (
            response.status().as_u16(),
            response.json::<serde_json::Value>().unwrap(),
        )
    };
    let (status, listed) = call(reqwest::Method::GET, "/v1/models", None);
    assert_eq!(status, 200);
    assert_eq!(listed["models"].as_array().unwrap().len(), 4);
    let (status, shown) = call(reqwest::Method::GET, &format!("/v1/models/{version}"), None);
    assert_eq!(
        (status, shown["model"]["status"].as_str()),
        (200, Some("champion"))
    );
    let (status, refused) = call(
        reqwest::Method::POST,
        "/v1/models/gbt-other-schema/promote",
        Some(serde_json::json!({"to": "shadow"})),
    );
    assert_eq!(status, 409, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("feature schema"),
        "{refused}"
    );
    let (status, retired) = call(
        reqwest::Method::POST,
        &format!("/v1/models/{version}/retire"),
        None,
    );
    assert_eq!((status, retired["status"].as_str()), (200, Some("retired")));
    let audited = stack.query_i64(&format!(
        "SELECT count(*) FROM audit_log WHERE action = 'model.retire' AND target = 'model {version}'
           AND actor LIKE '%registry admin%'"
    ));
    assert_eq!(audited, 1);
}

/// The live service trains and promotes its own champion on its schedule of event time
/// (`[engine.retrain]`), from the decisions and labels it logged, and serves it.
#[test]
fn the_service_retrains_and_serves_its_own_champion() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), 2);
    let stack = Stack::new(&broker.address);
    let history = dir.path().join("history");
    let generated = |out: &Path, start: &str, days: &str, cards: &str| {
        stack.run(&[
            "generate",
            "--out",
            out.to_str().unwrap(),
            "--start",
            start,
            "--days",
            days,
            "--cards",
            cards,
            "--merchants",
            "200",
            "--seed",
            "5",
        ]);
        out.join("transactions.ndjson")
    };
    let transactions = generated(&history, "2026-01-01", "30", "1000");
    let labels = transactions.with_file_name("labels.ndjson");
    stack.run(&[
        "replay",
        "--transactions",
        transactions.to_str().unwrap(),
        "--labels",
        labels.to_str().unwrap(),
    ]);
    // A month of history replayed in seconds: pooled every 5 s of event time (the default), its
    // 2 partitions would trade a share for nearly every payment, and the embedded broker would
    // take minutes over them.
    let (_serve, address, ops) = stack.service(
        &["serve"],
        &[
            ("VIGIL__ENGINE__SHARE_EVERY", "1h"),
            ("VIGIL__SCORING__RETRAIN_CHECK_SECS", "1"),
            ("VIGIL__SCORING__MODELS_REFRESH_SECS", "1"),
            ("VIGIL__ENGINE__RETRAIN__MIN_FRAUDS", "20"),
        ],
    );
    let history_len = std::fs::read_to_string(&transactions)
        .unwrap()
        .lines()
        .count();
    stack.wait_for_decisions(history_len as i64);
    let promoted = || {
        stack.pairs_of(
            "SELECT model_version, extract(epoch FROM at)::bigint::text FROM retrainings
              WHERE outcome = 'promoted'",
        )
    };
    stack::wait_until("a champion of the service's own", || !promoted().is_empty());
    // Each retraining was due a week of event time after the one before.
    let times: Vec<i64> = stack
        .pairs_of("SELECT extract(epoch FROM at)::bigint::text, outcome FROM retrainings")
        .keys()
        .map(|t| t.parse().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|w| w[1] - w[0] >= 7 * 86_400),
        "{times:?}"
    );
    // The newest promoted is the champion (versions name their event time).
    let (version, _) = promoted().into_iter().next_back().unwrap();
    assert!(version.starts_with("gbt-auto-"), "{version}");
    let champion = stack.pairs_of("SELECT version, status FROM models WHERE status = 'champion'");
    assert_eq!(champion.keys().collect::<Vec<_>>(), [&version]);
    let audited = stack.query_i64(&format!(
        "SELECT count(*) FROM audit_log WHERE action = 'model.promote'
            AND target = 'model {version}' AND actor = 'vigil (scheduled retraining)'"
    ));
    assert_eq!(audited, 1);
    assert!(stack::metric(&ops, "vigil_retrainings_total{outcome=\"promoted\"}") >= 1.0);

    // Later payments are decided by a champion the service trained.
    std::thread::sleep(Duration::from_secs(3));
    let later = generated(&dir.path().join("later"), "2026-03-01", "1", "300");
    let lines: Vec<String> = std::fs::read_to_string(&later)
        .unwrap()
        .lines()
        .map(|l| l.replace("\"tx_", "\"later_tx_"))
        .collect();
    stack.post_ndjson(&address, "/v1/transactions", &lines, 2000);
    stack.wait_for_decisions((history_len + lines.len()) as i64);
    let promoted = promoted();
    let served = stack.pairs_of(
        "SELECT transaction_id, model_version FROM decisions WHERE transaction_id LIKE 'later_%'",
    );
    assert_eq!(served.len(), lines.len());
    for (id, model) in served {
        assert!(promoted.contains_key(&model), "{id} decided by {model}");
    }
}
