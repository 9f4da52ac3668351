//! Hostile input: what a client (or a producer writing to the topics directly) can send that
//! once stopped, stalled or poisoned scoring. Each case is refused with its reason (a 4xx naming
//! the field, or a dead letter with the reason in a header) or taken harmlessly, and what comes
//! after it is decided within seconds, with nothing else lost.
//!
//! The cases, and where each is tested:
//! - a label repeated in one request; a transaction id reused on another card, or for another
//!   amount; a record Postgres refuses; messages that are not the contract, or dated 2099;
//!   items past the contract's bounds (an amount above `i64::MAX`, an investigator's verdict
//!   from an ingest key, a time far ahead) and raw card numbers at the intake; a flood of new
//!   cards: here;
//! - a body of 8 MB of bad lines (a bounded answer), requests past the concurrency limit or
//!   their time (503 and `Retry-After`): `ingest/src/http` (`router` called in process);
//! - card ids that would collide with Redis key structure: `schema/src/redis_keys.rs`;
//! - the contract's bounds, field by field: `schema/tests/contract.rs`;
//! - a record far ahead of the records after it in a replayed file: `scoring/app/src/feed.rs`;
//! - repeats, reordering and clock jumps in random streams: the engine's property tests
//!   (`scoring/engine/src/tests.rs`), which also check that a flood of new cards keeps the
//!   vectors awaiting labels;
//! - the broker killed and restarted mid-run: `broker.rs`; the scorer killed: `main.rs`.

use std::time::Duration;

use serde_json::Value;

use crate::api::{PARIS, impossible_travel, payment};
use crate::stack::{self, Broker, Stack, generate, wait_until};

/// Messages that break the contract go to the dead-letter topic with the reason in a header;
/// the good ones around them are decided.
#[test]
fn malformed_messages_go_to_the_dead_letter_topic() {
    use rdkafka::producer::{FutureProducer, FutureRecord};

    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), 1);
    let stack = Stack::new(&broker.address);
    let (lines, _) = generate(dir.path(), 3, 100);
    // Well formed, but dated decades after it was produced: taken, it would hold the shared
    // state's boundary there, and every payment after it would be scored as late.
    let mut future: Value = serde_json::from_str(&lines[0]).unwrap();
    future["transaction_id"] = "tx_future".into();
    future["occurred_at"] = "2099-01-01T00:00:00Z".into();
    let future = future.to_string();
    let bad = [
        "not json at all",
        r#"{"transaction_id": "tx_bad"}"#,
        future.as_str(),
    ];
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &broker.address)
        .create()
        .unwrap();
    stack::runtime().block_on(async {
        let payloads = lines[..100]
            .iter()
            .map(String::as_str)
            .chain(bad)
            .chain(lines[100..200].iter().map(String::as_str));
        for payload in payloads {
            producer
                .send(
                    FutureRecord::<str, str>::to("transactions.v1")
                        .key("k")
                        .payload(payload),
                    Duration::from_secs(5),
                )
                .await
                .unwrap();
        }
    });
    let (scorer, _, address) = stack.service(&["score"], &[]);
    stack.wait_for_decisions(200);

    let letters = stack::dead_letters(&broker.address, 3);
    assert_eq!(letters.len(), 3, "{}", scorer.logs());
    assert_eq!(letters[0].0, bad[0]);
    assert!(
        letters[0].1.as_deref().unwrap().contains("expected"),
        "{letters:?}"
    );
    assert_eq!(letters[1].0, bad[1]);
    assert!(
        letters[1].1.as_deref().unwrap().contains("missing field"),
        "{letters:?}"
    );
    assert_eq!(letters[2].0, bad[2]);
    assert!(
        letters[2].1.as_deref().unwrap().contains("occurred_at"),
        "{letters:?}"
    );
    assert_eq!(
        stack::metric(&address, "vigil_scoring_dead_letters_total"),
        3.0
    );
}

