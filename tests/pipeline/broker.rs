//! The pipeline against a broker process that keeps its data on disk, killed and restarted in
//! the middle of a run, as Kafka's own tests kill brokers: Tansu, a Kafka-compatible broker, with
//! its `SQLite` storage.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::stack::{self, Stack, Tansu, backtest, generate, wait_until};

/// The service scoring the first half of the transactions when the broker is killed with
/// SIGKILL; restarted 3 s later on its data, it is sent the second half: every transaction is
/// decided once, exactly as the backtest decides it (8 partitions, the default, each with its
/// share of the state pooled through `shares.v1`), and every decision reaches `decisions.v1`
/// (at least once: consumers dedupe on `transaction_id`).
#[test]
fn the_broker_killed_and_restarted_mid_run_loses_and_duplicates_nothing() {
    let Some(binary) = Tansu::binary() else {
        eprintln!("skipped: set VIGIL_TANSU to a tansu binary to run this test (.ci/run does)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Tansu::start(binary, dir.path());
    let stack = Stack::new(&broker.address);
    let (lines, path) = generate(dir.path(), 10, 300);
    let (serve, address, _) = stack.service(&["serve"], &[]);
    let half = lines.len() / 2;
    stack.post_ndjson(&address, "/v1/transactions", &lines[..half], 250);
    let mut decided_at_kill = 0;
    wait_until("the first decisions", || {
        decided_at_kill = stack.query_i64("SELECT count(*) FROM decisions");
        decided_at_kill > 0
    });
    broker.kill_and_restart(Duration::from_secs(3));
    stack.post_ndjson(&address, "/v1/transactions", &lines[half..], 250);
    stack.wait_for_decisions(lines.len() as i64);

    let decided = stack.decisions();
    assert_eq!(
        decided,
        backtest(dir.path(), &path, 8),
        "killed at {decided_at_kill} of {half} decided: {}\n{}",
        serve.logs(),
        broker.logs()
    );
    wait_until("the outbox relayed", || {
        stack.query_i64("SELECT count(*) FROM decisions_outbox") == 0
    });
    let sent: BTreeSet<String> = stack::topic_transaction_ids(&broker.address, "decisions.v1")
        .into_iter()
        .collect();
    assert_eq!(
        sent.iter().collect::<Vec<_>>(),
        decided.keys().collect::<Vec<_>>()
    );
}
