//! The investigator API end to end: `vigil serve` (intake, scoring and API in one process) or
//! `vigil api`, against the local Postgres and Redis and the embedded broker.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use reqwest::Method;
use reqwest::blocking::{Client, Response};
use serde_json::{Value, json};

use crate::WAIT;
use crate::stack::{self, Broker, Stack};

/// A client of the API at `address`, with a key or without.
struct Caller<'a> {
    client: Client,
    address: &'a str,
    key: Option<&'a str>,
}

impl<'a> Caller<'a> {
    fn new(address: &'a str, key: Option<&'a str>) -> Self {
        Self {
            client: Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            address,
            key,
        }
    }

    fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Response {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.address));
        if let Some(key) = self.key {
            request = request.bearer_auth(key);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().unwrap()
    }

    /// A request that must answer `status`; its JSON body.
    fn expect(&self, method: &Method, path: &str, body: Option<&Value>, status: u16) -> Value {
        let response = self.send(method.clone(), path, body);
        let got = response.status().as_u16();
        let text = response.text().unwrap();
        assert_eq!(got, status, "{method} {path}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// A request whose answer is a stream, read for as long as the test wants.
    fn stream(&self, path: &str) -> Response {
        let client = Client::builder().timeout(None).build().unwrap();
        let mut request = client.get(format!("{}{path}", self.address));
        if let Some(key) = self.key {
            request = request.bearer_auth(key);
        }
        request.send().unwrap()
    }

    fn get(&self, path: &str) -> Value {
        self.expect(&Method::GET, path, None, 200)
    }
}

/// The intake's routes as `vigil serve` serves them beside the API's (whose role checks,
/// errors and limits `api/tests/router.rs` tests in process): ingest and admin keys may post,
/// an investigator's may not, and none without a valid key; a key revoked with `vigil keys
/// revoke` stops working within the key cache's few seconds.
#[test]
fn the_intake_checks_the_key_and_its_role_and_a_revoked_key_stops_working() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), 1);
    let stack = Stack::new(&broker.address);
    let (_serve, address, _) = stack.service(&["serve"], &[]);
    let keys: BTreeMap<&str, String> = ["ingest", "investigator", "admin"]
        .into_iter()
        .map(|role| (role, stack.create_key(role, role)))
        .collect();
    let tx = json!({"transaction_id": "t1", "occurred_at": "2026-03-01T10:00:00Z",
        "card_id": "c1", "merchant_id": "m1", "amount_minor": 100, "currency": "EUR"});
    let label = json!({"transaction_id": "t1", "is_fraud": true,
        "labelled_at": "2026-03-02T10:00:00Z", "source": "chargeback"});
    for (path, body) in [("/v1/transactions", &tx), ("/v1/labels", &label)] {
        for key in [None, Some("vgl_0000"), Some("not even a key")] {
            let response = Caller::new(&address, key).send(Method::POST, path, Some(body));
            assert_eq!(response.status(), 401, "{path} with {key:?}");
            let error: Value = response.json().unwrap();
            assert_eq!(error["error"]["code"], "unauthorized");
        }
        for (role, key) in &keys {
            let response = Caller::new(&address, Some(key)).send(Method::POST, path, Some(body));
            let expected = if *role == "investigator" { 403 } else { 202 };
            assert_eq!(response.status(), expected, "{path} as {role}");
        }
    }

    let ingest = Caller::new(&address, Some(&keys["ingest"]));
    let id = stack.query_i64("SELECT id FROM api_keys WHERE name = 'ingest'");
    stack.run(&["keys", "revoke", &id.to_string()]);
    std::thread::sleep(Duration::from_secs(6));
    let revoked = ingest.send(Method::POST, "/v1/transactions", Some(&tx));
    assert_eq!(revoked.status(), 401);
}

