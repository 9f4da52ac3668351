//! Dead letters: a message the service cannot read goes to `dead_letters.v1` with its reason and
//! where it came from, acknowledged before the batch commits.

use std::time::Duration;

use rdkafka::Message;
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use vigil_schema::topics;

/// A message the service could not read, and why.
#[derive(Debug)]
pub struct DeadLetter {
    pub message: OwnedMessage,
    pub reason: String,
}

/// Produces `dead` to the dead-letter topic, the reason in a header, and waits for the broker.
pub async fn produce_dead_letters(
    producer: &FutureProducer,
    dead: &[DeadLetter],
) -> Result<(), rdkafka::error::KafkaError> {
    let mut deliveries = Vec::with_capacity(dead.len());
    for letter in dead {
        let m = &letter.message;
        tracing::warn!(topic = m.topic(), partition = m.partition(), offset = m.offset(),
            reason = %letter.reason, "dead letter");
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "error",
                value: Some(letter.reason.as_str()),
            })
            .insert(Header {
                key: "source_topic",
                value: Some(m.topic()),
            })
            .insert(Header {
                key: "source_partition",
                value: Some(&m.partition().to_string()),
            })
            .insert(Header {
                key: "source_offset",
                value: Some(&m.offset().to_string()),
            });
        let mut record = FutureRecord::<[u8], [u8]>::to(topics::DEAD_LETTERS).headers(headers);
        if let Some(key) = m.key() {
            record = record.key(key);
        }
        if let Some(payload) = m.payload() {
            record = record.payload(payload);
        }
        deliveries.push(producer.send(record, Duration::from_secs(30)));
    }
    for delivery in deliveries {
        delivery.await.map_err(|(e, _)| e)?;
    }
    Ok(())
}
