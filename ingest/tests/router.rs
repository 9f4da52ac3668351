//! The intake's router called in process (`tower::ServiceExt::oneshot`), producing to
//! librdkafka's mock cluster (the Kafka protocol over TCP, in memory): what it takes, with whose
//! name, and how it refuses the rest, with nothing produced; and how a request waits for its
//! decisions, published on the local Redis (127.0.0.1:6379) as the scoring service publishes
//! them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::{Extension, Router};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::Value;
use tower::ServiceExt as _;
use vigil_common::http::SentBy;
use vigil_ingest::http::{Intake, IntakeConfig, Replies, router};
use vigil_schema::pan::PanTokenizer;
use vigil_schema::topics;

const PAN: &str = "4111111111111111";

struct TestIntake {
    app: Router,
    cluster: MockCluster<'static, DefaultProducerContext>,
}

impl TestIntake {
    fn new(config: &IntakeConfig) -> Self {
        Self::hearing(config, None)
    }

    /// An intake whose requests may wait for decisions, heard through `replies`.
    fn hearing(config: &IntakeConfig, replies: Option<Arc<Replies>>) -> Self {
        let cluster = MockCluster::new(1).unwrap();
        for topic in [topics::TRANSACTIONS, topics::LABELS] {
            cluster.create_topic(topic, 1, 1).unwrap();
        }
        let tokenizer = PanTokenizer::new(b"the intake tests' key, not a secret");
        let intake = Intake::new(
            &vigil_common::kafka::Cluster::at(cluster.bootstrap_servers()),
            config,
            tokenizer,
            replies,
            &prometheus::Registry::new(),
        )
        .unwrap();
        // What the caller's access control sets for a key.
        let sent_by = SentBy("key 7 (feeder)".into());
        let app = router(intake).layer(Extension(sent_by));
        Self { app, cluster }
    }

    /// The status and JSON body of `path`'s answer to `body` (NDJSON when `ndjson`).
    async fn post(&self, path: &str, body: String, ndjson: bool) -> (StatusCode, Value) {
        post(self.app.clone(), path, body, ndjson).await
    }

    /// Posts `lines` (NDJSON) to `path` in the background; returns the answer to come, and the
    /// records on the transactions topic once all of them are there.
    async fn waiting(
        &self,
        path: &'static str,
        lines: &[String],
    ) -> (
        tokio::task::JoinHandle<(StatusCode, Value)>,
        Vec<(Value, Option<String>)>,
    ) {
        let posting = tokio::spawn(post(self.app.clone(), path, lines.join("\n"), true));
        let brokers = self.cluster.bootstrap_servers();
        let n = lines.len() as i64;
        let records =
            tokio::task::spawn_blocking(move || awaited(&brokers, topics::TRANSACTIONS, n))
                .await
                .unwrap();
        (posting, records)
    }

    /// Every record on `topic`: its key, payload and `vigil-sent-by` header.
    fn records(&self, topic: &str) -> Vec<(String, Value, String)> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.cluster.bootstrap_servers())
            .set("group.id", "intake-tests")
            .create()
            .unwrap();
        let timeout = Duration::from_secs(10);
        let (_, end) = consumer.fetch_watermarks(topic, 0, timeout).unwrap();
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(topic, 0, Offset::Beginning)
            .unwrap();
        consumer.assign(&assignment).unwrap();
        (0..end)
            .map(|_| {
                let m = consumer.poll(timeout).unwrap().unwrap();
                let header = m.headers().unwrap().get(0);
                assert_eq!(header.key, topics::SENT_BY_HEADER);
                (
                    String::from_utf8(m.key().unwrap().to_vec()).unwrap(),
                    serde_json::from_slice(m.payload().unwrap()).unwrap(),
                    String::from_utf8(header.value.unwrap().to_vec()).unwrap(),
                )
            })
            .collect()
    }
}

