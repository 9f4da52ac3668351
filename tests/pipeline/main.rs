//! End-to-end tests of the live pipeline against the local Postgres and Redis and the embedded
//! Kafka-protocol broker in its own process.

mod answers;
mod api;
mod broker;
mod console;
mod demo;
mod hostile;
mod models;
mod rules;
mod stack;
mod tls;

use std::time::Duration;

use rand::{Rng, SeedableRng};
use stack::{Broker, Stack, backtest, generate, wait_until};

const WAIT: Duration = Duration::from_mins(4);

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
    let (_serve, address, _) = stack.service(&["serve"], &[]);
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
    let mut scorer = killed_at_random_points(stack, total, 11);
    // Killed once more when its last snapshot holds everything, which includes a full chunk of
    // pending vectors (4096) saved apart: the restart must find it.
    let last_snapshot = "SELECT coalesce(max(transactions_offset), 0) FROM engine_snapshots";
    wait_until("the last snapshot", || {
        stack.query_i64(last_snapshot) == total
    });
    scorer.kill();
    let (_scorer, _, address) = stack.service(&["score"], &[]);
    let event = |name: &str| {
        stack::metric(
            &address,
            &format!("vigil_scoring_events_total{{event=\"{name}\"}}"),
        )
    };
    wait_until("the partition's assignment", || {
        event("partition_assigned") >= 1.0
    });
    // Resumed from the (compressed) snapshot the killed run saved, its full chunk of pending
    // vectors included, not by replaying it all.
    assert_eq!(event("snapshot_restored"), 1.0);
    assert_eq!(event("snapshot_unusable"), 0.0);
    assert!(stack::metric(&address, "vigil_scoring_snapshot_chunks_restored_total") >= 1.0);

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
}

/// The same with two partitions, so that a batch commits in two transactions side by side (one
/// per lane) and a kill can fall between them: the decisions are those of an undisturbed run.
#[test]
fn kill_9_between_the_commit_lanes_loses_and_duplicates_nothing() {
    let posted = Posted::new(2);
    let (stack, total) = (&posted.stack, posted.total);
    killed_at_random_points(stack, total, 12);
    let undisturbed = Stack::new(&posted.broker.address);
    let (_scorer, _, _) = undisturbed.service(&["score"], &[]);
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
    let (_serve, address, ops) = stack.service(&["serve"], &[]);
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
        stack::metric(&ops, "vigil_scoring_decisions_resent_total"),
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
    let (ingest, address, _) = stack.service(&["ingest"], &[]);
    let lines: Vec<String> = (0..5)
        .map(|i| {
            format!(
                r#"{{"transaction_id":"t{i}","occurred_at":"2026-03-01T10:0{i}:00Z","card_id":"c{i}","merchant_id":"m1","amount_minor":100,"currency":"EUR"}}"#
            )
        })
        .collect();
    stack.post_ndjson(&address, "/v1/transactions", &lines, 5);
    drop(ingest);
    let (_scorer, _, scorer) = stack.service(&["score"], &[]);
    stack.wait_for_decisions(5);
    let skipped = stack::metric(
        &scorer,
        "vigil_scoring_messages_skipped_total{topic=\"transactions.v1\"}",
    );
    assert!((1.0..80.0).contains(&skipped), "{skipped}");
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
        let (ingest, address, _) = stack.service(&["ingest"], &[]);
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
fn killed_at_random_points(stack: &Stack, total: i64, seed: u64) -> stack::Process {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let small_batches = [("VIGIL__SCORING__MAX_BATCH", "100")];
    let (mut scorer, _, _) = stack.service(&["score"], &small_batches);
    for _ in 0..3 {
        let target = rng.random_range(total / 10..total * 9 / 10);
        let started = std::time::Instant::now();
        while stack.query_i64("SELECT count(*) FROM decisions") < target {
            assert!(started.elapsed() < WAIT, "no progress to {target}");
            std::thread::sleep(Duration::from_millis(rng.random_range(5..50)));
        }
        scorer.kill();
        scorer = stack.service(&["score"], &small_batches).0;
    }
    stack.wait_for_decisions(total);
    scorer
}

/// Two instances share the partitions; one is stopped mid-run (SIGTERM: it finishes its batch,
/// commits and leaves the group) and the other takes its partitions over: the decisions are
/// those of one instance running alone.
#[test]
fn two_scorers_one_stopped_mid_run_decide_as_one() {
    let posted = Posted::new(4);
    let (shared, total) = (&posted.stack, posted.total);

    let small_batches = [("VIGIL__SCORING__MAX_BATCH", "100")];
    let (_first, _, first) = shared.service(&["score"], &small_batches);
    let (mut second, _, _) = shared.service(&["score"], &small_batches);
    wait_until("a third of the decisions", || {
        shared.query_i64("SELECT count(*) FROM decisions") >= total / 3
    });
    assert!(second.terminate().success(), "{}", second.logs());
    wait_until("the first instance holding every partition", || {
        stack::metric(&first, "vigil_scoring_partitions") == 4.0
    });
    shared.wait_for_decisions(total);

    // The same topics read by a second deployment with one instance.
    let alone = Stack::new(&posted.broker.address);
    let (_scorer, _, _) = alone.service(&["score"], &[]);
    alone.wait_for_decisions(total);
    assert_eq!(shared.decisions(), alone.decisions());
    assert_eq!(shared.alerts(), alone.alerts());
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
    let (_serve, address, ops) = stack.service(&["serve"], &[("VIGIL__SCORING__MAX_BATCH", "500")]);
    let half = lines.len() / 2;
    stack.post_ndjson(&address, "/v1/transactions", &lines[..half], 2000);
    stack.wait_for_decisions(half as i64);

    stack.refuse_connections(true);
    stack.post_ndjson(&address, "/v1/transactions", &lines[half..], 2000);
    let metrics = reqwest::blocking::get(format!("{ops}/metrics"))
        .unwrap()
        .text()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let during = reqwest::blocking::get(format!("{ops}/metrics"))
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
    let (mut serve, address, ops) =
        stack.service(&["serve"], &[("VIGIL__SCORING__MAX_BATCH", "500")]);
    let half = lines.len() / 2;
    stack.post_ndjson(&address, "/v1/transactions", &lines[..half], 2000);
    stack.wait_for_decisions(half as i64);

    stack.refuse_connections(true);
    stack.post_ndjson(&address, "/v1/transactions", &lines[half..], 2000);
    wait_until("a failed commit", || {
        stack::metric(&ops, "vigil_scoring_sink_errors_total{sink=\"postgres\"}") >= 1.0
    });
    let stopped = serve.terminate_within(Duration::from_mins(1));
    let logs = serve.logs();
    // Postgres still refuses: a stop within the minute means the batch was given up.
    assert!(stopped.is_some_and(|s| s.success()), "{logs}");
    stack.refuse_connections(false);

    let (_scorer, _, _) = stack.service(&["score"], &[]);
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
    let port = stack::free_port();
    let redis_url = format!("redis://127.0.0.1:{port}");
    let env = [("VIGIL__REDIS__URL", redis_url.as_str())];
    let (_serve, address, _) = stack.service(&["serve"], &env);
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

    let (_scorer, _, address) = stack.service(&["score"], &[]);
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