/// A bad request is refused whole with each bad item named, and nothing of it is produced; a
/// raw card number, however grouped, is replaced by its token before it reaches a topic,
/// Postgres, Redis or a log.
#[test]
fn ingest_refuses_bad_items_and_no_card_number_gets_through() {
    const PAN: &str = "4111111111111111";
    const SPACED: &str = "4111 1111 1111 1111";
    const HYPHENED: &str = "4111-1111-1111-1111";
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), 1);
    let stack = Stack::new(&broker.address);
    let (serve, address, _) = stack.service(&["serve"], &[]);
    let client = reqwest::blocking::Client::new();
    let tx = |id: &str, card: &str, amount: &str| {
        format!(
            r#"{{"transaction_id":"{id}","occurred_at":"2026-03-01T10:00:00Z","card_id":"{card}","merchant_id":"m1","amount_minor":{amount},"currency":"EUR"}}"#
        )
    };
    let refused = client
        .post(format!("{address}/v1/transactions"))
        .bearer_auth(&stack.ingest_key)
        .header("content-type", "application/json")
        .body(format!(
            "[{}, {}, {}, {}]",
            tx("t1", "c1", "100"),
            tx("t2", "c2", &format!("\"{PAN}\"")),
            r#"{"transaction_id":"t3"}"#,
            // Stored as -1 in Postgres once: above the contract's bound, i64::MAX.
            tx("t3b", "c3", &u64::MAX.to_string()),
        ))
        .send()
        .unwrap();
    assert_eq!(refused.status(), 400);
    let body: Value = refused.json().unwrap();
    let items = body["error"]["items"].as_array().unwrap();
    assert_eq!(items.len(), 3, "{body}");
    assert_eq!(items[0]["index"], 1);
    assert_eq!(items[0]["field"], "amount_minor");
    assert_eq!(items[1]["index"], 2);
    assert_eq!(
        (&items[2]["index"], &items[2]["field"]),
        (&3.into(), &"amount_minor".into())
    );
    assert!(!body.to_string().contains(PAN), "{body}");

    let accepted = client
        .post(format!("{address}/v1/transactions"))
        .bearer_auth(&stack.ingest_key)
        .body(format!(
            "[{}, {}]",
            tx("t4", PAN, "100"),
            tx("t5", SPACED, "200")
        ))
        .send()
        .unwrap();
    assert_eq!(accepted.status(), 202);
    let label = client
        .post(format!("{address}/v1/labels"))
        .bearer_auth(&stack.ingest_key)
        .body(format!(
            r#"{{"transaction_id":"t4","is_fraud":true,"labelled_at":"2026-03-02T10:00:00Z","source":"chargeback","card_id":"{HYPHENED}"}}"#
        ))
        .send()
        .unwrap();
    assert_eq!(label.status(), 202);
    // An investigator's verdict comes from closing the alert, audited; not from the intake.
    let verdict = client
        .post(format!("{address}/v1/labels"))
        .bearer_auth(&stack.ingest_key)
        .body(r#"{"transaction_id":"t5","is_fraud":false,"labelled_at":"2026-03-02T10:00:00Z","source":"investigator","card_id":"c5"}"#)
        .send()
        .unwrap();
    assert_eq!(verdict.status(), 400);
    let body: Value = verdict.json().unwrap();
    assert_eq!(body["error"]["items"][0]["field"], "source", "{body}");
    // Dated far ahead of the intake's clock, it would hold its partition's event time there.
    for (path, line, field) in [
        ("transactions", tx("t6", "c6", "100").replace("2026-03-01", "2099-01-01"), "occurred_at"),
        ("labels", r#"{"transaction_id":"t5","is_fraud":true,"labelled_at":"2099-01-01T00:00:00Z","source":"chargeback","card_id":"c5"}"#.to_owned(), "labelled_at"),
    ] {
        let ahead = client
            .post(format!("{address}/v1/{path}"))
            .bearer_auth(&stack.ingest_key)
            .body(line)
            .send()
            .unwrap();
        assert_eq!(ahead.status(), 400);
        let body: Value = ahead.json().unwrap();
        assert_eq!(body["error"]["items"][0]["field"], field, "{body}");
    }
    stack.wait_for_decisions(2);
    wait_until("the label", || {
        stack.query_i64("SELECT count(*) FROM labels") == 1
    });
    // Stored with the key that posted it.
    let feeder = stack.query_i64("SELECT id FROM api_keys WHERE name = 'feeder'");
    assert_eq!(
        stack.pairs_of("SELECT transaction_id, sent_by FROM labels")["t4"],
        format!("key {feeder} (feeder)")
    );
    // Nothing of the refused request was produced.
    assert_eq!(
        stack.decisions().keys().collect::<Vec<_>>(),
        ["t4", "t5"],
        "only the accepted request's transactions"
    );
    let cards = stack.pairs_of("SELECT transaction_id, card_id FROM decisions");
    let token = cards["t4"].clone();
    assert!(
        token.starts_with("411111-") && token.ends_with("-1111"),
        "{token}"
    );
    assert_eq!(
        cards["t5"], token,
        "one card, one token, however it was written"
    );
    let leaks = |text: &str| [PAN, SPACED, HYPHENED].iter().any(|p| text.contains(p));
    let everywhere = format!(
        "{}{}",
        stack
            .pairs_of("SELECT transaction_id, card_id || reasons FROM decisions")
            .values()
            .cloned()
            .collect::<String>(),
        stack
            .pairs_of("SELECT transaction_id, coalesce(card_id, '') FROM labels")
            .values()
            .cloned()
            .collect::<String>()
    );
    assert!(!leaks(&everywhere));
    assert!(
        everywhere.contains(&token),
        "the label carries the token too"
    );
    let keys = stack.redis_keys();
    assert!(keys.iter().any(|k| k.contains(&token)), "{keys:?}");
    assert!(!keys.iter().any(|k| leaks(k)));
    for (topic, count) in [
        ("transactions.v1", 2),
        ("labels.v1", 1),
        ("decisions.v1", 2),
    ] {
        let payloads = stack::topic_payloads(&broker.address, topic, count);
        assert!(!payloads.is_empty(), "{topic}");
        assert!(!payloads.iter().any(|p| leaks(p)), "{topic}: {payloads:?}");
    }
    assert!(!leaks(&serve.logs()));
}

/// A record Postgres refuses for what it holds (here a constraint the database has and the
/// contract does not) is dead-lettered with Postgres's reason; the rest of its batch commits,
/// and the partition goes on.
#[test]
fn records_postgres_refuses_are_dead_lettered_and_the_rest_commits() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), 1);
    let stack = Stack::new(&broker.address);
    stack.execute("ALTER TABLE decisions ADD CONSTRAINT no_poison CHECK (merchant_id <> 'm_bad')");
    stack.execute(
        "ALTER TABLE labels ADD CONSTRAINT no_bad_label CHECK (transaction_id <> 't_bad')",
    );
    let (_serve, address, ops) = stack.service(&["serve"], &[]);
    let tx = |id: &str, merchant: &str, minute: u32| {
        format!(
            r#"{{"transaction_id":"{id}","occurred_at":"2026-03-01T10:{minute:02}:00Z","card_id":"c{minute}","merchant_id":"{merchant}","amount_minor":100,"currency":"EUR"}}"#
        )
    };
    let label = |id: &str| {
        format!(
            r#"{{"transaction_id":"{id}","is_fraud":true,"labelled_at":"2026-03-01T10:30:00Z","source":"chargeback"}}"#
        )
    };
    stack.post_ndjson(
        &address,
        "/v1/transactions",
        &[tx("t1", "m1", 1), tx("t2", "m_bad", 2), tx("t3", "m1", 3)],
        3,
    );
    stack.post_ndjson(&address, "/v1/labels", &[label("t1"), label("t_bad")], 2);
    stack.wait_for_decisions(2);
    wait_until("the good label", || {
        stack.query_i64("SELECT count(*) FROM labels") == 1
    });
    let letters = stack::dead_letters(&broker.address, 2);
    let mut refused: Vec<(String, bool)> = letters
        .iter()
        .map(|(payload, error)| {
            let record: Value = serde_json::from_str(payload).unwrap();
            let reason = error.as_deref().unwrap_or_default();
            (
                record["transaction_id"].as_str().unwrap().to_owned(),
                reason.starts_with("Postgres refused it") && reason.contains("check constraint"),
            )
        })
        .collect();
    refused.sort();
    assert_eq!(
        refused,
        [("t2".into(), true), ("t_bad".into(), true)],
        "{letters:?}"
    );
    assert_eq!(stack::metric(&ops, "vigil_scoring_refused_total"), 2.0);
    // The partition goes on.
    stack.post_ndjson(&address, "/v1/transactions", &[tx("t4", "m1", 4)], 1);
    stack.wait_for_decisions(3);
    assert_eq!(
        stack.decisions().keys().collect::<Vec<_>>(),
        ["t1", "t3", "t4"]
    );
}