/// The status and JSON body of `app`'s answer to `body` posted to `path` (NDJSON when
/// `ndjson`).
async fn post(app: Router, path: &str, body: String, ndjson: bool) -> (StatusCode, Value) {
    let content_type = if ndjson {
        "application/x-ndjson"
    } else {
        "application/json"
    };
    let request = Request::post(path)
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Every record on `topic` of the cluster at `brokers`, once there are `n`: its payload and the instance its
/// `vigil-reply-to` header names, if any.
fn awaited(brokers: &str, topic: &str, n: i64) -> Vec<(Value, Option<String>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "intake-tests")
        .create()
        .unwrap();
    let timeout = Duration::from_secs(10);
    let started = Instant::now();
    while consumer.fetch_watermarks(topic, 0, timeout).unwrap().1 < n {
        assert!(started.elapsed() < timeout, "{n} records never came");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&assignment).unwrap();
    (0..n)
        .map(|_| {
            let m = consumer.poll(timeout).unwrap().unwrap();
            let reply_to = m
                .headers()
                .and_then(|h| h.iter().find(|h| h.key == topics::REPLY_TO_HEADER))
                .and_then(|h| h.value)
                .map(|v| String::from_utf8(v.to_vec()).unwrap());
            (
                serde_json::from_slice(m.payload().unwrap()).unwrap(),
                reply_to,
            )
        })
        .collect()
}

fn transaction(id: &str, card: &str, amount: &str, at: &str) -> String {
    format!(
        r#"{{"transaction_id":"{id}","occurred_at":"{at}","card_id":"{card}","merchant_id":"m1","amount_minor":{amount},"currency":"EUR"}}"#
    )
}

/// The intake's clock, as the contract writes times.
fn now() -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    vigil_schema::Timestamp::from_unix_millis(millis as i64, 0)
        .unwrap()
        .to_string()
}

/// A good request is produced whole once the broker has it: keyed by the card's token (never
/// the number), named by the key that sent it.
#[tokio::test]
async fn a_good_request_is_produced_keyed_by_the_card_token_and_named_by_its_sender() {
    let intake = TestIntake::new(&IntakeConfig::default());
    let lines = [
        transaction("t1", PAN, "100", &now()),
        transaction("t2", "c2", "200", &now()),
    ];
    let (status, body) = intake
        .post("/v1/transactions", lines.join("\n"), true)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");

    let records = intake.records(topics::TRANSACTIONS);
    assert_eq!(records.len(), 2);
    let (key, payload, sent_by) = &records[0];
    assert!(
        key.starts_with("411111-") && key.ends_with("-1111"),
        "{key}"
    );
    assert_eq!(payload["card_id"], key.as_str());
    assert_eq!(sent_by, "key 7 (feeder)");
    assert!(!format!("{records:?}").contains(PAN));
}

/// A request with a bad item is refused whole with each bad item named (its place and field),
/// and nothing of it is produced: the contract's bounds, times far ahead, a verdict only alert
/// work may give, lines that are not JSON, a body past the limit.
#[tokio::test]
async fn a_bad_request_is_refused_whole_naming_each_bad_item() {
    let intake = TestIntake::new(&IntakeConfig {
        max_body_bytes: 10_000,
        ..IntakeConfig::default()
    });
    let items = format!(
        "[{}, {}, {}, {}]",
        transaction("t1", "c1", "100", &now()),
        transaction("t2", "c2", &u64::MAX.to_string(), &now()),
        transaction("t3", "c3", "100", "2099-01-01T00:00:00Z"),
        r#"{"transaction_id":"t4"}"#
    );
    let (status, body) = intake.post("/v1/transactions", items, false).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let named: Vec<(u64, &str)> = body["error"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["index"].as_u64().unwrap(),
                i["field"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        named[..2],
        [(1, "amount_minor"), (2, "occurred_at")],
        "{body}"
    );
    assert_eq!(named[2].0, 3);

    let lines = ["not json", &transaction("t5", "c5", "100", &now())].join("\n");
    let (status, body) = intake.post("/v1/transactions", lines, true).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["items"][0]["line"], 1, "{body}");

    let verdict = format!(
        r#"{{"transaction_id":"t1","is_fraud":true,"labelled_at":"{}","source":"investigator"}}"#,
        now()
    );
    let (status, body) = intake.post("/v1/labels", verdict, false).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["items"][0]["field"], "source", "{body}");

    let large = format!(
        "[{}]",
        vec![transaction("t", "c", "1", &now()); 100].join(",")
    );
    let (status, body) = intake.post("/v1/transactions", large, false).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");

    assert!(intake.records(topics::TRANSACTIONS).is_empty());
    assert!(intake.records(topics::LABELS).is_empty());
}

