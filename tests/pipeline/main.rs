//! End-to-end tests of the live pipeline against the local Postgres and Redis and the embedded
//! Kafka-protocol broker in its own process.

mod api;
mod models;
mod stack;

use std::time::Duration;

use rand::{Rng, SeedableRng};
use stack::{Broker, Stack, backtest, generate, wait_until};

const WAIT: Duration = Duration::from_secs(240);

/// Eight partitions, as deployed by default: each transaction is scored with its card's windows
/// and with the state every partition shares (the model, merchants, customers) pooled from the
/// partitions' shares on `shares.v1` at the backtest's boundaries, so the decisions must be
/// those of `vigil backtest --partitions 8`, one per transaction.
#[test]
fn posted_transactions_get_exactly_the_backtests_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), 8);
    let stack = Stack::new(&broker.address);
    let (lines, path) = generate(dir.path(), 10, 500);
    let (_serve, address) = stack.service(&["serve"], &[]);
    stack.post_ndjson(&address, "/v1/transactions", &lines, 2000);
    stack.wait_for_decisions(lines.len() as i64);

    let expected = backtest(dir.path(), &path, 8);
    assert_eq!(stack.decisions(), expected);
    let alerts = stack.alerts();
    let expected_alerts: Vec<_> = expected.iter().filter(|(_, d)| *d != "approve").collect();
    assert!(
        !alerts.is_empty(),
        "the data must raise alerts for this test to mean anything"
    );
    assert_eq!(alerts.iter().collect::<Vec<_>>(), expected_alerts);
}

/// The scoring process killed with SIGKILL at random points and restarted: it resumes from its
/// snapshot and the offsets committed with the decisions, and ends with the decisions of a run
/// without kills.
#[test]
fn kill_9_of_the_scorer_loses_and_duplicates_nothing() {
    let posted = Posted::new(1);
    let (stack, total) = (&posted.stack, posted.total);
    let (mut scorer, mut logs) = killed_at_random_points(stack, total, 11);
    // Killed once more when its last snapshot holds everything, which includes a full chunk of
    // pending vectors (4096) saved apart: the restart must find it.
    let last_snapshot = "SELECT coalesce(max(transactions_offset), 0) FROM engine_snapshots";
    wait_until("the last snapshot", || {
        stack.query_i64(last_snapshot) == total
    });
    scorer.kill();
    logs += &scorer.logs();
    let (scorer, _) = stack.service(&["score"], &[]);
    wait_until("the partition's assignment", || {
        scorer.logs().contains("partition assigned")
    });
    logs += &scorer.logs();

    assert_eq!(
        stack.decisions(),
        backtest(posted.dir.path(), &posted.transactions, 1)
    );
    // Every decision reached decisions.v1, whatever the kills fell between (at least once:
    // downstream dedupes on transaction_id).
    wait_until("the outbox relayed", || {
        stack.query_i64("SELECT count(*) FROM decisions_outbox") == 0
    });
    let sent: std::collections::BTreeSet<String> =
        stack::topic_transaction_ids(&posted.broker.address, "decisions.v1")
            .into_iter()
            .collect();
    assert_eq!(
        sent.iter().collect::<Vec<_>>(),
        stack.decisions().keys().collect::<Vec<_>>()
    );
    assert!(logs.contains("snapshot saved"), "{logs}");
    // Resumed from the (compressed) snapshots the killed runs saved, not by replaying it all.
    assert!(!logs.contains("unusable snapshot"), "{logs}");
    assert!(logs.contains("saved chunks: 1"), "{logs}");
}

/// The same with two partitions, so that a batch commits in two transactions side by side (one
/// per lane) and a kill can fall between them: the decisions are those of an undisturbed run.
#[test]
fn kill_9_between_the_commit_lanes_loses_and_duplicates_nothing() {
    let posted = Posted::new(2);
    let (stack, total) = (&posted.stack, posted.total);
    killed_at_random_points(stack, total, 12);
    let undisturbed = Stack::new(&posted.broker.address);
    let (_scorer, _) = undisturbed.service(&["score"], &[]);
    undisturbed.wait_for_decisions(total);
    assert_eq!(stack.decisions(), undisturbed.decisions());
    assert_eq!(stack.alerts(), undisturbed.alerts());
}