/// A scored alert is claimed, closed as fraud; the label reaches `labels.v1`, the scoring
/// service learns from it, the live feed showed the alert, a stale version gets 409 and the
/// audit trail holds.
#[test]
fn an_alert_worked_to_a_fraud_verdict_trains_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), 1);
    let stack = Stack::new(&broker.address);
    // A request must be answered within 2 s; a live feed only has to start within it.
    let (serve, address, ops) =
        stack.service(&["serve"], &[("VIGIL__API__REQUEST_TIMEOUT_SECS", "2")]);
    let investigator = stack.create_key("investigator", "ana");
    let ana = Caller::new(&address, Some(&investigator));

    // Watch the live feed before anything is decided, for longer than the request timeout.
    let mut live = ana.stream("/v1/alerts/live");
    assert_eq!(live.status(), 200);
    let (seen_tx, seen) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(&mut live).lines();
        while let Some(Ok(line)) = lines.next() {
            if line == "event: alert" {
                let line = lines.next().unwrap().unwrap();
                let _ = seen_tx.send(line.strip_prefix("data: ").unwrap().to_owned());
                return;
            }
        }
    });

    std::thread::sleep(Duration::from_secs(3));
    let lines = impossible_travel("tx", "4000056655665556");
    stack.post_ndjson(&address, "/v1/transactions", &lines, 100);
    stack.wait_for_decisions(lines.len() as i64);
    let alert_event: Value =
        serde_json::from_str(&seen.recv_timeout(Duration::from_secs(30)).unwrap()).unwrap();
    assert_eq!(alert_event["transaction_id"], "tx_1");

    let page = ana.get("/v1/alerts?status=open&sort=score&limit=1");
    for sort in ["newest", "score"] {
        let by_reason = ana.get(&format!("/v1/alerts?reason=IMPOSSIBLE_TRAVEL&sort={sort}"));
        assert_eq!(by_reason["alerts"][0]["id"], "tx_1", "{by_reason}");
    }
    let none = ana.get("/v1/alerts?reason=NO_SUCH_CODE&status=open");
    assert_eq!(none["alerts"].as_array().map(Vec::len), Some(0));
    let alert = &page["alerts"][0];
    let id = alert["id"].as_str().unwrap();
    let detail = ana.get(&format!("/v1/alerts/{id}"));
    assert_eq!(id, "tx_1");
    assert_eq!(detail["transaction"]["transaction_id"], id);
    assert_eq!(detail["card_masked"], "400005******5556");
    assert!(
        !detail.to_string().contains("4000056655665556"),
        "no card number: {detail}"
    );
    assert_eq!(
        detail["explanation"]["rules"][0]["reason"], "IMPOSSIBLE_TRAVEL",
        "{detail}"
    );
    let comparisons = detail["explanation"]["comparisons"].to_string();
    assert!(comparisons.contains("km/h"), "{comparisons}");
    assert_eq!(detail["recent_transactions"].as_array().unwrap().len(), 2);
    let risk = ana.get(&format!(
        "/v1/cards/{}/risk",
        alert["card_id"].as_str().unwrap()
    ));
    assert!(
        risk["recent_alerts"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "{risk}"
    );
    // Both reads of the card's data, logged with who read it.
    let reads = stack.query_i64(&format!(
        "SELECT count(*) FROM card_reads WHERE actor LIKE '%(ana)' AND card_id = '{}'
             AND what IN ('alert.detail', 'card.risk')",
        alert["card_id"].as_str().unwrap()
    ));
    assert_eq!(reads, 2);

    let updates_before = stack::metric(&ops, "vigil_scoring_model_updates_total");
    let claimed = ana.expect(
        &Method::PATCH,
        &format!("/v1/alerts/{id}"),
        Some(&json!({"version": alert["version"], "claim": true})),
        200,
    );
    assert_eq!(claimed["status"], "in_review");
    assert_eq!(claimed["assignee"], "ana");
    let stale = ana.expect(
        &Method::PATCH,
        &format!("/v1/alerts/{id}"),
        Some(&json!({"version": alert["version"], "note": "late"})),
        409,
    );
    assert_eq!(stale["error"]["code"], "version_conflict");
    let closed = ana.expect(
        &Method::PATCH,
        &format!("/v1/alerts/{id}"),
        Some(&json!({"version": claimed["version"], "status": "closed",
            "disposition": "fraud", "note": "cardholder confirmed"})),
        200,
    );
    assert_eq!(closed["status"], "closed");
    assert_eq!(closed["disposition"], "fraud");

    let labels = stack::topic_payloads(&broker.address, "labels.v1", 1);
    let label: Value = serde_json::from_str(&labels[0]).unwrap();
    assert_eq!(label["transaction_id"], id);
    assert_eq!(label["source"], "investigator");
    assert_eq!(label["is_fraud"], true);
    learned_since(&stack, (&address, &ops), updates_before, &serve);
    // Stored with the key that gave it, as the audit trail names it.
    let stored = stack.pairs_of("SELECT transaction_id, source || ' from ' || sent_by FROM labels");
    let ana_id = stack.query_i64("SELECT id FROM api_keys WHERE name = 'ana'");
    assert_eq!(
        stored.get(id).map(String::as_str),
        Some(format!("investigator from key {ana_id} (ana)").as_str())
    );
    stack::wait_until("the label's outbox row deleted once sent", || {
        stack.query_i64("SELECT count(*) FROM labels_outbox") == 0
    });

    let verified = stack.command(&["audit", "verify"]).output().unwrap();
    assert!(verified.status.success());
    assert!(String::from_utf8_lossy(&verified.stdout).contains("intact"));
}

