//! Producing to Kafka: the idempotent producer every intake path shares, and a send that returns
//! only once the broker has acknowledged every record.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use serde::{Deserialize, Serialize};
use vigil_schema::topics;

/// How records are produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProducerConfig {
    /// Compression of record batches: `lz4`, `zstd`, `snappy`, `gzip` or `none`.
    pub compression: String,
    /// How long the producer waits to fill a batch, in milliseconds.
    pub linger_ms: u32,
    /// How long a record may take to be acknowledged before its request fails, in milliseconds.
    pub delivery_timeout_ms: u32,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        Self {
            compression: "lz4".into(),
            linger_ms: 5,
            delivery_timeout_ms: 30_000,
        }
    }
}

/// The partition of `partitions` the producer puts a record with `key` in: librdkafka's
/// `consistent_random` partitioner, CRC-32 of the key modulo the partition count. Backtests
/// partition the stream with it as the live service's topics are.
pub fn partition_of(key: &str, partitions: u32) -> u32 {
    crc32fast::hash(key.as_bytes()) % partitions.max(1)
}

/// Where the brokers are and how every client reaches them: `bootstrap.servers`, and the
/// librdkafka properties each client of the process sets (`security.protocol`,
/// `sasl.mechanism`, `sasl.username`, `sasl.password`, `ssl.ca.location`, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cluster {
    pub brokers: String,
    pub properties: BTreeMap<String, String>,
}

impl Cluster {
    /// The brokers at `brokers`, reached with librdkafka's defaults (plaintext).
    pub fn at(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            properties: BTreeMap::new(),
        }
    }

    /// A client configuration for this cluster, to add a client's own settings to.
    pub fn client(&self) -> ClientConfig {
        let mut client = ClientConfig::new();
        client.set("bootstrap.servers", &self.brokers);
        for (name, value) in &self.properties {
            client.set(name, value);
        }
        client
    }
}

/// The idempotent producer: acks from all in-sync replicas, no duplicates or reordering on
/// retries, keys partitioned by [`partition_of`].
pub fn producer(cluster: &Cluster, config: &ProducerConfig) -> Result<FutureProducer, KafkaError> {
    cluster
        .client()
        .set("partitioner", "consistent_random")
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", &config.compression)
        .set("linger.ms", config.linger_ms.to_string())
        .set(
            "delivery.timeout.ms",
            config.delivery_timeout_ms.to_string(),
        )
        .create()
}

/// Produces `records` to `topic` and waits until the broker has acknowledged all of them. When
/// the producer's queue is full, waits for the oldest deliveries rather than failing.
pub async fn produce_all<K, P>(
    producer: &FutureProducer,
    topic: &str,
    records: &[(K, P)],
) -> Result<(), KafkaError>
where
    K: AsRef<str>,
    P: AsRef<[u8]>,
{
    produce_all_with(producer, topic, records, &[]).await
}

/// [`produce_all`], each record naming `sent_by` in the [`topics::SENT_BY_HEADER`] header.
pub async fn produce_all_sent_by<K, P>(
    producer: &FutureProducer,
    topic: &str,
    records: &[(K, P)],
    sent_by: Option<&str>,
) -> Result<(), KafkaError>
where
    K: AsRef<str>,
    P: AsRef<[u8]>,
{
    let headers: Vec<_> = sent_by
        .map(|by| (topics::SENT_BY_HEADER, by))
        .into_iter()
        .collect();
    produce_all_with(producer, topic, records, &headers).await
}

/// [`produce_all`], each record carrying `headers` (name, value).
pub async fn produce_all_with<K, P>(
    producer: &FutureProducer,
    topic: &str,
    records: &[(K, P)],
    headers: &[(&str, &str)],
) -> Result<(), KafkaError>
where
    K: AsRef<str>,
    P: AsRef<[u8]>,
{
    let headers = (!headers.is_empty()).then(|| {
        headers.iter().fold(
            OwnedHeaders::new_with_capacity(headers.len()),
            |all, &(key, value)| {
                all.insert(Header {
                    key,
                    value: Some(value),
                })
            },
        )
    });
    let mut pending = VecDeque::with_capacity(records.len());
    for (key, payload) in records {
        let mut record = FutureRecord::to(topic)
            .key(key.as_ref())
            .payload(payload.as_ref());
        if let Some(headers) = &headers {
            record = record.headers(headers.clone());
        }
        loop {
            match producer.send_result(record) {
                Ok(delivery) => {
                    pending.push_back(delivery);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    match pending.pop_front() {
                        Some(oldest) => acknowledged(oldest).await?,
                        None => tokio::time::sleep(Duration::from_millis(5)).await,
                    }
                }
                Err((e, _)) => return Err(e),
            }
        }
    }
    for delivery in pending {
        acknowledged(delivery).await?;
    }
    Ok(())
}

async fn acknowledged(delivery: DeliveryFuture) -> Result<(), KafkaError> {
    match delivery.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => Err(e),
        Err(_cancelled) => Err(KafkaError::Canceled),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every client of a cluster carries its properties: a cluster that wants SASL over TLS
    /// gets it, and a property librdkafka does not take is refused, named.
    #[test]
    fn clients_carry_the_clusters_security_settings() {
        let mut cluster = Cluster::at("127.0.0.1:9");
        for (name, value) in [
            ("security.protocol", "sasl_plaintext"),
            ("sasl.mechanism", "PLAIN"),
            ("sasl.username", "vigil"),
            ("sasl.password", "secret"),
        ] {
            cluster.properties.insert(name.into(), value.into());
        }
        let client = cluster.client();
        assert_eq!(client.get("security.protocol"), Some("sasl_plaintext"));
        assert_eq!(client.get("bootstrap.servers"), Some("127.0.0.1:9"));
        assert!(producer(&cluster, &ProducerConfig::default()).is_ok());

        cluster
            .properties
            .insert("security.protocol".into(), "carrier_pigeon".into());
        let refused = producer(&cluster, &ProducerConfig::default()).err();
        let message = refused.map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("security.protocol"), "{message}");
    }

    #[test]
    fn keys_go_where_librdkafka_puts_them() {
        // CRC-32 (IEEE) of "123456789" is 0xCBF43926, the check value of the polynomial.
        assert_eq!(partition_of("123456789", u32::MAX), 0xCBF4_3926);
        assert_eq!(partition_of("card-1", 1), 0);
        let spread: std::collections::BTreeSet<u32> = (0..100)
            .map(|i| partition_of(&format!("card-{i}"), 8))
            .collect();
        assert_eq!(spread.len(), 8);
    }
}