/// A crash between a batch's commit and its send to `decisions.v1` leaves its decisions and
/// their outbox row in Postgres and nothing on the topic: the outbox relay sends them, once.
#[test]
fn decisions_committed_and_not_sent_reach_the_topic_once() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), 1);
    let stack = Stack::new(&broker.address);
    stack.execute(
        "INSERT INTO decisions (transaction_id, card_id, merchant_id, occurred_at, amount_minor,
                                currency, score, decision, model_version, reasons, features)
         SELECT 'lost_' || i, 'c' || i, 'm1', '2026-03-01T10:00:00Z', 1000, 'EUR', 0.5,
                'review', 'online-0.1.0', 'VELOCITY_BURST', '\\x'
           FROM generate_series(1, 3) i",
    );
    stack.execute(
        "INSERT INTO decisions_outbox (transaction_ids, created_at)
         VALUES (ARRAY['lost_1', 'lost_2', 'lost_3'], now() - interval '1 minute')",
    );
    let (_serve, address) = stack.service(&["serve"], &[]);
    wait_until("the outbox relayed", || {
        stack.query_i64("SELECT count(*) FROM decisions_outbox") == 0
    });
    // A payment decided after: the topic holds the three once, then it.
    let later = r#"{"transaction_id":"later","occurred_at":"2026-03-01T10:05:00Z","card_id":"c9","merchant_id":"m1","amount_minor":100,"currency":"EUR"}"#;
    stack.post_ndjson(&address, "/v1/transactions", &[later.to_owned()], 1);
    let sent: Vec<String> = stack::topic_payloads(&broker.address, "decisions.v1", 4)
        .iter()
        .map(|p| {
            let record: serde_json::Value = serde_json::from_str(p).unwrap();
            assert!(record["decision"].is_string(), "{p}");
            record["transaction_id"].as_str().unwrap().to_owned()
        })
        .collect();
    let mut relayed = sent[..3].to_vec();
    relayed.sort();
    assert_eq!(
        (relayed, sent[3].as_str()),
        (
            vec!["lost_1".to_owned(), "lost_2".into(), "lost_3".into()],
            "later"
        )
    );
    assert_eq!(
        stack::metric(&address, "vigil_scoring_decisions_resent_total"),
        3.0
    );
    wait_until("the later decision's outbox row deleted once sent", || {
        stack.query_i64("SELECT count(*) FROM decisions_outbox") == 0
    });
}

/// Messages the broker deleted before the scorer read them (its retention, while the scorer
/// lagged) are never scored: said and counted, not skipped silently; the rest is decided. The
/// embedded broker keeps about 5 MB a partition: 8 MB of (unreadable) messages make it delete
/// the oldest.
#[test]
fn messages_deleted_before_they_were_read_are_counted() {
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), 1);
    let stack = Stack::new(&broker.address);
    let producer: ThreadedProducer<DefaultProducerContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &broker.address)
        .create()
        .unwrap();
    let filler = vec![b'x'; 100_000];
    for _ in 0..80 {
        producer
            .send(
                BaseRecord::<str, [u8]>::to("transactions.v1")
                    .key("k")
                    .payload(&filler),
            )
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    let (ingest, address) = stack.service(&["ingest"], &[]);
    let lines: Vec<String> = (0..5)
        .map(|i| {
            format!(
                r#"{{"transaction_id":"t{i}","occurred_at":"2026-03-01T10:0{i}:00Z","card_id":"c{i}","merchant_id":"m1","amount_minor":100,"currency":"EUR"}}"#
            )
        })
        .collect();
    stack.post_ndjson(&address, "/v1/transactions", &lines, 5);
    drop(ingest);
    let (_scorer, scorer) = stack.service(&["score"], &[]);
    stack.wait_for_decisions(5);
    let skipped = stack::metric(
        &scorer,
        "vigil_scoring_messages_skipped_total{topic=\"transactions.v1\"}",
    );
    assert!((1.0..80.0).contains(&skipped), "{skipped}");
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
    let (_serve, address) = stack.service(&["serve"], &[]);
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
            let record: serde_json::Value = serde_json::from_str(payload).unwrap();
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
    assert_eq!(stack::metric(&address, "vigil_scoring_refused_total"), 2.0);
    // The partition goes on.
    stack.post_ndjson(&address, "/v1/transactions", &[tx("t4", "m1", 4)], 1);
    stack.wait_for_decisions(3);
    assert_eq!(
        stack.decisions().keys().collect::<Vec<_>>(),
        ["t1", "t3", "t4"]
    );
}

