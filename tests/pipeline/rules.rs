//! Rules published while the stream runs, end to end (`vigil serve` at 8 partitions, the
//! embedded broker, the local Postgres and Redis): rules drafted with `vigil rules` by one
//! person and approved through the API by another decide within seconds, each decision names
//! the rule set version that made it, a shadow rule's hits are recorded without acting, a
//! rollback restores the rules before, and a draft tested on the stored history hits what
//! `vigil backtest --rules` hits, and what the shadow rule recorded live.

use reqwest::blocking::Client;
use serde_json::{Value, json};

use crate::stack::{self, Broker, Stack, backtest_with_rules, generate, wait_until};

const RULES: &str = r#"
[[rule]]
id = "big_online"
description = "A large amount online"
when = "amount >= 20000 and channel == \"ecom\""
action = "decline"
reason = "BIG_ONLINE"

[[rule]]
id = "watch_night"
description = "Payments at night, watched before they count"
when = "is_night == 1"
score = 1.0
reason = "NIGHT"
shadow = true
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
    let get = |path: &str| -> Value {
        let url = format!("{address}{path}");
        let response = client.get(url).bearer_auth(&checker).send().unwrap();
        response.json().unwrap()
    };
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
    let rules_file = dir.path().join("rules.toml");
    std::fs::write(&rules_file, RULES).unwrap();
    stack.run(&["rules", "draft", rules_file.to_str().unwrap()]);
    for (rule, version) in [("big_online", 2), ("watch_night", 3)] {
        let approve = format!("{address}/v1/rules/{rule}/approve");
        let (status, published) = post(&client, &approve, &checker, &json!({"revision": 1}));
        assert_eq!(status, 201, "{published}");
        assert_eq!(published["version"], version);
    }
    in_force(3.0);
    post_part(parts[1]);

    stack.run(&["rules", "rollback", "1"]);
    in_force(4.0);
    post_part(parts[2]);

    // Every decision is the backtest's under the rules its version names.
    let version_3 = dir.path().join("version_3.toml");
    let exported = stack.run(&["rules", "export", "--version", "3"]);
    std::fs::write(&version_3, exported).unwrap();
    let defaults = backtest_with_rules(dir.path(), &path, 8, None);
    let with_rules = backtest_with_rules(dir.path(), &path, 8, Some(&version_3));
    let live =
        stack.pairs_of("SELECT transaction_id, decision || ' ' || rule_set_version FROM decisions");
    let mut acted = vec![];
    for (i, part) in parts.iter().enumerate() {
        for line in *part {
            let tx: Value = serde_json::from_str(line).unwrap();
            let id = tx["transaction_id"].as_str().unwrap();
            let expected = if i == 1 { &with_rules } else { &defaults };
            let (decision, reasons) = &expected[id];
            assert_eq!(live[id], format!("{decision} {}", [1, 3, 4][i]), "{id}");
            if i == 1 && reasons.contains("BIG_ONLINE") {
                acted.push(id.to_owned());
            }
        }
    }
    assert!(
        !acted.is_empty(),
        "the rule must act for this test to mean anything"
    );
    let alert = get(&format!("/v1/alerts/{}", acted[0]));
    assert_eq!(alert["rule_set_version"], 3, "{alert}");
    assert!(
        alert["reasons"].to_string().contains("BIG_ONLINE"),
        "{alert}"
    );
    let first: Value = serde_json::from_str(&parts[0][0]).unwrap();
    let id = first["transaction_id"].as_str().unwrap();
    let decision = get(&format!("/v1/decisions/{id}"));
    assert_eq!(decision["rule_set_version"], 1, "{decision}");

    // The rules drafted again (the live set is the defaults once more) and tested on the
    // stored history: the acting one on all of it, the shadow one on the payments it watched
    // live, whose hits it recorded.
    stack.run(&["rules", "draft", rules_file.to_str().unwrap()]);
    let all_time = json!({"from": "2000-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z"});
    let test = format!("{address}/v1/rules/big_online/test");
    let (status, report) = post(&client, &test, &checker, &all_time);
    assert_eq!(status, 200, "{report}");
    let hits = with_rules
        .values()
        .filter(|(_, reasons)| reasons.contains("BIG_ONLINE"))
        .count();
    let alerted = |d: &str| d != "approve";
    let added = with_rules
        .iter()
        .filter(|(id, (d, _))| alerted(d) && !alerted(&defaults[*id].0))
        .count();
    assert_eq!(report["decisions"], lines.len(), "{report}");
    assert_eq!(report["hits"], hits, "{report}");
    assert_eq!(report["alerts_added"], added, "{report}");
    assert_eq!(report["alerts_removed"], 0, "{report}");
    let printed = stack.run(&[
        "rules",
        "test",
        "big_online",
        "--from",
        "2000-01-01T00:00:00Z",
        "--to",
        "2100-01-01T00:00:00Z",
    ]);
    assert!(printed.contains(&format!("hits {hits} ")), "{printed}");
    let own = stack
        .command(&["rules", "approve", "big_online"])
        .output()
        .unwrap();
    assert!(
        !own.status.success(),
        "the CLI's user drafted it: someone else approves"
    );
    let why = String::from_utf8_lossy(&own.stderr);
    assert!(why.contains("another admin approves it"), "{why}");
    let versions = stack.run(&["rules", "versions"]);
    assert!(versions.contains("roll back to version 1"), "{versions}");

    let (from, to, others): (String, String, i64) = stack.query_one(
        "SELECT to_json(min(occurred_at))::text,
             to_json(max(occurred_at) + interval '1 millisecond')::text,
             (SELECT count(*) FROM decisions o WHERE o.rule_set_version <> 3
                 AND o.occurred_at BETWEEN min(d.occurred_at) AND max(d.occurred_at))
         FROM decisions d WHERE rule_set_version = 3",
    );
    assert_eq!(others, 0, "the parts are posted in time order");
    let watched = json!({
        "from": serde_json::from_str::<Value>(&from).unwrap(),
        "to": serde_json::from_str::<Value>(&to).unwrap(),
    });
    let test = format!("{address}/v1/rules/watch_night/test");
    let (status, report) = post(&client, &test, &checker, &watched);
    assert_eq!(status, 200, "{report}");
    assert!(report["hits"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(report["hits"], report["shadow_hits_recorded"], "{report}");
}
