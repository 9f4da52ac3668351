//! Rules as managed data, through the API in process, on a database of its own per test:
//! drafts, maker-checker, versions and rollback, refusals with line and column, and a draft
//! tested on stored decisions. That the scorer switches versions mid-stream, and that a test
//! on history agrees with `vigil backtest --rules`, is `tests/pipeline/rules.rs`.

mod support;

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;
use support::{TestApi, new_key, seed_rules};
use vigil_api::{ApiConfig, Role};
use vigil_engine::RuleSet;
use vigil_models::{FEATURE_COUNT, features::index};

fn big_amount(when: &str) -> Value {
    json!({
        "id": "big_amount",
        "description": "A very large amount",
        "when": when,
        "action": "review",
        "reason": "BIG_AMOUNT",
    })
}

async fn audited(pool: &PgPool) -> Vec<(String, String, String)> {
    sqlx::query_as(
        "SELECT actor, action, target FROM audit_log WHERE action LIKE 'rule%' ORDER BY seq",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_draft_is_published_only_by_another_admin_and_can_be_rolled_back() {
    let api = TestApi::new(ApiConfig::default()).await;
    seed_rules(&api.pool).await;
    let maker = api.key(Role::Admin).to_owned();
    let checker = new_key(&api.pool, Role::Admin, None).await;

    let created = api
        .send(
            &Method::POST,
            "/v1/rules",
            &maker,
            Some(&big_amount("amount > 50000")),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["revision"], 1);
    let again = api
        .send(
            &Method::POST,
            "/v1/rules",
            &checker,
            Some(&big_amount("amount > 1")),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);

    let own = api
        .send(
            &Method::POST,
            "/v1/rules/big_amount/approve",
            &maker,
            Some(&json!({})),
        )
        .await;
    assert_eq!(
        (own.status, own.code()),
        (StatusCode::FORBIDDEN, "self_approval")
    );

    // The maker changes it after the checker read revision 1: that approval is refused.
    let changed = api
        .send(
            &Method::PUT,
            "/v1/rules/big_amount",
            &maker,
            Some(&big_amount("amount > 60000")),
        )
        .await;
    assert_eq!(changed.body["revision"], 2);
    let stale = api
        .send(
            &Method::POST,
            "/v1/rules/big_amount/approve",
            &checker,
            Some(&json!({"revision": 1})),
        )
        .await;
    assert_eq!(stale.status, StatusCode::CONFLICT, "{}", stale.body);

    let published = api
        .send(
            &Method::POST,
            "/v1/rules/big_amount/approve",
            &checker,
            Some(&json!({"revision": 2})),
        )
        .await;
    assert_eq!(published.status, StatusCode::CREATED, "{}", published.body);
    assert_eq!(published.body["version"], 2);
    assert_eq!(published.body["summary"], "add rule big_amount");
    assert_ne!(published.body["author"], published.body["approver"]);
    let defaults = RuleSet::default_rules().rules().len();
    assert_eq!(
        published.body["rules"].as_array().unwrap().len(),
        defaults + 1
    );

    let rule = api
        .send(&Method::GET, "/v1/rules/big_amount", &maker, None)
        .await;
    assert_eq!(rule.body["live"]["when"], "amount > 60000");
    assert!(
        rule.body["draft"].is_null(),
        "the draft is gone once published"
    );

    // A removal is a draft too, and a rollback restores version 1's rules as version 4.
    let removal = api
        .send(&Method::DELETE, "/v1/rules/big_amount", &maker, None)
        .await;
    assert!(removal.body["rule"].is_null(), "{}", removal.body);
    let removed = api
        .send(
            &Method::POST,
            "/v1/rules/big_amount/approve",
            &checker,
            Some(&json!({})),
        )
        .await;
    assert_eq!(removed.body["version"], 3);
    let back = api
        .send(&Method::POST, "/v1/rule-sets/2/rollback", &maker, None)
        .await;
    assert_eq!(back.status, StatusCode::CREATED, "{}", back.body);
    assert_eq!(back.body["version"], 4);
    assert_eq!(back.body["summary"], "roll back to version 2");
    let live = api.send(&Method::GET, "/v1/rules", &maker, None).await;
    assert_eq!(live.body["version"], 4);
    assert!(
        live.body["rules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == "big_amount")
    );
    let current = api
        .send(&Method::POST, "/v1/rule-sets/4/rollback", &maker, None)
        .await;
    assert_eq!(current.status, StatusCode::CONFLICT);

    let versions = api.send(&Method::GET, "/v1/rule-sets", &maker, None).await;
    let numbers: Vec<i64> = versions.body["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers, [4, 3, 2, 1]);
    let immutable = sqlx::query("UPDATE rule_set_versions SET summary = 'x' WHERE version = 2")
        .execute(&api.pool)
        .await;
    assert!(
        immutable.is_err(),
        "a published version cannot be rewritten"
    );

    let actions: Vec<String> = audited(&api.pool).await.into_iter().map(|a| a.1).collect();
    assert_eq!(
        actions,
        [
            "rule.draft",
            "rule.draft",
            "rule.approve",
            "rule.draft",
            "rule.approve",
            "rule_set.rollback"
        ]
    );
}

#[tokio::test]
async fn a_rule_that_cannot_be_used_is_refused_with_its_field_line_and_column() {
    let api = TestApi::new(ApiConfig::default()).await;
    let admin = api.key(Role::Admin).to_owned();
    let nothing_yet = api
        .send(
            &Method::POST,
            "/v1/rules",
            &admin,
            Some(&big_amount("amount > 1")),
        )
        .await;
    assert_eq!(
        nothing_yet.status,
        StatusCode::CONFLICT,
        "{}",
        nothing_yet.body
    );
    seed_rules(&api.pool).await;

    let bad = api
        .send(
            &Method::POST,
            "/v1/rules",
            &admin,
            Some(&big_amount("amount > 100\n  and card_cont_1h > 2")),
        )
        .await;
    assert_eq!(
        (bad.status, bad.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_rule")
    );
    assert!(
        bad.message()
            .starts_with("rule `big_amount`: in `when`, at line 2, column 7: unknown feature or field `card_cont_1h`"),
        "{}",
        bad.message()
    );
    let mut both = big_amount("amount > 1");
    both["score"] = json!(2.0);
    let both = api
        .send(&Method::POST, "/v1/rules", &admin, Some(&both))
        .await;
    assert_eq!(both.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        both.message().contains("either `score` or `action`"),
        "{}",
        both.message()
    );
    let renamed = api
        .send(
            &Method::PUT,
            "/v1/rules/other",
            &admin,
            Some(&big_amount("amount > 1")),
        )
        .await;
    assert_eq!(renamed.status, StatusCode::BAD_REQUEST);
    let investigator = api.key(Role::Investigator).to_owned();
    let refused = api
        .send(&Method::GET, "/v1/rules", &investigator, None)
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(
        audited(&api.pool).await.is_empty(),
        "nothing refused is saved"
    );
}

/// Decisions as the scorer stores them: day `d` of January 2026 holds payments of 10,000 *
/// (1 + i) minor units for i in 0..10, each with the model's log-odds at -5 (approve).
async fn store_decisions(pool: &PgPool) {
    for day in 1..=3 {
        for i in 0..10_i64 {
            let amount = 10_000 * (1 + i);
            let mut features = vec![f32::NAN; FEATURE_COUNT];
            features[index::AMOUNT] = amount as f32;
            let bytes: Vec<u8> = features.iter().flat_map(|v| v.to_le_bytes()).collect();
            let id = format!("tx-{day}-{i}");
            sqlx::query(
                "INSERT INTO decisions (transaction_id, card_id, merchant_id, occurred_at,
                     amount_minor, currency, score, decision, model_version, reasons, features,
                     country, channel, model_log_odds, rule_set_version, shadow_rules)
                 VALUES ($1, 'card', 'shop', make_timestamptz(2026, 1, $2, 12, 0, 0, 'UTC'), $3,
                     'EUR', 0.0067, 'approve', 'online', '', $4, 'FR', 'ecom', -5, 1, $5)",
            )
            .bind(&id)
            .bind(day)
            .bind(amount)
            .bind(bytes)
            .bind((i >= 8).then(|| vec!["big_amount".to_owned()]))
            .execute(pool)
            .await
            .unwrap();
            if i >= 7 {
                sqlx::query(
                    "INSERT INTO labels (transaction_id, source, is_fraud, labelled_at)
                     VALUES ($1, 'chargeback', $2, now())",
                )
                .bind(&id)
                .bind(i != 7)
                .execute(pool)
                .await
                .unwrap();
            }
        }
    }
}

#[tokio::test]
async fn a_draft_tested_on_history_says_what_it_would_have_done() {
    let api = TestApi::new(ApiConfig::default()).await;
    seed_rules(&api.pool).await;
    store_decisions(&api.pool).await;
    let admin = api.key(Role::Admin).to_owned();
    let mut rule = big_amount("amount > 75000 and channel == \"ecom\" and country in [\"FR\"]");
    api.send(&Method::POST, "/v1/rules", &admin, Some(&rule))
        .await;
    let period = json!({"from": "2026-01-01T00:00:00Z", "to": "2026-01-03T00:00:00Z"});

    let report = api
        .send(
            &Method::POST,
            "/v1/rules/big_amount/test",
            &admin,
            Some(&period),
        )
        .await;
    assert_eq!(report.status, StatusCode::OK, "{}", report.body);
    let r = &report.body;
    // Days 1 and 2; amounts 80,000 (labelled genuine), 90,000 and 100,000 (fraud) each day.
    assert_eq!(
        (r["decisions"].as_u64(), r["hits"].as_u64()),
        (Some(20), Some(6))
    );
    assert_eq!(r["live_hits"], 0);
    assert_eq!(
        (r["hits_fraud"].as_u64(), r["hits_genuine"].as_u64()),
        (Some(4), Some(2))
    );
    assert!((r["precision"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-9);
    assert_eq!(
        (r["alerts_added"].as_u64(), r["alerts_removed"].as_u64()),
        (Some(6), Some(0))
    );
    assert_eq!(r["mean_score_shift"], 0.0, "a hard action leaves the score");
    assert_eq!(
        r["shadow_hits_recorded"], 4,
        "two a day recorded as shadow hits"
    );
    let days: Vec<(String, u64)> = r["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["day"].as_str().unwrap().to_owned(),
                d["hits"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        days,
        [("2026-01-01".to_owned(), 3), ("2026-01-02".to_owned(), 3)]
    );
    assert_eq!(r["sample"].as_array().unwrap().len(), 6);
    assert_eq!(r["sample"][0]["live"]["decision"], "approve");
    assert_eq!(r["sample"][0]["draft"]["decision"], "review");

    // A score instead of an action, over one more amount (unlabelled): the score moves.
    rule["when"] = json!("amount >= 70000");
    rule["action"] = Value::Null;
    rule["score"] = json!(10.0);
    api.send(&Method::PUT, "/v1/rules/big_amount", &admin, Some(&rule))
        .await;
    let scored = api
        .send(
            &Method::POST,
            "/v1/rules/big_amount/test",
            &admin,
            Some(&period),
        )
        .await;
    let s = &scored.body;
    assert_eq!(s["hits"], 8);
    assert_eq!(
        (s["hits_fraud"].as_u64(), s["hits_genuine"].as_u64()),
        (Some(4), Some(2))
    );
    assert!(s["mean_score_shift"].as_f64().unwrap() > 0.9, "{s}");
    assert_eq!(s["draft_revision"], 2);

    let backwards = json!({"from": "2026-01-03T00:00:00Z", "to": "2026-01-01T00:00:00Z"});
    let refused = api
        .send(
            &Method::POST,
            "/v1/rules/big_amount/test",
            &admin,
            Some(&backwards),
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    let unknown = api
        .send(
            &Method::POST,
            "/v1/rules/no_such_rule/test",
            &admin,
            Some(&period),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}