/// What the scorer tests start from: a broker with `partitions`, a stack on it, and ten days of
/// 300 cards' generated transactions posted through `vigil ingest`, none scored yet. Fields
/// drop in order: the processes before the folder they write in.
struct Posted {
    _ingest: stack::Process,
    stack: Stack,
    broker: Broker,
    /// The generated transactions file, and how many it holds.
    transactions: std::path::PathBuf,
    total: i64,
    dir: tempfile::TempDir,
}

impl Posted {
    fn new(partitions: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::start(dir.path(), partitions);
        let stack = Stack::new(&broker.address);
        let (lines, transactions) = generate(dir.path(), 10, 300);
        let (ingest, address) = stack.service(&["ingest"], &[]);
        stack.post_ndjson(&address, "/v1/transactions", &lines, 2000);
        Self {
            _ingest: ingest,
            stack,
            broker,
            transactions,
            total: lines.len() as i64,
            dir,
        }
    }
}

/// Runs a scorer with small batches (many points to be killed at), kills it with SIGKILL three
/// times at random points and restarts it; once all `total` transactions are decided, returns
/// the running scorer and the logs of those killed.
fn killed_at_random_points(stack: &Stack, total: i64, seed: u64) -> (stack::Process, String) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let small_batches = [("VIGIL__SCORING__MAX_BATCH", "100")];
    let (mut scorer, _) = stack.service(&["score"], &small_batches);
    let mut logs = String::new();
    for _ in 0..3 {
        let target = rng.random_range(total / 10..total * 9 / 10);
        let started = std::time::Instant::now();
        while stack.query_i64("SELECT count(*) FROM decisions") < target {
            assert!(started.elapsed() < WAIT, "no progress to {target}");
            std::thread::sleep(Duration::from_millis(rng.random_range(5..50)));
        }
        scorer.kill();
        logs += &scorer.logs();
        scorer = stack.service(&["score"], &small_batches).0;
    }
    stack.wait_for_decisions(total);
    (scorer, logs)
}

/// Two instances share the partitions; one is stopped mid-run (SIGTERM: it finishes its batch,
/// commits and leaves the group) and the other takes its partitions over: the decisions are
/// those of one instance running alone.
#[test]
fn two_scorers_one_stopped_mid_run_decide_as_one() {
    let posted = Posted::new(4);
    let (shared, total) = (&posted.stack, posted.total);

    let small_batches = [("VIGIL__SCORING__MAX_BATCH", "100")];
    let (_first, _) = shared.service(&["score"], &small_batches);
    let (mut second, _) = shared.service(&["score"], &small_batches);
    wait_until("a third of the decisions", || {
        shared.query_i64("SELECT count(*) FROM decisions") >= total / 3
    });
    assert!(second.terminate().success(), "{}", second.logs());
    assert!(second.logs().contains("stopping: leaving the group"));
    shared.wait_for_decisions(total);

    // The same topics read by a second deployment with one instance.
    let alone = Stack::new(&posted.broker.address);
    let (_scorer, _) = alone.service(&["score"], &[]);
    alone.wait_for_decisions(total);
    assert_eq!(shared.decisions(), alone.decisions());
    assert_eq!(shared.alerts(), alone.alerts());
}

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
    let mut future: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
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
    let (scorer, _) = stack.service(&["score"], &[]);
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
    let metrics = scorer.logs();
    assert!(metrics.contains("dead letter"), "{metrics}");
}