/// Replies heard on the local Redis under a prefix of the test's own.
fn replies(test: &str) -> (Arc<Replies>, redis::Client, String) {
    let prefix = format!("vigil_intake_test_{test}_{}", std::process::id());
    let url = "redis://127.0.0.1:6379";
    let replies = Replies::start(url, &prefix).unwrap();
    (replies, redis::Client::open(url).unwrap(), prefix)
}

/// Publishes `reply` to `instance` as the scoring service does, until someone hears it (the
/// intake's subscription is made in the background).
async fn publish(client: &redis::Client, channel: &str, reply: &Value) {
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let started = Instant::now();
    loop {
        let heard: i64 = redis::cmd("PUBLISH")
            .arg(channel)
            .arg(reply.to_string())
            .query_async(&mut connection)
            .await
            .unwrap();
        if heard > 0 {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "nobody listens on {channel}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn decided(id: &str, decision: &str, score: f64) -> Value {
    serde_json::json!({
        "status": "decided", "transaction_id": id, "decision": decision, "score": score,
        "reasons": "VELOCITY_BURST;card_count_10m:+1.52", "model_version": "online-v1"
    })
}

/// A request that waits is answered 200 with each transaction's decision once the scoring
/// service has published them on this instance's channel, which its records name.
#[tokio::test]
async fn a_waiting_request_is_answered_with_its_decisions() {
    let (replies, client, prefix) = replies("answered");
    let intake = TestIntake::hearing(&IntakeConfig::default(), Some(replies));
    let lines = [
        transaction("w1", PAN, "100", &now()),
        transaction("w2", "c2", "200", &now()),
    ];
    let (posting, records) = intake.waiting("/v1/transactions?wait=5s", &lines).await;
    let instance = records[0]
        .1
        .clone()
        .expect("a waiting request's records name the instance");
    assert_eq!(records[1].1.as_deref(), Some(instance.as_str()));
    let channel = format!("{prefix}:replies:{instance}");
    publish(&client, &channel, &decided("w2", "approve", 0.01)).await;
    // A reply for a transaction nobody waits on changes nothing.
    publish(&client, &channel, &decided("other", "decline", 0.99)).await;
    let refused = serde_json::json!({
        "status": "refused", "transaction_id": "w1", "reason": "transaction_id was decided for another payment"
    });
    publish(&client, &channel, &refused).await;

    let (status, body) = posting.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["accepted"], 2);
    assert_eq!(body["pending"], serde_json::json!([]));
    let decisions = body["decisions"].as_array().unwrap();
    assert_eq!(
        decisions[0]["status"], "refused",
        "in the request's order: {body}"
    );
    assert_eq!(decisions[1]["transaction_id"], "w2");
    assert_eq!(decisions[1]["decision"], "approve");
    assert_eq!(
        decisions[1]["reasons"],
        serde_json::json!(["VELOCITY_BURST", "card_count_10m:+1.52"])
    );
    assert_eq!(decisions[1]["model_version"], "online-v1");
    assert!(!body.to_string().contains(PAN));
}

/// When the wait runs out first, the answer is 202 at the wait's end, with the decisions heard
/// and the ids still pending; a request without `wait` is answered 202 as soon as the broker
/// has it, and its records name no instance. (The wait is long enough that the test's own
/// reading of the topic, slow on a loaded machine, ends well before it.)
#[tokio::test]
async fn a_wait_that_runs_out_answers_what_is_pending() {
    let (replies, client, prefix) = replies("pending");
    let intake = TestIntake::hearing(&IntakeConfig::default(), Some(replies));
    let lines = [
        transaction("p1", "c1", "100", &now()),
        transaction("p2", "c2", "200", &now()),
    ];
    let started = Instant::now();
    let (posting, records) = intake.waiting("/v1/transactions?wait=3s", &lines).await;
    let instance = records[0].1.clone().unwrap();
    let channel = format!("{prefix}:replies:{instance}");
    publish(&client, &channel, &decided("p1", "review", 0.7)).await;

    let (status, body) = posting.await.unwrap();
    let took = started.elapsed();
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["pending"], serde_json::json!(["p2"]), "{body}");
    assert_eq!(body["decisions"][0]["decision"], "review", "{body}");
    assert!(
        took >= Duration::from_secs(3),
        "answered before the wait ran out: {took:?}"
    );

    let (status, body) = intake
        .post(
            "/v1/transactions",
            transaction("p3", "c3", "1", &now()),
            false,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body, serde_json::json!({"accepted": 1}));
    let records = awaited(&intake.cluster.bootstrap_servers(), topics::TRANSACTIONS, 3);
    assert_eq!(records[2].1, None);
}