/// Waits until the model of `serve` (at its public and operations addresses) has learned since
/// it counted `updates_before` updates. A label given now is learned with the pooling after its
/// time: a payment a minute on brings the stream's event time there.
pub(crate) fn learned_since(
    stack: &Stack,
    (address, ops): (&str, &str),
    updates_before: f64,
    serve: &stack::Process,
) {
    let later = (chrono::Utc::now() + chrono::Duration::minutes(1)).to_rfc3339();
    let next = json!({"transaction_id": "tx_later", "occurred_at": later, "card_id": "c_later",
        "merchant_id": "m2", "amount_minor": 1_000, "currency": "EUR"});
    stack.post_ndjson(address, "/v1/transactions", &[next.to_string()], 1);
    let started = Instant::now();
    while stack::metric(ops, "vigil_scoring_model_updates_total") <= updates_before {
        assert!(started.elapsed() < WAIT, "{}", serve.logs());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Paging through the queue while new alerts arrive, before and after the cursor: every alert
/// that was there when paging began comes exactly once, in both orders.
#[test]
fn pages_have_no_gaps_or_repeats_while_alerts_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), 1);
    let stack = Stack::new(&broker.address);
    let (_api, address, _) = stack.service(&["api"], &[]);
    let key = stack.create_key("investigator", "pager");
    let caller = Caller::new(&address, Some(&key));
    // Scores repeat (ties), times repeat: the cursor must break ties by id.
    stack.execute(&insert_alerts("old", 0, 500));
    for sort in ["newest", "score"] {
        let before: BTreeSet<String> = stack
            .pairs_of("SELECT transaction_id, '' FROM alerts")
            .into_keys()
            .collect();
        let mut seen = vec![];
        let mut cursor: Option<String> = None;
        let mut round = 0;
        loop {
            let mut path = format!("/v1/alerts?sort={sort}&limit=37");
            if let Some(c) = &cursor {
                path = format!("{path}&cursor={c}");
            }
            let page = caller.get(&path);
            seen.extend(
                page["alerts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a["id"].as_str().unwrap().to_owned()),
            );
            round += 1;
            // New alerts, some sorting before the cursor and some after.
            stack.execute(&insert_alerts(&format!("{sort}_{round}"), round * 7, 5));
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        let unique: BTreeSet<String> = seen.iter().cloned().collect();
        assert_eq!(unique.len(), seen.len(), "{sort}: an alert came twice");
        let missing: Vec<&String> = before.difference(&unique).collect();
        assert!(missing.is_empty(), "{sort}: never came: {missing:?}");
    }
    let bad = caller.expect(
        &Method::GET,
        "/v1/alerts?sort=score&cursor=bm9wZQ",
        None,
        400,
    );
    assert_eq!(bad["error"]["code"], "bad_request");
    caller.expect(&Method::GET, "/v1/alerts?limit=100000", None, 400);
    caller.expect(&Method::GET, "/v1/alerts?no_such_filter=1", None, 400);
}

pub(crate) const PARIS: (f64, f64) = (48.85, 2.35);
const SYDNEY: (f64, f64) = (-33.87, 151.21);

/// A payment as a payment system posts it, at 10:`minute` on 1 March 2026.
pub(crate) fn payment(
    id: &str,
    card: &str,
    merchant: &str,
    minute: u32,
    amount: u64,
    at: (f64, f64),
) -> String {
    json!({"transaction_id": id, "occurred_at": format!("2026-03-01T10:{minute:02}:00Z"),
        "card_id": card, "merchant_id": merchant, "amount_minor": amount, "currency": "EUR",
        "lat": at.0, "lon": at.1})
    .to_string()
}

/// Two payments on `card` ten minutes apart, Paris then Sydney, the second a large one: the
/// default rules decline it outright (impossible travel with a high amount).
pub(crate) fn impossible_travel(prefix: &str, card: &str) -> [String; 2] {
    [
        payment(&format!("{prefix}_0"), card, "m2", 0, 5_000, PARIS),
        payment(&format!("{prefix}_1"), card, "m3", 10, 150_000, SYDNEY),
    ]
}

/// SQL that inserts `n` alerts (with their decisions) named `{tag}_{i}`, at times and scores
/// spread around those of the others.
fn insert_alerts(tag: &str, shift: u32, n: u32) -> String {
    format!(
        "WITH d AS (
             INSERT INTO decisions (transaction_id, card_id, merchant_id, occurred_at,
                 amount_minor, currency, score, decision, model_version, reasons, features)
             SELECT '{tag}_' || i, 'card_' || (i % 17), 'm_' || (i % 5),
                 timestamptz '2026-03-01' + ((i * 7919 + {shift}) % 400) * interval '1 minute',
                 100, 'EUR', ((i * 31 + {shift}) % 50) / 50.0, 'review', 'test', 'R', ''
             FROM generate_series(1, {n}) i
             RETURNING transaction_id, card_id, merchant_id, occurred_at, score, decision
         )
         INSERT INTO alerts (transaction_id, card_id, merchant_id, occurred_at, score,
             decision, reasons)
         SELECT transaction_id, card_id, merchant_id, occurred_at, score, decision, 'R' FROM d"
    )
}

