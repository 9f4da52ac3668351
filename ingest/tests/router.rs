//! The intake's router called in process (`tower::ServiceExt::oneshot`), producing to
//! librdkafka's mock cluster (the Kafka protocol over TCP, in memory): what it takes, with whose
//! name, and how it refuses the rest, with nothing produced.

use std::time::Duration;

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
use vigil_ingest::http::{Intake, IntakeConfig, router};
use vigil_schema::pan::PanTokenizer;
use vigil_schema::topics;

const PAN: &str = "4111111111111111";

struct TestIntake {
    app: Router,
    cluster: MockCluster<'static, DefaultProducerContext>,
}

impl TestIntake {
    fn new(config: &IntakeConfig) -> Self {
        let cluster = MockCluster::new(1).unwrap();
        for topic in [topics::TRANSACTIONS, topics::LABELS] {
            cluster.create_topic(topic, 1, 1).unwrap();
        }
        let tokenizer = PanTokenizer::new(b"the intake tests' key, not a secret");
        let intake = Intake::new(
            &vigil_common::kafka::Cluster::at(cluster.bootstrap_servers()),
            config,
            tokenizer,
            &prometheus::Registry::new(),
        )
        .unwrap();
        // What the caller's access control sets for a key.
        let sent_by = SentBy("key 7 (feeder)".into());
        let app = router(intake, config.max_body_bytes).layer(Extension(sent_by));
        Self { app, cluster }
    }

    /// The status and JSON body of `path`'s answer to `body` (NDJSON when `ndjson`).
    async fn post(&self, path: &str, body: String, ndjson: bool) -> (StatusCode, Value) {
        let content_type = if ndjson {
            "application/x-ndjson"
        } else {
            "application/json"
        };
        let request = Request::post(path)
            .header(header::CONTENT_TYPE, content_type)
            .body(Body::from(body))
            .unwrap();
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
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