/// One request with the same label twice (and the same label again in a later request) is
/// stored once, the last one read winning, and scoring goes on: the batch's upsert used to
/// meet the row twice, fail, and retry forever, deciding nothing after it.
#[test]
fn a_label_repeated_in_one_request_stalls_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), 1);
    let stack = Stack::new(&broker.address);
    let (_serve, address, _) = stack.service(&["serve"], &[]);
    let tx = |id: &str, minute: u32| {
        format!(
            r#"{{"transaction_id":"{id}","occurred_at":"2026-03-01T10:{minute:02}:00Z","card_id":"c1","merchant_id":"m1","amount_minor":1000,"currency":"EUR"}}"#
        )
    };
    let label = |is_fraud: bool| {
        format!(
            r#"{{"transaction_id":"t1","is_fraud":{is_fraud},"labelled_at":"2026-03-01T10:05:00Z","source":"chargeback","card_id":"c1"}}"#
        )
    };
    stack.post_ndjson(&address, "/v1/transactions", &[tx("t1", 0)], 1);
    stack.wait_for_decisions(1);
    stack.post_ndjson(&address, "/v1/labels", &[label(false), label(true)], 2);
    stack.post_ndjson(&address, "/v1/transactions", &[tx("t2", 10)], 1);
    stack.wait_for_decisions(2);
    wait_until("the label", || {
        stack.query_i64("SELECT count(*) FROM labels WHERE is_fraud") == 1
    });
    assert_eq!(stack.query_i64("SELECT count(*) FROM labels"), 1);
}