/// Allow and block entries reach the scoring service within seconds: a blocked card is
/// declined, an allowed card's burst is not alerted (while the same burst on another card is),
/// and an expired entry no longer applies. Each change is audited.
#[test]
fn list_entries_change_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), 1);
    let stack = Stack::new(&broker.address);
    let (_serve, address, _) =
        stack.service(&["serve"], &[("VIGIL__SCORING__LISTS_REFRESH_SECS", "1")]);
    let admin_key = stack.create_key("admin", "root");
    let admin = Caller::new(&address, Some(&admin_key));
    let entry = |list: &str, kind: &str, value: &str, expires: Option<&str>| {
        admin.expect(
            &Method::POST,
            "/v1/lists",
            Some(&json!({"list": list, "kind": kind, "value": value,
                "reason": "test", "expires_at": expires})),
            201,
        )
    };
    entry("block", "card", "4111111111111111", None);
    entry("allow", "card", "card_trusted", None);
    entry(
        "block",
        "merchant",
        "m_expired",
        Some("2020-01-01T00:00:00Z"),
    );
    let listed = admin.get("/v1/lists");
    assert_eq!(
        listed["entries"].as_array().unwrap().len(),
        2,
        "expired hidden"
    );
    assert!(
        !listed.to_string().contains("4111111111111111"),
        "cards are tokenized"
    );
    std::thread::sleep(Duration::from_secs(3));

    let mut lines = vec![
        payment("blocked", "4111111111111111", "m1", 0, 1500, PARIS),
        payment("expired", "card_other", "m_expired", 0, 1500, PARIS),
    ];
    lines.extend(impossible_travel("trusted", "card_trusted"));
    lines.extend(impossible_travel("travelling", "card_travelling"));
    stack.post_ndjson(&address, "/v1/transactions", &lines, 100);
    stack.wait_for_decisions(lines.len() as i64);
    let decisions =
        stack.pairs_of("SELECT transaction_id, decision || ' ' || reasons FROM decisions");
    assert!(
        decisions["blocked"].starts_with("decline BLOCKLIST_CARD"),
        "{decisions:?}"
    );
    assert!(decisions["expired"].starts_with("approve"), "{decisions:?}");
    assert!(
        decisions["travelling_1"].starts_with("decline IMPOSSIBLE_TRAVEL"),
        "the same payments on a card not listed: {decisions:?}"
    );
    assert!(
        decisions["trusted_1"].starts_with("approve ALLOWLIST_CARD"),
        "{decisions:?}"
    );
    assert!(
        !decisions["trusted_0"].contains("ALLOWLIST"),
        "an allow entry shows only where it kept an alert away: {decisions:?}"
    );
    let alerts = stack.alerts();
    assert!(alerts.contains_key("blocked") && !alerts.contains_key("trusted_1"));
    let explained = admin.get("/v1/alerts/blocked");
    assert_eq!(explained["explanation"]["list"]["list"], "block");
    assert_eq!(explained["reasons"][0], "BLOCKLIST_CARD");

    let audited = stack.query_i64("SELECT count(*) FROM audit_log WHERE action = 'list.create'");
    assert_eq!(audited, 3);
}