/// A `wait` that is not a duration, or longer than the intake allows, or asked of an intake
/// with no Redis to hear decisions on, is refused, saying what it takes, with nothing produced.
#[tokio::test]
async fn a_bad_wait_is_refused_saying_what_it_takes() {
    let (replies, _, _) = replies("refused");
    let hearing = TestIntake::hearing(
        &IntakeConfig {
            max_wait_ms: 2_000,
            ..IntakeConfig::default()
        },
        Some(replies),
    );
    let deaf = TestIntake::new(&IntakeConfig::default());
    let item = || transaction("b1", "c1", "100", &now());
    for (intake, wait, says) in [
        (&hearing, "soon", "such as `150ms`"),
        (&hearing, "-5ms", "such as `150ms`"),
        (&hearing, "3s", "from 0 to 2000 ms"),
        (&hearing, "18446744073709551615s", "from 0 to 2000 ms"),
        (&deaf, "100ms", "GET /v1/decisions/{id}"),
    ] {
        let path = format!("/v1/transactions?wait={wait}");
        let (status, body) = intake.post(&path, item(), false).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{wait}: {body}");
        assert_eq!(body["error"]["code"], "invalid_query", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{wait}: {message}");
    }
    assert!(hearing.records(topics::TRANSACTIONS).is_empty());
    assert!(deaf.records(topics::TRANSACTIONS).is_empty());
}

/// Bodies share a budget of bytes (`max_bytes_in_flight`), charged their declared length while
/// they are read and produced: one that would pass it is refused at once (503 `overloaded`,
/// `Retry-After`), and the budget comes back when a body is done with.
#[tokio::test]
async fn bodies_past_the_budget_of_bytes_are_refused_at_once() {
    let intake = TestIntake::new(&IntakeConfig {
        max_body_bytes: 10_000,
        max_bytes_in_flight: 15_000,
        ..IntakeConfig::default()
    });
    let sized = |body: Body, length: usize| {
        Request::post("/v1/transactions")
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::CONTENT_LENGTH, length)
            .body(body)
            .unwrap()
    };
    // A client that declares 10,000 bytes and never sends them holds 10,000 of the 15,000.
    let stalled = Body::from_stream(futures_util::stream::pending::<
        Result<axum::body::Bytes, std::io::Error>,
    >());
    let holding = tokio::spawn(intake.app.clone().oneshot(sized(stalled, 10_000)));
    tokio::time::sleep(Duration::from_millis(100)).await;

    let padded = |length: usize| {
        let item = transaction("s1", "c1", "100", &now());
        let body = format!("{item}{}", " ".repeat(length - item.len()));
        sized(Body::from(body), length)
    };
    let refused = intake.app.clone().oneshot(padded(6_000)).await.unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.headers()[header::RETRY_AFTER], "1");
    let taken = intake.app.clone().oneshot(padded(4_000)).await.unwrap();
    assert_eq!(taken.status(), StatusCode::ACCEPTED);

    holding.abort();
    let _ = holding.await;
    let taken = intake.app.clone().oneshot(padded(6_000)).await.unwrap();
    assert_eq!(taken.status(), StatusCode::ACCEPTED, "the budget came back");
}
