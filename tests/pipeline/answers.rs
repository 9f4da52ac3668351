//! Decisions in the payment's own request (`POST /v1/transactions?wait=`), end to end: two
//! intake instances, each hearing its own answers, while the scorer is killed with SIGKILL and
//! restarted.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::stack::{Broker, Stack, generate, wait_until};

/// Transactions a request carries.
const PER_REQUEST: usize = 10;

/// What the requests were answered: each decided transaction's decision and score, and how
/// many answers came to each intake, and after the kill.
#[derive(Default)]
struct Answers {
    decided: BTreeMap<String, (String, f32)>,
    refused: Vec<Value>,
    by_intake: [usize; 2],
    after_the_kill: usize,
    pending: usize,
}

/// Every decision answered in a response is the one committed, across a kill -9 of the scorer
/// (an answer only ever follows its commit; what the killed scorer had not committed is scored
/// again by its successor, which answers it then); each intake instance hears the answers to
/// its own requests; and every transaction ends decided. A repeat is answered with the decision
/// committed first, another payment under a decided id with its refusal.
#[test]
fn every_decision_answered_is_the_one_committed_across_a_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path(), 8);
    let stack = Stack::with_env(&broker.address, &[("VIGIL__INGEST__MAX_WAIT_MS", "20000")]);
    let (lines, _) = generate(dir.path(), 4, 200);
    let total = lines.len();
    let intakes = [
        stack.service(&["ingest"], &[]),
        stack.service(&["ingest"], &[]),
    ];
    let small_batches = [("VIGIL__SCORING__MAX_BATCH", "100")];
    let (mut scorer, _, _) = stack.service(&["score"], &small_batches);
    let answers = Mutex::new(Answers::default());
    let killed_at: Mutex<Option<Instant>> = Mutex::new(None);
    let requests: Vec<&[String]> = lines.chunks(PER_REQUEST).collect();
    std::thread::scope(|scope| {
        for thread in 0..4 {
            let (requests, intakes, answers, killed_at) =
                (&requests, &intakes, &answers, &killed_at);
            let stack = &stack;
            scope.spawn(move || {
                let client = reqwest::blocking::Client::new();
                for (i, request) in requests.iter().enumerate().skip(thread).step_by(4) {
                    let intake = i % 2;
                    let address = &intakes[intake].1;
                    let (status, body) = post(&client, stack, address, request);
                    // Answers completed well after the kill came from the scorer started after it.
                    let killed = killed_at
                        .lock()
                        .unwrap()
                        .is_some_and(|at| at.elapsed() > Duration::from_secs(1));
                    answers
                        .lock()
                        .unwrap()
                        .record(status, &body, request, intake, killed);
                }
            });
        }
        wait_until("a third decided", || {
            stack.query_i64("SELECT count(*) FROM decisions") >= total as i64 / 3
        });
        scorer.kill();
        *killed_at.lock().unwrap() = Some(Instant::now());
        std::thread::sleep(Duration::from_millis(500));
        scorer = stack.service(&["score"], &small_batches).0;
    });
    stack.wait_for_decisions(total as i64);

    let answers = answers.into_inner().unwrap();
    let committed = committed(&stack);
    let mismatched: Vec<_> = answers
        .decided
        .iter()
        .filter(|(id, answer)| committed.get(*id) != Some(*answer))
        .collect();
    assert!(
        mismatched.is_empty(),
        "answered otherwise than committed: {mismatched:?}"
    );
    assert!(answers.refused.is_empty(), "{:?}", answers.refused);
    assert!(
        answers.decided.len() >= total * 3 / 4,
        "{} of {total} answered ({} pending)",
        answers.decided.len(),
        answers.pending
    );
    assert!(
        answers.by_intake.iter().all(|&n| n > 0),
        "each instance hears its own answers: {:?}",
        answers.by_intake
    );
    assert!(
        answers.after_the_kill > 0,
        "the scorer started after the kill answers too"
    );

    // The same payment again is answered with the decision committed first; another payment
    // under a decided id is refused with its dead letter's reason.
    let client = reqwest::blocking::Client::new();
    let first = &lines[0];
    let (status, body) = post(&client, &stack, &intakes[0].1, std::slice::from_ref(first));
    assert_eq!(status, 200, "{body}");
    let id = serde_json::from_str::<Value>(first).unwrap()["transaction_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let answer = &body["decisions"][0];
    let again = (
        answer["decision"].as_str().unwrap().to_owned(),
        answer["score"].as_f64().unwrap() as f32,
    );
    assert_eq!(committed.get(&id), Some(&again), "{body}");
    let mut other: Value = serde_json::from_str(first).unwrap();
    other["amount_minor"] = (other["amount_minor"].as_u64().unwrap() + 1).into();
    let (status, body) = post(&client, &stack, &intakes[1].1, &[other.to_string()]);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["decisions"][0]["status"], "refused", "{body}");
    let reason = body["decisions"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("another payment"), "{reason}");
    drop(scorer);
}

impl Answers {
    fn record(
        &mut self,
        status: u16,
        body: &Value,
        request: &[String],
        intake: usize,
        killed: bool,
    ) {
        assert!(matches!(status, 200 | 202), "{status}: {body}");
        let ids: Vec<String> = request
            .iter()
            .map(|line| serde_json::from_str::<Value>(line).unwrap()["transaction_id"].to_string())
            .collect();
        let decisions = body["decisions"].as_array().expect("decisions");
        for decision in decisions {
            assert!(
                ids.contains(&decision["transaction_id"].to_string()),
                "an answer to another request: {decision}"
            );
            if decision["status"] != "decided" {
                self.refused.push(decision.clone());
                continue;
            }
            let id = decision["transaction_id"].as_str().unwrap().to_owned();
            let action = decision["decision"].as_str().unwrap().to_owned();
            let score = decision["score"].as_f64().unwrap() as f32;
            self.decided.insert(id, (action, score));
        }
        self.by_intake[intake] += decisions.len();
        if killed {
            self.after_the_kill += decisions.len();
        }
        self.pending += body["pending"].as_array().map_or(0, Vec::len);
        assert_eq!(
            decisions.len() + body["pending"].as_array().map_or(0, Vec::len),
            request.len(),
            "{body}"
        );
    }
}

/// Posts `request` to the intake at `address`, waiting for its decisions.
fn post(
    client: &reqwest::blocking::Client,
    stack: &Stack,
    address: &str,
    request: &[String],
) -> (u16, Value) {
    let response = client
        .post(format!("{address}/v1/transactions?wait=20s"))
        .bearer_auth(&stack.ingest_key)
        .header("content-type", "application/x-ndjson")
        .body(request.join("\n"))
        .send()
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().unwrap())
}

/// Each committed decision and its score.
fn committed(stack: &Stack) -> BTreeMap<String, (String, f32)> {
    stack
        .pairs_of("SELECT transaction_id, decision || ' ' || score::text FROM decisions")
        .into_iter()
        .map(|(id, both)| {
            let (action, score) = both.split_once(' ').unwrap();
            (id, (action.to_owned(), score.parse().unwrap()))
        })
        .collect()
}