/// A bad request is refused whole with each bad item named, and nothing of it is produced; a
/// raw card number is replaced by its token before it reaches a topic, Postgres, Redis or a log.
#[test]
fn ingest_refuses_bad_items_and_no_card_number_gets_through() {
    const PAN: &str = "4111111111111111";
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), 1);
    let stack = Stack::new(&broker.address);
    let (serve, address) = stack.service(&["serve"], &[]);
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
            "[{}, {}, {}]",
            tx("t1", "c1", "100"),
            tx("t2", "c2", &format!("\"{PAN}\"")),
            r#"{"transaction_id":"t3"}"#
        ))
        .send()
        .unwrap();
    assert_eq!(refused.status(), 400);
    let body: serde_json::Value = refused.json().unwrap();
    let items = body["error"]["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{body}");
    assert_eq!(items[0]["index"], 1);
    assert_eq!(items[0]["field"], "amount_minor");
    assert_eq!(items[1]["index"], 2);
    assert!(!body.to_string().contains(PAN), "{body}");

    let accepted = client
        .post(format!("{address}/v1/transactions"))
        .bearer_auth(&stack.ingest_key)
        .body(format!(
            "[{}, {}]",
            tx("t4", PAN, "100"),
            tx("t5", "c5", "200")
        ))
        .send()
        .unwrap();
    assert_eq!(accepted.status(), 202);
    let label = client
        .post(format!("{address}/v1/labels"))
        .bearer_auth(&stack.ingest_key)
        .body(format!(
            r#"{{"transaction_id":"t4","is_fraud":true,"labelled_at":"2026-03-02T10:00:00Z","source":"chargeback","card_id":"{PAN}"}}"#
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
    let body: serde_json::Value = verdict.json().unwrap();
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
        let body: serde_json::Value = ahead.json().unwrap();
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
    let token = stack.pairs_of("SELECT transaction_id, card_id FROM decisions")["t4"].clone();
    assert!(
        token.starts_with("411111-") && token.ends_with("-1111"),
        "{token}"
    );
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
    assert!(!everywhere.contains(PAN));
    assert!(
        everywhere.contains(&token),
        "the label carries the token too"
    );
    let keys = stack.redis_keys();
    assert!(keys.iter().any(|k| k.contains(&token)), "{keys:?}");
    assert!(!keys.iter().any(|k| k.contains(PAN)));
    for (topic, count) in [
        ("transactions.v1", 2),
        ("labels.v1", 1),
        ("decisions.v1", 2),
    ] {
        let payloads = stack::topic_payloads(&broker.address, topic, count);
        assert!(!payloads.is_empty(), "{topic}");
        assert!(
            !payloads.iter().any(|p| p.contains(PAN)),
            "{topic}: {payloads:?}"
        );
    }
    assert!(!serve.logs().contains(PAN));
}

/// Postgres refuses the service's connections for a while (its database closed to new
/// connections, the open ones ended): the service waits and retries, then decides everything,
/// exactly once, as without the outage.
#[test]
fn postgres_down_for_a_while_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), 1);
    let stack = Stack::new(&broker.address);
    let (lines, path) = generate(dir.path(), 10, 300);
    let (_serve, address) = stack.service(&["serve"], &[("VIGIL__SCORING__MAX_BATCH", "500")]);
    let half = lines.len() / 2;
    stack.post_ndjson(&address, "/v1/transactions", &lines[..half], 2000);
    stack.wait_for_decisions(half as i64);

    stack.refuse_connections(true);
    stack.post_ndjson(&address, "/v1/transactions", &lines[half..], 2000);
    let metrics = reqwest::blocking::get(format!("{address}/metrics"))
        .unwrap()
        .text()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let during = reqwest::blocking::get(format!("{address}/metrics"))
        .unwrap()
        .text()
        .unwrap();
    stack.refuse_connections(false);

    stack.wait_for_decisions(lines.len() as i64);
    assert_eq!(stack.decisions(), backtest(dir.path(), &path, 1));
    let errors = |text: &str| {
        text.lines()
            .find(|l| l.starts_with("vigil_scoring_sink_errors_total{sink=\"postgres\"}"))
            .map_or(0, |l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
    };
    assert!(errors(&during) > errors(&metrics), "{during}");
}

