//! Rules published while the stream runs, end to end (`vigil serve` at 8 partitions, the
//! embedded broker, the local Postgres and Redis): a rule drafted with `vigil rules` by one
//! person and approved through the API by another decides within seconds, each decision names
//! the rule set version that made it, a rollback restores the rules before, and a draft tested
//! on the stored history hits what `vigil backtest --rules` hits.

use reqwest::blocking::Client;
use serde_json::{Value, json};

use crate::stack::{self, Broker, Stack, backtest_with_rules, generate, wait_until};

const RULE: &str = r#"
[[rule]]
id = "big_online"
description = "A large amount online"
when = "amount >= 20000 and channel == \"ecom\""
action = "decline"
reason = "BIG_ONLINE"
"#;

fn post(client: &Client, url: &str, key: &str, body: &Value) -> (u16, Value) {
    let response = client.post(url).bearer_auth(key).json(body).send().unwrap();
    let status = response.status().as_u16();
    (status, response.json().unwrap_or(Value::Null))
}

#[test]
fn a_published_rule_decides_within_seconds_and_a_rollback_restores_the_rules_before() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), 8);
    let stack = Stack::new(&broker.address);
    let (lines, path) = generate(dir.path(), 10, 500);
    let checker = stack.create_key("admin", "checker");
    let (_serve, address, ops) = stack.service(&["serve"], &[]);
    let client = Client::new();
    let in_force = |version: f64| {
        wait_until("the rule set version in force", || {
            stack::metric(&ops, "vigil_scoring_rule_set_version") == version
        });
    };
    let parts: Vec<&[String]> = lines.chunks(lines.len().div_ceil(3)).collect();
    let mut posted = 0;
    let mut post_part = |part: &[String]| {
        stack.post_ndjson(&address, "/v1/transactions", part, 2000);
        posted += part.len();
        stack.wait_for_decisions(posted as i64);
    };
    in_force(1.0);
    post_part(parts[0]);

    // Drafted from a file on the command line, approved by an admin key through the API.
    let rule_file = dir.path().join("big_online.toml");
    std::fs::write(&rule_file, RULE).unwrap();
    stack.run(&["rules", "draft", rule_file.to_str().unwrap()]);
    let approve = format!("{address}/v1/rules/big_online/approve");
    let (status, published) = post(&client, &approve, &checker, &json!({"revision": 1}));
    assert_eq!(status, 201, "{published}");
    assert_eq!(published["version"], 2);
    in_force(2.0);
    post_part(parts[1]);

    stack.run(&["rules", "rollback", "1"]);
    in_force(3.0);
    post_part(parts[2]);

    // Every decision is the backtest's under the rules its version names.
    let version_2 = dir.path().join("version_2.toml");
    std::fs::write(
        &version_2,
        stack.run(&["rules", "export", "--version", "2"]),
    )
    .unwrap();
    let defaults = backtest_with_rules(dir.path(), &path, 8, None);
    let with_rule = backtest_with_rules(dir.path(), &path, 8, Some(&version_2));
    let live =
        stack.pairs_of("SELECT transaction_id, decision || ' ' || rule_set_version FROM decisions");
    let mut acted = 0;
    for (i, part) in parts.iter().enumerate() {
        for line in *part {
            let tx: Value = serde_json::from_str(line).unwrap();
            let id = tx["transaction_id"].as_str().unwrap();
            let (decision, reasons) = if i == 1 {
                &with_rule[id]
            } else {
                &defaults[id]
            };
            assert_eq!(live[id], format!("{decision} {}", i + 1), "{id}");
            acted += usize::from(i == 1 && reasons.contains("BIG_ONLINE"));
        }
    }
    assert!(
        acted > 0,
        "the rule must act for this test to mean anything"
    );

    // The same rule drafted again, tested on all of the stored history.
    stack.run(&["rules", "draft", rule_file.to_str().unwrap()]);
    let all_time = json!({"from": "2000-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z"});
    let test = format!("{address}/v1/rules/big_online/test");
    let (status, report) = post(&client, &test, &checker, &all_time);
    assert_eq!(status, 200, "{report}");
    let hits = with_rule
        .values()
        .filter(|(_, reasons)| reasons.contains("BIG_ONLINE"))
        .count();
    let alerted = |d: &str| d != "approve";
    let added = with_rule
        .iter()
        .filter(|(id, (d, _))| alerted(d) && !alerted(&defaults[*id].0))
        .count();
    assert_eq!(report["decisions"], lines.len(), "{report}");
    assert_eq!(report["hits"], hits, "{report}");
    assert_eq!(report["alerts_added"], added, "{report}");
    assert_eq!(report["alerts_removed"], 0, "{report}");
}