/// A transaction id reused on a card of another partition, the second time as an alert: it is
/// a conflict, dead-lettered with its reason (it broke the alerts' decision check and retried
/// the batch forever, then was silently missing from Postgres while it reached Redis), and
/// later transactions are decided. The same payment again is decided once; the same id in the
/// same partition for another amount is a conflict too.
#[test]
fn a_transaction_id_reused_on_another_card_stalls_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), 2);
    let stack = Stack::new(&broker.address);
    let (_serve, address, ops) = stack.service(&["serve"], &[]);
    let partition = |card: &str| vigil_common::kafka::partition_of(card, 2);
    let other = (0..100)
        .map(|i| format!("card_{i}"))
        .find(|c| partition(c) != partition("card_first"))
        .unwrap();
    let first = payment("reused", "card_first", "m1", 0, 1_000, PARIS);
    stack.post_ndjson(&address, "/v1/transactions", &[first], 1);
    stack.wait_for_decisions(1);
    let [before, alert] = impossible_travel("x", &other);
    let alert = alert.replace("\"x_1\"", "\"reused\"");
    let after = payment("after", "card_after", "m1", 30, 1_000, PARIS);
    stack.post_ndjson(&address, "/v1/transactions", &[before, alert, after], 3);
    stack.wait_for_decisions(3);
    let decided = stack.pairs_of("SELECT transaction_id, card_id FROM decisions");
    assert_eq!(decided["reused"], "card_first", "the first decision stands");
    assert!(decided.contains_key("after"), "{decided:?}");

    let again = payment("after", "card_after", "m1", 30, 1_000, PARIS);
    let other_amount = payment("after", "card_after", "m1", 30, 2_000, PARIS);
    let last = payment("last", "card_after", "m1", 40, 1_000, PARIS);
    stack.post_ndjson(
        &address,
        "/v1/transactions",
        &[again, other_amount, last],
        3,
    );
    stack.wait_for_decisions(4);
    // The dead-letter topic has two partitions too: read in no set order.
    let mut letters: Vec<(String, u64)> =
        stack::topic_payloads(&broker.address, "dead-letters.v1", 2)
            .iter()
            .map(|p| {
                let tx: Value = serde_json::from_str(p).unwrap();
                (
                    tx["transaction_id"].as_str().unwrap().to_owned(),
                    tx["amount_minor"].as_u64().unwrap(),
                )
            })
            .collect();
    letters.sort();
    assert_eq!(
        letters,
        [("after".into(), 2_000), ("reused".into(), 150_000)]
    );
    assert_eq!(stack::metric(&ops, "vigil_scoring_conflicts_total"), 2.0);
    assert_eq!(stack::metric(&ops, "vigil_scoring_repeats_total"), 1.0);
    let keys = stack.redis_keys();
    let alerts_of_other = format!("card_alerts:{other}");
    assert!(
        !keys.iter().any(|k| k.ends_with(&alerts_of_other)),
        "{keys:?}"
    );
}

/// A flood of payments from cards never seen, past `max_keys` and the new cards' budget of
/// vectors: every one is decided, and what the engine let go to stay within its bounds is
/// counted in `/metrics` (the engine's tests check what it keeps).
#[test]
fn a_flood_of_new_cards_is_decided_within_the_engines_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), 1);
    let stack = Stack::new(&broker.address);
    let bounds = [
        ("VIGIL__ENGINE__MAX_KEYS", "50"),
        ("VIGIL__ENGINE__NEW_CARD_VECTORS_PER_HOUR", "20"),
    ];
    let (_serve, address, ops) = stack.service(&["serve"], &bounds);
    let flood: Vec<String> = (0..300)
        .map(|i| {
            payment(
                &format!("f{i}"),
                &format!("flood_{i}"),
                "m1",
                i / 10,
                100,
                PARIS,
            )
        })
        .collect();
    stack.post_ndjson(&address, "/v1/transactions", &flood, 100);
    stack.wait_for_decisions(300);

    let dropped = |what: &str| {
        stack::metric(
            &ops,
            &format!("vigil_scoring_state_dropped_total{{what=\"{what}\"}}"),
        )
    };
    assert_eq!(dropped("keys"), 250.0, "cards beyond the 50 kept");
    let not_kept = dropped("new_card_vectors");
    assert!(
        (260.0..=280.0).contains(&not_kept),
        "20 an hour, over half an hour: {not_kept}"
    );
    assert_eq!(dropped("pending_vectors"), 0.0);
}