/// Asked to stop while Postgres refuses its connections, the scorer retries its commit for a
/// while, then gives the batch up and exits, rather than waiting forever; the batch's offsets
/// were not committed, so the next scorer decides it, and everything is decided exactly once.
#[test]
fn a_stop_while_postgres_refuses_gives_the_batch_up_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), 1);
    let stack = Stack::new(&broker.address);
    let (lines, path) = generate(dir.path(), 10, 300);
    let (mut serve, address) = stack.service(&["serve"], &[("VIGIL__SCORING__MAX_BATCH", "500")]);
    let half = lines.len() / 2;
    stack.post_ndjson(&address, "/v1/transactions", &lines[..half], 2000);
    stack.wait_for_decisions(half as i64);

    stack.refuse_connections(true);
    stack.post_ndjson(&address, "/v1/transactions", &lines[half..], 2000);
    wait_until("a failed commit", || {
        serve.logs().contains("failed; the partition waits")
    });
    let stopped = serve.terminate_within(Duration::from_secs(60));
    let logs = serve.logs();
    assert!(stopped.is_some_and(|s| s.success()), "{logs}");
    assert!(logs.contains("giving the batch up"), "{logs}");
    stack.refuse_connections(false);

    let (_scorer, _) = stack.service(&["score"], &[]);
    stack.wait_for_decisions(lines.len() as i64);
    assert_eq!(stack.decisions(), backtest(dir.path(), &path, 1));
}

/// Redis stops: decisions still commit; when it is back (empty, as it keeps nothing on disk),
/// the service rebuilds from Postgres what it missed, with no new payment needed to set it off,
/// so every card decided has its risk in Redis.
#[test]
fn redis_down_then_rebuilt_from_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), 1);
    let stack = Stack::new(&broker.address);
    let (lines, _) = generate(dir.path(), 6, 200);
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let redis_url = format!("redis://127.0.0.1:{port}");
    let env = [("VIGIL__REDIS__URL", redis_url.as_str())];
    let (_serve, address) = stack.service(&["serve"], &env);
    let half = lines.len() / 2;

    let mut redis = stack::RedisServer::start(dir.path(), port);
    stack.post_ndjson(&address, "/v1/transactions", &lines[..half], 2000);
    stack.wait_for_decisions(half as i64);
    redis.stop();
    stack.post_ndjson(&address, "/v1/transactions", &lines[half..], 2000);
    stack.wait_for_decisions(lines.len() as i64);
    let redis = stack::RedisServer::start(dir.path(), port);

    let cards = stack.query_i64("SELECT count(DISTINCT card_id) FROM decisions");
    wait_until("every card's risk in redis", || {
        redis.card_risks(&stack.prefix) as i64 == cards
    });
}

/// `vigil replay` produces a transactions file and its labels in event-time order: every
/// transaction is decided, every label stored, and the online model learns from the labels.
#[test]
fn replayed_files_are_decided_and_their_labels_learned() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), 2);
    let stack = Stack::new(&broker.address);
    let (lines, path) = generate(dir.path(), 20, 300);
    let labels = path.with_file_name("labels.ndjson");
    let label_count = std::fs::read_to_string(&labels).unwrap().lines().count() as i64;
    assert!(label_count > 0);
    let said = stack.run(&[
        "replay",
        "--transactions",
        path.to_str().unwrap(),
        "--labels",
        labels.to_str().unwrap(),
    ]);
    assert!(
        said.contains(&format!(
            "replayed {} transactions and {label_count} labels",
            lines.len()
        )),
        "{said}"
    );

    let (_scorer, address) = stack.service(&["score"], &[]);
    stack.wait_for_decisions(lines.len() as i64);
    let started = std::time::Instant::now();
    wait_until("every label stored", || {
        stack.query_i64("SELECT count(*) FROM labels") == label_count
    });
    // The lag comes with the consumer's statistics, every five seconds.
    let metrics = loop {
        let text = reqwest::blocking::get(format!("{address}/metrics"))
            .unwrap()
            .text()
            .unwrap();
        if text.contains("vigil_scoring_consumer_lag{") || started.elapsed() > WAIT {
            break text;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(
        stack::metric(&address, "vigil_scoring_model_updates_total") > 0.0,
        "{metrics}"
    );
    assert!(
        metrics.contains("vigil_scoring_consumer_lag{"),
        "lag per partition: {metrics}"
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
    let (_serve, address) = stack.service(&["serve"], &[]);
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