/// The audit trail verifies, refuses changes in place, and `vigil audit verify` names the first
/// record a superuser changed or removed behind its back.
#[test]
fn the_audit_chain_verifies_and_names_a_tampered_record() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), 1);
    let stack = Stack::new(&broker.address);
    for name in ["a", "b", "c"] {
        stack.create_key("investigator", name);
    }
    let verify = || stack.command(&["audit", "verify"]).output().unwrap();
    let out = verify();
    assert!(out.status.success());
    // The ingest key of the stack, then three.
    assert!(String::from_utf8_lossy(&out.stdout).contains("intact: 4 records"));

    let refused = stack.try_execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2");
    assert!(refused.unwrap_err().contains("append-only"));

    stack.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only");
    stack.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 3");
    let out = verify();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("broken at record 3"), "{said}");

    stack.execute("UPDATE audit_log SET actor = 'cli (user unknown)' WHERE seq = 3");
    assert!(verify().status.success(), "mended");

    // The newest record removed leaves a shorter chain intact: only a checkpoint kept outside
    // the database finds it.
    let checkpoint = stack.command(&["audit", "checkpoint"]).output().unwrap();
    assert!(checkpoint.status.success());
    let checkpoints = dir.path().join("checkpoints");
    std::fs::write(&checkpoints, &checkpoint.stdout).unwrap();
    assert!(String::from_utf8_lossy(&checkpoint.stdout).starts_with("4:"));
    stack.execute("DELETE FROM audit_log WHERE seq = 4");
    assert!(
        verify().status.success(),
        "without the checkpoint, nothing shows"
    );
    let checked = stack
        .command(&[
            "audit",
            "verify",
            "--checkpoints",
            checkpoints.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!checked.status.success());
    let said = String::from_utf8_lossy(&checked.stderr).into_owned();
    assert!(said.contains("the newest records were removed"), "{said}");

    stack.execute("DELETE FROM audit_log WHERE seq = 2");
    let said = String::from_utf8_lossy(&verify().stderr).into_owned();
    assert!(
        said.contains("broken at record 2") && said.contains("missing"),
        "{said}"
    );
}
